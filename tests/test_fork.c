/* fork(): a child sees zeros in every block allocated before the fork
 * (MADV_WIPEONFORK), can free them without a false canary report, and can
 * allocate; the parent's blocks are untouched.  Also (issue 11): a fork while
 * another thread is inside zz_purge leaves a child whose zz_purge returns
 * (defect 3), and a fork that runs no atfork handler (_Fork) leaves a child
 * that can free and allocate as after fork() (defect 11). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

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

/* ---- fork while another thread purges (issue 11, defect 3) --------------- */
/* On 53bd339 the child reset the purger count but not the "a purge is
 * running" flag, which the forking moment caught set: the child's zz_purge
 * spun forever (20 of 20 children), and with zz_purge_on_signals(SIGTERM)
 * the child survived SIGTERM (its handler spinning).  The purging thread
 * works through many live blocks, so a fork almost always lands inside a
 * purge; each child runs under alarm(), so a hang ends as SIGALRM. */

enum { PURGE_CHILDREN = 20 };
static atomic_int purger_stop;
static atomic_ulong purges_done;

static void *purge_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&purger_stop)) {
        zz_purge();
        atomic_fetch_add(&purges_done, 1);
    }
    return NULL;
}

struct busy_purge {
    pthread_t thread;
    zz_arena *arena;
    void *blocks[3000];
    size_t n;
};

/* Many live blocks (so that a purge takes a while), and a thread purging
 * them in a loop. */
static void start_busy_purge(struct busy_purge *b)
{
    b->arena = zz_arena_create(0);
    assert_non_null(b->arena);
    b->n = 0;
    for (size_t i = 0; i < 2000; i++) {
        b->blocks[b->n] = zz_arena_alloc(b->arena, 1000);
        assert_non_null(b->blocks[b->n]);
        memset(b->blocks[b->n], 0x5A, 1000);
        b->n++;
    }
    for (size_t i = 0; i < 16; i++) {
        b->blocks[b->n] = zz_alloc(256 * 1024);
        assert_non_null(b->blocks[b->n]);
        b->n++;
    }
    atomic_store(&purger_stop, 0);
    atomic_store(&purges_done, 0);
    assert_int_equal(pthread_create(&b->thread, NULL, purge_loop, NULL), 0);
    while (atomic_load(&purges_done) < 2) /* it is running */
        sched_yield();
}

static void stop_busy_purge(struct busy_purge *b)
{
    atomic_store(&purger_stop, 1);
    assert_int_equal(pthread_join(b->thread, NULL), 0);
    for (size_t i = 0; i < 2000; i++)
        zz_arena_free(b->arena, b->blocks[i]);
    for (size_t i = 2000; i < b->n; i++)
        zz_free(b->blocks[i]);
    zz_arena_destroy(b->arena);
}

static unsigned child_alarm_seconds(void)
{
    return TU_ON_VALGRIND() ? 120 : 5;
}

static void child_purge_returns(void *arg)
{
    struct busy_purge *b = arg;
    alarm(child_alarm_seconds());
    zz_purge();
    zz_purge();
    for (size_t i = 0; i < 2000; i++) /* and it did purge */
        child_check(zz_is_zero(b->blocks[i], 1000));
    zz_arena_free(b->arena, b->blocks[0]);
    void *q = zz_alloc(32);
    child_check(q != NULL);
    zz_free(q);
}

static void test_fork_during_purge_child_purge_returns(void **state)
{
    (void)state;
    struct busy_purge *b = calloc(1, sizeof *b);
    assert_non_null(b);
    start_busy_purge(b);
    int hung = 0, failed = 0;
    for (int i = 0; i < PURGE_CHILDREN; i++) {
        struct tu_child_result r;
        assert_int_equal(tu_run_child(child_purge_returns, b, &r), 0);
        if (r.signaled && r.signal == SIGALRM) {
            hung++;
        } else if (!r.exited || r.exit_code != 0) {
            tu_describe_child(&r, __FILE__, __LINE__);
            failed++;
        }
        if (hung + failed >= 2)
            break; /* failed already: do not wait out 20 alarms */
    }
    unsigned long purges = atomic_load(&purges_done);
    stop_busy_purge(b);
    free(b);
    print_message("children forked during purges (%lu purges in all): %d hung in zz_purge, %d "
                  "failed otherwise (of %d; stops at 2)\n",
                  purges, hung, failed, PURGE_CHILDREN);
    assert_int_equal(hung, 0);
    assert_int_equal(failed, 0);
}

static void child_sigterm_purges_then_dies(void *arg)
{
    (void)arg;
    alarm(child_alarm_seconds());
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    child_check(sigaction(SIGTERM, &dfl, NULL) == 0);
    const int sigs[] = { SIGTERM };
    child_check(zz_purge_on_signals(sigs, 1) == 0);
    kill(getpid(), SIGTERM);
    for (;;)
        pause();
}

static void test_fork_during_purge_sigterm_still_kills(void **state)
{
    (void)state;
    struct busy_purge *b = calloc(1, sizeof *b);
    assert_non_null(b);
    start_busy_purge(b);
    int wrong = 0;
    for (int i = 0; i < PURGE_CHILDREN; i++) {
        struct tu_child_result r;
        assert_int_equal(tu_run_child(child_sigterm_purges_then_dies, NULL, &r), 0);
        if (!r.signaled || r.signal != SIGTERM) {
            tu_describe_child(&r, __FILE__, __LINE__);
            wrong++;
        }
        if (wrong >= 2)
            break; /* failed already: do not wait out 20 alarms */
    }
    stop_busy_purge(b);
    free(b);
    print_message("%d children sent SIGTERM (zz_purge_on_signals) did not die of it\n", wrong);
    assert_int_equal(wrong, 0);
}

/* ---- a fork that runs no atfork handler (issue 11, defect 11) ----------- */
/* After _Fork() (glibc 2.34+), in the child: blocks made before read zero,
 * zz_free and zz_arena_free of them work (53bd339 aborted with "canary
 * corrupted (before block)": WIPEONFORK had zeroed the canaries and nothing
 * told the library), and new blocks are locked again, smaps agreeing. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_UNDERSCORE_FORK 1
#else
#define HAVE_UNDERSCORE_FORK 0
#endif

static void check_locked_block(unsigned char *q, size_t n)
{
    child_check(q != NULL && zz_is_zero(q, n));
    memset(q, 0x6B, n); /* resident now */
    unsigned info = zz_info(q);
    if (!(info & ZZ_INFO_LOCKED))
        fprintf(stderr, "new block after _Fork: zz_info 0x%x, no ZZ_INFO_LOCKED\n", info);
    child_check(info & ZZ_INFO_LOCKED);
    struct tu_vma v;
    child_check(tu_smaps_vma(q, &v) == 0);
    child_check(tu_has_flag(v.vmflags, "lo"));
    child_check(v.locked_kb > 0);
}

static void child_raw_fork(void *arg)
{
    (void)arg;
#if HAVE_UNDERSCORE_FORK
    unsigned char *p = zz_alloc(64), *big = zz_alloc(70000);
    zz_arena *a = zz_arena_create(0);
    child_check(p != NULL && big != NULL && a != NULL);
    unsigned char *ab = zz_arena_alloc(a, 48);
    child_check(ab != NULL);
    memset(p, 0xC1, 64);
    memset(big, 0xC2, 70000);
    memset(ab, 0xC3, 48);
    pid_t pid = _Fork();
    child_check(pid >= 0);
    if (pid == 0) {
        child_check(zz_is_zero(p, 64));
        child_check(zz_is_zero(big, 70000));
        child_check(zz_is_zero(ab, 48));
        zz_free(p);
        zz_free(big);
        zz_arena_free(a, ab);
        check_locked_block(zz_alloc(64), 64);
        check_locked_block(zz_alloc(32), 32);
        check_locked_block(zz_arena_alloc(a, 48), 48);
        _exit(0);
    }
    int status;
    child_check(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "the _Fork child ended with status 0x%x\n", status);
    child_check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (size_t i = 0; i < 64; i++) /* ours are untouched */
        child_check(p[i] == 0xC1);
    zz_free(p);
    zz_free(big);
    zz_arena_free(a, ab);
    zz_arena_destroy(a);
#endif
}

static void test_fork_without_atfork_handlers(void **state)
{
    (void)state;
    if (!HAVE_UNDERSCORE_FORK) {
        print_message("skipped: no _Fork in this C library\n");
        skip();
    }
    struct tu_child_result r;
    assert_int_equal(tu_run_child(child_raw_fork, NULL, &r), 0);
    if (!r.exited || r.exit_code != 0 || r.err_len != 0) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail();
    }
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
        cmocka_unit_test(test_fork_during_purge_child_purge_returns),
        cmocka_unit_test(test_fork_during_purge_sigterm_still_kills),
        cmocka_unit_test(test_fork_without_atfork_handlers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
