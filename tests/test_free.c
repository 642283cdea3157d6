/* zz_free: the non-fatal contract, and the secret leaves no trace anywhere
 * in the process's memory.  (Fatal misuse is in test_misuse.c.) */
#include "test_util.h"

static void test_free_null_is_noop(void **state)
{
    (void)state;
    zz_stats before, after;
    zz_get_stats(&before);
    errno = 4321;
    zz_free(NULL);
    assert_int_equal(errno, 4321);
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
}

static void test_free_preserves_errno(void **state)
{
    (void)state;
    const size_t ns[] = { 0, 1, 32, 4096, 70000 };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        void *p = zz_alloc(ns[i]);
        assert_non_null(p);
        errno = EXDEV;
        zz_free(p);
        assert_int_equal(errno, EXDEV);
    }
}

static void test_free_works_in_every_mode(void **state)
{
    (void)state;
    const int modes[] = { ZZ_NOACCESS, ZZ_READONLY, ZZ_READWRITE };
    const size_t ns[] = { 1, 64, 4096, 5000 };
    zz_stats before, after;
    zz_get_stats(&before);
    for (size_t m = 0; m < 3; m++) {
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            unsigned char *p = zz_alloc(ns[i]);
            assert_non_null(p);
            memset(p, 0x3C, ns[i]);
            assert_int_equal(zz_protect(p, modes[m]), 0);
            errno = EBADF;
            zz_free(p);
            assert_int_equal(errno, EBADF);
            /* The slot comes back usable: writable and zeroed. */
            unsigned char *q = zz_alloc(ns[i]);
            assert_non_null(q);
            assert_int_equal(zz_is_zero(q, ns[i]), 1);
            memset(q, 0x1, ns[i]);
            zz_free(q);
        }
    }
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
    assert_int_equal(after.live_bytes, before.live_bytes);
}

/* The scan of the whole address space finds the 64-byte secret in the live
 * block (positive control), and finds it nowhere after zz_free. */
#define SECRET_LEN 64

static void scan_secret_gone_after_free(size_t n, int mode, uint64_t seed)
{
    unsigned char *p = zz_alloc(n);
    assert_non_null(p);
    tu_fill_secret(p + (n - SECRET_LEN) / 2, seed, SECRET_LEN);
    size_t scanned = 0;
    size_t before = tu_scan_memory(seed, SECRET_LEN, &scanned);
    assert_int_not_equal(before, (size_t)-1);
    if (before != 1) {
        print_error("size %zu: the live secret was found %zu times (want 1) in %zu bytes\n", n,
                    before, scanned);
        fail();
    }
    assert_int_equal(zz_protect(p, mode), 0);
    zz_free(p);
    size_t after = tu_scan_memory(seed, SECRET_LEN, &scanned);
    if (after != 0) {
        print_error("size %zu mode %d: secret still in memory %zu times after zz_free (%zu bytes "
                    "scanned)\n",
                    n, mode, after, scanned);
        fail();
    }
}

static void test_free_secret_not_found_in_memory(void **state)
{
    (void)state;
    const size_t ns[] = { 64, 100, 4096, 70000 };
    uint64_t seed = 0xC0FFEE0DDBA11ull;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        scan_secret_gone_after_free(ns[i], ZZ_READWRITE, seed + i);
}

/* Also when the block was read-only or inaccessible at the time of free. */
static void test_free_secret_not_found_after_protected_free(void **state)
{
    (void)state;
    scan_secret_gone_after_free(64, ZZ_READONLY, 0xABCDEF01ull);
    scan_secret_gone_after_free(64, ZZ_NOACCESS, 0xABCDEF02ull);
}

/* Shrinking with zz_realloc: the old block is wiped, so only the copy in the
 * new block remains (one hit), and none after freeing it. */
static void test_realloc_old_block_wiped(void **state)
{
    (void)state;
    uint64_t seed = 0x1234567ull;
    unsigned char *p = zz_alloc(4000);
    assert_non_null(p);
    tu_fill_secret(p, seed, SECRET_LEN);
    unsigned char *q = zz_realloc(p, 8000);
    assert_non_null(q);
    assert_int_equal(tu_scan_memory(seed, SECRET_LEN, NULL), 1);
    zz_free(q);
    assert_int_equal(tu_scan_memory(seed, SECRET_LEN, NULL), 0);
}

/* A secret that zz_unlock wipes from caller-owned memory is gone as well. */
static void test_unlock_secret_not_found_in_memory(void **state)
{
    (void)state;
    uint64_t seed = 0x77665544ull;
    unsigned char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(zz_lock(m + 100, SECRET_LEN), 0);
    tu_fill_secret(m + 100, seed, SECRET_LEN);
    assert_int_equal(tu_scan_memory(seed, SECRET_LEN, NULL), 1);
    assert_int_equal(zz_unlock(m + 100, SECRET_LEN), 0);
    assert_int_equal(tu_scan_memory(seed, SECRET_LEN, NULL), 0);
    munmap(m, 8192);
}

/* zeroize.h: "Freed slots are reused last-in, first-out" -- across the
 * slabs of a size class, not only within one: after freeing a slot in a slab
 * that already had a free one, the next allocation of that size is the slot
 * just freed (a write after free through a stale pointer is then caught by
 * the very next allocation).  Before, the slab of the last free stayed
 * behind another slab with free slots. */
static void child_lifo_across_slabs(void *arg)
{
    (void)arg;
    enum { N = 24, SIZE = 5000 }; /* a size class no other test here uses */
    unsigned char *b[N];
    for (int i = 0; i < N; i++)
        child_check((b[i] = zz_alloc(SIZE)) != NULL);
    /* slabs of a fresh class hold 4, 4, 8, ... slots: b[4], b[5] share the
     * second slab, b[9] is in the third */
    zz_free(b[4]);
    zz_free(b[9]);
    zz_free(b[5]);
    unsigned char *again = zz_alloc(SIZE);
    child_check(again == b[5]);
    unsigned char *next = zz_alloc(SIZE);
    child_check(next == b[9] || next == b[4]);
    zz_free(again);
    zz_free(next);
    for (int i = 0; i < N; i++)
        if (i != 4 && i != 5 && i != 9)
            zz_free(b[i]);
}

static void test_free_slots_reused_lifo_across_slabs(void **state)
{
    (void)state;
    expect_child_ok(child_lifo_across_slabs, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null_is_noop),
        cmocka_unit_test(test_free_preserves_errno),
        cmocka_unit_test(test_free_works_in_every_mode),
        cmocka_unit_test(test_free_secret_not_found_in_memory),
        cmocka_unit_test(test_free_secret_not_found_after_protected_free),
        cmocka_unit_test(test_realloc_old_block_wiped),
        cmocka_unit_test(test_unlock_secret_not_found_in_memory),
        cmocka_unit_test(test_free_slots_reused_lifo_across_slabs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
