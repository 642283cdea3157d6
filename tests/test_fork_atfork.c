/* The program's own pthread_atfork handlers calling the library (issue 19,
 * item 3).  glibc runs prepare handlers in reverse order of registration,
 * parent and child handlers in order: a handler registered before the
 * library's runs while the library's hold every library lock.
 *
 *   - handlers the program registers in main(), before its first call into
 *     the library, run outside that window (the library registers its own
 *     when it is loaded): a prepare handler frees a 20,000-byte key, a child
 *     handler allocates a block, locked and guarded, a parent handler
 *     allocates one too (5c03a46 registered at the first call: the fork
 *     deadlocked, and the child handler's block lacked ZZ_INFO_LOCKED and
 *     ZZ_INFO_GUARDED, forgotten by the library's child handler after it);
 *   - handlers registered earlier still (a constructor that runs before the
 *     library's) run inside the window: a call there that needs a library
 *     lock is fatal, "zeroize: called from an atfork handler during fork",
 *     instead of a deadlock.
 *
 * Every fork is made in a child of the test, under alarm(): a deadlock ends
 * as SIGALRM. */
#include "test_util.h"

enum { KEY_BYTES = 20000 };

/* What the handlers do at the next fork (each test sets it in its child). */
struct handler_work {
    unsigned char *free_in_prepare;
    int alloc_in_child, alloc_in_parent;
    size_t size; /* of the blocks the child and parent handlers allocate */
    unsigned char *child_block, *parent_block;
};
/* early's blocks are above the thread caches' sizes: a call that takes a
 * lock (one the thread's cache could serve needs none, and works) */
static struct handler_work late = {.size = 64}, early = {.size = KEY_BYTES};

static void do_prepare(struct handler_work *w)
{
    if (w->free_in_prepare != NULL) {
        zz_free(w->free_in_prepare);
        w->free_in_prepare = NULL;
    }
}

static void do_child(struct handler_work *w)
{
    if (w->alloc_in_child)
        w->child_block = zz_alloc(w->size);
}

static void do_parent(struct handler_work *w)
{
    if (w->alloc_in_parent)
        w->parent_block = zz_alloc(w->size);
}

static void late_prepare(void) { do_prepare(&late); }
static void late_parent(void) { do_parent(&late); }
static void late_child(void) { do_child(&late); }
static void early_prepare(void) { do_prepare(&early); }
static void early_parent(void) { do_parent(&early); }
static void early_child(void) { do_child(&early); }

/* Before every other constructor of default priority, the library's too. */
__attribute__((constructor(101))) static void register_early(void)
{
    if (pthread_atfork(early_prepare, early_parent, early_child) != 0)
        abort();
}

static unsigned child_alarm_seconds(void)
{
    return TU_ON_VALGRIND() ? 120 : 10;
}

/* fork() in a child of the test; the grandchild runs check and exits with
 * its status, which this child reports as its own (a signal by dying of
 * it). */
static void fork_and_report(void (*check)(void))
{
    alarm(child_alarm_seconds());
    pid_t pid = fork();
    child_check(pid >= 0);
    if (pid == 0) {
        check();
        tu_child_exit(0);
    }
    int status;
    child_check(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    child_check(WIFEXITED(status));
    child_check(WEXITSTATUS(status) == 0);
}

static void grandchild_nothing(void)
{
}

/* ---- handlers registered in main(): they may call the library ------------- */

static void child_prepare_frees_a_key(void *arg)
{
    (void)arg;
    late.free_in_prepare = zz_alloc(KEY_BYTES); /* the program's first call */
    child_check(late.free_in_prepare != NULL);
    memset(late.free_in_prepare, 0x4B, KEY_BYTES);
    zz_stats before, after;
    zz_get_stats(&before);
    fork_and_report(grandchild_nothing);
    child_check(late.free_in_prepare == NULL);
    zz_get_stats(&after);
    child_check(after.live_blocks + 1 == before.live_blocks);
}

static void test_atfork_prepare_handler_frees_a_key(void **state)
{
    (void)state;
    expect_child_ok(child_prepare_frees_a_key, NULL);
}

static void grandchild_block_is_protected(void)
{
    unsigned char *p = late.child_block;
    child_check(p != NULL && zz_is_zero(p, 64));
    memset(p, 0x6B, 64);
    unsigned info = zz_info(p), want = ZZ_INFO_LOCKED | ZZ_INFO_GUARDED | ZZ_INFO_WIPEONFORK;
    if ((info & want) != want)
        fprintf(stderr, "a block allocated in the child handler: zz_info 0x%x\n", info);
    child_check((info & want) == want);
    struct tu_vma v;
    child_check(tu_smaps_vma(p, &v) == 0);
    child_check(tu_has_flag(v.vmflags, "lo"));
    zz_free(p);
}

static void child_handlers_allocate(void *arg)
{
    (void)arg;
    unsigned char *before = zz_alloc(64); /* inherited by the grandchild */
    child_check(before != NULL);
    late.alloc_in_child = 1;
    late.alloc_in_parent = 1;
    fork_and_report(grandchild_block_is_protected);
    unsigned char *p = late.parent_block;
    child_check(p != NULL && zz_is_zero(p, 64));
    child_check(zz_info(p) & ZZ_INFO_LOCKED);
    zz_free(p);
    zz_free(before);
}

static void test_atfork_child_handler_block_is_locked_and_guarded(void **state)
{
    (void)state;
    if (!tu_mlock_reaches_kernel()) {
        print_message("skipped: mlock does not reach the kernel here (sanitizer runtime)\n");
        skip();
    }
    expect_child_ok(child_handlers_allocate, NULL);
}

/* ---- handlers registered before the library's: fatal, not a deadlock ------ */

static void child_early_prepare_frees(void *arg)
{
    (void)arg;
    early.free_in_prepare = zz_alloc(KEY_BYTES);
    child_check(early.free_in_prepare != NULL);
    fork_and_report(grandchild_nothing);
}

static void test_atfork_early_prepare_handler_is_fatal(void **state)
{
    (void)state;
    expect_fatal(child_early_prepare_frees, NULL, "zeroize: called from an atfork handler during fork");
}

static void child_early_child_allocates(void *arg)
{
    (void)arg;
    zz_free(zz_alloc(32));
    early.alloc_in_child = 1;
    fork_and_report(grandchild_nothing);
}

static void test_atfork_early_child_handler_is_fatal(void **state)
{
    (void)state;
    expect_fatal(child_early_child_allocates, NULL, "zeroize: called from an atfork handler during fork");
}

static void child_early_parent_allocates(void *arg)
{
    (void)arg;
    zz_free(zz_alloc(32));
    early.alloc_in_parent = 1;
    fork_and_report(grandchild_nothing);
}

static void test_atfork_early_parent_handler_is_fatal(void **state)
{
    (void)state;
    expect_fatal(child_early_parent_allocates, NULL, "zeroize: called from an atfork handler during fork");
}

int main(void)
{
    /* before the program's first call into the library */
    if (pthread_atfork(late_prepare, late_parent, late_child) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atfork_prepare_handler_frees_a_key),
        cmocka_unit_test(test_atfork_child_handler_block_is_locked_and_guarded),
        cmocka_unit_test(test_atfork_early_prepare_handler_is_fatal),
        cmocka_unit_test(test_atfork_early_child_handler_is_fatal),
        cmocka_unit_test(test_atfork_early_parent_handler_is_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
