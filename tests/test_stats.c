/* zz_get_stats: the counters follow allocations exactly. */
#include "test_util.h"

static void test_stats_live_counts_exact(void **state)
{
    (void)state;
    const size_t sizes[] = { 0, 1, 32, 100, 4096, 4097, 70000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        zz_stats s0, s1, s2;
        zz_get_stats(&s0);
        void *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        zz_get_stats(&s1);
        assert_int_equal(s1.live_blocks, s0.live_blocks + 1);
        assert_int_equal(s1.live_bytes, s0.live_bytes + sizes[i]);
        zz_free(p);
        zz_get_stats(&s2);
        assert_int_equal(s2.live_blocks, s0.live_blocks);
        assert_int_equal(s2.live_bytes, s0.live_bytes);
    }
}

static void test_stats_locked_and_mapped_while_live(void **state)
{
    (void)state;
    enum { N = 50 };
    void *p[N];
    zz_stats s0, s1;
    zz_get_stats(&s0);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i * 997) % 20000 + 1;
        p[i] = zz_alloc(n);
        assert_non_null(p[i]);
        total += n;
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks - s0.live_blocks, N);
    assert_int_equal(s1.live_bytes - s0.live_bytes, total);
    assert_true(s1.locked_bytes > 0);
    assert_true(s1.mapped_bytes > 0);
    /* locked memory covers at least every live byte; mapped covers locked */
    assert_true(s1.locked_bytes >= s1.live_bytes);
    assert_true(s1.mapped_bytes >= s1.locked_bytes);
    for (int i = 0; i < N; i++)
        zz_free(p[i]);
}

/* The library's locked_bytes agrees with the kernel's VmLck for this process
 * (nothing else here locks memory): on-fault locking counts the whole
 * range in both. */
static void test_stats_locked_bytes_match_kernel(void **state)
{
    (void)state;
    void *p[10];
    for (int i = 0; i < 10; i++) {
        p[i] = zz_alloc(1000 * (size_t)(i + 1));
        assert_non_null(p[i]);
    }
    zz_stats s;
    zz_get_stats(&s);
    long vmlck_kb = tu_status_kb("VmLck");
    assert_true(vmlck_kb >= 0);
    if ((size_t)vmlck_kb * 1024 != s.locked_bytes) {
        print_error("locked_bytes %zu, kernel VmLck %ld kB\n", s.locked_bytes, vmlck_kb);
        fail();
    }
    for (int i = 0; i < 10; i++)
        zz_free(p[i]);
}

static void test_stats_realloc_counts_once(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    void *p = zz_alloc(10);
    assert_non_null(p);
    p = zz_realloc(p, 300);
    assert_non_null(p);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks + 1);
    assert_int_equal(s1.live_bytes, s0.live_bytes + 300);
    zz_free(p);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
}

/* A failed allocation changes no counter. */
static void test_stats_failed_alloc_changes_nothing(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    assert_null(zz_alloc(SIZE_MAX - 100));
    zz_get_stats(&s1);
    assert_memory_equal(&s0, &s1, sizeof s0);
}

/* When the last live block of a size goes, the memory cached for that size
 * shrinks to its bound (with no memory of demand, decay 0: 1 MiB, or one
 * slab of at most 2 MiB) in that very free, not over later calls (whose
 * latency it would spoil: unmapping a big secretmem slab takes
 * milliseconds). */
static void test_stats_free_all_trims_cache_at_once(void **state)
{
    (void)state;
    unsigned long decay = zz_get_cache_decay_ms();
    assert_int_equal(zz_set_cache_decay_ms(0), 0);
    enum { N = 1000 }; /* about 8 MiB of slots and guards */
    static void *p[N];
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    for (size_t i = 0; i < N; i++)
        assert_non_null(p[i] = zz_alloc(32));
    zz_get_stats(&s1);
    assert_true(s1.mapped_bytes - s0.mapped_bytes >= (size_t)N * 4096);
    for (size_t i = 0; i < N; i++)
        zz_free(p[i]);
    zz_get_stats(&s2);
    assert_int_equal(s2.live_blocks, s0.live_blocks);
    size_t kept = s2.mapped_bytes > s0.mapped_bytes ? s2.mapped_bytes - s0.mapped_bytes : 0;
    print_message("mapped: +%zu KiB with %d live blocks, +%zu KiB once all are freed\n",
                  (s1.mapped_bytes - s0.mapped_bytes) >> 10, N, kept >> 10);
    assert_true(kept <= (3u << 20) + (64u << 10));
    assert_int_equal(zz_set_cache_decay_ms(decay), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_live_counts_exact),
        cmocka_unit_test(test_stats_locked_and_mapped_while_live),
        cmocka_unit_test(test_stats_locked_bytes_match_kernel),
        cmocka_unit_test(test_stats_realloc_counts_once),
        cmocka_unit_test(test_stats_failed_alloc_changes_nothing),
        cmocka_unit_test(test_stats_free_all_trims_cache_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
