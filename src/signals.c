/*
 * signals.c - zz_purge_on_signals: a handler that wipes every secret, then
 * hands the signal on to whatever was installed before, as if that had run
 * alone: with its own flags (SA_ONSTACK, SA_RESTART, SA_RESETHAND,
 * SA_NODEFER, ...), its own mask and its own form (sa_handler or
 * sa_sigaction); or, when nothing was, to the default action, so the process
 * still dies of the same signal and dumps core if it would have.
 *
 * The handler copies its chain entry from a table that zz_purge_on_signals
 * may rewrite while signals arrive (the caller installed a handler of its
 * own over ours, then calls us again).  Each signal has two entries: a
 * rewrite fills the one not published, after waiting until no handler is
 * still copying it, then publishes it with one atomic store, so a handler
 * never sees a half-written entry.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

struct chain {
    struct sigaction before; /* what was installed before ours */
    struct sigaction ours;   /* how ours was installed (to re-arm it) */
};

static struct chain chains[NSIG][2];
static _Atomic unsigned char published[NSIG];  /* which of the two is in use */
static _Atomic unsigned copying[NSIG][2];      /* handlers copying an entry now */
static pthread_mutex_t rewrite_lock = PTHREAD_MUTEX_INITIALIZER;

static int is_ignored_by_default(int sig)
{
    return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
}

static void purge_handler(int sig, siginfo_t *info, void *uctx);

/* The earlier disposition, as a handler function or SIG_DFL / SIG_IGN (the
 * sa_handler / sa_sigaction union holds either). */
static int is_disposition(const struct sigaction *a, void (*which)(int))
{
    return a->sa_handler == which;
}

/* The default action, from inside our handler: the process dies here for a
 * terminating signal (with a core when the default dumps); after a stop and
 * SIGCONT it goes on, and our handler is put back. */
static void chain_to_default(int sig, const struct sigaction *ours)
{
    if (is_ignored_by_default(sig))
        return;
    zzi_os_raise_default(sig);
    zzi_os_sigaction(sig, ours, NULL);
}

/* Calls the earlier handler with at least its own mask blocked.  Ours was
 * installed with that mask (and its flags: SA_RESETHAND included, the kernel
 * has already put the default back, as it would have for it), but the chain
 * may have been rewritten since the kernel delivered this signal: then the
 * mask in force is the one ours had for the handler before.  (Until
 * 9b86a86 the handler ran under it: in test_chain_rewritten_while_signals_
 * arrive, 5,433, 1,924 and 859 calls in 3 runs of a handler installed with
 * SIGUSR2 in its mask ran with SIGUSR2 unblocked; zz-stress, seed 91.)
 * Blocking more than the kernel would have only defers signals; the mask
 * before is restored when the handler returns. */
static void call_earlier(int sig, const struct sigaction *before, siginfo_t *info, void *uctx)
{
    sigset_t want = before->sa_mask, saved;
    if (!(before->sa_flags & SA_NODEFER))
        sigaddset(&want, sig);
    int changed = 0;
    if (zzi_os_sigmask(SIG_BLOCK, &want, &saved) == 0)
        for (int s = 1; s < NSIG && !changed; s++)
            changed = sigismember(&want, s) == 1 && sigismember(&saved, s) != 1;
    if (before->sa_flags & SA_SIGINFO)
        before->sa_sigaction(sig, info, uctx);
    else
        before->sa_handler(sig);
    if (changed)
        zzi_os_sigmask(SIG_SETMASK, &saved, NULL);
}

/* Copies sig's published chain entry: raises the entry's count of copiers,
 * then checks that it is still the published one, else tries again.  A
 * rewrite fills only an entry that is not published and whose count it saw
 * at 0; if it saw 0 before our count went up, it publishes the entry only
 * once it is whole, and our check after the count went up then sees it
 * unpublished (we try again) or whole.  (Until 8da1e69 the check was
 * missing: between the handler's read of the index and its count going up,
 * two rewrites could publish the other entry and then start filling this
 * one, which the handler would copy half-written.  Found by reading; no
 * test has caught it: the window is a few instructions wide.) */
static struct chain copy_chain(int sig)
{
    for (;;) {
        unsigned k = atomic_load(&published[sig]);
        atomic_fetch_add(&copying[sig][k], 1);
        if (atomic_load(&published[sig]) == k) {
            struct chain c = chains[sig][k];
            atomic_fetch_sub(&copying[sig][k], 1);
            return c;
        }
        atomic_fetch_sub(&copying[sig][k], 1); /* a rewrite may be filling it: again */
    }
}

static void purge_handler(int sig, siginfo_t *info, void *uctx)
{
    int e = errno;
    zz_purge();
    struct chain c = copy_chain(sig);
    if (is_disposition(&c.before, SIG_IGN)) {
        /* nothing */
    } else if (is_disposition(&c.before, SIG_DFL)) {
        chain_to_default(sig, &c.ours);
    } else {
        call_earlier(sig, &c.before, info, uctx);
    }
    errno = e;
}

/* Our handler installed in place of `before`: with its mask and flags, so
 * the earlier handler runs under the same conditions as if it had been
 * called by the kernel; on the alternate stack when it ran there, and always
 * when there was no handler (a SIGSEGV from a stack overflow can then still
 * purge, if the thread has an alternate stack). */
static struct sigaction ours_for(const struct sigaction *before)
{
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = purge_handler;
    if (is_disposition(before, SIG_DFL) || is_disposition(before, SIG_IGN)) {
        sigemptyset(&act.sa_mask);
        act.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    } else {
        act.sa_mask = before->sa_mask;
        act.sa_flags = before->sa_flags | SA_SIGINFO;
    }
    return act;
}

/* pre: rewrite_lock held, sig blocked in this thread (so no handler of ours
 * on this thread is copying).  Publishes a new entry for sig. */
static void publish(int sig, const struct chain *c)
{
    unsigned next = !atomic_load(&published[sig]);
    while (atomic_load(&copying[sig][next]) != 0) /* a handler is still copying it */
        zzi_os_yield();
    chains[sig][next] = *c;
    atomic_store(&published[sig], (unsigned char)next);
}

static void before_fork(void)
{
    pthread_mutex_lock(&rewrite_lock);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&rewrite_lock);
}

/* A handler of ours that was copying its entry in another thread of the
 * parent will never finish here: forget its count, or the next rewrite of
 * that entry would wait for it forever. */
static void after_fork_child(void)
{
    for (int sig = 0; sig < NSIG; sig++) {
        atomic_store(&copying[sig][0], 0);
        atomic_store(&copying[sig][1], 0);
    }
    pthread_mutex_unlock(&rewrite_lock);
}

/* After a fork that ran no handler: the lock may be held by a thread that
 * does not exist here. */
static void reset_lock(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    rewrite_lock = fresh;
}

static const struct zzi_fork_hooks fork_hooks = {
    .before = before_fork,
    .after_parent = after_fork_parent,
    .after_child = after_fork_child,
    .reset = reset_lock,
};

static int catchable(int sig)
{
    return sig > 0 && sig < NSIG && sig != SIGKILL && sig != SIGSTOP;
}

/* pre: rewrite_lock held.  Installs ours for sig unless it is there already
 * (then the handler we chain to stays the one found the first time). */
static int install_one(int sig)
{
    struct sigaction before;
    if (zzi_os_sigaction(sig, NULL, &before) != 0)
        return -1;
    if ((before.sa_flags & SA_SIGINFO) && before.sa_sigaction == purge_handler)
        return 0;
    struct chain c = {before, ours_for(&before)};
    sigset_t one, saved;
    sigemptyset(&one);
    sigaddset(&one, sig);
    if (zzi_os_sigmask(SIG_BLOCK, &one, &saved) != 0)
        return -1;
    publish(sig, &c);
    int rc = zzi_os_sigaction(sig, &c.ours, NULL);
    int e = errno;
    zzi_os_sigmask(SIG_SETMASK, &saved, NULL);
    errno = e;
    return rc;
}

static int purge_on_signals_impl(const int *signals, size_t count)
{
    if (count > 0 && signals == NULL) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        if (!catchable(signals[i])) {
            zzi_fail(ZZ_ERR_ARGUMENT);
            errno = EINVAL;
            return -1;
        }
    }
    int rc = 0;
    zzi_check_fork(); /* a fork that ran no handler: a dead thread may hold the lock */
    zzi_fork_register(ZZI_FORK_SIGNALS, &fork_hooks); /* before the lock is first taken */
    zzi_mutex_lock(&rewrite_lock);
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = install_one(signals[i]);
    int e = errno;
    pthread_mutex_unlock(&rewrite_lock);
    errno = e;
    return rc;
}

ZZ_API int zz_purge_on_signals(const int *signals, size_t count)
{
    return zzi_api_rc(purge_on_signals_impl(signals, count));
}
