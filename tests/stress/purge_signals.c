/*
 * purge_signals.c - purges racing with the workers, and the counters that
 * keep the model exact anyway.
 *
 *   S  (started)   incremented before a purge can begin: by zs_purge_direct
 *                  before it calls zz_purge, and by the signaller before it
 *                  sends a purge signal;
 *   F  (done)      incremented after the purge has returned: by
 *                  zs_purge_direct, by the direct SIGUSR2 handler after its
 *                  zz_purge, and by our SIGUSR1 handler, which
 *                  zz_purge_on_signals' handler calls after its purge;
 *   Ff (done full) the same, for purges that wipe every protection mode: not
 *                  a purge nested in one on the same thread (zz_purge then
 *                  wipes only READWRITE blocks), nor a signal that reached
 *                  our handler while we were re-installing it.
 *
 * With these, model.c decides for every block whether a purge certainly
 * covered it (Ff read before the check > S read after the block was last
 * changed: a full purge began after the change and ended before the check),
 * certainly did not (S read after the check == F read before the change), or
 * may have (each byte is its pattern or zero).  The signaller waits for each
 * signal to be handled before it sends the next, so signals never merge and
 * S and F stay in step; one that is not handled in 30 s is a finding.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

#define ZS_SIG_CHAINED SIGUSR1 /* zz_purge_on_signals, then our counting handler */
#define ZS_SIG_DIRECT SIGUSR2  /* our handler calls zz_purge itself */
#define ZS_ALTSTACK_SIZE (256u << 10)

#if defined(__SANITIZE_THREAD__)
#define ZS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZS_TSAN 1
#endif
#endif
#ifndef ZS_TSAN
#define ZS_TSAN 0
#endif

static _Atomic uint64_t started, done, done_full;
static _Atomic unsigned long acks, sent;
static _Thread_local int purge_depth; /* > 0: this thread is inside a purge of ours */
static _Thread_local void *thread_altstack;
static _Thread_local stack_t thread_old_altstack;

/* How our SIGUSR1 handler is installed now (ZS_F_RECHAIN changes it); odd
 * rechain_seq while it changes.  send_seq: rechain_seq when the outstanding
 * signal was sent. */
static _Atomic unsigned long rechain_seq, send_seq;
static _Atomic int chain_siginfo, chain_onstack, chain_mask_usr2;
static pthread_mutex_t rechain_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_t signaller, purger;
static int signaller_running, purger_running;
static _Atomic int background_stop;
static _Atomic unsigned long purger_count;

uint64_t zs_purges_started(void)
{
    return atomic_load(&started);
}

uint64_t zs_purges_done(void)
{
    return atomic_load(&done);
}

uint64_t zs_purges_done_full(void)
{
    return atomic_load(&done_full);
}

unsigned long zs_signals_sent(void)
{
    return atomic_load(&sent);
}

unsigned long zs_purger_purges(void)
{
    return atomic_load(&purger_count);
}

void zs_purge_direct(void)
{
    int nested = purge_depth > 0;
    purge_depth++;
    atomic_fetch_add(&started, 1);
    zz_purge();
    atomic_fetch_add(&done, 1);
    if (!nested)
        atomic_fetch_add(&done_full, 1);
    purge_depth--;
}

static void direct_handler(int sig)
{
    (void)sig;
    int e = errno;
    int nested = purge_depth > 0;
    purge_depth++;
    zz_purge();
    purge_depth--;
    atomic_fetch_add(&done, 1);
    if (!nested)
        atomic_fetch_add(&done_full, 1);
    atomic_fetch_add(&acks, 1);
    if (errno != e)
        zs_fail_async("zz_purge (from a SIGUSR2 handler) changed errno");
    errno = e;
}

static int on_altstack(const void *addr)
{
    const char *base = thread_altstack;
    return base != NULL && (const char *)addr >= base && (const char *)addr < base + ZS_ALTSTACK_SIZE;
}

/* What zz_purge_on_signals' handler hands the signal on to, after its purge. */
static void chained_body(int sig, siginfo_t *info, int siginfo_form)
{
    int e = errno;
    unsigned long seq = atomic_load(&rechain_seq);
    unsigned long at_send = atomic_load(&send_seq);
    int stable = (seq & 1) == 0 && seq == at_send;
    if (stable && ZS_ON(ZS_F_CHAIN)) {
        /* Issue 11, defect 6: we must run as we were installed. */
        if (siginfo_form != atomic_load(&chain_siginfo))
            zs_fail_async("the chained SIGUSR1 handler was called in the wrong form "
                          "(sa_handler vs sa_sigaction)");
        if (siginfo_form && (info == NULL || info->si_signo != sig))
            zs_fail_async("the chained SA_SIGINFO handler got no siginfo or a wrong si_signo");
        if (!ZS_TSAN) { /* TSan delivers signals later, on the normal stack */
            sigset_t now;
            if (pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && atomic_load(&chain_mask_usr2) &&
                !sigismember(&now, SIGUSR2))
                zs_fail_async("the chained SIGUSR1 handler ran without the sa_mask it was "
                              "installed with (SIGUSR2 not blocked)");
            int local;
            if (atomic_load(&chain_onstack) && thread_altstack != NULL && !on_altstack(&local))
                zs_fail_async("the chained SIGUSR1 handler (SA_ONSTACK) did not run on the "
                              "thread's alternate stack");
        }
    }
    atomic_fetch_add(&done, 1);
    if (stable && purge_depth == 0)
        atomic_fetch_add(&done_full, 1);
    atomic_fetch_add(&acks, 1);
    errno = e;
}

static void chained_plain(int sig)
{
    chained_body(sig, NULL, 0);
}

static void chained_siginfo(int sig, siginfo_t *info, void *uctx)
{
    (void)uctx;
    chained_body(sig, info, 1);
}

static int install_chained(int siginfo, int onstack, int mask_usr2)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (siginfo) {
        sa.sa_sigaction = chained_siginfo;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = chained_plain;
    }
    sa.sa_flags |= SA_RESTART | (onstack ? SA_ONSTACK : 0);
    sigemptyset(&sa.sa_mask);
    if (mask_usr2)
        sigaddset(&sa.sa_mask, SIGUSR2);
    atomic_store(&chain_siginfo, siginfo);
    atomic_store(&chain_onstack, onstack);
    atomic_store(&chain_mask_usr2, mask_usr2);
    return sigaction(ZS_SIG_CHAINED, &sa, NULL);
}

int zs_purge_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = direct_handler;
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(ZS_SIG_DIRECT, &sa, NULL) != 0)
        return -1;
    if (install_chained(1, 1, 1) != 0)
        return -1;
    static const int sigs[] = { ZS_SIG_CHAINED };
    return zz_purge_on_signals(sigs, 1);
}

void zs_rechain(struct zs_thread *t)
{
    int siginfo = (int)zs_below(&t->rng, 2), onstack = (int)zs_below(&t->rng, 2);
    int mask = (int)zs_below(&t->rng, 2);
    zs_log(t, "rechain siginfo=%d onstack=%d mask_usr2=%d", siginfo, onstack, mask);
    ZS_CHECK(pthread_mutex_lock(&rechain_lock) == 0, "pthread_mutex_lock");
    atomic_fetch_add(&rechain_seq, 1);
    ZS_CHECK(install_chained(siginfo, onstack, mask) == 0, "sigaction: %s", strerror(errno));
    static const int sigs[] = { ZS_SIG_CHAINED };
    int rc = zz_purge_on_signals(sigs, 1);
    ZS_CHECK(rc == 0, "zz_purge_on_signals(SIGUSR1) again returned %d (errno %d)", rc, errno);
    atomic_fetch_add(&rechain_seq, 1);
    ZS_CHECK(pthread_mutex_unlock(&rechain_lock) == 0, "pthread_mutex_unlock");
}

void zs_purge_signals_thread_init(struct zs_thread *t)
{
    void *m = mmap(NULL, ZS_ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ZS_CHECK(m != MAP_FAILED, "mmap of an alternate signal stack: %s", strerror(errno));
    stack_t ss = { .ss_sp = m, .ss_size = ZS_ALTSTACK_SIZE, .ss_flags = 0 };
    stack_t old;
    ZS_CHECK(sigaltstack(&ss, &old) == 0, "sigaltstack: %s", strerror(errno));
    /* Keep what was there (a sanitizer runtime's own stack, which it unmaps
     * when the thread ends): fini puts it back. */
    t->altstack = m;
    thread_old_altstack = old;
    thread_altstack = m;
}

void zs_purge_signals_thread_fini(struct zs_thread *t)
{
    /* Block our signals, then give the thread its earlier alternate stack
     * (or none) back before ours is unmapped. */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, ZS_SIG_CHAINED);
    sigaddset(&s, ZS_SIG_DIRECT);
    ZS_CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0, "pthread_sigmask");
    stack_t old = thread_old_altstack;
    if (old.ss_flags & SS_DISABLE) {
        old.ss_sp = NULL;
        old.ss_size = 0;
        old.ss_flags = SS_DISABLE;
    } else {
        old.ss_flags = 0;
    }
    ZS_CHECK(sigaltstack(&old, NULL) == 0, "sigaltstack (the thread's earlier one): %s",
             strerror(errno));
    thread_altstack = NULL;
    ZS_CHECK(munmap(t->altstack, ZS_ALTSTACK_SIZE) == 0, "munmap: %s", strerror(errno));
    t->altstack = NULL;
}

static void nap_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *signaller_main(void *arg)
{
    (void)arg;
    static struct zs_thread self_log = { .name = "signaller" };
    zs_self = &self_log;
    zs_threads[ZS_MAX_THREADS - 1] = &self_log;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, ZS_SIG_CHAINED);
    sigaddset(&s, ZS_SIG_DIRECT);
    ZS_CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0, "pthread_sigmask");
    uint64_t rng = zs_cfg.seed ^ 0x5157a11e5ull;
    while (!atomic_load(&background_stop) && !atomic_load(&zs_stopping)) {
        /* bursts of close signals, then quiet */
        nap_us(zs_chance(&rng, 300) ? (long)zs_below(&rng, 200) : 200 + (long)zs_below(&rng, 3000));
        int sig = zs_below(&rng, 2) ? ZS_SIG_CHAINED : ZS_SIG_DIRECT;
        int target = (int)zs_below(&rng, (uint64_t)zs_cfg.threads + 1);
        unsigned long ticket = atomic_fetch_add(&sent, 1) + 1;
        atomic_store(&send_seq, atomic_load(&rechain_seq));
        atomic_fetch_add(&started, 1);
        int rc;
        if (target == zs_cfg.threads) {
            zs_log(&self_log, "kill(self, %s) #%lu", sig == ZS_SIG_CHAINED ? "SIGUSR1" : "SIGUSR2",
                   ticket);
            rc = kill(getpid(), sig);
        } else {
            zs_log(&self_log, "pthread_kill(worker%d, %s) #%lu", target,
                   sig == ZS_SIG_CHAINED ? "SIGUSR1" : "SIGUSR2", ticket);
            rc = pthread_kill(zs_worker_tids[target], sig);
        }
        ZS_CHECK(rc == 0, "sending a purge signal failed: %s", strerror(rc < 0 ? errno : rc));
        double deadline = zs_now() + 30.0;
        while (atomic_load(&acks) < ticket) {
            if (zs_now() > deadline)
                zs_fail("purge signal #%lu (%s) not handled within 30 s: a purge (or the "
                        "handler chain) hangs", ticket, sig == ZS_SIG_CHAINED ? "SIGUSR1" : "SIGUSR2");
            nap_us(50);
        }
    }
    return NULL;
}

static void *purger_main(void *arg)
{
    (void)arg;
    static struct zs_thread self_log = { .name = "purger" };
    zs_self = &self_log;
    zs_threads[ZS_MAX_THREADS - 2] = &self_log;
    uint64_t rng = zs_cfg.seed ^ 0x9e3779b9ull;
    while (!atomic_load(&background_stop) && !atomic_load(&zs_stopping)) {
        /* busy phases (purges back to back, racing with teardown and fork),
         * then quiet ones (so the model sees blocks no purge touched) */
        double until = zs_now() + (double)(2 + zs_below(&rng, 40)) / 1000.0;
        zs_log(&self_log, "busy phase");
        while (zs_now() < until && !atomic_load(&background_stop)) {
            zs_purge_direct();
            atomic_fetch_add(&purger_count, 1);
        }
        zs_log(&self_log, "quiet phase");
        nap_us(20000 + (long)zs_below(&rng, 250000));
    }
    return NULL;
}

pthread_t zs_worker_tids[ZS_MAX_THREADS];

int zs_start_signaller(void)
{
    int rc = pthread_create(&signaller, NULL, signaller_main, NULL);
    signaller_running = rc == 0;
    return rc;
}

int zs_start_purger(void)
{
    int rc = pthread_create(&purger, NULL, purger_main, NULL);
    purger_running = rc == 0;
    return rc;
}

void zs_stop_background(void)
{
    atomic_store(&background_stop, 1);
    if (signaller_running)
        ZS_CHECK(pthread_join(signaller, NULL) == 0, "pthread_join(signaller)");
    if (purger_running)
        ZS_CHECK(pthread_join(purger, NULL) == 0, "pthread_join(purger)");
    signaller_running = purger_running = 0;
}

void zs_check_async_findings(void)
{
    const char *m = zs_async_finding();
    if (m != NULL)
        zs_fail("%s", m);
}
