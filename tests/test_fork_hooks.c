/* The modules above lifecycle.c register their fork work lazily, the first
 * time they take a lock of their own (zzi_fork_register).  These tests fail
 * if a module's first use forgets to register: its fork work then does not
 * run in the child.
 *
 * zz_lock's page counts: a child inherits no memory lock, so the fork
 * handler forgets the counts; the child's zz_lock of a page the parent had
 * locked must then lock it (count 0 -> 1), not only count it (1 -> 2). */
#include "test_util.h"

static unsigned char buf[3 * 4096] __attribute__((aligned(4096)));

static void child_locks_again(void *arg)
{
    unsigned char *p = arg;
    child_check(!tu_addr_has_flag(p, "lo")); /* the kernel dropped the lock */
    child_check(zz_lock(p, 64) == 0);
    child_check(tu_addr_has_flag(p, "lo"));
    child_check(zz_unlock(p, 64) == 0);
    child_check(!tu_addr_has_flag(p, "lo"));
}

static void test_lock_counts_forgotten_in_child(void **state)
{
    (void)state;
    if (!tu_mlock_reaches_kernel()) {
        print_message("skipped: mlock does not reach the kernel here (sanitizer runtime)\n");
        skip();
    }
    unsigned char *p = buf + 4096;
    assert_int_equal(zz_lock(p, 64), 0); /* first use: registers the fork hooks */
    assert_true(tu_addr_has_flag(p, "lo"));
    expect_child_ok(child_locks_again, p);
    assert_true(tu_addr_has_flag(p, "lo")); /* the parent's lock is untouched */
    assert_int_equal(zz_unlock(p, 64), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_counts_forgotten_in_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
