/*
 * test_uaf_write.c - a write through a stale pointer into a freed, cached
 * slot must not reach the next zz_alloc that reuses the slot (freed slots
 * are reused last-in, first-out): the header promises a zero-filled block.
 * Either the library catches the write (abort with a "zeroize: " line) or
 * the new block is zero.  (The first version handed the written bytes out.)
 *
 * The check runs in a forked child so that the (misused) process state does
 * not leak into anything else.
 */
#include "../test_util.h"

static void child_write_after_free(void *arg)
{
    (void)arg;
    unsigned char *keep = zz_alloc(32); /* keeps the slab from being unmapped */
    unsigned char *a = zz_alloc(32);
    child_check(keep != NULL && a != NULL);
    zz_free(a);
    memset(a, 0x41, 32); /* the misuse: a write after free */
    unsigned char *b = zz_alloc(32);
    child_check(b != NULL);
    /* Either the misuse is caught (the child dies) or the promise holds. */
    child_check(zz_is_zero(b, 32));
    zz_free(b);
    zz_free(keep);
}

/* The same misuse on an arena cell: zz_arena_alloc promises a zero-filled
 * block too. */
static void child_arena_write_after_free(void *arg)
{
    (void)arg;
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    unsigned char *keep = zz_arena_alloc(a, 32);
    unsigned char *p = zz_arena_alloc(a, 32);
    child_check(keep != NULL && p != NULL);
    zz_arena_free(a, p);
    memset(p, 0x41, 32); /* the misuse: a write after free */
    unsigned char *q = zz_arena_alloc(a, 32);
    child_check(q != NULL);
    child_check(zz_is_zero(q, 32));
    zz_arena_free(a, q);
    zz_arena_free(a, keep);
    zz_arena_destroy(a);
}

static void expect_caught_or_zero(tu_child_fn fn)
{
    struct tu_child_result r;
    assert_int_equal(tu_run_child(fn, NULL, &r), 0);
    /* Pass when the child detected the misuse (a fatal "zeroize: ..." line
     * and SIGABRT) or when the reused block was zero-filled (exit 0). */
    int detected = r.signaled && r.signal == SIGABRT && strncmp(r.err, "zeroize: ", 9) == 0;
    if (detected)
        print_message("detected: %s", r.err);
    if (!(detected || (r.exited && r.exit_code == 0))) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail_msg("a write after free reached the next block");
    }
}

static void test_uaf_write_next_block_still_zero(void **state)
{
    (void)state;
    expect_caught_or_zero(child_write_after_free);
}

/* The first version did not check arena cells: the written bytes reached
 * the next arena block. */
static void test_uaf_write_arena_next_block_still_zero(void **state)
{
    (void)state;
    expect_caught_or_zero(child_arena_write_after_free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uaf_write_next_block_still_zero),
        cmocka_unit_test(test_uaf_write_arena_next_block_still_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
