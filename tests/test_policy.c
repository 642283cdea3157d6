/* Lock policy: ZZ_LOCK_REQUIRED never hands out an unlocked block;
 * ZZ_LOCK_BEST_EFFORT does, and says so in zz_info.  Every case runs in a
 * child that has given up CAP_IPC_LOCK and has a small RLIMIT_MEMLOCK.
 *
 * The parent process of this program never allocates, so each forked child
 * starts with the library in its initial state. */
#include "test_util.h"

static char self_exe[4096];

#define MAX_BLOCKS 20000

/* Allocates 32-byte blocks until one fails (or MAX_BLOCKS).  Returns how many
 * succeeded; *err gets errno of the failure (0 if none failed). */
static size_t alloc_until_failure(void **blocks, size_t want_unlocked_ok, int *err, size_t *unlocked)
{
    size_t n = 0;
    *err = 0;
    *unlocked = 0;
    while (n < MAX_BLOCKS) {
        errno = 0;
        void *p = zz_alloc(32);
        if (p == NULL) {
            *err = errno;
            break;
        }
        unsigned info = zz_info(p);
        if (!(info & ZZ_INFO_LOCKED)) {
            (*unlocked)++;
            child_check(want_unlocked_ok);
        }
        /* zz_info must tell the truth */
        child_check(!!(info & ZZ_INFO_LOCKED) == tu_addr_has_flag(p, "lo"));
        memset(p, 0x33, 32);
        blocks[n++] = p;
    }
    return n;
}

static void free_all(void **blocks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zz_free(blocks[i]);
}

static void child_required_hits_limit(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(64 * 1024) == 0);
    child_check(zz_get_lock_policy() == ZZ_LOCK_REQUIRED);
    static void *blocks[MAX_BLOCKS];
    int err;
    size_t unlocked;
    size_t n = alloc_until_failure(blocks, 0, &err, &unlocked);
    child_check(n < MAX_BLOCKS);                        /* it did fail */
    child_check(err == ENOMEM || err == EAGAIN || err == EPERM);
    child_check(unlocked == 0);
    const char *msg = zz_last_error();
    child_check(strstr(msg, "RLIMIT_MEMLOCK") != NULL);
    child_check(strstr(msg, "ulimit -l") != NULL);
    child_check(zz_last_error_code() == ZZ_ERR_MEMLOCK);
    free_all(blocks, n);
    /* After freeing, allocation works again within the limit. */
    void *p = zz_alloc(32);
    child_check(p != NULL);
    child_check(zz_info(p) & ZZ_INFO_LOCKED);
    zz_free(p);
}

static void test_policy_required_fails_at_rlimit(void **state)
{
    (void)state;
    expect_child_ok(child_required_hits_limit, NULL);
}

/* RLIMIT_MEMLOCK 0: nothing can be locked.  Required: the first allocation
 * fails.  Best effort: every allocation succeeds, unlocked, but still
 * guarded, not dumped and wiped on fork. */
static void child_required_limit_zero(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(0) == 0);
    errno = 0;
    void *p = zz_alloc(32);
    child_check(p == NULL);
    child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    child_check(strstr(zz_last_error(), "RLIMIT_MEMLOCK") != NULL);
}

static void test_policy_required_limit_zero_fails(void **state)
{
    (void)state;
    expect_child_ok(child_required_limit_zero, NULL);
}

/* A successful call never changes zz_last_error_code (issue 19, item 5).
 * With the lock limit filled by cached 32-byte slots, zz_alloc(6000) needs a
 * new slab whose lock is refused until the cache gives way: that refusal
 * is internal, retried, and must not replace the caller's last failure. */
static void child_success_keeps_last_error(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(256 * 1024) == 0);
    static void *blocks[MAX_BLOCKS];
    int err;
    size_t unlocked;
    size_t n = alloc_until_failure(blocks, 0, &err, &unlocked);
    child_check(n < MAX_BLOCKS && zz_last_error_code() == ZZ_ERR_MEMLOCK);
    free_all(blocks, n);
    errno = 0;
    child_check(zz_alloc_aligned(32, 3) == NULL && errno == EINVAL);
    child_check(zz_last_error_code() == ZZ_ERR_ARGUMENT);
    const char *said = zz_last_error();
    unsigned char *p = zz_alloc(6000);
    child_check(p != NULL && (zz_info(p) & ZZ_INFO_LOCKED));
    child_check(zz_last_error_code() == ZZ_ERR_ARGUMENT);
    child_check(strcmp(zz_last_error(), said) == 0);
    /* the same through an arena and a realloc that need new memory */
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    unsigned char *q = zz_realloc(p, 9000);
    child_check(q != NULL);
    child_check(zz_last_error_code() == ZZ_ERR_ARGUMENT);
    zz_free(q);
    zz_arena_destroy(a);
    child_check(zz_last_error_code() == ZZ_ERR_ARGUMENT);
}

static void test_policy_success_keeps_last_error(void **state)
{
    (void)state;
    expect_child_ok(child_success_keeps_last_error, NULL);
}

static void check_best_effort_blocks(size_t count, int expect_all_unlocked)
{
    static void *blocks[256];
    const size_t sizes[] = { 0, 1, 32, 100, 4096, 5000, 70000 };
    size_t unlocked = 0;
    child_check(count <= 256);
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i % (sizeof sizes / sizeof sizes[0])];
        unsigned char *p = zz_alloc(n);
        child_check(p != NULL);
        unsigned info = zz_info(p);
        child_check(info & ZZ_INFO_DONTDUMP);
        child_check(info & ZZ_INFO_WIPEONFORK);
        child_check(info & ZZ_INFO_GUARDED);
        if (!(info & ZZ_INFO_LOCKED))
            unlocked++;
        if (n > 0) {
            child_check(zz_is_zero(p, n));
            memset(p, 0x44, n);
            child_check(!!(info & ZZ_INFO_LOCKED) == tu_addr_has_flag(p, "lo"));
        }
        blocks[i] = p;
    }
    if (expect_all_unlocked)
        child_check(unlocked == count);
    else
        child_check(unlocked > 0);
    free_all(blocks, count);
}

static void child_best_effort_limit_zero(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(0) == 0);
    child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
    child_check(zz_get_lock_policy() == ZZ_LOCK_BEST_EFFORT);
    check_best_effort_blocks(100, 1);
}

static void test_policy_best_effort_unlocked_blocks(void **state)
{
    (void)state;
    expect_child_ok(child_best_effort_limit_zero, NULL);
}

/* 64 KiB limit, best effort: 200 blocks (far more than 64 KiB of pages) all
 * succeed; some are locked, the rest say they are not. */
static void child_best_effort_small_limit(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(64 * 1024) == 0);
    child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
    check_best_effort_blocks(200, 0);
    /* Back to required: new allocations are locked or refused, never both. */
    child_check(zz_set_lock_policy(ZZ_LOCK_REQUIRED) == 0);
    static void *blocks[MAX_BLOCKS];
    int err;
    size_t unlocked;
    size_t n = alloc_until_failure(blocks, 0, &err, &unlocked);
    child_check(n < MAX_BLOCKS && unlocked == 0);
    free_all(blocks, n);
}

static void test_policy_best_effort_over_small_limit(void **state)
{
    (void)state;
    expect_child_ok(child_best_effort_small_limit, NULL);
}

/* Arenas after a best-effort phase (issue 11, defect 5).  RLIMIT_MEMLOCK 0:
 * arenas made and used under ZZ_LOCK_BEST_EFFORT hold unlocked chunks.  Once
 * the policy is ZZ_LOCK_REQUIRED, no path may hand out an unlocked block:
 * zz_alloc fails (it retires unlocked slabs), and so must every arena
 * allocation (53bd339 handed out 1000 of 1000, unlocked). */
enum { REQUIRED_TRIES = 1000 };

/* Returns how many of REQUIRED_TRIES allocations of 32 bytes were refused;
 * any block handed out must be locked (smaps agreeing). */
static size_t required_arena_allocs(zz_arena *a, const char *what)
{
    size_t refused = 0, unlocked = 0;
    for (size_t i = 0; i < REQUIRED_TRIES; i++) {
        errno = 0;
        unsigned char *p = zz_arena_alloc(a, 32);
        if (p == NULL) {
            child_check(errno == EAGAIN || errno == ENOMEM || errno == EPERM);
            refused++;
            continue;
        }
        memset(p, 0x2D, 32);
        if (!(zz_info(p) & ZZ_INFO_LOCKED) || !tu_addr_has_flag(p, "lo"))
            unlocked++;
    }
    if (unlocked > 0)
        fprintf(stderr, "%s arena under ZZ_LOCK_REQUIRED handed out %zu unlocked blocks of %d\n",
                what, unlocked, REQUIRED_TRIES);
    child_check(unlocked == 0);
    return refused;
}

static void child_arenas_after_best_effort(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(0) == 0);
    child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
    zz_arena *grow = zz_arena_create(0), *fixed = zz_arena_create(64 * 1024);
    child_check(grow != NULL && fixed != NULL);
    void *kept[8];
    for (int i = 0; i < 8; i++) {
        zz_arena *a = i % 2 ? fixed : grow;
        unsigned char *p = zz_arena_alloc(a, 32);
        child_check(p != NULL);
        child_check(!(zz_info(p) & ZZ_INFO_LOCKED)); /* best effort, limit 0 */
        memset(p, 0x1F, 32);
        kept[i] = p;
    }
    /* some cells back to the arena (and the thread's cache) */
    zz_arena_free(grow, kept[0]);
    zz_arena_free(fixed, kept[1]);

    child_check(zz_set_lock_policy(ZZ_LOCK_REQUIRED) == 0);
    errno = 0;
    child_check(zz_alloc(32) == NULL);
    size_t refused_grow = required_arena_allocs(grow, "growable");
    size_t refused_fixed = required_arena_allocs(fixed, "fixed");
    fprintf(stderr, "under ZZ_LOCK_REQUIRED: growable arena refused %zu of %d, fixed %zu of %d\n",
            refused_grow, REQUIRED_TRIES, refused_fixed, REQUIRED_TRIES);
    child_check(refused_grow == REQUIRED_TRIES); /* nothing can be locked: all refused */
    child_check(refused_fixed == REQUIRED_TRIES);
    /* the blocks from the best-effort phase are still valid */
    for (int i = 2; i < 8; i++) {
        zz_arena *a = i % 2 ? fixed : grow;
        zz_arena_free(a, kept[i]);
    }
    zz_arena_destroy(grow);
    zz_arena_destroy(fixed);
}

static void test_policy_required_after_best_effort_arenas(void **state)
{
    (void)state;
    expect_child_ok(child_arenas_after_best_effort, NULL);
}

/* ZEROIZE_LOCK in the environment of a freshly exec'd process. */
static void child_exec_with_env(void *arg)
{
    const char *value = arg;
    child_check(tu_drop_ipc_lock(0) == 0);
    child_check(setenv("ZEROIZE_LOCK", value, 1) == 0);
    static char flag[] = "--exec-child";
    char value_copy[32];
    snprintf(value_copy, sizeof value_copy, "%s", value);
    char *argv[] = { self_exe, flag, value_copy, NULL };
    execv(self_exe, argv);
    _exit(120);
}

/* main() of the exec'd process. */
static int exec_child_main(const char *value)
{
    if (strcmp(value, "best-effort") == 0) {
        child_check(zz_get_lock_policy() == ZZ_LOCK_BEST_EFFORT);
        check_best_effort_blocks(20, 1);
    } else {
        child_check(zz_get_lock_policy() == ZZ_LOCK_REQUIRED);
        errno = 0;
        child_check(zz_alloc(64) == NULL);
        child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    }
    return 0;
}

static void test_policy_env_best_effort_exec(void **state)
{
    (void)state;
    expect_child_ok(child_exec_with_env, (void *)(uintptr_t)"best-effort");
}

static void test_policy_env_required_exec(void **state)
{
    (void)state;
    expect_child_ok(child_exec_with_env, (void *)(uintptr_t)"required");
}

/* setenv in a forked child before its first call into the library: the
 * library reads ZEROIZE_LOCK lazily, on first use (checked here), so it
 * takes effect. */
static void child_setenv_then_alloc(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(0) == 0);
    child_check(setenv("ZEROIZE_LOCK", "best-effort", 1) == 0);
    void *p = zz_alloc(32);
    child_check(p != NULL);
    child_check(!(zz_info(p) & ZZ_INFO_LOCKED));
    zz_free(p);
}

static void test_policy_env_read_lazily_in_fork_child(void **state)
{
    (void)state;
    expect_child_ok(child_setenv_then_alloc, NULL);
}

/* Must stay the last test: the only one that calls into the library in the
 * parent. */
static void test_policy_set_unknown_einval(void **state)
{
    (void)state;
    int before = zz_get_lock_policy();
    assert_int_equal(zz_last_error_code(), ZZ_ERR_NONE); /* nothing failed yet here */
    const int bad[] = { 42, -1, 2 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_int_equal(zz_set_lock_policy(bad[i]), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(zz_last_error_code(), ZZ_ERR_ARGUMENT);
        assert_int_equal(zz_get_lock_policy(), before);
    }
    /* a success leaves the code of the last failure as it was */
    assert_int_equal(zz_set_lock_policy(before), 0);
    assert_int_equal(zz_last_error_code(), ZZ_ERR_ARGUMENT);
    assert_int_equal(zz_set_lock_policy(ZZ_LOCK_REQUIRED), 0);
    assert_int_equal(zz_get_lock_policy(), ZZ_LOCK_REQUIRED);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--exec-child") == 0)
        return exec_child_main(argv[2]);
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (len <= 0)
        return 1;
    self_exe[len] = '\0';
    /* This program tests the environment variable: start from a clean one. */
    unsetenv("ZEROIZE_LOCK");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_required_fails_at_rlimit),
        cmocka_unit_test(test_policy_required_limit_zero_fails),
        cmocka_unit_test(test_policy_success_keeps_last_error),
        cmocka_unit_test(test_policy_best_effort_unlocked_blocks),
        cmocka_unit_test(test_policy_best_effort_over_small_limit),
        cmocka_unit_test(test_policy_required_after_best_effort_arenas),
        cmocka_unit_test(test_policy_env_best_effort_exec),
        cmocka_unit_test(test_policy_env_required_exec),
        cmocka_unit_test(test_policy_env_read_lazily_in_fork_child),
        cmocka_unit_test(test_policy_set_unknown_einval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
