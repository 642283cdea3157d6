/* zz_harden_process: ZZ_HARDEN_NO_CORE lowers only the soft RLIMIT_CORE,
 * ZZ_HARDEN_NO_PTRACE makes the process non-dumpable, unknown flags are
 * refused with nothing changed, and the library never changes either setting
 * on its own.  Each case runs in a forked child, since both are process-wide
 * and cannot be undone by an unprivileged process. */
#include "test_util.h"

/* Child exit code: the environment cannot give the child a core limit to
 * observe (raising the hard limit needs CAP_SYS_RESOURCE). */
#define CHILD_SKIP 77

#define SOFT_CORE ((rlim_t)1 << 20)
#define HARD_CORE ((rlim_t)4 << 20)

/* Gives the child known, non-zero core limits (lowering the hard limit needs
 * no privilege) and a dumpable state to start from. */
static void start_from_known_state(void)
{
    struct rlimit rl = { SOFT_CORE, HARD_CORE };
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        _exit(CHILD_SKIP);
    child_check(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0);
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
}

static void core_limits(rlim_t *soft, rlim_t *hard)
{
    struct rlimit rl;
    child_check(getrlimit(RLIMIT_CORE, &rl) == 0);
    *soft = rl.rlim_cur;
    *hard = rl.rlim_max;
}

/* Like tu_run_child, but without its RLIMIT_CORE 0/0 (which only a process
 * with CAP_SYS_RESOURCE could raise again): the child inherits the test's
 * limits and lowers them to known values. */
static void run_in_child(tu_child_fn fn)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn(NULL);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SKIP)
        skip();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        print_error("child ended with status 0x%x (exit code = low bits of the failed line)\n",
                    status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void child_no_core(void *arg)
{
    (void)arg;
    start_from_known_state();
    child_check(zz_harden_process(ZZ_HARDEN_NO_CORE) == 0);
    rlim_t soft, hard;
    core_limits(&soft, &hard);
    child_check(soft == 0);
    child_check(hard == HARD_CORE);                        /* untouched */
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1); /* not asked for */
    /* idempotent */
    child_check(zz_harden_process(ZZ_HARDEN_NO_CORE) == 0);
    core_limits(&soft, &hard);
    child_check(soft == 0 && hard == HARD_CORE);
}

static void test_no_core_lowers_soft_limit_only(void **state)
{
    (void)state;
    run_in_child(child_no_core);
}

static void child_no_ptrace(void *arg)
{
    (void)arg;
    start_from_known_state();
    child_check(zz_harden_process(ZZ_HARDEN_NO_PTRACE) == 0);
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
    rlim_t soft, hard;
    core_limits(&soft, &hard);
    child_check(soft == SOFT_CORE && hard == HARD_CORE); /* not asked for */
    /* A non-dumpable process's /proc/self files belong to root: reading our
     * own memory still works for us (same process). */
    int fd = open("/proc/self/status", O_RDONLY);
    child_check(fd >= 0);
    close(fd);
}

static void test_no_ptrace_clears_dumpable(void **state)
{
    (void)state;
    run_in_child(child_no_ptrace);
}

static void child_both(void *arg)
{
    (void)arg;
    start_from_known_state();
    child_check(zz_harden_process(ZZ_HARDEN_NO_CORE | ZZ_HARDEN_NO_PTRACE) == 0);
    rlim_t soft, hard;
    core_limits(&soft, &hard);
    child_check(soft == 0 && hard == HARD_CORE);
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
}

static void test_both_flags(void **state)
{
    (void)state;
    run_in_child(child_both);
}

static void child_unknown_flags(void *arg)
{
    (void)arg;
    start_from_known_state();
    static const unsigned bad[] = { 0x04u, 0x80000000u, ZZ_HARDEN_NO_CORE | 0x10u,
                                    ZZ_HARDEN_NO_CORE | ZZ_HARDEN_NO_PTRACE | 0x100u, ~0u };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        child_check(zz_harden_process(bad[i]) == -1);
        child_check(errno == EINVAL);
        child_check(strlen(zz_last_error()) > 0);
    }
    /* refused as a whole: the known bits were not applied either */
    rlim_t soft, hard;
    core_limits(&soft, &hard);
    child_check(soft == SOFT_CORE && hard == HARD_CORE);
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
    /* no flags: nothing to do */
    child_check(zz_harden_process(0) == 0);
    core_limits(&soft, &hard);
    child_check(soft == SOFT_CORE && hard == HARD_CORE);
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
}

static void test_unknown_flags_refused(void **state)
{
    (void)state;
    run_in_child(child_unknown_flags);
}

/* Everything else the library offers leaves both settings alone. */
static void child_library_changes_nothing(void *arg)
{
    (void)arg;
    start_from_known_state();
    void *blocks[64];
    for (size_t i = 0; i < 64; i++) {
        blocks[i] = zz_alloc(i * 97);
        child_check(blocks[i] != NULL);
    }
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    void *ab = zz_arena_alloc(a, 32);
    child_check(ab != NULL);
    unsigned char buf[256];
    child_check(zz_lock(buf, sizeof buf) == 0);
    child_check(zz_protect(blocks[5], ZZ_NOACCESS) == 0);
    const int sigs[] = { SIGUSR1 };
    child_check(zz_purge_on_signals(sigs, 1) == 0);
    zz_purge();
    void *big = zz_realloc(blocks[1], 100000);
    child_check(big != NULL);
    blocks[1] = big;
    child_check(zz_unlock(buf, sizeof buf) == 0);
    zz_arena_free(a, ab);
    zz_arena_destroy(a);
    for (size_t i = 0; i < 64; i++)
        zz_free(blocks[i]);
    zz_stats st;
    zz_get_stats(&st);
    rlim_t soft, hard;
    core_limits(&soft, &hard);
    child_check(soft == SOFT_CORE && hard == HARD_CORE);
    child_check(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
}

static void test_library_never_hardens_on_its_own(void **state)
{
    (void)state;
    run_in_child(child_library_changes_nothing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_core_lowers_soft_limit_only),
        cmocka_unit_test(test_no_ptrace_clears_dumpable),
        cmocka_unit_test(test_both_flags),
        cmocka_unit_test(test_unknown_flags_refused),
        cmocka_unit_test(test_library_never_hardens_on_its_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
