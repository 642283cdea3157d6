/* fork(): a child sees zeros in every block allocated before the fork
 * (MADV_WIPEONFORK), can free them without a false canary report, and can
 * allocate; the parent's blocks are untouched. */
#include "test_util.h"

static const size_t sizes[] = { 0, 1, 15, 16, 32, 100, 4095, 4096, 4097, 70000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

struct forked {
    unsigned char *blocks[NSIZES];
    int free_in_child;
};

static void child_after_fork(void *arg)
{
    struct forked *f = arg;
    for (size_t i = 0; i < NSIZES; i++) {
        if (sizes[i] > 0)
            child_check(zz_is_zero(f->blocks[i], sizes[i]));
        child_check(zz_size(f->blocks[i]) == sizes[i]);
    }
    /* the child's blocks are writable, */
    for (size_t i = 0; i < NSIZES; i++)
        memset(f->blocks[i], 0x99, sizes[i]);
    /* new blocks work, */
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *q = zz_alloc(sizes[i]);
        child_check(q != NULL);
        child_check(zz_is_zero(q, sizes[i]));
        child_check(zz_info(q) & ZZ_INFO_WIPEONFORK);
        memset(q, 0x5A, sizes[i]);
        zz_free(q);
    }
    /* and freeing the inherited blocks reports no canary (zz_free aborts on
     * a bad canary: the child would die of SIGABRT). */
    if (f->free_in_child) {
        for (size_t i = 0; i < NSIZES; i++)
            zz_free(f->blocks[i]);
    }
}

static void fork_and_check(int free_in_child)
{
    struct forked f;
    f.free_in_child = free_in_child;
    for (size_t i = 0; i < NSIZES; i++) {
        f.blocks[i] = zz_alloc(sizes[i]);
        assert_non_null(f.blocks[i]);
        memset(f.blocks[i], (int)(0xA0 + i), sizes[i]);
    }
    struct tu_child_result r;
    assert_int_equal(tu_run_child(child_after_fork, &f, &r), 0);
    if (!r.exited || r.exit_code != 0 || r.err_len != 0) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail();
    }
    for (size_t i = 0; i < NSIZES; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(f.blocks[i][k], (unsigned char)(0xA0 + i));
        zz_free(f.blocks[i]);
    }
}

static void test_fork_child_sees_zeros_and_frees(void **state)
{
    (void)state;
    fork_and_check(1);
}

static void test_fork_child_exits_without_freeing(void **state)
{
    (void)state;
    fork_and_check(0);
}

/* Blocks that were read-only in the parent: the child reads zeros through
 * them and zz_free still works in any mode. */
static void child_readonly_blocks(void *arg)
{
    struct forked *f = arg;
    for (size_t i = 0; i < NSIZES; i++) {
        if (sizes[i] > 0)
            child_check(zz_is_zero(f->blocks[i], sizes[i]));
        zz_free(f->blocks[i]);
    }
}

static void test_fork_readonly_blocks(void **state)
{
    (void)state;
    struct forked f;
    for (size_t i = 0; i < NSIZES; i++) {
        f.blocks[i] = zz_alloc(sizes[i]);
        assert_non_null(f.blocks[i]);
        memset(f.blocks[i], 0xEE, sizes[i]);
        assert_int_equal(zz_protect(f.blocks[i], ZZ_READONLY), 0);
    }
    expect_child_ok(child_readonly_blocks, &f);
    for (size_t i = 0; i < NSIZES; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(f.blocks[i][k], 0xEE);
        zz_free(f.blocks[i]);
    }
}

/* NOACCESS blocks: the child frees them without touching them. */
static void child_free_noaccess(void *arg)
{
    struct forked *f = arg;
    for (size_t i = 0; i < NSIZES; i++)
        zz_free(f->blocks[i]);
    /* the slots come back readable and zero */
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *q = zz_alloc(sizes[i]);
        child_check(q != NULL && zz_is_zero(q, sizes[i]));
        zz_free(q);
    }
}

static void test_fork_noaccess_blocks_freed_in_child(void **state)
{
    (void)state;
    struct forked f;
    for (size_t i = 0; i < NSIZES; i++) {
        f.blocks[i] = zz_alloc(sizes[i]);
        assert_non_null(f.blocks[i]);
        memset(f.blocks[i], 0xDD, sizes[i]);
        assert_int_equal(zz_protect(f.blocks[i], ZZ_NOACCESS), 0);
    }
    expect_child_ok(child_free_noaccess, &f);
    for (size_t i = 0; i < NSIZES; i++) {
        assert_int_equal(zz_protect(f.blocks[i], ZZ_READWRITE), 0);
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(f.blocks[i][k], 0xDD);
        zz_free(f.blocks[i]);
    }
}

/* Freed, cached slots survive a fork too: the child reuses them. */
static void child_reuse_cache(void *arg)
{
    (void)arg;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < NSIZES; i++) {
            unsigned char *q = zz_alloc(sizes[i]);
            child_check(q != NULL && zz_is_zero(q, sizes[i]));
            memset(q, 1, sizes[i]);
            zz_free(q);
        }
    }
}

static void test_fork_cached_slots_reusable_in_child(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        memset(p, 0x42, sizes[i]);
        zz_free(p);
    }
    expect_child_ok(child_reuse_cache, NULL);
}

/* A grandchild, too: the child refills the (wiped) blocks, forks, and its
 * own child sees zeros again while the child keeps its data. */
static void child_forks_again(void *arg)
{
    struct forked *f = arg;
    for (size_t i = 0; i < NSIZES; i++)
        memset(f->blocks[i], 0x31, sizes[i]);
    struct tu_child_result r;
    f->free_in_child = 1;
    child_check(tu_run_child(child_after_fork, f, &r) == 0);
    child_check(r.exited && r.exit_code == 0 && r.err_len == 0);
    for (size_t i = 0; i < NSIZES; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            child_check(f->blocks[i][k] == 0x31);
        zz_free(f->blocks[i]);
    }
}

static void test_fork_grandchild(void **state)
{
    (void)state;
    struct forked f;
    f.free_in_child = 1;
    for (size_t i = 0; i < NSIZES; i++) {
        f.blocks[i] = zz_alloc(sizes[i]);
        assert_non_null(f.blocks[i]);
        memset(f.blocks[i], 0x77, sizes[i]);
    }
    expect_child_ok(child_forks_again, &f);
    for (size_t i = 0; i < NSIZES; i++)
        zz_free(f.blocks[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_child_sees_zeros_and_frees),
        cmocka_unit_test(test_fork_child_exits_without_freeing),
        cmocka_unit_test(test_fork_readonly_blocks),
        cmocka_unit_test(test_fork_noaccess_blocks_freed_in_child),
        cmocka_unit_test(test_fork_cached_slots_reusable_in_child),
        cmocka_unit_test(test_fork_grandchild),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
