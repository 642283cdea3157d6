/*
 * test_util.h - helpers shared by the zeroize cmocka tests.
 *
 *   - run a function in a forked child and assert how it died
 *     (expect_fatal, expect_segv, expect_child_ok);
 *   - read /proc/self/smaps for the VMA that holds an address (VmFlags, Locked);
 *   - scan the whole address space through /proc/self/mem for a secret
 *     generated from a seed, without ever holding a copy of that secret;
 *   - drop CAP_IPC_LOCK and shrink RLIMIT_MEMLOCK in a child.
 *
 * Everything here is static: each test program includes it once.  Build with
 * _GNU_SOURCE (the CMakeLists defines it).
 */
#ifndef ZZ_TEST_UTIL_H
#define ZZ_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "zeroize.h"

#if defined(ZZ_TEST_HAVE_MEMCHECK_H)
#include <valgrind/valgrind.h>
#define TU_ON_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#define TU_VALGRIND_ERRORS() ((unsigned)VALGRIND_COUNT_ERRORS)
#else
#define TU_ON_VALGRIND() 0
#define TU_VALGRIND_ERRORS() 0u
#endif

#define TU_UNUSED __attribute__((unused))

/* Functions that perform a deliberate bad access are compiled without
 * optimisation, and the access itself goes through a volatile lvalue, so the
 * compiler can neither drop nor move it. */
#if defined(__clang__)
#define OPTNONE __attribute__((optnone, noinline))
#else
#define OPTNONE __attribute__((optimize("O0"), noinline))
#endif
#define VREAD(addr) (*(volatile const unsigned char *)(const void *)(addr))
#define VWRITE(addr, v) (*(volatile unsigned char *)(void *)(addr) = (unsigned char)(v))

/* Keeps the compiler from assuming anything about memory across this point. */
#define TU_BARRIER() __asm__ __volatile__("" ::: "memory")

static TU_UNUSED size_t tu_page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static TU_UNUSED uintptr_t tu_page_of(const void *p)
{
    return (uintptr_t)p & ~(uintptr_t)(tu_page_size() - 1);
}

static TU_UNUSED size_t tu_round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* True when the tests were asked to exercise the mprotect fallback. */
static TU_UNUSED int tu_mprotect_mode(void)
{
    const char *g = getenv("ZEROIZE_GUARDS");
    return g != NULL && strcmp(g, "mprotect") == 0;
}

/* Built with a sanitizer?  (GCC defines these; clang answers __has_feature.) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TU_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TU_SANITIZED 1
#endif
#endif
#ifndef TU_SANITIZED
#define TU_SANITIZED 0
#endif

/* ------------------------------------------------------------------------ */
/* Seeded PRNG (splitmix64).  The secret used by the scanning tests is the    */
/* output stream of this generator; it is regenerated, never stored.          */
/* ------------------------------------------------------------------------ */

static TU_UNUSED uint64_t tu_prng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Writes len bytes (a multiple of 8) of the seed's stream to dst, one word at
 * a time, so the whole secret never sits anywhere but in dst.  The stores
 * are volatile bytes: otherwise clang builds the whole secret in a stack
 * temporary and copies it, leaving a second copy in a dead frame. */
static TU_UNUSED void tu_fill_secret(void *dst, uint64_t seed, size_t len)
{
    uint64_t s = seed;
    volatile unsigned char *d = dst;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t w = tu_prng_next(&s);
        for (size_t k = 0; k < 8; k++)
            d[i + k] = (unsigned char)(w >> (8 * k));
    }
    TU_BARRIER();
}

/* ------------------------------------------------------------------------ */
/* Forked children                                                          */
/* ------------------------------------------------------------------------ */

typedef void (*tu_child_fn)(void *arg);

struct tu_child_result {
    int exited;      /* WIFEXITED */
    int exit_code;
    int signaled;    /* WIFSIGNALED */
    int signal;
    char err[4096];  /* what the child wrote on stderr (NUL-terminated) */
    size_t err_len;
};

/* In the child: default dispositions for the signals cmocka (or a sanitizer)
 * may have caught in the parent, so a fault or abort really kills it; and no
 * core file, so death tests stay fast and leave nothing behind. */
static TU_UNUSED void tu_child_prepare(void)
{
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGSYS };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
}

/* In a child made by tu_run_child: the pipe that tu_child_exit reports on,
 * and how many errors valgrind had counted when the child was forked. */
static TU_UNUSED int tu_status_fd = -1;
static TU_UNUSED unsigned tu_errors_at_fork;

/* Ends a child made by tu_run_child with the given status.  Under valgrind
 * the child reports its status through a pipe and kills itself with SIGKILL
 * instead: a forked child of a test exits holding blocks on purpose, and
 * valgrind's exit-time leak check would count those as errors.  Memory
 * errors in the child are still reported as they happen. */
static TU_UNUSED _Noreturn void tu_child_exit(int code)
{
    if (TU_ON_VALGRIND() && tu_status_fd >= 0) {
        unsigned errors = TU_VALGRIND_ERRORS() - tu_errors_at_fork;
        if (errors > 0 && code == 0) {
            /* memcheck found errors in the child: fail it, as
             * --error-exitcode would have */
            fprintf(stderr, "valgrind: %u error(s) in this child\n", errors);
            code = 99;
        }
        unsigned char c = (unsigned char)code;
        if (write(tu_status_fd, &c, 1) == 1)
            raise(SIGKILL);
    }
    _exit(code);
}

/* Runs fn(arg) in a forked child that exits 0 if fn returns.  Collects the
 * child's stderr and how it ended.  Returns 0, or -1 if fork/pipe failed. */
static TU_UNUSED int tu_run_child(tu_child_fn fn, void *arg, struct tu_child_result *r)
{
    memset(r, 0, sizeof *r);
    int fds[2], sfd[2];
    if (pipe(fds) != 0)
        return -1;
    if (pipe2(sfd, O_CLOEXEC) != 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        close(sfd[0]);
        close(sfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        close(sfd[0]);
        tu_status_fd = sfd[1];
        tu_errors_at_fork = TU_VALGRIND_ERRORS();
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        tu_child_prepare();
        fn(arg);
        tu_child_exit(0);
    }
    close(fds[1]);
    close(sfd[1]);
    for (;;) {
        ssize_t got = read(fds[0], r->err + r->err_len, sizeof r->err - 1 - r->err_len);
        if (got > 0) {
            r->err_len += (size_t)got;
            if (r->err_len == sizeof r->err - 1)
                break;
        } else if (got == 0 || errno != EINTR) {
            break;
        }
    }
    r->err[r->err_len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    r->exited = WIFEXITED(status);
    r->exit_code = r->exited ? WEXITSTATUS(status) : -1;
    r->signaled = WIFSIGNALED(status);
    r->signal = r->signaled ? WTERMSIG(status) : 0;
    unsigned char reported;
    if (read(sfd[0], &reported, 1) == 1 && r->signaled && r->signal == SIGKILL) {
        r->exited = 1;        /* tu_child_exit under valgrind */
        r->exit_code = reported;
        r->signaled = 0;
        r->signal = 0;
    }
    close(sfd[0]);
    return 0;
}

static TU_UNUSED void tu_describe_child(const struct tu_child_result *r, const char *file, int line)
{
    if (r->signaled)
        print_error("%s:%d: child killed by signal %d (%s); stderr: \"%s\"\n", file, line, r->signal,
                    strsignal(r->signal), r->err);
    else
        print_error("%s:%d: child exited with %d; stderr: \"%s\"\n", file, line, r->exit_code, r->err);
}

/* Did the child die of SIGABRT having written exactly `line` + "\n"?
 * Says what happened instead when not. */
static TU_UNUSED int tu_fatal_ok(tu_child_fn fn, void *arg, const char *line, const char *file,
                                 int lineno)
{
    struct tu_child_result r;
    assert_int_equal(tu_run_child(fn, arg, &r), 0);
    char want[512];
    snprintf(want, sizeof want, "%s\n", line);
    if (!r.signaled || r.signal != SIGABRT || strcmp(r.err, want) != 0) {
        tu_describe_child(&r, file, lineno);
        print_error("%s:%d: expected SIGABRT with stderr \"%s\\n\"\n", file, lineno, line);
        return 0;
    }
    return 1;
}
#define fatal_ok(fn, arg, line) tu_fatal_ok((fn), (arg), (line), __FILE__, __LINE__)
#define expect_fatal(fn, arg, line)                                                                \
    do {                                                                                           \
        if (!tu_fatal_ok((fn), (arg), (line), __FILE__, __LINE__))                                 \
            fail();                                                                                \
    } while (0)

/* The child must die of SIGSEGV (and print nothing: no false fatal report). */
static TU_UNUSED void tu_expect_segv(tu_child_fn fn, void *arg, const char *file, int lineno)
{
    struct tu_child_result r;
    assert_int_equal(tu_run_child(fn, arg, &r), 0);
    if (!r.signaled || r.signal != SIGSEGV) {
        tu_describe_child(&r, file, lineno);
        print_error("%s:%d: expected SIGSEGV\n", file, lineno);
        fail();
    }
}
#define expect_segv(fn, arg) tu_expect_segv((fn), (arg), __FILE__, __LINE__)

/* The child must exit with status 0 (fn returned); its own checks call
 * tu_child_check, which exits with the failing line number. */
static TU_UNUSED void tu_expect_child_ok(tu_child_fn fn, void *arg, const char *file, int lineno)
{
    struct tu_child_result r;
    assert_int_equal(tu_run_child(fn, arg, &r), 0);
    if (!r.exited || r.exit_code != 0) {
        tu_describe_child(&r, file, lineno);
        print_error("%s:%d: expected the child to exit 0 (a non-zero code is the low byte of the "
                    "line of the failed check in the child)\n",
                    file, lineno);
        fail();
    }
}
#define expect_child_ok(fn, arg) tu_expect_child_ok((fn), (arg), __FILE__, __LINE__)

/* cmocka's assert_* longjmp into the parent's test runner, which does not
 * exist in a forked child: children check with this instead. */
#define child_check(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: child check failed: %s (errno %d)\n", __FILE__, __LINE__,      \
                    #cond, errno);                                                                 \
            tu_child_exit((__LINE__ & 0x7f) | 0x80);                                               \
        }                                                                                          \
    } while (0)

/* A child that must not hang: tu_child_watchdog(s) starts a thread (every
 * signal blocked in it, so process-directed signals still reach the test's
 * own threads) that ends the child with status 124 and a line on stderr
 * once s seconds have passed.  For children that use SIGALRM themselves;
 * others can simply call alarm(). */
static TU_UNUSED void *tu_watchdog_thread(void *arg)
{
    unsigned s = (unsigned)(uintptr_t)arg;
    struct timespec t = { (time_t)s, 0 };
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    static const char msg[] = "watchdog: the child was still running, it hangs\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0)
        _exit(125);
    _exit(124);
}

static TU_UNUSED int tu_child_watchdog(unsigned seconds)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, tu_watchdog_thread, (void *)(uintptr_t)seconds);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    pthread_detach(t);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* /proc/self/smaps and /proc/self/status                                   */
/* ------------------------------------------------------------------------ */

struct tu_vma {
    uintptr_t start, end;
    char perms[8];
    char vmflags[512];  /* "rd wr mr mw me lo ..." */
    long locked_kb;     /* "Locked:" */
};

/* Finds the VMA that contains addr in /proc/self/smaps.  Returns 0 or -1. */
static TU_UNUSED int tu_smaps_vma(const void *addr, struct tu_vma *out)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL)
        return -1;
    char line[512];
    int in_target = 0, found = 0;
    uintptr_t a = (uintptr_t)addr;
    memset(out, 0, sizeof *out);
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long s, e;
        char perms[8];
        /* A VMA header starts with a lower-case hex address; fields start
         * with a capitalised key ("Locked:", "VmFlags:"). */
        int header = (line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f');
        if (header && sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3) {
            if (in_target)
                break;
            in_target = a >= s && a < e;
            if (in_target) {
                found = 1;
                out->start = s;
                out->end = e;
                snprintf(out->perms, sizeof out->perms, "%s", perms);
            }
            continue;
        }
        if (!in_target)
            continue;
        if (strncmp(line, "VmFlags:", 8) == 0) {
            const char *v = line + 8;
            while (*v == ' ')
                v++;
            snprintf(out->vmflags, sizeof out->vmflags, "%s", v);
            size_t L = strlen(out->vmflags);
            while (L > 0 && (out->vmflags[L - 1] == '\n' || out->vmflags[L - 1] == ' '))
                out->vmflags[--L] = '\0';
        } else if (strncmp(line, "Locked:", 7) == 0) {
            out->locked_kb = strtol(line + 7, NULL, 10);
        }
    }
    fclose(f);
    return found ? 0 : -1;
}

/* True if the space-separated flag list contains the two-letter flag. */
static TU_UNUSED int tu_has_flag(const char *vmflags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = vmflags; *p != '\0';) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && strncmp(p, flag, n) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* VmFlags of the VMA holding addr ("" if none). */
static TU_UNUSED int tu_addr_has_flag(const void *addr, const char *flag)
{
    struct tu_vma v;
    if (tu_smaps_vma(addr, &v) != 0)
        return 0;
    return tu_has_flag(v.vmflags, flag);
}

/* Does mlock() reach the kernel?  The sanitizers' runtimes intercept mlock,
 * munlock and mlockall and turn them into no-ops that return 0, so under
 * ASan/TSan a page "locked" through libc's mlock is not locked at all. */
static TU_UNUSED int tu_mlock_reaches_kernel(void)
{
    static int answer = -1;
    if (answer >= 0)
        return answer;
    size_t pg = tu_page_size();
    unsigned char *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 0;
    m[0] = 1;
    answer = mlock(m, pg) == 0 && tu_addr_has_flag(m, "lo");
    munlock(m, pg);
    munmap(m, pg);
    return answer;
}

/* For tests that assert what the kernel locked on behalf of zz_lock. */
#define SKIP_IF_MLOCK_INTERCEPTED()                                                                \
    do {                                                                                           \
        if (!tu_mlock_reaches_kernel()) {                                                          \
            print_message("skipped: mlock() is intercepted (sanitizer runtime), nothing gets "     \
                          "locked\n");                                                             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* A "Key:   N kB" field of /proc/self/status, or -1. */
static TU_UNUSED long tu_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Number of lines (VMAs) in /proc/self/maps. */
static TU_UNUSED long tu_count_vmas(void)
{
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0)
        return -1;
    char buf[65536];
    long lines = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < got; i++)
            lines += buf[i] == '\n';
    }
    close(fd);
    return lines;
}

#include "test_memscan.h"

/* ------------------------------------------------------------------------ */
/* Giving up the right to lock memory                                       */
/* ------------------------------------------------------------------------ */

/* 1 if this kernel offers memfd_secret(2) to this process (tests of the
 * secretmem backend skip without it). */
static TU_UNUSED int tu_have_secretmem(void)
{
#ifdef SYS_memfd_secret
    long fd = syscall(SYS_memfd_secret, 0);
    if (fd < 0)
        return 0;
    close((int)fd);
    return 1;
#else
    return 0;
#endif
}

/* Drops CAP_IPC_LOCK from every set of this process and sets RLIMIT_MEMLOCK
 * (soft and hard) to limit bytes.  For children only.  Returns 0 or -1. */
static TU_UNUSED int tu_drop_ipc_lock(rlim_t limit)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return -1;
    unsigned bit = 1u << (CAP_IPC_LOCK % 32);
    unsigned idx = CAP_IPC_LOCK / 32;
    data[idx].effective &= ~bit;
    data[idx].permitted &= ~bit;
    data[idx].inheritable &= ~bit;
    if (syscall(SYS_capset, &hdr, data) != 0)
        return -1;
    prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0); /* best effort, also for exec'd children */
    struct rlimit rl = { limit, limit };
    return setrlimit(RLIMIT_MEMLOCK, &rl);
}

#endif /* ZZ_TEST_UTIL_H */
