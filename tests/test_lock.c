/* zz_lock / zz_unlock / zz_unlock_keep on caller-owned memory. */
#include "test_util.h"

static unsigned char *map_pages(size_t pages)
{
    void *m = mmap(NULL, pages * tu_page_size(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    memset(m, 0xAA, pages * tu_page_size());   /* resident, and a known pattern */
    return m;
}

static void test_lock_shared_page_counted(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    unsigned char *page = map_pages(1);
    unsigned char *a = page + 0, *b = page + 200;
    assert_int_equal(zz_lock(a, 100), 0);
    assert_int_equal(zz_lock(b, 100), 0);
    assert_true(tu_addr_has_flag(page, "lo"));
    assert_int_equal(zz_unlock(a, 100), 0);
    assert_true(tu_addr_has_flag(page, "lo"));   /* b still holds the page */
    assert_true(tu_addr_has_flag(page, "dd"));
    assert_int_equal(zz_unlock(b, 100), 0);
    assert_false(tu_addr_has_flag(page, "lo"));
    assert_false(tu_addr_has_flag(page, "dd"));
    munmap(page, tu_page_size());
}

/* The same buffer locked twice needs two unlocks. */
static void test_lock_nested_same_range(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    unsigned char *page = map_pages(1);
    assert_int_equal(zz_lock(page + 8, 16), 0);
    assert_int_equal(zz_lock(page + 8, 16), 0);
    assert_int_equal(zz_unlock_keep(page + 8, 16), 0);
    assert_true(tu_addr_has_flag(page, "lo"));
    assert_int_equal(zz_unlock_keep(page + 8, 16), 0);
    assert_false(tu_addr_has_flag(page, "lo"));
    munmap(page, tu_page_size());
}

/* A buffer spanning three pages, overlapped at each end by another lock. */
static void test_lock_span_pages_counted_per_page(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(4);
    assert_int_equal(zz_lock(m + pg - 10, pg + 20), 0);   /* pages 0,1,2 */
    assert_int_equal(zz_lock(m + 2 * pg + 100, 10), 0);   /* page 2 */
    assert_int_equal(zz_unlock(m + pg - 10, pg + 20), 0);
    assert_false(tu_addr_has_flag(m, "lo"));
    assert_false(tu_addr_has_flag(m + pg, "lo"));
    assert_true(tu_addr_has_flag(m + 2 * pg, "lo"));
    assert_false(tu_addr_has_flag(m + 3 * pg, "lo"));
    assert_int_equal(zz_unlock(m + 2 * pg + 100, 10), 0);
    assert_false(tu_addr_has_flag(m + 2 * pg, "lo"));
    munmap(m, 4 * pg);
}

static void test_unlock_wipes_only_range(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(2);
    for (size_t off = 0; off < 20; off++) {
        for (size_t n = 1; n < 300; n += 13) {
            memset(m, 0xAA, 2 * pg);
            unsigned char *p = m + pg - 150 + off;   /* straddles the page boundary */
            assert_int_equal(zz_lock(p, n), 0);
            assert_int_equal(zz_unlock(p, n), 0);
            for (size_t i = 0; i < 2 * pg; i++) {
                int inside = m + i >= p && m + i < p + n;
                assert_int_equal(m[i], inside ? 0 : 0xAA);
            }
        }
    }
    munmap(m, 2 * pg);
}

static void test_unlock_keep_keeps_contents(void **state)
{
    (void)state;
    unsigned char *page = map_pages(1);
    assert_int_equal(zz_lock(page + 50, 100), 0);
    assert_int_equal(zz_unlock_keep(page + 50, 100), 0);
    for (size_t i = 0; i < tu_page_size(); i++)
        assert_int_equal(page[i], 0xAA);
    assert_false(tu_addr_has_flag(page, "lo"));
    munmap(page, tu_page_size());
}

/* zz_unlock of memory that was never locked only wipes. */
static void test_unlock_never_locked_only_wipes(void **state)
{
    (void)state;
    unsigned char *page = map_pages(1);
    assert_int_equal(zz_unlock(page + 10, 20), 0);
    assert_int_equal(zz_is_zero(page + 10, 20), 1);
    assert_int_equal(page[9], 0xAA);
    assert_int_equal(page[30], 0xAA);
    assert_false(tu_addr_has_flag(page, "lo"));
    munmap(page, tu_page_size());
}

static void test_lock_zero_length_ok(void **state)
{
    (void)state;
    unsigned char x[4] = { 1, 2, 3, 4 };
    assert_int_equal(zz_lock(NULL, 0), 0);
    assert_int_equal(zz_lock(x, 0), 0);
    assert_int_equal(zz_unlock(NULL, 0), 0);
    assert_int_equal(zz_unlock(x, 0), 0);
    assert_int_equal(zz_unlock_keep(x, 0), 0);
    assert_int_equal(x[0], 1);
}

static void test_lock_overflow_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_int_equal(zz_lock((void *)(UINTPTR_MAX - 10), 100), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(zz_lock((void *)4096, SIZE_MAX), -1);
    assert_int_equal(errno, EINVAL);
}

/* Stack and heap buffers work too (the documented use). */
static void test_lock_stack_buffer(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    unsigned char key[32];
    memset(key, 0x5C, sizeof key);
    assert_int_equal(zz_lock(key, sizeof key), 0);
    assert_true(tu_addr_has_flag(key, "lo"));
    assert_int_equal(zz_unlock(key, sizeof key), 0);
    assert_int_equal(zz_is_zero(key, sizeof key), 1);
}

/* Locked bytes in the stats follow the page counts. */
static void test_lock_stats_locked_bytes(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(3);
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    assert_int_equal(zz_lock(m + 10, pg), 0);            /* pages 0 and 1 */
    zz_get_stats(&s1);
    assert_int_equal(s1.locked_bytes - s0.locked_bytes, 2 * pg);
    assert_int_equal(zz_lock(m + pg + 5, 10), 0);        /* page 1 again: no change */
    zz_get_stats(&s2);
    assert_int_equal(s2.locked_bytes, s1.locked_bytes);
    assert_int_equal(zz_unlock(m + 10, pg), 0);
    assert_int_equal(zz_unlock(m + pg + 5, 10), 0);
    zz_get_stats(&s2);
    assert_int_equal(s2.locked_bytes, s0.locked_bytes);
    munmap(m, 3 * pg);
}

/* Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB, locking 1 MiB
 * fails with an mlock errno and leaves nothing locked (an earlier, small lock
 * stays as it was). */
static void child_lock_over_limit(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(64 * 1024) == 0);
    size_t big = 1u << 20;
    unsigned char *small = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(small != MAP_FAILED && m != MAP_FAILED);
    memset(m, 1, big);
    long vmlck0 = tu_status_kb("VmLck");
    child_check(zz_lock(small, 100) == 0);
    long vmlck1 = tu_status_kb("VmLck");
    child_check(vmlck1 == vmlck0 + 4);
    errno = 0;
    child_check(zz_lock(m, big) == -1);
    child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    child_check(strstr(zz_last_error(), "RLIMIT_MEMLOCK") != NULL);
    child_check(tu_status_kb("VmLck") == vmlck1);
    child_check(!tu_addr_has_flag(m, "lo"));
    child_check(!tu_addr_has_flag(m + big - 1, "lo"));
    child_check(!tu_addr_has_flag(m, "dd"));
    child_check(tu_addr_has_flag(small, "lo"));
    /* and the failure did not corrupt the page counts: small unlocks fully */
    child_check(zz_unlock(small, 100) == 0);
    child_check(tu_status_kb("VmLck") == vmlck0);
    /* a range partly locked already (small page again + the big one) */
    child_check(zz_lock(small, 100) == 0);
    child_check(zz_lock(m + big - 4096, 4096 + 0) == 0);
    errno = 0;
    child_check(zz_lock(m, big) == -1);
    child_check(tu_addr_has_flag(m + big - 4096, "lo"));   /* the earlier lock survives */
    child_check(!tu_addr_has_flag(m, "lo"));
    child_check(zz_unlock(m + big - 4096, 4096) == 0);
    child_check(zz_unlock(small, 100) == 0);
    child_check(tu_status_kb("VmLck") == vmlck0);
}

static void test_lock_over_rlimit_fails_cleanly(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    expect_child_ok(child_lock_over_limit, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_shared_page_counted),
        cmocka_unit_test(test_lock_nested_same_range),
        cmocka_unit_test(test_lock_span_pages_counted_per_page),
        cmocka_unit_test(test_unlock_wipes_only_range),
        cmocka_unit_test(test_unlock_keep_keeps_contents),
        cmocka_unit_test(test_unlock_never_locked_only_wipes),
        cmocka_unit_test(test_lock_zero_length_ok),
        cmocka_unit_test(test_lock_overflow_einval),
        cmocka_unit_test(test_lock_stack_buffer),
        cmocka_unit_test(test_lock_stats_locked_bytes),
        cmocka_unit_test(test_lock_over_rlimit_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
