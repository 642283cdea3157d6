/* Guard pages and canaries around zz_alloc blocks.  Every bad access runs in
 * a forked child; the parent asserts the signal and the exact stderr line. */
#include "test_util.h"

struct access {
    size_t n;          /* block size to allocate in the child */
    ptrdiff_t offset;  /* where to touch, relative to the block start */
    int write;         /* 0 read, 1 write 0x5A, 2 flip every bit (read + write) */
    int free_after;    /* call zz_free after the access */
};

/* Allocates in the child itself, so each death starts from a clean block. */
OPTNONE static void child_touch(void *arg)
{
    const struct access *a = arg;
    unsigned char *p = zz_alloc(a->n);
    child_check(p != NULL);
    unsigned char *at = p + a->offset;
    if (a->write == 2)            /* a canary byte could hold 0x5A already */
        VWRITE(at, ~VREAD(at));
    else if (a->write)
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
 * both its last byte and its first byte.  The child finds the page from its
 * own block (the parent never allocates: see test_guard_survives_fork). */
struct before {
    size_t n;
    size_t back;   /* bytes before the block's first page: 1 or a page */
    int write;
};

OPTNONE static void child_touch_page_before(void *arg)
{
    const struct before *b = arg;
    unsigned char *p = zz_alloc(b->n);
    child_check(p != NULL);
    unsigned char *at = (unsigned char *)tu_page_of(p) - b->back;
    if (b->write)
        VWRITE(at, 1);
    else
        (void)VREAD(at);
}

static void test_guard_before_first_page_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        for (int w = 0; w <= 1; w++) {
            struct before last_byte = { sizes[i], 1, w };
            struct before first_byte = { sizes[i], tu_page_size(), w };
            expect_segv(child_touch_page_before, &last_byte);
            expect_segv(child_touch_page_before, &first_byte);
        }
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
            struct access a = { ns[i], (ptrdiff_t)off, 2, 1 };
            expect_fatal(child_touch, &a, "zeroize: canary corrupted (after block)");
        }
    }
}

/* Writing p[-1] and freeing aborts with the before-block message, unless the
 * block starts a page (then p[-1] is the guard page and faults).  The block
 * ends within 15 bytes of a page end, so it starts a page exactly when
 * round_up(n, 16) is a multiple of the page size. */
static void test_canary_before_block_detected(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        int page_start = tu_round16(sizes[i]) % tu_page_size() == 0;
        struct access a = { sizes[i], -1, 2, 1 };
        if (page_start)
            expect_segv(child_touch, &a);
        else
            expect_fatal(child_touch, &a, "zeroize: canary corrupted (before block)");
    }
}

/* Guard pages in a forked child.  The kernel gives a child a fresh zero view
 * of a MADV_WIPEONFORK mapping, without its MADV_GUARD_INSTALL markers (and
 * without any mlock).  The library documents what follows: until the child
 * allocates from a slab, blocks inherited there read as zeros and zz_info()
 * does not claim ZZ_INFO_GUARDED (on the guard-install path) or
 * ZZ_INFO_LOCKED; the first allocation from the slab puts guards and locks
 * back, for new and inherited blocks alike.  The first child sets up the
 * blocks; the grandchild checks the claim, allocates, then touches a guard
 * and must die of SIGSEGV; the first child reports. */
struct forked_touch {
    size_t n;
    int reuse;     /* 0: touch a block from before the fork; 1: a new block */
    int before;    /* 0: first byte past round_up(n,16); 1: page before */
};

OPTNONE static void grandchild_touch(void *arg)
{
    unsigned char *at = arg;
    (void)VREAD(at);
}

static void child_fork_then_touch(void *arg)
{
    const struct forked_touch *f = arg;
    unsigned char *old = zz_alloc(f->n), *spare = zz_alloc(f->n);
    child_check(old != NULL && spare != NULL);
    zz_free(spare);   /* a cached slot of the same size, mapped pre-fork */
    fflush(NULL);
    pid_t pid = fork();
    child_check(pid >= 0);
    if (pid == 0) {
        unsigned char *p = old;
        child_check(zz_is_zero(old, f->n));
        unsigned info = zz_info(old);
        child_check(!(info & ZZ_INFO_LOCKED));
        if (!tu_mprotect_mode())
            child_check(!(info & ZZ_INFO_GUARDED));
        unsigned char *fresh = zz_alloc(f->n); /* refreshes the slab */
        child_check(fresh != NULL);
        child_check((zz_info(old) & (ZZ_INFO_GUARDED | ZZ_INFO_LOCKED)) ==
                    (ZZ_INFO_GUARDED | ZZ_INFO_LOCKED));
        if (f->reuse)
            p = fresh;
        unsigned char *at = f->before ? (unsigned char *)tu_page_of(p) - 1 : p + tu_round16(f->n);
        grandchild_touch(at);
        _exit(0);
    }
    int st;
    child_check(waitpid(pid, &st, 0) == pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV)) {
        fprintf(stderr, "n=%zu %s block, %s guard: grandchild %s %d\n", f->n,
                f->reuse ? "new" : "pre-fork", f->before ? "leading" : "trailing",
                WIFSIGNALED(st) ? "killed by signal" : "exited", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        tu_child_exit(1);
    }
}

static void test_guard_survives_fork(void **state)
{
    (void)state;
    const size_t ns[] = { 1, 32, 4096, 10000 };
    int failures = 0;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        for (int reuse = 0; reuse <= 1; reuse++) {
            for (int before = 0; before <= 1; before++) {
                struct forked_touch f = { ns[i], reuse, before };
                struct tu_child_result r;
                assert_int_equal(tu_run_child(child_fork_then_touch, &f, &r), 0);
                if (!r.exited || r.exit_code != 0) {
                    tu_describe_child(&r, __FILE__, __LINE__);
                    failures++;
                }
            }
        }
    }
    assert_int_equal(failures, 0);
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
        cmocka_unit_test(test_canary_after_block_detected),
        cmocka_unit_test(test_canary_before_block_detected),
        cmocka_unit_test(test_guard_survives_fork),
        cmocka_unit_test(test_guard_zero_size_block_faults),
        cmocka_unit_test(test_guard_in_bounds_access_survives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
