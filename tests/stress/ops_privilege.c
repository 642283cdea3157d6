/*
 * ops_privilege.c - where the library meets the process's privileges and
 * fork machinery (issue 19, item 8; issue 18):
 *   - pthread_atfork handlers of our own that call the library, registered
 *     after the library's handlers (atfork) or before its first call
 *     (atfork-early: our prepare then runs after the library's, our child
 *     handler before the library's);
 *   - a child forked at a quiescent point that frees all it inherited,
 *     starts threads, and drops root, CAP_IPC_LOCK and RLIMIT_MEMLOCK under
 *     them (a privilege drop is one-way, so it happens in a child);
 *   - RLIMIT_MEMLOCK changes while the workers run (without CAP_IPC_LOCK).
 * _Fork() children are in fork_check.c (they run the invariant child).
 */
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

/* ---- atfork handlers that call the library ---- */

static _Atomic int atfork_armed;
static _Atomic unsigned atfork_calls;

/* One block: handed out zero-filled with the flags every block has, written,
 * freed; zz_get_stats; and the thread's last error unchanged by success. */
static void atfork_use_library(const char *where, int feature)
{
    if (!atomic_load(&atfork_armed) || !ZS_ON(feature))
        return;
    int saved = errno;
    unsigned k = atomic_fetch_add(&atfork_calls, 1);
    size_t n = 1 + (k * 2654435761u) % 6000;
    char what[128];
    snprintf(what, sizeof what, "zz_alloc(%zu) in our atfork %s handler (registered %s the library's)",
             n, where, feature == ZS_F_ATFORK_EARLY ? "before" : "after");
    if (zs_self != NULL)
        zs_log(zs_self, "%s", what);
    int code = zz_last_error_code();
    unsigned char *p = zz_alloc(n);
    if (p == NULL) {
        int err = errno;
        zs_check_clean_failure(what, err);
        if (!zs_cfg.nocap)
            zs_fail("%s failed (errno %d) with CAP_IPC_LOCK: %s", what, err, zz_last_error());
    } else {
        for (size_t i = 0; i < n; i++)
            ZS_CHECK(p[i] == 0, "%s: byte %zu of the new block is 0x%02x, not 0", what, i, p[i]);
        unsigned info = zz_info(p), want = ZZ_INFO_GUARDED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK;
        ZS_CHECK((info & want) == want, "%s: zz_info 0x%x lacks some of 0x%x", what, info, want);
        memset(p, 0x5c, n);
        zz_free(p);
        ZS_CHECK(zz_last_error_code() == code, "%s: it succeeded, but zz_last_error_code() went "
                 "from %d to %d", what, code, zz_last_error_code());
    }
    zz_stats s;
    zz_get_stats(&s);
    ZS_CHECK(s.cached_bytes <= s.mapped_bytes, "%s: zz_get_stats: cached %zu > mapped %zu", what,
             s.cached_bytes, s.mapped_bytes);
    errno = saved;
}

/* In the child: only in checking children (not misuse children, nor the
 * re-run without CAP_IPC_LOCK), whose verdict page run_child has not yet
 * handed over (fork() has not returned): take it, so a finding here is
 * reported as the child's. */
static void atfork_in_child(int feature)
{
    if (zs_forking_verdict == NULL)
        return;
    zs_child = zs_forking_verdict;
    atfork_use_library("child", feature);
}

static void late_prepare(void) { atfork_use_library("prepare", ZS_F_ATFORK); }
static void late_parent(void) { atfork_use_library("parent", ZS_F_ATFORK); }
static void late_child(void) { atfork_in_child(ZS_F_ATFORK); }
static void early_prepare(void) { atfork_use_library("prepare", ZS_F_ATFORK_EARLY); }
static void early_parent(void) { atfork_use_library("parent", ZS_F_ATFORK_EARLY); }
static void early_child(void) { atfork_in_child(ZS_F_ATFORK_EARLY); }

void zs_atfork_register(int early)
{
    int rc = early ? pthread_atfork(early_prepare, early_parent, early_child)
                   : pthread_atfork(late_prepare, late_parent, late_child);
    ZS_CHECK(rc == 0, "pthread_atfork: %s", strerror(rc));
}

void zs_atfork_arm(void)
{
    atomic_store(&atfork_armed, 1);
}

/* ---- RLIMIT_MEMLOCK changes while the workers run ---- */

void zs_rlimit_step(struct zs_thread *t)
{
    struct rlimit rl;
    ZS_CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0, "getrlimit: %s", strerror(errno));
    rlim_t low = rl.rlim_max / 4, soft = low + (rlim_t)zs_below(&t->rng, rl.rlim_max - low + 1);
    zs_log(t, "setrlimit(RLIMIT_MEMLOCK, %llu of %llu)", (unsigned long long)soft,
           (unsigned long long)rl.rlim_max);
    rl.rlim_cur = soft;
    ZS_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", strerror(errno));
}

/* ---- a privilege drop under running threads, in a child ---- */

#define PD_THREADS 3
#define PD_BLOCKS 24
#define PD_LIMIT_MAX ((rlim_t)8 << 20)
#define PD_UID 65534

struct pd_block {
    unsigned char *p;
    size_t n;
    unsigned char fill;
};

struct pd_thread {
    pthread_t tid;
    uint64_t rng;
    struct pd_block b[PD_BLOCKS];
    size_t nb;
    int err_code;
};

static struct pd_thread pd[PD_THREADS];
static _Atomic int pd_phase; /* 0 privileged, 1 dropped, 2 free all and idle, 3 exit */
static _Atomic int pd_idle;
static int pd_policy;
static rlim_t pd_limit; /* 8 MiB, or the hard limit if lower (it cannot be raised) */

static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* What any block promises here (no purge runs in this child: contents are
 * exact), and smaps agreeing with zz_info now and then. */
static void pd_check(struct pd_thread *w, const struct pd_block *b, const char *what)
{
    for (size_t i = 0; i < b->n; i++)
        ZS_CHECK(b->p[i] == b->fill, "%s: block %p (%zu bytes) byte %zu is 0x%02x, not 0x%02x", what,
                 (void *)b->p, b->n, i, b->p[i], b->fill);
    unsigned info = zz_info(b->p), want = ZZ_INFO_GUARDED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK;
    if (pd_policy == ZZ_LOCK_REQUIRED)
        want |= ZZ_INFO_LOCKED;
    ZS_CHECK((info & want) == want, "%s: block %p (%zu bytes): zz_info 0x%x lacks some of 0x%x "
             "(policy %s)", what, (void *)b->p, b->n, info, want,
             pd_policy == ZZ_LOCK_REQUIRED ? "REQUIRED" : "BEST_EFFORT");
    if (ZS_ON(ZS_F_SMAPS) && b->n > 0 && zs_below(&w->rng, 8) == 0) {
        struct zs_block m = { .p = b->p, .n = b->n, .align = 16, .mode = ZZ_READWRITE };
        zs_check_smaps(&m, info, what);
    }
}

static void pd_alloc(struct pd_thread *w)
{
    size_t n = zs_below(&w->rng, 3) == 0 ? 32 : 1 + zs_below(&w->rng, 20000);
    int before = atomic_load(&pd_phase);
    unsigned char *p = zz_alloc(n);
    int err = errno;
    char what[96];
    snprintf(what, sizeof what, "zz_alloc(%zu) in a thread of the privilege-drop child (%s)", n,
             before == 0 ? "before the drop" : "after the drop");
    if (p == NULL) {
        zs_check_clean_failure(what, err);
        w->err_code = zz_last_error_code();
        ZS_CHECK(zs_cfg.nocap || atomic_load(&pd_phase) > 0,
                 "%s failed with CAP_IPC_LOCK (errno %d): %s", what, err, zz_last_error());
        return;
    }
    struct pd_block *b = &w->b[w->nb++];
    *b = (struct pd_block){ p, n, 0 };
    pd_check(w, b, what);
    b->fill = (unsigned char)(1 + zs_below(&w->rng, 255));
    memset(p, b->fill, n);
}

static void pd_free(struct pd_thread *w, size_t i)
{
    pd_check(w, &w->b[i], "a block about to be freed in the privilege-drop child");
    zz_free(w->b[i].p);
    w->b[i] = w->b[--w->nb];
}

static void *pd_main(void *arg)
{
    struct pd_thread *w = arg;
    w->err_code = zz_last_error_code();
    while (atomic_load(&pd_phase) < 2) {
        unsigned op = (unsigned)zs_below(&w->rng, 10);
        if (op < 5 && w->nb < PD_BLOCKS)
            pd_alloc(w);
        else if (op < 9 && w->nb > 0)
            pd_free(w, zs_below(&w->rng, w->nb));
        else if (w->nb > 0)
            pd_check(w, &w->b[zs_below(&w->rng, w->nb)], "a block in the privilege-drop child");
        ZS_CHECK(!ZS_ON(ZS_F_LAST_ERROR) || zz_last_error_code() == w->err_code,
                 "a thread of the privilege-drop child: a successful call changed "
                 "zz_last_error_code() from %d to %d", w->err_code, zz_last_error_code());
    }
    while (w->nb > 0)
        pd_free(w, w->nb - 1);
    atomic_fetch_add(&pd_idle, 1);
    while (atomic_load(&pd_phase) < 3)
        nap_ms(1); /* alive, with whatever its cache holds */
    return NULL;
}

static void free_inherited(const struct zs_block *b)
{
    if (b->kind == ZS_K_ARENA)
        zz_arena_free(b->arena->a, b->p);
    else
        zz_free(b->p);
}

/* Everything the child inherited (a quiescent fork: every model is exact) is
 * freed, so the lock budget left is the limit minus what caches hold. */
static void pd_free_inherited(void)
{
    size_t nh = 0;
    struct zs_block *h = zs_handoff_blocks(&nh);
    for (size_t i = 0; i < nh; i++)
        free_inherited(&h[i]);
    for (int w = 0; w < zs_cfg.threads; w++) {
        struct zs_thread *t = zs_threads[w];
        for (size_t i = 0; i < t->nblocks; i++)
            free_inherited(&t->blocks[i]);
        t->nblocks = 0;
        for (size_t k = 0; k < t->nlocks; k++)
            ZS_CHECK(zz_unlock(t->cm + t->locks[k].off, t->locks[k].len) == 0,
                     "zz_unlock of a range locked before the fork: errno %d", errno);
        t->nlocks = 0;
    }
    /* arenas last: a block of one worker's arena may have been handed to another */
    for (int w = 0; w < zs_cfg.threads; w++) {
        struct zs_thread *t = zs_threads[w];
        for (size_t k = 0; k < t->narenas; k++)
            zz_arena_destroy(t->arenas[k]->a);
        t->narenas = 0;
    }
    for (size_t k = 0; k < ZS_SHARED_ARENAS; k++)
        if (zs_shared[k] != NULL)
            zz_arena_destroy(zs_shared[k]->a);
}

static void pd_drop(void)
{
    struct rlimit rl;
    ZS_CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0, "getrlimit: %s", strerror(errno));
    pd_limit = rl.rlim_max < PD_LIMIT_MAX ? rl.rlim_max : PD_LIMIT_MAX;
    rl.rlim_cur = rl.rlim_max = pd_limit;
    ZS_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit(RLIMIT_MEMLOCK, %llu): %s",
             (unsigned long long)pd_limit, strerror(errno));
    /* glibc applies the ids to every thread; a uid change from 0 clears the
     * capabilities (no SECBIT_KEEP_CAPS) */
    ZS_CHECK(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
    ZS_CHECK(setresgid(PD_UID, PD_UID, PD_UID) == 0, "setresgid: %s", strerror(errno));
    ZS_CHECK(setresuid(PD_UID, PD_UID, PD_UID) == 0, "setresuid: %s", strerror(errno));
    ZS_CHECK(zs_have_cap_ipc_lock() == 0, "CAP_IPC_LOCK still effective after setresuid(%d)",
             PD_UID);
}

static void pd_set_soft(rlim_t soft)
{
    struct rlimit rl = { soft, pd_limit };
    ZS_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit(RLIMIT_MEMLOCK, %llu): %s",
             (unsigned long long)soft, strerror(errno));
}

#define PD_FIT 60 /* at most, blocks of each of three sizes: 36 KiB locked a round at most */

/* With nothing live and the threads idle, blocks worth a quarter of the
 * limit must fit: what caches hold gives way (zeroize.h: cached memory never
 * makes a live block fail). */
static void pd_blocks_fit(void)
{
    static const size_t sizes[] = { 32, 5000, 12000 };
    static unsigned char *p[3 * PD_FIT];
    size_t got = 0, rounds = (size_t)(pd_limit / 4 / (36 << 10));
    if (rounds > PD_FIT)
        rounds = PD_FIT;
    for (size_t k = 0; k < rounds; k++) {
        for (size_t s = 0; s < 3; s++, got++) {
            p[got] = zz_alloc(sizes[s]);
            if (p[got] == NULL) {
                int err = errno;
                zz_stats st;
                zz_get_stats(&st);
                zs_fail("after the privilege drop, with no block live and %d threads idle, "
                        "zz_alloc(%zu) (block %zu of %zu) failed under RLIMIT_MEMLOCK %llu: "
                        "errno %d, \"%s\"; zz_get_stats: locked %zu, cached %zu, mapped %zu; "
                        "VmLck %ld kB (caches pinning the lock budget?)",
                        PD_THREADS, sizes[s], got, 3 * rounds, (unsigned long long)pd_limit, err,
                        zz_last_error(),
                        st.locked_bytes, st.cached_bytes, st.mapped_bytes, zs_status_kb("VmLck"));
            }
            struct pd_block b = { p[got], sizes[s], 0 };
            pd_check(&pd[0], &b, "a block after the privilege drop");
            memset(p[got], 0x3e, sizes[s]);
        }
    }
    zz_stats st;
    zz_get_stats(&st);
    long vmlck = zs_status_kb("VmLck");
    ZS_CHECK(st.live_blocks == got, "after the drop: zz_get_stats says %zu live blocks, %zu made",
             st.live_blocks, got);
    ZS_CHECK(vmlck >= 0 && st.locked_bytes <= (size_t)vmlck * 1024,
             "after the drop: zz_get_stats says %zu bytes locked, the kernel (VmLck) %ld kB",
             st.locked_bytes, vmlck);
    for (size_t i = 0; i < got; i++)
        zz_free(p[i]);
}

static void privdrop_child(struct zs_thread *t, void *arg)
{
    (void)t;
    uint64_t seed = *(const uint64_t *)arg;
    snprintf(zs_child->stage, sizeof zs_child->stage, "free every inherited block and arena");
    pd_free_inherited();
    zz_stats st;
    zz_get_stats(&st);
    ZS_CHECK(st.live_blocks == 0 && st.live_bytes == 0, "after freeing everything inherited: "
             "live_blocks %zu, live_bytes %zu", st.live_blocks, st.live_bytes);
    pd_policy = zz_get_lock_policy();
    snprintf(zs_child->stage, sizeof zs_child->stage, "threads run, privileged");
    for (int i = 0; i < PD_THREADS; i++) {
        pd[i].rng = seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
        int rc = pthread_create(&pd[i].tid, NULL, pd_main, &pd[i]);
        ZS_CHECK(rc == 0, "pthread_create in a child: %s", strerror(rc));
    }
    nap_ms(60 + (long)(seed % 60));
    snprintf(zs_child->stage, sizeof zs_child->stage, "drop to uid %d, RLIMIT_MEMLOCK <= 8 MiB",
             PD_UID);
    pd_drop();
    atomic_store(&pd_phase, 1);
    snprintf(zs_child->stage, sizeof zs_child->stage, "threads run after the drop; limit changes");
    nap_ms(80);
    pd_set_soft(pd_limit / 2);
    nap_ms(80);
    pd_set_soft(pd_limit);
    nap_ms(80);
    snprintf(zs_child->stage, sizeof zs_child->stage, "threads free everything and stay");
    atomic_store(&pd_phase, 2);
    while (atomic_load(&pd_idle) < PD_THREADS)
        nap_ms(1);
    snprintf(zs_child->stage, sizeof zs_child->stage, "blocks fit after the drop (caches give way)");
    pd_blocks_fit();
    atomic_store(&pd_phase, 3);
    for (int i = 0; i < PD_THREADS; i++)
        ZS_CHECK(pthread_join(pd[i].tid, NULL) == 0, "pthread_join");
    zz_get_stats(&st);
    ZS_CHECK(st.live_blocks == 0 && st.live_bytes == 0, "at the end of the privilege-drop child: "
             "live_blocks %zu, live_bytes %zu", st.live_blocks, st.live_bytes);
}

static _Atomic unsigned long privdrops;

unsigned long zs_privdrop_children(void)
{
    return atomic_load(&privdrops);
}

unsigned long zs_atfork_handler_calls(void)
{
    return atomic_load(&atfork_calls);
}

#if defined(__SANITIZE_THREAD__)
#define ZS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZS_TSAN 1
#endif
#endif

void zs_privdrop_check(uint64_t seed)
{
#ifdef ZS_TSAN
    /* TSan cannot follow threads started in a child forked from a threaded
     * process ("dup thread with used id", exit 66): under TSan the rlimit
     * feature changes limits under running threads, in the process itself */
    (void)seed;
    return;
#endif
    if (geteuid() != 0)
        return; /* nothing to drop */
    atomic_fetch_add(&privdrops, 1);
    zs_run_checked_child(NULL, privdrop_child, &seed, 0,
                         "a child that drops root, CAP_IPC_LOCK and RLIMIT_MEMLOCK under its threads");
}
