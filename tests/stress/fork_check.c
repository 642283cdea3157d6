/*
 * fork_check.c - fork() from a random live state (other workers running, a
 * purge perhaps in progress), and what must hold in the child:
 *   - every inherited block reads zero, and can be freed;
 *   - zz_purge returns (directly and from both purge signals);
 *   - every block any path hands out meets the policy and the backend (flags
 *     and /proc/self/smaps), from new slabs, inherited slabs, freed slots and
 *     arena caches; what the child writes there, a grandchild reads as zero;
 *     the guard pages of a new block fault;
 *   - arenas (the worker's own and the shared ones) can be destroyed, and
 *     after a quiescent fork the stats fall to zero;
 * or that misuse is still caught (one fatal line on stderr, then SIGABRT).
 * Each child runs under a watchdog (alarm) and the parent waits with a
 * timeout: a child that hangs is a finding.
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

#define ZS_CHILD_ALARM 25       /* seconds before a child's watchdog kills it */
#define ZS_CHILD_TIMEOUT 60.0   /* seconds the parent waits */
#define ZS_PURGE_ALARM 8        /* seconds a zz_purge in a child may take (milliseconds do) */

struct child_run {
    int exited, code, signaled, sig, timed_out;
    char err[4096];
    size_t err_len;
    struct zs_child_verdict v;
};

typedef void (*child_fn)(struct zs_thread *t, void *arg);

static void stage(const char *s)
{
    if (zs_child != NULL)
        snprintf(zs_child->stage, sizeof zs_child->stage, "%s", s);
}

/* The child's watchdog: where it hung, then death by SIGALRM. */
static void child_watchdog(int sig)
{
    static const char head[] = "zz-stress: a forked child hung; its stack:\n";
    if (write(STDERR_FILENO, head, sizeof head - 1) < 0) {
        /* nothing more to do */
    }
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

#if defined(__SANITIZE_ADDRESS__)
#define ZS_FORK_GATE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZS_FORK_GATE 1
#endif
#endif

#ifdef ZS_FORK_GATE
static pthread_rwlock_t gate;
static _Thread_local int holding_gate;

static void gate_init(void)
{
    pthread_rwlockattr_t attr;
    ZS_CHECK(pthread_rwlockattr_init(&attr) == 0, "pthread_rwlockattr_init");
    /* a fork must not wait for ever behind a stream of steps */
    ZS_CHECK(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) == 0,
             "pthread_rwlockattr_setkind_np");
    ZS_CHECK(pthread_rwlock_init(&gate, &attr) == 0, "pthread_rwlock_init");
    pthread_rwlockattr_destroy(&attr);
}

void zs_gate_step_begin(void)
{
    ZS_CHECK(pthread_rwlock_rdlock(&gate) == 0, "pthread_rwlock_rdlock");
    holding_gate = 1;
}

void zs_gate_step_end(void)
{
    holding_gate = 0;
    ZS_CHECK(pthread_rwlock_unlock(&gate) == 0, "pthread_rwlock_unlock");
}

/* A child is single-threaded: it forks its grandchildren without the gate. */
static void gate_fork_begin(void)
{
    if (zs_child != NULL)
        return;
    if (holding_gate)
        ZS_CHECK(pthread_rwlock_unlock(&gate) == 0, "pthread_rwlock_unlock");
    ZS_CHECK(pthread_rwlock_wrlock(&gate) == 0, "pthread_rwlock_wrlock");
}

static void gate_fork_end(void)
{
    if (zs_child != NULL)
        return;
    ZS_CHECK(pthread_rwlock_unlock(&gate) == 0, "pthread_rwlock_unlock");
    if (holding_gate)
        ZS_CHECK(pthread_rwlock_rdlock(&gate) == 0, "pthread_rwlock_rdlock");
}
#else
static void gate_init(void)
{
}
void zs_gate_step_begin(void)
{
}
void zs_gate_step_end(void)
{
}
static void gate_fork_begin(void)
{
}
static void gate_fork_end(void)
{
}
#endif

void zs_fork_check_init(void)
{
    gate_init();
    /* backtrace() loads its unwinder (and mallocs) on first use: not in a
     * hung child */
    void *frames[4];
    (void)backtrace(frames, 4);
}

static void child_prepare(void)
{
    static const int fatal[] = { SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGALRM };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        if (sigaction(fatal[i], &sa, NULL) != 0)
            zs_fail("sigaction(SIG_DFL) in a child: %s", strerror(errno));
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        zs_fail("sigprocmask in a child: %s", strerror(errno));
    struct rlimit no_core = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &no_core) != 0)
        zs_fail("setrlimit(RLIMIT_CORE) in a child: %s", strerror(errno));
    sa.sa_handler = child_watchdog;
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        zs_fail("sigaction(SIGALRM) in a child: %s", strerror(errno));
    alarm(ZS_CHILD_ALARM);
}

static void nap(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void close_fd(int fd)
{
    ZS_CHECK(close(fd) == 0 || errno == EINTR, "close(%d): %s", fd, strerror(errno));
}

_Thread_local struct zs_child_verdict *zs_forking_verdict;

/* 1 in a child of _Fork() (and in its children).  Another thread of the
 * parent may have held one of glibc's locks at the _Fork (a malloc arena's,
 * the atfork list's), and the child inherits it held: fork() there, which
 * takes them all, waited for ever (__lll_lock_wait_private under
 * __malloc_fork_lock_parent; seed 33, --mode nocap, ZEROIZE_GUARDS=mprotect,
 * stage "what a forked child writes, its own child reads as zero").  Such a
 * child forks its own children with _Fork() too. */
static int raw_child;

/* Runs fn in a forked child (_Fork() when raw: no atfork handler runs, the
 * library must notice the fork by itself); collects its verdict, how it
 * ended, and (when capture) what it wrote on stderr. */
static void run_child_how(struct zs_thread *t, child_fn fn, void *arg, int capture, int raw,
                          struct child_run *r)
{
    memset(r, 0, sizeof *r);
    struct zs_child_verdict *shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE,
                                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ZS_CHECK(shm != MAP_FAILED, "mmap(MAP_SHARED): %s", strerror(errno));
    memset(shm, 0, sizeof *shm);
    int fds[2] = { -1, -1 };
    if (capture)
        ZS_CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    gate_fork_begin();
    /* not for misuse children (capture): their checks rely on the child's
     * allocator state as inherited (a write after free needs the freed slot
     * handed out next), which our atfork child handler would change */
    zs_forking_verdict = capture ? NULL : shm;
    raw |= raw_child;
    pid_t pid = raw ? _Fork() : fork();
    zs_forking_verdict = NULL;
    ZS_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        zs_child = shm;
        raw_child = raw;
        if (capture) {
            close_fd(fds[0]);
            if (dup2(fds[1], STDERR_FILENO) < 0)
                _exit(97);
        }
        child_prepare();
        fn(t, arg);
        const char *async = zs_async_finding();
        if (async != NULL)
            zs_fail("%s", async);
        _exit(0);
    }
    gate_fork_end();
    if (capture) {
        close_fd(fds[1]);
        ZS_CHECK(fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0, "fcntl: %s", strerror(errno));
    }
    double deadline = zs_now() + ZS_CHILD_TIMEOUT, wait = 0.0005;
    int status = 0;
    for (;;) {
        if (capture) {
            ssize_t got;
            while (r->err_len < sizeof r->err - 1 &&
                   (got = read(fds[0], r->err + r->err_len, sizeof r->err - 1 - r->err_len)) > 0)
                r->err_len += (size_t)got;
        }
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        ZS_CHECK(w == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
        if (zs_now() > deadline) {
            r->timed_out = 1;
            ZS_CHECK(kill(pid, SIGKILL) == 0, "kill: %s", strerror(errno));
            while (waitpid(pid, &status, 0) < 0)
                ZS_CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
            break;
        }
        nap(wait);
        if (wait < 0.01)
            wait *= 2;
    }
    if (capture) {
        ZS_CHECK(fcntl(fds[0], F_SETFL, 0) == 0, "fcntl: %s", strerror(errno));
        ssize_t got;
        while (r->err_len < sizeof r->err - 1 &&
               (got = read(fds[0], r->err + r->err_len, sizeof r->err - 1 - r->err_len)) != 0) {
            if (got < 0) {
                ZS_CHECK(errno == EINTR, "read: %s", strerror(errno));
                continue;
            }
            r->err_len += (size_t)got;
        }
        close_fd(fds[0]);
    }
    r->err[r->err_len] = '\0';
    r->exited = WIFEXITED(status);
    r->code = r->exited ? WEXITSTATUS(status) : -1;
    r->signaled = WIFSIGNALED(status);
    r->sig = r->signaled ? WTERMSIG(status) : 0;
    r->v = *shm;
    r->v.stage[sizeof r->v.stage - 1] = '\0';
    r->v.message[sizeof r->v.message - 1] = '\0';
    ZS_CHECK(munmap(shm, sizeof *shm) == 0, "munmap: %s", strerror(errno));
    (void)t;
}

static void run_child(struct zs_thread *t, child_fn fn, void *arg, int capture, struct child_run *r)
{
    run_child_how(t, fn, arg, capture, 0, r);
}

/* A child that ran the invariant checks: exit 0, or a finding. */
static void judge_checker(const struct child_run *r, const char *what)
{
    if (r->timed_out)
        zs_fail("%s: the child hung at stage \"%s\" for %.0f s and was killed", what, r->v.stage,
                ZS_CHILD_TIMEOUT);
    if (r->signaled && r->sig == SIGALRM)
        zs_fail("%s: the child hung at stage \"%s\" (its watchdog fired: %d s for a purge, %d s "
                "for the rest)", what, r->v.stage, ZS_PURGE_ALARM, ZS_CHILD_ALARM);
    if (r->exited && r->code == 3 && r->v.failed)
        zs_fail("%s: at stage \"%s\": %s", what, r->v.stage, r->v.message);
    if (!r->exited || r->code != 0)
        zs_fail("%s: the child %s %d at stage \"%s\"%s%s", what,
                r->signaled ? "died of signal" : "exited with", r->signaled ? r->sig : r->code,
                r->v.stage, r->err_len ? "; stderr: " : "", r->err);
}

/* ---- the invariant child ---- */

struct inv_arg {
    int quiescent;
    uint64_t rng;
};

#define ZS_CHILD_NEW 40

struct child_state {
    struct zs_thread *t;
    int quiescent;
    uint64_t rng;
    int policy;
    struct zs_block nb[ZS_CHILD_NEW];
    size_t nnb;
};

/* The models this child inherited in a consistent state: the forking
 * worker's own, or every worker's after a quiescent fork. */
static size_t models(const struct child_state *c, struct zs_thread **out)
{
    if (!c->quiescent) {
        out[0] = c->t;
        return c->t != NULL;
    }
    size_t k = 0;
    for (int w = 0; w < zs_cfg.threads; w++)
        out[k++] = zs_threads[w];
    return k;
}

/* A call on block p before its bytes are read: in a child of _Fork() the
 * pages of secret memory (MADV_DONTFORK) are absent until the library's
 * first call maps zeros there, and a read before then faults (zeroize.h,
 * ZZ_BACKEND_SECRETMEM).  An arena block of a secretmem arena read first,
 * with no call before it, died of SIGSEGV at stage "inherited blocks read
 * zero" (seeds 57 and 58, --mode nocap --with=raw-fork). */
static void call_before_reading(const struct zs_block *b)
{
    (void)zz_info(b->p);
}

static void check_inherited(struct zs_block *b, int smaps)
{
    if (b->kind != ZS_K_ARENA) {
        size_t sz = zz_size(b->p);
        ZS_CHECK(sz == b->n, "zz_size(%p) of an inherited block is %zu, not %zu", (void *)b->p, sz,
                 b->n);
    } else {
        call_before_reading(b);
    }
    if (b->n == 0)
        return;
    if (b->mode == ZZ_NOACCESS) {
        int rc = zz_protect(b->p, ZZ_READONLY);
        ZS_CHECK(rc == 0, "zz_protect(%p, READONLY) of an inherited NOACCESS block: %d errno %d",
                 (void *)b->p, rc, errno);
        b->mode = ZZ_READONLY;
    }
    unsigned char *got = zs_scratch(b->n);
    zs_block_read(got, b->p, b->n);
    for (size_t i = 0; i < b->n; i++)
        ZS_CHECK(got[i] == 0, "block %p (%zu bytes, kind %d, backend %d%s) inherited from the "
                 "parent reads 0x%02x at byte %zu: a forked child must read zeros",
                 (void *)b->p, b->n, b->kind, b->backend, b->arena ? ", arena" : "", got[i], i);
    if (smaps)
        zs_check_smaps(b, zz_info(b->p), "inherited block in a forked child");
}

/* In a child: no malloc or free of our own (the model's copies are left
 * to _exit), so that an allocator lock held at fork by a thread that does
 * not exist here cannot hang the child. */
static void free_block(struct zs_block *b)
{
    if (b->kind == ZS_K_ARENA)
        zz_arena_free(b->arena->a, b->p);
    else
        zz_free(b->p);
}

static void forget_block(struct zs_thread *w, size_t i)
{
    w->blocks[i] = w->blocks[--w->nblocks];
}

/* Checks a block handed out in the child and keeps it in c->nb. */
static void child_new(struct child_state *c, void *p, size_t n, int err, int backend,
                      struct zs_arena *ar, int kind, const char *what)
{
    if (p == NULL) {
        zs_check_clean_failure(what, err);
        /* a fixed arena may be full, and a fixed secretmem arena refuses in a
         * child (zeroize.h: its chunks are retired there) */
        if (!zs_cfg.nocap && !(err == ENOMEM && ar != NULL && ar->capacity > 0))
            zs_fail("%s failed in a forked child (errno %d) with CAP_IPC_LOCK: %s", what, err,
                    zz_last_error());
        return;
    }
    ZS_CHECK(c->nnb < ZS_CHILD_NEW, "internal: too many new blocks in the child");
    struct zs_block *b = &c->nb[c->nnb++];
    *b = (struct zs_block){ .p = p, .n = n, .align = 16, .kind = kind, .mode = ZZ_READWRITE,
                            .backend = backend == ZZ_BACKEND_AUTO ? -1 : backend,
                            .policy = c->policy, .arena = ar };
    b->expect = NULL;
    zs_model_check_new(NULL, b, what);
}

/* The call first, then errno (argument evaluation order is unspecified). */
#define CHILD_NEW(c, call, n, backend, ar, kind, what)                                             \
    do {                                                                                           \
        void *p_ = (call);                                                                         \
        int e_ = errno;                                                                            \
        child_new((c), p_, (n), e_, (backend), (ar), (kind), (what));                              \
    } while (0)

static size_t small_size(uint64_t *rng)
{
    return zs_below(rng, 4) == 0 ? 1 + zs_below(rng, 5000) : 1 + zs_below(rng, 200);
}

static void grandchild_reads_zero(struct zs_thread *t, void *arg)
{
    (void)t;
    struct child_state *c = arg;
    for (size_t i = 0; i < c->nnb; i++) {
        struct zs_block *b = &c->nb[i];
        call_before_reading(b); /* a grandchild of _Fork() is one too */
        unsigned char *got = zs_scratch(b->n);
        zs_block_read(got, b->p, b->n);
        for (size_t k = 0; k < b->n; k++)
            ZS_CHECK(got[k] == 0, "a grandchild reads 0x%02x at byte %zu of block %p (%zu bytes, "
                     "%s%s) that its parent, a forked child, wrote: zz_info there was 0x%x",
                     got[k], k, (void *)b->p, b->n, b->arena ? "arena block" : "zz_alloc block",
                     (b->info & ZZ_INFO_SECRETMEM) ? ", secretmem" : "", b->info);
    }
    zz_purge();
}


static void child_invariants(struct zs_thread *t, void *argp)
{
    struct inv_arg *a = argp;
    static struct child_state state; /* one per child process */
    struct child_state *c = &state;
    c->t = t;
    c->quiescent = a->quiescent;
    c->rng = a->rng;
    struct zs_thread *ms[ZS_MAX_THREADS];
    size_t nm = models(c, ms);
    size_t nhand = 0;
    struct zs_block *hand = c->quiescent ? zs_handoff_blocks(&nhand) : NULL;

    stage("inherited blocks read zero");
    for (size_t m = 0; m < nm; m++) {
        for (size_t i = 0; i < ms[m]->nblocks; i++)
            check_inherited(&ms[m]->blocks[i], ZS_ON(ZS_F_SMAPS) && i % 4 == 0);
        zs_check_caller_memory(ms[m], "caller-owned memory in a forked child");
    }
    for (size_t i = 0; i < nhand; i++)
        check_inherited(&hand[i], 0);

    stage("zz_purge returns (issue 11, defect 3)");
    alarm(ZS_PURGE_ALARM);
    zz_purge();
    if (ZS_ON(ZS_F_SIGNALS)) {
        stage("zz_purge from SIGUSR2 returns");
        ZS_CHECK(raise(SIGUSR2) == 0, "raise: %s", strerror(errno));
        stage("zz_purge_on_signals(SIGUSR1) returns");
        ZS_CHECK(raise(SIGUSR1) == 0, "raise: %s", strerror(errno));
    }
    /* A child of _Fork() from a live state stops here.  What comes next
     * makes and frees slabs and arenas, whose metadata the library takes
     * from malloc (zeroize.h: "as safe as malloc is there"), and a malloc
     * lock that another thread of the parent held at the _Fork is held for
     * ever in the child: it hung in __libc_calloc under slab_struct_new
     * (seed 40, --mode nocap, ZEROIZE_GUARDS=mprotect, stage "new blocks meet
     * the policy and backend").  At a quiescent point no other thread is in
     * malloc, and its _Fork() children run every stage. */
    if (raw_child && !c->quiescent)
        return;

    alarm(ZS_CHILD_ALARM);
    stage("new blocks meet the policy and backend");
    c->policy = zz_get_lock_policy();
    int backend = zz_get_backend();
    char what[128];
    for (int k = 0; k < 3; k++) {
        size_t n = small_size(&c->rng);
        snprintf(what, sizeof what, "zz_alloc_backend(%zu, ANON) in a forked child", n);
        CHILD_NEW(c, zz_alloc_backend(n, ZZ_BACKEND_ANON), n, ZZ_BACKEND_ANON, NULL,
                  ZS_K_BACKEND, what);
        if (ZS_ON(ZS_F_SECRETMEM)) {
            snprintf(what, sizeof what, "zz_alloc_backend(%zu, SECRETMEM) in a forked child", n);
            CHILD_NEW(c, zz_alloc_backend(n, ZZ_BACKEND_SECRETMEM), n, ZZ_BACKEND_SECRETMEM,
                      NULL, ZS_K_BACKEND, what);
        }
    }
    /* the same sizes as inherited blocks: inherited slabs, refreshed */
    for (size_t m = 0; m < nm; m++) {
        size_t done = 0;
        for (size_t i = 0; i < ms[m]->nblocks && done < 4; i++) {
            struct zs_block *b = &ms[m]->blocks[i];
            if (b->kind == ZS_K_ARENA || b->n == 0 || c->nnb >= ZS_CHILD_NEW - 12)
                continue;
            int be = (b->info & ZZ_INFO_SECRETMEM) ? ZZ_BACKEND_SECRETMEM : ZZ_BACKEND_ANON;
            snprintf(what, sizeof what, "zz_alloc_backend(%zu, %d) (an inherited slab's size) in a "
                     "forked child", b->n, be);
            CHILD_NEW(c, zz_alloc_backend(b->n, be), b->n, be, NULL, ZS_K_BACKEND, what);
            done++;
        }
    }
    (void)backend;
    /* a freed inherited slot, handed out again */
    for (size_t m = 0; m < nm; m++) {
        struct zs_thread *w = ms[m];
        for (size_t i = 0; i < w->nblocks; i++) {
            struct zs_block *b = &w->blocks[i];
            if (b->kind == ZS_K_ARENA || b->n == 0)
                continue;
            int be = (b->info & ZZ_INFO_SECRETMEM) ? ZZ_BACKEND_SECRETMEM : ZZ_BACKEND_ANON;
            size_t n = b->n;
            zz_free(b->p);
            forget_block(w, i);
            snprintf(what, sizeof what, "zz_alloc_backend(%zu, %d) after freeing an inherited block "
                     "in a forked child", n, be);
            CHILD_NEW(c, zz_alloc_backend(n, be), n, be, NULL, ZS_K_BACKEND, what);
            break;
        }
    }
    /* arenas: a freed inherited cell (the thread's cache: issue 11,
     * defect 2), and a fresh one */
    struct zs_arena *ars[ZS_MAX_THREADS * ZS_MAX_ARENAS + ZS_SHARED_ARENAS];
    size_t nar = 0;
    for (size_t m = 0; m < nm; m++)
        for (size_t k = 0; k < ms[m]->narenas; k++)
            ars[nar++] = ms[m]->arenas[k];
    for (size_t k = 0; k < ZS_SHARED_ARENAS; k++)
        if (zs_shared[k] != NULL)
            ars[nar++] = zs_shared[k];
    for (size_t k = 0; k < nar && ZS_ON(ZS_F_ARENAS); k++) {
        struct zs_arena *ar = ars[k];
        for (size_t m = 0; m < nm; m++) {
            struct zs_thread *w = ms[m];
            int freed = 0;
            for (size_t i = 0; i < w->nblocks && freed < 2; i++) {
                struct zs_block *b = &w->blocks[i];
                if (b->arena != ar || c->nnb >= ZS_CHILD_NEW - 4)
                    continue;
                size_t n = b->n;
                zz_arena_free(ar->a, b->p);
                forget_block(w, i);
                i--;
                snprintf(what, sizeof what, "zz_arena_alloc(arena%u%s, %zu) after zz_arena_free of "
                         "an inherited block, in a forked child", ar->id,
                         ar->capacity ? " fixed" : "", n);
                CHILD_NEW(c, zz_arena_alloc(ar->a, n), n, ar->backend, ar, ZS_K_ARENA, what);
                freed++;
            }
        }
        if (c->nnb < ZS_CHILD_NEW) {
            size_t n = small_size(&c->rng);
            snprintf(what, sizeof what, "zz_arena_alloc(arena%u%s, %zu) in a forked child", ar->id,
                     ar->capacity ? " fixed" : "", n);
            CHILD_NEW(c, zz_arena_alloc(ar->a, n), n, ar->backend, ar, ZS_K_ARENA, what);
        }
    }

    stage("what a forked child writes, its own child reads as zero");
    for (size_t i = 0; i < c->nnb; i++) {
        struct zs_block *b = &c->nb[i];
        unsigned char *pat = zs_scratch(b->n);
        zs_pattern(&c->rng, pat, b->n);
        zs_block_fill(b->p, pat, b->n);
        if (ZS_ON(ZS_F_SMAPS) && b->n > 0 && (b->info & ZZ_INFO_LOCKED)) {
            struct zs_vma v;
            ZS_CHECK(zs_smaps_find(b->p, &v) == 0, "block %p in no VMA", (void *)b->p);
            ZS_CHECK(v.locked_kb > 0, "block %p (zz_info 0x%x, LOCKED), written in a forked child: "
                     "smaps says Locked: 0 kB (VmFlags %s)", (void *)b->p, b->info, v.vmflags);
        }
    }
    struct child_run r;
    run_child(NULL, grandchild_reads_zero, c, 0, &r);
    judge_checker(&r, "grandchild of a forked child");

    if (ZS_ON(ZS_F_GUARDS)) {
        stage("guard pages of new blocks fault");
        for (size_t i = 0; i < c->nnb; i++)
            if (c->nb[i].arena == NULL)
                zs_check_guards(&c->nb[i], "new block in a forked child");
    }

    stage("frees of inherited and new blocks");
    for (size_t i = 0; i < c->nnb; i++)
        free_block(&c->nb[i]);
    for (size_t m = 0; m < nm; m++) {
        struct zs_thread *w = ms[m];
        while (w->nblocks > 0) {
            free_block(&w->blocks[w->nblocks - 1]);
            w->nblocks--;
        }
        for (size_t k = 0; k < w->nlocks; k++) {
            int rc = zz_unlock(w->cm + w->locks[k].off, w->locks[k].len);
            ZS_CHECK(rc == 0, "zz_unlock of a range locked before fork returned %d errno %d", rc,
                     errno);
        }
    }
    for (size_t i = 0; i < nhand; i++)
        free_block(&hand[i]);

    stage("arenas destroyed");
    for (size_t k = 0; k < nar; k++)
        zz_arena_destroy(ars[k]->a);

    if (c->quiescent && ZS_ON(ZS_F_STATS)) {
        stage("stats after freeing everything");
        zz_stats s;
        zz_get_stats(&s);
        ZS_CHECK(s.live_blocks == 0 && s.live_bytes == 0,
                 "after freeing every block and destroying every arena in a forked child, "
                 "zz_get_stats says live_blocks %zu, live_bytes %zu", s.live_blocks, s.live_bytes);
    }
    stage("zz_purge at the end");
    zz_purge();
}

void zs_run_checked_child(struct zs_thread *t, zs_child_fn fn, void *arg, int raw, const char *what)
{
    struct child_run r;
    run_child_how(t, fn, arg, 0, raw, &r);
    judge_checker(&r, what);
}

static _Atomic unsigned long raw_forks;

/* TSan does not see _Fork() as a fork (it intercepts fork() only): the
 * child's first access to anything another thread touched before is
 * reported as a race.  No _Fork() children under TSan. */
#if defined(__SANITIZE_THREAD__)
#define ZS_RAW_FORK_OK 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZS_RAW_FORK_OK 0
#endif
#endif
#ifndef ZS_RAW_FORK_OK
#define ZS_RAW_FORK_OK 1
#endif

/* A thread in the library's slow paths (a mapping per large block, under the
 * global lock) while a worker calls _Fork(): the child inherits the lock
 * held by a thread that does not exist there, and no atfork handler ran.
 * Not under AddressSanitizer: its allocator is not fork-safe (the gate).
 * Each worker's has flags of its own: with one pair for all, a worker that
 * stopped its thread stopped another worker's before that one had started,
 * and the other worker waited for its start for ever (a worker made no
 * progress for 100 s in "_Fork: invariant child": seed 55, --mode nocap). */
struct slow_path {
    pthread_t tid;
    uint64_t rng;
    _Atomic int stop, started;
};

#ifndef ZS_FORK_GATE
static void *slow_path_main(void *arg)
{
    struct slow_path *sp = arg;
    while (!atomic_load(&sp->stop)) {
        void *p = zz_alloc(70000 + zs_below(&sp->rng, 70000));
        void *q = zz_alloc_backend(1 + zs_below(&sp->rng, 16000), ZZ_BACKEND_ANON);
        atomic_store(&sp->started, 1);
        zz_free(q);
        zz_free(p);
    }
    return NULL;
}
#endif

static int slow_path_start(struct slow_path *sp)
{
#ifdef ZS_FORK_GATE
    (void)sp;
    return 0;
#else
    atomic_store(&sp->stop, 0);
    atomic_store(&sp->started, 0);
    if (pthread_create(&sp->tid, NULL, slow_path_main, sp) != 0)
        return 0;
    while (!atomic_load(&sp->started))
        sched_yield();
    return 1;
#endif
}

static void slow_path_stop(struct slow_path *sp)
{
    atomic_store(&sp->stop, 1);
    ZS_CHECK(pthread_join(sp->tid, NULL) == 0, "pthread_join(slow path thread)");
}

unsigned long zs_raw_fork_children(void)
{
    return atomic_load(&raw_forks);
}

void zs_fork_check(struct zs_thread *t, int quiescent)
{
    struct inv_arg a = { .quiescent = quiescent, .rng = zs_cfg.seed ^ (uint64_t)zs_now() };
    int raw = 0;
    if (t != NULL) {
        a.rng = zs_rand(&t->rng);
        raw = ZS_RAW_FORK_OK && ZS_ON(ZS_F_RAW_FORK) && zs_chance(&t->rng, 400);
        zs_log(t, "%s: invariant child (%zu blocks, %zu arenas)", raw ? "_Fork" : "fork",
               t->nblocks, t->narenas);
        t->n.forks++;
    } else {
        raw = ZS_RAW_FORK_OK && ZS_ON(ZS_F_RAW_FORK) && (a.rng & 3) == 0;
    }
    struct slow_path slow = { .rng = a.rng ^ 0x5105 };
    int slow_on = 0;
    if (raw) {
        atomic_fetch_add(&raw_forks, 1);
        slow_on = !quiescent && slow_path_start(&slow);
    }
    zs_run_checked_child(t, child_invariants, &a, raw,
                         raw ? (quiescent ? "_Fork() at a quiescent point"
                                          : "_Fork() from a random live state (no atfork handler ran)")
                             : (quiescent ? "fork at a quiescent point" : "fork from a random live state"));
    if (slow_on)
        slow_path_stop(&slow);
    if (t != NULL)
        zs_log(t, "fork: child passed");
}

/* ---- misuse, from a random live state ---- */

struct misuse_arg {
    int kind;
    int purge_first;
    int fresh;                 /* misuse a block made in the child, not an inherited one */
    size_t i;                  /* inherited: the block in the worker's model */
    size_t n;                  /* fresh: its size */
    int backend;               /* fresh zz_alloc block: its backend */
    struct zs_arena *arena;    /* fresh arena block: its arena */
    struct zs_arena *other;    /* MU_WRONG_ARENA: the arena it is freed through */
};

enum { MU_DOUBLE_FREE, MU_CANARY_AFTER, MU_CANARY_BEFORE, MU_INTERIOR, MU_FOREIGN, MU_WRONG_ARENA,
       MU_WRITE_AFTER_FREE, MU_SIZE_AFTER_FREE, MU_COUNT };

static const char *const misuse_names[MU_COUNT] = {
    "double free", "overflow into the tail canary", "underflow into the head canary",
    "free of an interior pointer", "free of a pointer the library never returned", "arena block through another arena",
    "write after free", "zz_size and zz_info after free",
};

/* An even byte, never a canary byte (those have their low bit set), never
 * zero (what a purge or a fork leaves), and not the byte that is there. */
static unsigned char corrupt_byte(unsigned char old)
{
    return old == 0x02 ? 0x04 : 0x02;
}

#define ZS_MISUSE_SKIPPED 5 /* the child could not make its fresh block: no verdict */

static void misuse_child(struct zs_thread *t, void *argp)
{
    struct misuse_arg *a = argp;
    unsigned char *p;
    size_t n;
    zz_arena *arena = NULL;
    int backend;
    if (a->fresh) {
        n = a->n;
        backend = a->backend;
        if (a->arena != NULL) {
            arena = a->arena->a;
            p = zz_arena_alloc(arena, n);
        } else {
            p = zz_alloc_backend(n, backend);
        }
        if (p == NULL)
            _exit(ZS_MISUSE_SKIPPED);
    } else {
        struct zs_block *b = &t->blocks[a->i];
        p = b->p;
        n = b->n;
        arena = b->kind == ZS_K_ARENA ? b->arena->a : NULL;
        backend = (b->info & ZZ_INFO_SECRETMEM) ? ZZ_BACKEND_SECRETMEM : ZZ_BACKEND_ANON;
    }
    stage(misuse_names[a->kind]);
    if (a->purge_first)
        zz_purge();
    switch (a->kind) {
    case MU_DOUBLE_FREE:
        if (arena != NULL) {
            zz_arena_free(arena, p);
            zz_arena_free(arena, p);
        } else {
            zz_free(p);
            zz_free(p);
        }
        break;
    case MU_CANARY_AFTER:
    case MU_CANARY_BEFORE: {
        volatile unsigned char *at = a->kind == MU_CANARY_AFTER ? p + n : p - 1;
        *at = corrupt_byte(*at);
        if (arena != NULL)
            zz_arena_free(arena, p);
        else
            zz_free(p);
        break;
    }
    case MU_INTERIOR:
        zz_free(p + 1);
        break;
    case MU_FOREIGN: {
        static unsigned char not_ours[64];
        zz_free(not_ours);
        break;
    }
    case MU_WRONG_ARENA:
        zz_arena_free(a->other->a, p);
        break;
    case MU_WRITE_AFTER_FREE: {
        unsigned info_now = a->fresh ? 0 : zz_info(p);
        zz_free(p);
        *(volatile unsigned char *)p = 0x77;
        void *q = zz_alloc_backend(n, backend);
        /* Under a lock limit the freed slot's slab may be unfit to hand out
         * (not locked again after fork): no verdict then. */
        if (q != p && zs_cfg.nocap)
            _exit(ZS_MISUSE_SKIPPED);
        zs_fail("a write after free into %p (%zu bytes, zz_alloc_backend(.., %d); zz_info 0x%x in "
                "the child before the free) was not caught: the next zz_alloc_backend(%zu, %d) "
                "returned %p%s", (void *)p, n, backend, info_now, n, backend, q,
                q == p ? "" : " (not the freed slot: the header promises LIFO reuse)");
    }
    case MU_SIZE_AFTER_FREE:
        zz_free(p);
        if (a->purge_first)
            (void)zz_info(p);
        else
            (void)zz_size(p);
        break;
    default:
        break;
    }
    zs_fail("misuse \"%s\" on %s block %p (%zu bytes, %s) was not caught", misuse_names[a->kind],
            a->fresh ? "a new" : "an inherited", (void *)p, n, arena ? "arena" : "zz_alloc");
}

static const char *misuse_message(int kind)
{
    switch (kind) {
    case MU_DOUBLE_FREE: return "zeroize: double free";
    case MU_CANARY_AFTER: return "zeroize: canary corrupted (after block)";
    case MU_CANARY_BEFORE: return "zeroize: canary corrupted (before block)";
    case MU_WRITE_AFTER_FREE: return "zeroize: write after free (a freed block was modified)";
    case MU_SIZE_AFTER_FREE: return "zeroize: use after free (the block was already freed)";
    default: return "zeroize: invalid pointer";
    }
}

/* Can this misuse be done on a block of n bytes at p (without faulting
 * first)? */
static int misuse_fits(int kind, const unsigned char *p, size_t n, int arena, int mode,
                       int other_arena, size_t align)
{
    switch (kind) {
    case MU_DOUBLE_FREE: return 1;
    case MU_CANARY_AFTER:
        /* a byte past the end on the block's own page, not the next cell */
        return mode == ZZ_READWRITE && n > 0 && n % 16 != 0;
    case MU_CANARY_BEFORE:
        return mode == ZZ_READWRITE && n > 0 && (arena || (uintptr_t)p % zs_page >= 16);
    case MU_INTERIOR: return !arena && n >= 2;
    case MU_SIZE_AFTER_FREE: return !arena && n <= 65536; /* a slot that stays mapped */
    case MU_FOREIGN: return !arena;
    case MU_WRONG_ARENA: return arena && other_arena;
    case MU_WRITE_AFTER_FREE:
        /* the next zz_alloc of n reuses the slot (LIFO) only for a block of
         * the plain size class, not an aligned one */
        return !arena && mode == ZZ_READWRITE && n > 0 && n <= 65536 && align == 16;
    default: return 0;
    }
}

static struct zs_arena *random_arena(struct zs_thread *t, struct zs_arena *not_this)
{
    struct zs_arena *all[ZS_MAX_ARENAS + ZS_SHARED_ARENAS];
    size_t k = 0;
    for (size_t i = 0; i < t->narenas; i++)
        if (t->arenas[i] != not_this)
            all[k++] = t->arenas[i];
    for (size_t i = 0; i < ZS_SHARED_ARENAS; i++)
        if (zs_shared[i] != NULL && zs_shared[i] != not_this && ZS_ON(ZS_F_SHARED))
            all[k++] = zs_shared[i];
    return k ? all[zs_below(&t->rng, k)] : NULL;
}

void zs_misuse_check(struct zs_thread *t)
{
    struct misuse_arg a = { .kind = (int)zs_below(&t->rng, MU_COUNT),
                            .purge_first = (int)zs_below(&t->rng, 2),
                            .fresh = !ZS_ON(ZS_F_MISUSE_INHERITED) || zs_below(&t->rng, 2) };
    const unsigned char *p = NULL;
    size_t n;
    int arena;
    if (a.fresh) {
        arena = ZS_ON(ZS_F_ARENAS) && (a.kind == MU_WRONG_ARENA || zs_below(&t->rng, 2));
        a.arena = arena ? random_arena(t, NULL) : NULL;
        if (arena && a.arena == NULL)
            return;
        a.n = n = 1 + zs_below(&t->rng, 4000);
        if (a.kind == MU_CANARY_AFTER && n % 16 == 0)
            a.n = n = n - 1;
        a.backend = ZS_ON(ZS_F_SECRETMEM) && zs_below(&t->rng, 3) == 0 ? ZZ_BACKEND_SECRETMEM
                                                                     : ZZ_BACKEND_ANON;
        a.other = arena ? random_arena(t, a.arena) : NULL;
        /* a new zz_alloc block of n <= 4000 bytes starts at least 16 bytes
         * into its page */
        if (!misuse_fits(a.kind, arena ? NULL : (const unsigned char *)(uintptr_t)16, n, arena,
                         ZZ_READWRITE, a.other != NULL, 16))
            return;
    } else {
        if (t->nblocks == 0)
            return;
        size_t start = zs_below(&t->rng, t->nblocks), found = SIZE_MAX;
        for (size_t k = 0; k < t->nblocks && found == SIZE_MAX; k++) {
            size_t i = (start + k) % t->nblocks;
            const struct zs_block *b = &t->blocks[i];
            int ar = b->kind == ZS_K_ARENA;
            struct zs_arena *other = ar ? random_arena(t, b->arena) : NULL;
            /* an inherited secretmem block lives on zero pages the child
             * mapped in its place: its slot is not one a new secretmem
             * block can reuse */
            if (a.kind == MU_WRITE_AFTER_FREE && (b->info & ZZ_INFO_SECRETMEM))
                continue;
            if (misuse_fits(a.kind, b->p, b->n, ar, b->mode, other != NULL, b->align)) {
                found = i;
                a.other = other;
            }
        }
        if (found == SIZE_MAX)
            return;
        a.i = found;
        p = t->blocks[found].p;
        n = t->blocks[found].n;
        arena = t->blocks[found].kind == ZS_K_ARENA;
    }
    const char *want = misuse_message(a.kind);
    zs_log(t, "misuse child: %s on %s %s block %p (%zu bytes)%s", misuse_names[a.kind],
           a.fresh ? "a new" : "an inherited", arena ? "arena" : "zz_alloc", (const void *)p, n,
           a.purge_first ? " after zz_purge" : "");
    t->n.misuse_children++;
    struct child_run r;
    run_child(t, misuse_child, &a, 1, &r);
    if (r.exited && r.code == ZS_MISUSE_SKIPPED)
        return;
    char line[128];
    snprintf(line, sizeof line, "%s\n", want);
    int ok = r.signaled && r.sig == SIGABRT && strcmp(r.err, line) == 0;
    /* A write into a slab that was unmapped faults instead (documented). */
    if (a.kind == MU_WRITE_AFTER_FREE && r.signaled && r.sig == SIGSEGV && r.err_len == 0)
        ok = 1;
    if (ok)
        return;
    if (r.timed_out || (r.signaled && r.sig == SIGALRM))
        zs_fail("misuse child (%s on %s block) hung", misuse_names[a.kind],
                a.fresh ? "a new" : "an inherited");
    zs_fail("misuse \"%s\"%s on %s %s block (%zu bytes%s) in a child forked from a random live "
            "state: expected SIGABRT and stderr \"%s\", got %s %d and stderr \"%s\"%s%s",
            misuse_names[a.kind], a.purge_first ? " after zz_purge" : "",
            a.fresh ? "a new" : "an inherited", arena ? "arena" : "zz_alloc", n,
            a.fresh && a.backend == ZZ_BACKEND_SECRETMEM && !arena ? ", secretmem" : "", want,
            r.signaled ? "signal" : "exit code", r.signaled ? r.sig : r.code, r.err,
            r.v.failed ? "; the child says: " : "", r.v.failed ? r.v.message : "");
}
