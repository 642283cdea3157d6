/*
 * os_posix.c - the only file that talks to the kernel (Linux).  Every other
 * file calls these wrappers, so porting, fault injection and auditing which
 * system calls the library makes all happen here.  Wrappers return 0 or -1
 * with errno; an errno that can only mean a bug in this library is fatal.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_DONTDUMP
#define MADV_DONTDUMP 16
#endif
#ifndef MADV_DODUMP
#define MADV_DODUMP 17
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13+ */
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41 /* Linux 5.17+ */
#endif
#ifndef PR_SET_VMA_ANON_NAME
#define PR_SET_VMA_ANON_NAME 0
#endif

#ifdef ZZ_FAULT_INJECTION
enum fault_op { FI_MAP, FI_PROTECT, FI_GUARD, FI_DONTDUMP, FI_WIPEONFORK, FI_LOCK, FI_RANDOM, FI_COUNT };
static const char *const fault_names[FI_COUNT] = {
    "map", "protect", "guard", "dontdump", "wipeonfork", "lock", "random"};
static _Atomic unsigned fault_countdown[FI_COUNT];
static _Atomic int fault_errno[FI_COUNT];
static void (*_Atomic fault_hook)(const char *op);

ZZ_API void zzi_fault_on_inject(void (*fn)(const char *op))
{
    atomic_store(&fault_hook, fn);
}

ZZ_API void zzi_fault_inject(const char *op, unsigned nth, int err)
{
    for (int i = 0; i < FI_COUNT; i++) {
        if (strcmp(op, fault_names[i]) == 0) {
            atomic_store(&fault_errno[i], err);
            atomic_store(&fault_countdown[i], nth);
            return;
        }
    }
    zzi_fatal("fault injection: unknown operation");
}

/* 1 if this call must fail (errno is then set). */
static int injected(enum fault_op op)
{
    unsigned n = atomic_load(&fault_countdown[op]);
    if (n == ZZI_FAULT_EVERY) { /* every call until cleared: retries fail too */
        void (*fn)(const char *) = atomic_load(&fault_hook);
        if (fn != NULL)
            fn(fault_names[op]);
        errno = atomic_load(&fault_errno[op]);
        return 1;
    }
    while (n > 0) {
        if (atomic_compare_exchange_weak(&fault_countdown[op], &n, n - 1)) {
            if (n == 1) {
                void (*fn)(const char *) = atomic_load(&fault_hook);
                if (fn != NULL)
                    fn(fault_names[op]);
                errno = atomic_load(&fault_errno[op]);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}
#define FAULT(op) (injected(op))
#else
#define FAULT(op) 0
#endif

size_t zzi_page_size_cache;

size_t zzi_os_page_size(void)
{
    if (zzi_page_size_cache == 0) {
        long v = sysconf(_SC_PAGESIZE);
        ZZ_CHECK(v > 0 && (v & (v - 1)) == 0, "cannot read the page size");
        zzi_page_size_cache = (size_t)v;
    }
    return zzi_page_size_cache;
}

/* The name /proc/PID/maps shows for every anonymous mapping the library
 * makes ("[anon:zeroize]"), so an operator can see how much secret memory a
 * process holds.  One name for all of them: mappings with the same name and
 * flags still merge, so naming adds no mapping (vm.max_map_count). */
static const char anon_name[] = "zeroize";
static _Atomic int anon_name_unsupported;

/* Names [p, p+len).  Best effort and silent: a kernel without
 * CONFIG_ANON_VMA_NAME (or older than 5.17) says EINVAL, and we stop asking;
 * any other failure leaves that one mapping unnamed. */
static void name_anon(void *p, size_t len)
{
    if (atomic_load_explicit(&anon_name_unsupported, memory_order_relaxed))
        return;
    int saved = errno;
    if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, (unsigned long)len,
              (unsigned long)anon_name) != 0 &&
        (errno == EINVAL || errno == ENOSYS))
        atomic_store_explicit(&anon_name_unsupported, 1, memory_order_relaxed);
    errno = saved;
}

void *zzi_os_map(size_t len)
{
    if (FAULT(FI_MAP))
        return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        if (errno == EINVAL)
            errno = ENOMEM; /* a length no address space can hold (valgrind says EINVAL) */
        return NULL;
    }
    name_anon(p, len);
    return p;
}

void zzi_os_unmap(void *p, size_t len)
{
    int saved = errno;
    /* munmap fails only on bad arguments, or ENOMEM when splitting a mapping
     * would exceed vm.max_map_count; we always unmap whole mappings. */
    ZZ_CHECK(munmap(p, len) == 0, "munmap failed");
    errno = saved;
}

static int prot_of(int zz_mode)
{
    switch (zz_mode) {
    case ZZ_NOACCESS:
        return PROT_NONE;
    case ZZ_READONLY:
        return PROT_READ;
    case ZZ_READWRITE:
        return PROT_READ | PROT_WRITE;
    default:
        zzi_fatal("internal: unknown protection mode");
    }
}

int zzi_os_protect(void *p, size_t len, int zz_mode)
{
    if (FAULT(FI_PROTECT))
        return -1;
    if (mprotect(p, len, prot_of(zz_mode)) != 0) {
        ZZ_CHECK(errno != EINVAL, "mprotect: invalid arguments");
        return -1;
    }
    return 0;
}

static int advise(void *p, size_t len, int advice)
{
    return madvise(p, len, advice);
}

int zzi_os_guard_install(void *p, size_t len)
{
    if (FAULT(FI_GUARD))
        return -1;
    return advise(p, len, MADV_GUARD_INSTALL);
}

int zzi_os_dontdump(void *p, size_t len)
{
    if (FAULT(FI_DONTDUMP))
        return -1;
    return advise(p, len, MADV_DONTDUMP);
}

int zzi_os_dodump(void *p, size_t len)
{
    return advise(p, len, MADV_DODUMP);
}

int zzi_os_wipeonfork(void *p, size_t len)
{
    if (FAULT(FI_WIPEONFORK))
        return -1;
    return advise(p, len, MADV_WIPEONFORK);
}

/* The raw system call: sanitizer runtimes replace libc's mlock with a no-op
 * that reports success, which would make every lock a silent lie there. */
static int raw_mlock(void *p, size_t len)
{
    return (int)syscall(SYS_mlock, p, len);
}

int zzi_os_lock_onfault(void *p, size_t len)
{
    if (FAULT(FI_LOCK))
        return -1;
    /* Before Linux 4.4, or under valgrind 3.19, there is no mlock2: plain
     * mlock then (it populates the pages, and cannot cover guard markers, so
     * the guard-install probe fails and pages.c takes the mprotect path). */
    static _Atomic int no_mlock2;
    if (!atomic_load_explicit(&no_mlock2, memory_order_relaxed)) {
        if (syscall(SYS_mlock2, p, len, MLOCK_ONFAULT) == 0)
            return 0;
        if (errno != ENOSYS)
            return -1;
        atomic_store(&no_mlock2, 1);
    }
    return raw_mlock(p, len);
}

int zzi_os_lock(void *p, size_t len)
{
    if (FAULT(FI_LOCK))
        return -1;
    return raw_mlock(p, len);
}

int zzi_os_unlock(void *p, size_t len)
{
    return (int)syscall(SYS_munlock, p, len);
}

int zzi_os_random(void *buf, size_t len)
{
    if (FAULT(FI_RANDOM))
        return -1;
    unsigned char *b = buf;
    while (len > 0) {
        ssize_t r = getrandom(b, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += r;
        len -= (size_t)r;
    }
    return 0;
}

void *zzi_os_map_secretmem(size_t len)
{
    if (FAULT(FI_MAP))
        return NULL;
#ifdef SYS_memfd_secret
    int fd = (int)syscall(SYS_memfd_secret, O_CLOEXEC);
    if (fd < 0)
        return NULL;
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)len) == 0)
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the memory: no descriptor stays open */
    errno = e;
    return p == MAP_FAILED ? NULL : p;
#else
    (void)len;
    errno = ENOSYS;
    return NULL;
#endif
}

int zzi_os_dontfork(void *p, size_t len)
{
    return advise(p, len, MADV_DONTFORK);
}

int zzi_os_remap_zero(void *p, size_t len)
{
    void *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (q == MAP_FAILED)
        return -1;
    name_anon(q, len); /* the fresh mapping has no name until we give it one */
    return 0;
}

const char *zzi_os_getenv(const char *name)
{
    return secure_getenv(name);
}

int zzi_os_sigaction(int sig, const void *act, void *old)
{
    return sigaction(sig, (const struct sigaction *)act, (struct sigaction *)old);
}

int zzi_os_sigmask(int how, const void *set, void *old)
{
    int rc = pthread_sigmask(how, (const sigset_t *)set, (sigset_t *)old);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

int zzi_os_raise_default(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    if (sigaction(sig, &dfl, NULL) != 0)
        return -1;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, sig);
    /* Unblocked, the raised signal is delivered before raise() returns:
     * a fatal one ends the process here, with a core dump if it dumps. */
    pthread_sigmask(SIG_UNBLOCK, &set, &old);
    raise(sig);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

int zzi_os_set_core_limit_zero(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) != 0)
        return -1;
    rl.rlim_cur = 0;
    return setrlimit(RLIMIT_CORE, &rl);
}

int zzi_os_set_nondumpable(void)
{
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* The locked-memory limit that applies to this process: SIZE_MAX when there
 * is none (RLIM_INFINITY, or CAP_IPC_LOCK in the effective set). */
size_t zzi_os_memlock_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return SIZE_MAX;
    struct { uint32_t version; int pid; } hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct { uint32_t effective, permitted, inheritable; } data[2];
    const unsigned cap_ipc_lock = 14;
    if (syscall(SYS_capget, &hdr, data) == 0 && (data[0].effective >> cap_ipc_lock) & 1)
        return SIZE_MAX;
    return rl.rlim_cur > SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
}

/* vm.max_map_count, or 65530 (the kernel's default) if it cannot be read. */
size_t zzi_os_max_map_count(void)
{
    char buf[32];
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 65530;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 65530;
    buf[n] = 0;
    size_t v = (size_t)strtoull(buf, NULL, 10);
    return v ? v : 65530;
}

/* Parses "start-end perms ..." (a mapping's first line in smaps). */
static int parse_vma_header(const char *line, struct zzi_vma *v)
{
    char *rest;
    unsigned long long a = strtoull(line, &rest, 16);
    if (*rest != '-')
        return -1;
    unsigned long long b = strtoull(rest + 1, &rest, 16);
    if (*rest != ' ')
        return -1;
    v->start = (uintptr_t)a;
    v->end = (uintptr_t)b;
    v->flags = 0;
    return 0;
}

/* The two-letter flags we care about in "VmFlags: rd wr mr ... lo dd". */
static unsigned parse_vm_flags(const char *s)
{
    unsigned flags = 0;
    for (; *s != '\0'; s++) {
        if (s[0] == ' ' && s[1] != '\0' && s[2] != '\0' && (s[3] == ' ' || s[3] == '\0')) {
            if (s[1] == 'l' && s[2] == 'o')
                flags |= ZZI_VMA_LOCKED;
            else if (s[1] == 'd' && s[2] == 'd')
                flags |= ZZI_VMA_DONTDUMP;
        }
    }
    return flags;
}

/* One line of smaps: a mapping's header starts with a hex digit, every
 * other line with a capitalised key ("Size:", "VmFlags:"). */
struct vma_walk {
    uintptr_t start, end;
    struct zzi_vma cur;
    int in_range;
};

/* 1 when the walk is over (past end), else 0. */
static int vma_line(struct vma_walk *w, const char *line)
{
    if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
        struct zzi_vma v;
        if (parse_vma_header(line, &v) != 0)
            return 0;
        if (v.start >= w->end)
            return 1; /* in address order: nothing further intersects */
        w->in_range = v.end > w->start;
        w->cur = v;
    } else if (w->in_range && strncmp(line, "VmFlags:", 8) == 0) {
        w->cur.flags = parse_vm_flags(line + 8);
        w->in_range = 2; /* complete: hand it to the caller */
    }
    return 0;
}

int zzi_os_each_vma(uintptr_t start, uintptr_t end,
                    int (*fn)(const struct zzi_vma *v, void *ctx), void *ctx)
{
    int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct vma_walk w = {.start = start, .end = end};
    char buf[4096];
    size_t have = 0;
    int rc = 0, skipping = 0; /* skipping: the rest of an over-long line */
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -1 : 0;
            break;
        }
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        int done = 0;
        while (!done && (nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
            *nl = '\0';
            if (!skipping && vma_line(&w, line))
                done = 1;
            skipping = 0;
            if (!done && w.in_range == 2) {
                w.in_range = 0;
                if ((rc = fn(&w.cur, ctx)) != 0)
                    done = 1;
            }
            line = nl + 1;
        }
        if (done)
            break;
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf - 1) { /* a line longer than the buffer (a long path): */
            if (!skipping && vma_line(&w, buf)) /* its start holds what we parse */
                break;
            have = 0;
            skipping = 1;
        }
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

size_t zzi_os_physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    return pages > 0 ? (size_t)pages * zzi_os_page_size() : SIZE_MAX;
}

void zzi_os_yield(void)
{
    sched_yield();
}

/* Milliseconds on a monotonic clock; the coarse clock (a vDSO read, no
 * system call) is precise enough for the cache's decay. */
uint64_t zzi_os_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0 &&
        clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
