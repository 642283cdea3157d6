/*
 * report.c - how zz-stress tells what it found: the seed and the command that
 * replays the run, what failed, and the last operations of the thread that
 * failed (and a few of every other).  Also the PRNG, and the hooks that do the
 * same when a sanitizer or a fatal signal ends the process first.
 */
#include <errno.h>
#include <execinfo.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "stress.h"

_Thread_local struct zs_thread *zs_self;
_Atomic int zs_stopping;
struct zs_child_verdict *zs_child;

static _Atomic int failing;

/* The report reads other threads' operation logs while they may still write
 * them (a benign race: the log is for a person), sometimes from a sanitizer's
 * death callback: TSan must not see those reads, or it reports them from
 * inside its own report and deadlocks. */
#if defined(__SANITIZE_THREAD__)
#define ZS_REPORTING __attribute__((no_sanitize("thread")))
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZS_REPORTING __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef ZS_REPORTING
#define ZS_REPORTING
#endif
static const char *_Atomic async_msg;

uint64_t zs_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t zs_below(uint64_t *state, uint64_t n)
{
    return n == 0 ? 0 : zs_rand(state) % n;
}

int zs_chance(uint64_t *state, unsigned per_mille)
{
    return zs_below(state, 1000) < per_mille;
}

double zs_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        zs_fail("clock_gettime: %s", strerror(errno));
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* write(2) until done: also from signal handlers and sanitizer callbacks.
 * The system call itself, not libc's write: a sanitizer's interceptor may
 * need a lock its own report (which calls us on its way out) holds. */
ZS_REPORTING static void put(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = (ssize_t)syscall(SYS_write, fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

ZS_REPORTING static size_t length(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n] != '\0')
        n++;
    return n;
}

ZS_REPORTING static void puts_fd(int fd, const char *s)
{
    put(fd, s, length(s, 4096));
}

void zs_say(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    put(STDOUT_FILENO, buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
}

void zs_log(struct zs_thread *t, const char *fmt, ...)
{
    if (t == NULL)
        return;
    unsigned long k = atomic_load_explicit(&t->log.next, memory_order_relaxed);
    char *line = t->log.line[k % ZS_LOG_LEN];
    int at = snprintf(line, ZS_LOG_LINE, "#%lu ", k);
    va_list ap;
    va_start(ap, fmt);
    if (at > 0 && at < ZS_LOG_LINE)
        vsnprintf(line + at, (size_t)(ZS_LOG_LINE - at), fmt, ap);
    va_end(ap);
    atomic_store_explicit(&t->log.next, k + 1, memory_order_release);
}

/* The last `lines` operations of t, oldest first.  Async-signal-safe. */
ZS_REPORTING void zs_dump_log(int fd, const struct zs_thread *t, unsigned lines)
{
    unsigned long next = atomic_load(&t->log.next);
    unsigned long from = next > lines ? next - lines : 0;
    if (next - from > ZS_LOG_LEN)
        from = next - ZS_LOG_LEN;
    puts_fd(fd, "  --- ");
    puts_fd(fd, t->name);
    puts_fd(fd, next == 0 ? ": no operations\n" : ": last operations (oldest first)\n");
    for (unsigned long k = from; k < next; k++) {
        const char *l = t->log.line[k % ZS_LOG_LEN];
        puts_fd(fd, "    ");
        put(fd, l, length(l, ZS_LOG_LINE));
        puts_fd(fd, "\n");
    }
}

ZS_REPORTING static void dump_everything(int fd)
{
    puts_fd(fd, "zz-stress: replay with: ");
    puts_fd(fd, zs_cfg.replay);
    puts_fd(fd, "\n");
    if (zs_self != NULL)
        zs_dump_log(fd, zs_self, ZS_LOG_LEN);
    for (int i = 0; i < ZS_MAX_THREADS; i++) {
        struct zs_thread *t = zs_threads[i];
        if (t != NULL && t != zs_self)
            zs_dump_log(fd, t, zs_self != NULL ? 6 : 16);
    }
}

_Noreturn void zs_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (zs_child != NULL) {
        /* A forked child: the parent reads the verdict and reports it. */
        snprintf(zs_child->message, sizeof zs_child->message, "%s", msg);
        zs_child->failed = 1;
        _exit(3);
    }
    if (atomic_exchange(&failing, 1)) {
        for (;;)
            pause(); /* another thread is reporting; it exits the process */
    }
    char head[1400];
    snprintf(head, sizeof head, "\nzz-stress: FINDING (%s): %s\nzz-stress: seed %llu\n",
             zs_self != NULL ? zs_self->name : "main", msg, (unsigned long long)zs_cfg.seed);
    puts_fd(STDERR_FILENO, head);
    dump_everything(STDERR_FILENO);
    _exit(1);
}

void zs_fail_async(const char *static_msg)
{
    const char *none = NULL;
    atomic_compare_exchange_strong(&async_msg, &none, static_msg);
}

const char *zs_async_finding(void)
{
    return atomic_load(&async_msg);
}

/* ---- when something else ends the process first ---- */

/* sig: the fatal signal that ends the process, or 0 (a sanitizer's report). */
ZS_REPORTING static void crash_report(int sig, const void *addr)
{
    if (zs_child != NULL || atomic_exchange(&failing, 1))
        return;
    char head[320];
    if (sig != 0)
        snprintf(head, sizeof head, "\nzz-stress: FINDING (%s): signal %d (%s) at address %p in "
                 "this thread; its stack:\n", zs_self != NULL ? zs_self->name : "main", sig,
                 strsignal(sig), addr);
    else
        snprintf(head, sizeof head, "\nzz-stress: FINDING (%s): a sanitizer report (above) ends "
                 "the process\n", zs_self != NULL ? zs_self->name : "main");
    puts_fd(STDERR_FILENO, head);
    if (sig != 0) {
        void *frames[64];
        int n = backtrace(frames, 64);
        backtrace_symbols_fd(frames, n, STDERR_FILENO);
    }
    snprintf(head, sizeof head, "zz-stress: seed %llu\n", (unsigned long long)zs_cfg.seed);
    puts_fd(STDERR_FILENO, head);
    dump_everything(STDERR_FILENO);
}


/* zs_probe_faults: a probe in progress on this thread, and where to go back. */
static _Thread_local volatile int probing;
static _Thread_local sigjmp_buf probe_jmp;

static void crash_handler(int sig, siginfo_t *info, void *uctx)
{
    (void)uctx;
    if (probing)
        siglongjmp(probe_jmp, 1);
    crash_report(sig, info != NULL ? info->si_addr : NULL);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((noinline)) int zs_probe_faults(const void *addr)
{
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0)
        zs_fail("sigaction: %s", strerror(errno));
    /* volatile: it changes between sigsetjmp and siglongjmp */
    volatile int faulted = 1;
    if (sigsetjmp(probe_jmp, 1) == 0) {
        probing = 1;
        unsigned char v = *(const volatile unsigned char *)addr;
        (void)v;
        faulted = 0;
    }
    probing = 0;
    if (sigaction(SIGSEGV, &old_segv, NULL) != 0 || sigaction(SIGBUS, &old_bus, NULL) != 0)
        zs_fail("sigaction: %s", strerror(errno));
    return faulted;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ZS_SANITIZER_RUNTIME 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(undefined_behavior_sanitizer)
#define ZS_SANITIZER_RUNTIME 1
#endif
#endif

#ifdef ZS_SANITIZER_RUNTIME
#include <sanitizer/common_interface_defs.h>

static void crash_dump(void)
{
    crash_report(0, NULL);
}
#endif

void zs_install_crash_hooks(void)
{
#ifdef ZS_SANITIZER_RUNTIME
    /* Runs when a sanitizer reports and ends the process: it then prints the
     * seed and the operation logs after its own report. */
    __sanitizer_set_death_callback(crash_dump);
#endif
    /* A fatal signal in the parent (a segfault in the library, a zeroize:
     * abort): the same dump, then the signal's default action. */
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = crash_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        if (sigaction(sigs[i], &sa, NULL) != 0) {
            perror("zz-stress: sigaction");
            exit(2);
        }
    }
}
