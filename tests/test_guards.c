/* Guard pages and canaries around zz_alloc blocks.  Every bad access runs in
 * a forked child; the parent asserts the signal and the exact stderr line. */
#include "test_util.h"

struct access {
    size_t n;          /* block size to allocate in the child */
    ptrdiff_t offset;  /* where to touch, relative to the block start */
    int write;
    int free_after;    /* call zz_free after the access */
};

/* Allocates in the child itself, so each death starts from a clean block. */
OPTNONE static void child_touch(void *arg)
{
    const struct access *a = arg;
    unsigned char *p = zz_alloc(a->n);
    child_check(p != NULL);
    unsigned char *at = p + a->offset;
    if (a->write)
        VWRITE(at, 0x5A);
    else
        (void)VREAD(at);
    if (a->free_after)
        zz_free(p);
}

static const size_t sizes[] = { 1, 15, 16, 17, 32, 100, 4095, 4096, 4097, 10000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Reading or writing the first byte past round_up(n, 16) hits the guard. */
static void test_guard_after_block_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        for (int w = 0; w <= 1; w++) {
            struct access a = { sizes[i], (ptrdiff_t)tu_round16(sizes[i]), w, 0 };
            expect_segv(child_touch, &a);
        }
    }
}

/* Touching the page before the block's first page hits the leading guard:
 * both its last byte and its first byte. */
static void test_guard_before_first_page_faults(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    for (size_t i = 0; i < NSIZES; i++) {
        /* Where the block starts inside its page decides the offsets; learn it
         * from a block of the same size (slots of one size are laid out alike). */
        unsigned char *probe = zz_alloc(sizes[i]);
        assert_non_null(probe);
        ptrdiff_t into_page = (ptrdiff_t)((uintptr_t)probe - tu_page_of(probe));
        zz_free(probe);
        const ptrdiff_t offs[] = { -into_page - 1, -into_page - (ptrdiff_t)pg };
        for (size_t k = 0; k < 2; k++) {
            for (int w = 0; w <= 1; w++) {
                struct access a = { sizes[i], offs[k], w, 0 };
                expect_segv(child_touch, &a);
            }
        }
    }
}

/* The child re-derives the leading-page offset from its own block. */
OPTNONE static void child_touch_page_before(void *arg)
{
    const size_t *n = arg;
    unsigned char *p = zz_alloc(*n);
    child_check(p != NULL);
    VWRITE((unsigned char *)tu_page_of(p) - 1, 1);
}

static void test_guard_page_before_own_block_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        expect_segv(child_touch_page_before, &n);
    }
}

/* Writing any byte of the tail slack [n, round_up(n,16)) and freeing aborts
 * with the after-block message. */
static void test_canary_after_block_detected(void **state)
{
    (void)state;
    const size_t ns[] = { 1, 9, 15, 17, 100, 4095, 4097 };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        for (size_t off = ns[i]; off < tu_round16(ns[i]); off++) {
            struct access a = { ns[i], (ptrdiff_t)off, 1, 1 };
            expect_fatal(child_touch, &a, "zeroize: canary corrupted (after block)");
        }
    }
}

/* Writing p[-1] and freeing aborts with the before-block message, unless the
 * block starts a page (then p[-1] is the guard page and faults). */
static void test_canary_before_block_detected(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *probe = zz_alloc(sizes[i]);
        assert_non_null(probe);
        int page_start = (uintptr_t)probe == tu_page_of(probe);
        zz_free(probe);
        struct access a = { sizes[i], -1, 1, 1 };
        if (page_start)
            expect_segv(child_touch, &a);
        else
            expect_fatal(child_touch, &a, "zeroize: canary corrupted (before block)");
    }
}

/* zz_alloc(0) points at a guard page: any access faults. */
static void test_guard_zero_size_block_faults(void **state)
{
    (void)state;
    for (int w = 0; w <= 1; w++) {
        struct access a = { 0, 0, w, 0 };
        expect_segv(child_touch, &a);
    }
}

/* Control: in-bounds accesses and an untouched canary live happily. */
static void test_guard_in_bounds_access_survives(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        struct access first = { sizes[i], 0, 1, 1 };
        struct access last = { sizes[i], (ptrdiff_t)sizes[i] - 1, 1, 1 };
        expect_child_ok(child_touch, &first);
        expect_child_ok(child_touch, &last);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_after_block_faults),
        cmocka_unit_test(test_guard_before_first_page_faults),
        cmocka_unit_test(test_guard_page_before_own_block_faults),
        cmocka_unit_test(test_canary_after_block_detected),
        cmocka_unit_test(test_canary_before_block_detected),
        cmocka_unit_test(test_guard_zero_size_block_faults),
        cmocka_unit_test(test_guard_in_bounds_access_survives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
