/*
 * zz_stress.c - zz-stress, the concurrent model-based stress test of
 * libzeroize (issue 11): options, set-up, the coordinator, and the re-run of
 * itself without CAP_IPC_LOCK under a small lock limit.
 *
 * Workers (ops.c, ops_arena.c) run random operations against their shadow
 * models while a signaller and a purger thread purge (purge_signals.c) and
 * workers fork checking children (fork_check.c).  Every so often the
 * coordinator pauses all workers at a barrier: the stats must equal the
 * model's totals, every block is checked, a child may be forked from the
 * quiescent state, and the shared arenas may be destroyed and made again.
 * A watchdog thread reports a worker that stops making progress.
 *
 *   zz-stress [--seed N] [--seconds S] [--threads N] [--mode cap|nocap|both]
 *             [--memlock BYTES] [--no=FEATURE,...] [--verbose]
 *
 * Exit status: 0 no finding, 1 a finding (printed with the seed and the last
 * operations), 2 bad usage or a broken environment.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "stress.h"

struct zs_config zs_cfg;
struct zs_thread *zs_threads[ZS_MAX_THREADS];
size_t zs_page;

static const char *const feature_names[ZS_NFEATURES] = {
    [ZS_F_FORK] = "fork",         [ZS_F_MISUSE] = "misuse",     [ZS_F_SIGNALS] = "signals",
    [ZS_F_PURGE] = "purge",       [ZS_F_ARENAS] = "arenas",     [ZS_F_SHARED] = "shared-arenas",
    [ZS_F_SECRETMEM] = "secretmem", [ZS_F_POLICY] = "policy",   [ZS_F_BACKEND] = "backend",
    [ZS_F_LOCK] = "lock",         [ZS_F_FOREIGN] = "foreign-lock", [ZS_F_PROTECT] = "protect",
    [ZS_F_REALLOC] = "realloc",   [ZS_F_ALIGNED] = "aligned",   [ZS_F_BIG] = "big",
    [ZS_F_SMAPS] = "smaps",       [ZS_F_STATS] = "stats",       [ZS_F_CHAIN] = "chain",
    [ZS_F_RECHAIN] = "rechain",   [ZS_F_EDGE] = "edge",         [ZS_F_CAPACITY] = "capacity",
    [ZS_F_REALLOC_KEEPS] = "realloc-keeps", [ZS_F_MISUSE_INHERITED] = "misuse-inherited",
    [ZS_F_GUARDS] = "guards",     [ZS_F_FIXED] = "fixed",       [ZS_F_CACHE] = "cache",
    [ZS_F_LAST_ERROR] = "last-error", [ZS_F_RAW_FORK] = "raw-fork", [ZS_F_ATFORK] = "atfork",
    [ZS_F_ATFORK_EARLY] = "atfork-early", [ZS_F_PRIVDROP] = "privdrop", [ZS_F_RLIMIT] = "rlimit",
    [ZS_F_TRIM] = "trim",         [ZS_F_TRIM_LOCKED] = "trim-locked",
};

static const char *const feature_help[ZS_NFEATURES] = {
    [ZS_F_FORK] = "forked children check the invariants after fork (defects 2, 3)",
    [ZS_F_MISUSE] = "forked children check that misuse is still caught",
    [ZS_F_SIGNALS] = "a thread sends purge signals (zz_purge_on_signals, direct handler)",
    [ZS_F_PURGE] = "direct zz_purge calls, and a purger thread (defect 1)",
    [ZS_F_ARENAS] = "zz_arena_* (growable, fixed)",
    [ZS_F_SHARED] = "arenas shared by all workers",
    [ZS_F_SECRETMEM] = "ZZ_BACKEND_SECRETMEM",
    [ZS_F_POLICY] = "zz_set_lock_policy switches (defect 5)",
    [ZS_F_BACKEND] = "zz_set_backend switches",
    [ZS_F_LOCK] = "zz_lock/zz_unlock of caller-owned memory",
    [ZS_F_FOREIGN] = "a caller page locked by the caller, then zz_lock'ed (defect 8)",
    [ZS_F_PROTECT] = "zz_protect",
    [ZS_F_REALLOC] = "zz_realloc",
    [ZS_F_ALIGNED] = "zz_alloc_aligned",
    [ZS_F_BIG] = "blocks above 16 KiB and 64 KiB",
    [ZS_F_SMAPS] = "/proc/self/smaps must agree with zz_info",
    [ZS_F_STATS] = "zz_get_stats equals the model at quiescent points",
    [ZS_F_CHAIN] = "the chained handler runs with its own form, mask, stack (defect 6)",
    [ZS_F_RECHAIN] = "re-installing our handler and zz_purge_on_signals again",
    [ZS_F_EDGE] = "bad arguments (EINVAL...; defect 7's wrapping zz_lock); 0-byte arena blocks",
    [ZS_F_CAPACITY] = "the fixed-arena capacity formula (n <= 1024)",
    [ZS_F_REALLOC_KEEPS] = "zz_realloc keeps backend and alignment (defect 4)",
    [ZS_F_MISUSE_INHERITED] = "misuse also of blocks inherited from before the fork",
    [ZS_F_GUARDS] = "reading the page after (and before) a new block faults",
    [ZS_F_FIXED] = "fixed-capacity arenas (off: growable ones only)",
    [ZS_F_CACHE] = "zz_set_cache_decay_ms switches; bursts of blocks allocated, then all freed",
    [ZS_F_LAST_ERROR] = "a successful call never changes zz_last_error_code (issue 19, item 5)",
    [ZS_F_RAW_FORK] = "invariant children forked with _Fork(): no atfork handler runs",
    [ZS_F_ATFORK] = "our pthread_atfork handlers (after the library's) call zz_alloc & co",
    [ZS_F_ATFORK_EARLY] = "the same, registered before the library's first call",
    [ZS_F_PRIVDROP] = "a child drops root, CAP_IPC_LOCK, RLIMIT_MEMLOCK under its threads",
    [ZS_F_RLIMIT] = "RLIMIT_MEMLOCK changes while workers run (without CAP_IPC_LOCK)",
    [ZS_F_TRIM] = "zz_trim while others allocate; after the last free, nothing cached or mapped",
    [ZS_F_TRIM_LOCKED] = "after the last free and zz_trim, locked_bytes 0 too (zz_lock's pages included)",
};

const char *zs_feature_name(int f)
{
    return feature_names[f];
}

static int default_off(int f)
{
    static const int off[] = ZS_DEFAULT_OFF_FEATURES;
    for (size_t k = 0; k < sizeof off / sizeof off[0]; k++)
        if (off[k] == f)
            return 1;
    return 0;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: zz-stress [options]\n"
            "  --seed N          the run's seed (default: from the clock); printed first\n"
            "  --seconds S       how long (default 10)\n"
            "  --threads N       workers (default 4, at most %d)\n"
            "  --mode M          cap: as started (root: CAP_IPC_LOCK); nocap: re-run without\n"
            "                    CAP_IPC_LOCK under --memlock; both: half and half (default)\n"
            "  --memlock BYTES   RLIMIT_MEMLOCK of the nocap run (default 1048576)\n"
            "  --no=F[,F...]     switch features off (to bisect a finding)\n"
            "  --with=F[,F...]   switch features on (those marked [off] are off by default:\n"
            "                    they find defects still open); features:\n",
            ZS_MAX_THREADS - 3);
    for (int f = 0; f < ZS_NFEATURES; f++)
        fprintf(to, "      %-15s %s%s\n", feature_names[f], default_off(f) ? "[off] " : "",
                feature_help[f]);
    fprintf(to, "  --verbose         print progress\n");
}

static int parse_features(const char *list, int on)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        int f;
        for (f = 0; f < ZS_NFEATURES; f++)
            if (strcmp(tok, feature_names[f]) == 0)
                break;
        if (f == ZS_NFEATURES) {
            fprintf(stderr, "zz-stress: unknown feature '%s'\n", tok);
            return -1;
        }
        zs_cfg.on[f] = on;
    }
    return 0;
}

/* ---- workers and the coordinator ---- */

static pthread_barrier_t pause_barrier;

static void pause_wait(void)
{
    int rc = pthread_barrier_wait(&pause_barrier);
    ZS_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "pthread_barrier_wait: %s", strerror(rc));
}
static _Atomic int pause_requested;

static void *worker_main(void *arg)
{
    struct zs_thread *t = arg;
    zs_self = t;
    zs_purge_signals_thread_init(t);
    zs_thread_init(t);
    for (;;) {
        if (atomic_load(&pause_requested)) {
            int stop = atomic_load(&zs_stopping);
            pause_wait(); /* paused */
            pause_wait(); /* released */
            if (stop)
                break;
            continue;
        }
        atomic_store(&t->in_step, 1);
        zs_gate_step_begin();
        zs_step(t);
        zs_gate_step_end();
        atomic_store(&t->in_step, 0);
        atomic_fetch_add(&t->steps, 1);
    }
    zs_log(t, "releasing everything");
    zs_thread_release_all(t);
    zs_purge_signals_thread_fini(t);
    return NULL;
}

static void check_stats(const char *when)
{
    size_t blocks = 0, bytes = 0, nh = 0;
    for (int w = 0; w < zs_cfg.threads; w++) {
        struct zs_thread *t = zs_threads[w];
        blocks += t->nblocks;
        for (size_t i = 0; i < t->nblocks; i++)
            bytes += t->blocks[i].n;
    }
    struct zs_block *h = zs_handoff_blocks(&nh);
    blocks += nh;
    for (size_t i = 0; i < nh; i++)
        bytes += h[i].n;
    zz_stats s;
    zz_get_stats(&s);
    ZS_CHECK(s.live_blocks == blocks && s.live_bytes == bytes,
             "%s: zz_get_stats says live_blocks %zu, live_bytes %zu; the model holds %zu blocks of "
             "%zu bytes", when, s.live_blocks, s.live_bytes, blocks, bytes);
    ZS_CHECK(s.cached_bytes <= s.mapped_bytes,
             "%s: zz_get_stats says cached_bytes %zu > mapped_bytes %zu", when, s.cached_bytes,
             s.mapped_bytes);
}

/* After the last block is freed (every worker joined: their caches went
 * back at thread exit) and every arena destroyed, zz_trim leaves none of
 * zz_alloc's memory cached, mapped or locked (zeroize.h, zz_trim). */
static void check_nothing_cached_after_trim(void)
{
    zs_trim_check("zz_trim after the last free");
    zz_stats s;
    zz_get_stats(&s);
    ZS_CHECK(s.cached_bytes == 0 && s.cache_locked_bytes == 0,
             "after the last free and zz_trim, zz_get_stats says cached_bytes %zu, "
             "cache_locked_bytes %zu (zz_trim must leave nothing of zz_alloc's cached)",
             s.cached_bytes, s.cache_locked_bytes);
    ZS_CHECK(s.live_blocks == 0 && s.mapped_bytes == 0,
             "after the last free and zz_trim, zz_get_stats says live_blocks %zu, mapped_bytes %zu "
             "(nothing of zz_alloc's or the arenas' may stay mapped)", s.live_blocks, s.mapped_bytes);
    /* Every zz_lock was undone too.  Off by default: once, under TSan without
     * CAP_IPC_LOCK (seed 26), 65536 bytes stayed counted (README). */
    ZS_CHECK(!ZS_ON(ZS_F_TRIM_LOCKED) || s.locked_bytes == 0,
             "after the last free, every zz_lock undone and zz_trim, zz_get_stats says locked_bytes "
             "%zu with mapped_bytes 0", s.locked_bytes);
}

static void remake_shared(uint64_t *rng, int destroy)
{
    for (size_t k = 0; k < ZS_SHARED_ARENAS; k++) {
        if (destroy && zs_shared[k] != NULL) {
            zs_arena_forget_blocks(zs_shared[k]);
            zz_arena_destroy(zs_shared[k]->a);
            free(zs_shared[k]);
            zs_shared[k] = NULL;
        }
        if (rng != NULL && zs_shared[k] == NULL && ZS_ON(ZS_F_ARENAS) && ZS_ON(ZS_F_SHARED))
            zs_shared[k] = zs_arena_new(k == 0 || !ZS_ON(ZS_F_FIXED)
                                            ? 0 : (size_t)(64 + zs_below(rng, 512)) << 10, 1);
    }
}

/* The coordinator's quiescent work (forks with our atfork handlers among
 * it) is watched too: since when it has been at it, in ms (0: not). */
static _Atomic long coordinator_busy_ms;

static void quiescent_point(uint64_t *rng, unsigned long pauses)
{
    atomic_store(&coordinator_busy_ms, (long)(zs_now() * 1000) | 1);
    zs_check_async_findings();
    int trimmed = ZS_ON(ZS_F_TRIM) && zs_chance(rng, 200);
    if (trimmed)
        zs_trim_check("zz_trim at a quiescent point");
    if (ZS_ON(ZS_F_STATS))
        check_stats(trimmed ? "quiescent point, after zz_trim" : "quiescent point");
    for (int w = 0; w < zs_cfg.threads; w++)
        if (trimmed || zs_chance(rng, 500))
            zs_check_all(zs_threads[w]);
    if (ZS_ON(ZS_F_FORK) && zs_chance(rng, 300))
        zs_fork_check(NULL, 1);
    if (ZS_ON(ZS_F_PRIVDROP) && ZS_ON(ZS_F_FORK) && zs_chance(rng, 150))
        zs_privdrop_check(zs_rand(rng));
    if (zs_chance(rng, 150))
        remake_shared(rng, 1);
    if (zs_cfg.verbose)
        zs_say("zz-stress: pause %lu: %lu purges started\n", pauses,
               (unsigned long)zs_purges_started());
    atomic_store(&coordinator_busy_ms, 0);
}

static _Atomic int run_over;
/* More than a forked child may take before the parent gives up on it. */
#define ZS_STUCK_SECONDS 100.0

static void *watchdog_main(void *arg)
{
    (void)arg;
    unsigned long last[ZS_MAX_THREADS] = { 0 };
    double since[ZS_MAX_THREADS];
    for (int w = 0; w < zs_cfg.threads; w++)
        since[w] = zs_now();
    while (!atomic_load(&run_over)) {
        struct timespec ts = { 0, 200 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        zs_check_async_findings();
        double now = zs_now();
        int stuck = -1, nstuck = 0;
        for (int w = 0; w < zs_cfg.threads; w++) {
            struct zs_thread *t = zs_threads[w];
            unsigned long s = atomic_load(&t->steps);
            if (s != last[w] || !atomic_load(&t->in_step)) {
                last[w] = s;
                since[w] = now;
            } else if (now - since[w] > ZS_STUCK_SECONDS) {
                nstuck++;
                if (stuck < 0 || since[w] < since[stuck])
                    stuck = w;
            }
        }
        long busy = atomic_load(&coordinator_busy_ms);
        if (busy != 0 && now - (double)busy / 1000 > ZS_STUCK_SECONDS)
            zs_fail("the coordinator made no progress for %.0f s at a quiescent point (the stats "
                    "check, a fork with its atfork handlers, a privilege-drop child)",
                    now - (double)busy / 1000);
        if (stuck >= 0) {
            /* the worker stuck longest is the likely culprit (the others may
             * wait for a lock it holds): its log comes first */
            zs_self = zs_threads[stuck];
            zs_fail("%s made no progress for %.0f s, stuck in its last operation below (%d worker(s) "
                    "stuck)", zs_self->name, now - since[stuck], nstuck);
        }
    }
    return NULL;
}

static void print_summary(double elapsed)
{
    struct zs_counts sum = { 0 };
    for (int w = 0; w < zs_cfg.threads; w++) {
        const struct zs_counts *c = &zs_threads[w]->n;
        sum.ops += c->ops;
        sum.allocs += c->allocs;
        sum.clean_failures += c->clean_failures;
        sum.frees += c->frees;
        sum.reallocs += c->reallocs;
        sum.protects += c->protects;
        sum.locks += c->locks;
        sum.arena_ops += c->arena_ops;
        sum.arenas_made += c->arenas_made;
        sum.purges += c->purges;
        sum.policy_switches += c->policy_switches;
        sum.backend_switches += c->backend_switches;
        sum.forks += c->forks;
        sum.misuse_children += c->misuse_children;
        sum.checks_exact += c->checks_exact;
        sum.checks_zero += c->checks_zero;
        sum.checks_either += c->checks_either;
        sum.smaps_checks += c->smaps_checks;
        sum.edge += c->edge;
        sum.trims += c->trims;
    }
    zs_say("zz-stress: %s%.1f s, %d workers: %lu operations (%lu allocs, %lu frees, %lu reallocs, "
           "%lu protects, %lu zz_locks, %lu arena ops, %lu arenas made, %lu edge cases, "
           "%lu zz_trims)\n"
           "zz-stress:   %lu clean allocation failures; %lu policy and %lu backend switches\n"
           "zz-stress:   purges: %lu started (%lu by workers, %lu by the purger thread, %lu signals)\n"
           "zz-stress:   content checks: %lu intact, %lu zero after a purge, %lu pattern-or-zero; "
           "%lu smaps checks\n"
           "zz-stress:   %lu fork children of workers, %lu _Fork children, %lu misuse children, %lu privilege-drop "
           "children, %lu atfork handler calls\n",
           zs_cfg.nocap ? "[no CAP_IPC_LOCK] " : "", elapsed, zs_cfg.threads, sum.ops, sum.allocs,
           sum.frees, sum.reallocs, sum.protects, sum.locks, sum.arena_ops, sum.arenas_made, sum.edge,
           sum.trims,
           sum.clean_failures, sum.policy_switches, sum.backend_switches,
           (unsigned long)zs_purges_started(), sum.purges, zs_purger_purges(), zs_signals_sent(),
           sum.checks_exact, sum.checks_zero, sum.checks_either, sum.smaps_checks, sum.forks,
           zs_raw_fork_children(), sum.misuse_children, zs_privdrop_children(),
           zs_atfork_handler_calls());
}

static int run_stress(double seconds)
{
    uint64_t rng = zs_cfg.seed ^ 0xc00d1a7e5ull;
    zs_install_crash_hooks();
    zs_fork_check_init();
    if (ZS_ON(ZS_F_ATFORK_EARLY))
        zs_atfork_register(1); /* before the library's first call, so before its handlers */
    if (ZS_ON(ZS_F_SIGNALS) || ZS_ON(ZS_F_FORK)) {
        if (zs_purge_signals_install() != 0) {
            fprintf(stderr, "zz-stress: installing the purge signal handlers: %s\n", strerror(errno));
            return 2;
        }
    }
    if (zs_cfg.nocap && zs_below(&rng, 2))
        zs_settings_switch_policy(ZZ_LOCK_BEST_EFFORT);
    remake_shared(&rng, 0);
    if (ZS_ON(ZS_F_ATFORK)) {
        zz_free(zz_alloc(1)); /* the library's fork handlers are registered by now */
        zs_atfork_register(0);
    }
    if (ZS_ON(ZS_F_ATFORK) || ZS_ON(ZS_F_ATFORK_EARLY))
        zs_atfork_arm();
    int n = zs_cfg.threads;
    ZS_CHECK(pthread_barrier_init(&pause_barrier, NULL, (unsigned)n + 1) == 0, "pthread_barrier_init");
    for (int w = 0; w < n; w++) {
        struct zs_thread *t = calloc(1, sizeof *t);
        ZS_CHECK(t != NULL, "calloc");
        t->idx = w;
        snprintf(t->name, sizeof t->name, "worker%u", (unsigned)w % 100u);
        t->rng = zs_cfg.seed ^ ((uint64_t)(w + 1) * 0x9E3779B97F4A7C15ull);
        zs_threads[w] = t;
    }
    for (int w = 0; w < n; w++) {
        int rc = pthread_create(&zs_worker_tids[w], NULL, worker_main, zs_threads[w]);
        ZS_CHECK(rc == 0, "pthread_create: %s", strerror(rc));
    }
    pthread_t watchdog;
    ZS_CHECK(pthread_create(&watchdog, NULL, watchdog_main, NULL) == 0, "pthread_create");
    if (ZS_ON(ZS_F_SIGNALS))
        ZS_CHECK(zs_start_signaller() == 0, "pthread_create(signaller)");
    if (ZS_ON(ZS_F_PURGE))
        ZS_CHECK(zs_start_purger() == 0, "pthread_create(purger)");

    double start = zs_now(), end = start + seconds;
    unsigned long pauses = 0;
    for (;;) {
        double nap = 0.2 + (double)zs_below(&rng, 1500) / 1000.0;
        double now = zs_now();
        int last = now + nap >= end;
        if (last)
            nap = end > now ? end - now : 0;
        struct timespec ts = { (time_t)nap, (long)((nap - (double)(time_t)nap) * 1e9) };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        if (last)
            atomic_store(&zs_stopping, 1);
        atomic_store(&pause_requested, 1);
        pause_wait();
        pauses++;
        if (last) {
            zs_check_async_findings();
            if (ZS_ON(ZS_F_STATS))
                check_stats("the end");
            zs_handoff_drain(zs_threads[0]);
        } else {
            quiescent_point(&rng, pauses);
        }
        atomic_store(&pause_requested, 0);
        pause_wait();
        if (last)
            break;
    }
    for (int w = 0; w < n; w++)
        ZS_CHECK(pthread_join(zs_worker_tids[w], NULL) == 0, "pthread_join");
    zs_stop_background();
    remake_shared(NULL, 1);
    atomic_store(&run_over, 1);
    ZS_CHECK(pthread_join(watchdog, NULL) == 0, "pthread_join(watchdog)");
    zs_check_async_findings();
    if (ZS_ON(ZS_F_STATS)) {
        zz_stats s;
        zz_get_stats(&s);
        ZS_CHECK(s.live_blocks == 0 && s.live_bytes == 0,
                 "after every block was freed and every arena destroyed, zz_get_stats says "
                 "live_blocks %zu, live_bytes %zu", s.live_blocks, s.live_bytes);
    }
    if (ZS_ON(ZS_F_TRIM))
        check_nothing_cached_after_trim();
    print_summary(zs_now() - start);
    for (int w = 0; w < n; w++) {
        free(zs_threads[w]);
        zs_threads[w] = NULL;
    }
    ZS_CHECK(pthread_barrier_destroy(&pause_barrier) == 0, "pthread_barrier_destroy");
    return 0;
}

/* ---- the run without CAP_IPC_LOCK ---- */

static int drop_ipc_lock(long limit)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return -1;
    unsigned bit = 1u << (CAP_IPC_LOCK % 32), idx = CAP_IPC_LOCK / 32;
    data[idx].effective &= ~bit;
    data[idx].permitted &= ~bit;
    data[idx].inheritable &= ~bit;
    /* out of the bounding set first (needs CAP_SETPCAP), so exec as root
     * does not give it back */
    if (prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) != 0 && errno != EINVAL)
        return -1;
    if (syscall(SYS_capset, &hdr, data) != 0)
        return -1;
    struct rlimit rl = { (rlim_t)limit, (rlim_t)limit };
    return setrlimit(RLIMIT_MEMLOCK, &rl);
}

static int run_nocap(char **argv0, double seconds)
{
    char secs[32], seed[32], threads[32], mem[32], no[512] = "--no=", with[512] = "--with=";
    snprintf(secs, sizeof secs, "%.3f", seconds);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)zs_cfg.seed);
    snprintf(threads, sizeof threads, "%d", zs_cfg.threads);
    snprintf(mem, sizeof mem, "%ld", zs_cfg.memlock_limit);
    for (int f = 0; f < ZS_NFEATURES; f++)
        if (!zs_cfg.on[f]) {
            strncat(no, feature_names[f], sizeof no - strlen(no) - 2);
            strncat(no, ",", sizeof no - strlen(no) - 1);
        } else if (default_off(f)) {
            strncat(with, feature_names[f], sizeof with - strlen(with) - 2);
            strncat(with, ",", sizeof with - strlen(with) - 1);
        }
    static char o_seed[] = "--seed", o_secs[] = "--seconds", o_threads[] = "--threads",
                o_mem[] = "--memlock", o_in[] = "--in-nocap", o_verbose[] = "--verbose";
    char *args[16];
    int k = 0;
    args[k++] = argv0[0];
    args[k++] = o_seed;
    args[k++] = seed;
    args[k++] = o_secs;
    args[k++] = secs;
    args[k++] = o_threads;
    args[k++] = threads;
    args[k++] = o_mem;
    args[k++] = mem;
    args[k++] = o_in;
    if (strlen(no) > 5)
        args[k++] = no;
    if (strlen(with) > 7)
        args[k++] = with;
    if (zs_cfg.verbose)
        args[k++] = o_verbose;
    args[k] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("zz-stress: fork");
        return 2;
    }
    if (pid == 0) {
        if (drop_ipc_lock(zs_cfg.memlock_limit) != 0) {
            perror("zz-stress: dropping CAP_IPC_LOCK");
            _exit(2);
        }
        execv("/proc/self/exe", args);
        perror("zz-stress: execv");
        _exit(2);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            perror("zz-stress: waitpid");
            return 2;
        }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    fprintf(stderr, "\nzz-stress: FINDING: the run without CAP_IPC_LOCK died of signal %d (%s)\n"
            "zz-stress: seed %llu; replay with: %s\n", WTERMSIG(status), strsignal(WTERMSIG(status)),
            (unsigned long long)zs_cfg.seed, zs_cfg.replay);
    return 1;
}

int main(int argc, char **argv)
{
    zs_cfg.seconds = 10;
    zs_cfg.threads = 4;
    zs_cfg.memlock_limit = 1 << 20;
    for (int f = 0; f < ZS_NFEATURES; f++)
        zs_cfg.on[f] = !default_off(f);
    int have_seed = 0, in_nocap = 0;
    const char *mode = "both";
    char nolist[512] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--seed") == 0 && v) {
            zs_cfg.seed = strtoull(v, NULL, 0);
            have_seed = 1;
            i++;
        } else if (strcmp(a, "--seconds") == 0 && v) {
            zs_cfg.seconds = strtod(v, NULL);
            i++;
        } else if (strcmp(a, "--threads") == 0 && v) {
            zs_cfg.threads = atoi(v);
            i++;
        } else if (strcmp(a, "--mode") == 0 && v) {
            mode = v;
            i++;
        } else if (strcmp(a, "--memlock") == 0 && v) {
            zs_cfg.memlock_limit = strtol(v, NULL, 0);
            i++;
        } else if (strncmp(a, "--no=", 5) == 0) {
            if (parse_features(a + 5, 0) != 0)
                return 2;
            size_t used = strlen(nolist);
            snprintf(nolist + used, sizeof nolist - used, " %s", a);
        } else if (strncmp(a, "--with=", 7) == 0) {
            if (parse_features(a + 7, 1) != 0)
                return 2;
            size_t used = strlen(nolist);
            snprintf(nolist + used, sizeof nolist - used, " %s", a);
        } else if (strcmp(a, "--in-nocap") == 0) {
            in_nocap = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            zs_cfg.verbose = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "zz-stress: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (zs_cfg.threads < 1 || zs_cfg.threads > ZS_MAX_THREADS - 3 || zs_cfg.seconds <= 0 ||
        zs_cfg.memlock_limit < 0 ||
        (strcmp(mode, "cap") != 0 && strcmp(mode, "nocap") != 0 && strcmp(mode, "both") != 0)) {
        usage(stderr);
        return 2;
    }
    if (!have_seed) {
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
            perror("zz-stress: clock_gettime");
            return 2;
        }
        zs_cfg.seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
        zs_cfg.seed %= 1000000000000ull;
    }
    zs_page = (size_t)sysconf(_SC_PAGESIZE);
    if (zs_page != 4096) {
        fprintf(stderr, "zz-stress: needs 4 KiB pages (this system has %zu)\n", zs_page);
        return 2;
    }
    char envs[256] = "";
    static const char *const vars[] = { "ZEROIZE_GUARDS", "ZEROIZE_LOCK", "ZEROIZE_BACKEND" };
    for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++) {
        const char *v = getenv(vars[k]);
        if (v != NULL && strlen(envs) + strlen(vars[k]) + strlen(v) + 3 < sizeof envs) {
            strcat(envs, vars[k]);
            strcat(envs, "=");
            strcat(envs, v);
            strcat(envs, " ");
        }
    }
    snprintf(zs_cfg.replay, sizeof zs_cfg.replay, "%s%s --seed %llu --seconds %g --threads %d --mode %s%s",
             envs, argv[0], (unsigned long long)zs_cfg.seed, zs_cfg.seconds, zs_cfg.threads,
             in_nocap ? "nocap" : mode, nolist);
    if (in_nocap) {
        struct rlimit rl;
        if (zs_have_cap_ipc_lock() != 0 || getrlimit(RLIMIT_MEMLOCK, &rl) != 0 ||
            rl.rlim_cur != (rlim_t)zs_cfg.memlock_limit) {
            fprintf(stderr, "zz-stress: the re-run still has CAP_IPC_LOCK or the wrong lock limit\n");
            return 2;
        }
        zs_cfg.nocap = 1;
        zs_say("zz-stress: seed %llu: running without CAP_IPC_LOCK under RLIMIT_MEMLOCK=%ld for %g s\n",
               (unsigned long long)zs_cfg.seed, zs_cfg.memlock_limit, zs_cfg.seconds);
        return run_stress(zs_cfg.seconds);
    }
    zs_say("zz-stress: seed %llu (replay: %s)\n", (unsigned long long)zs_cfg.seed, zs_cfg.replay);
    int cap = zs_have_cap_ipc_lock();
    if (strcmp(mode, "nocap") == 0)
        return run_nocap(argv, zs_cfg.seconds);
    double first = strcmp(mode, "both") == 0 ? zs_cfg.seconds / 2 : zs_cfg.seconds;
    zs_say("zz-stress: running %s CAP_IPC_LOCK for %g s\n", cap == 1 ? "with" : "without", first);
    if (cap != 1) {
        /* not root: lock limits apply already, and there is nothing to drop */
        zs_cfg.nocap = 1;
        first = zs_cfg.seconds;
    }
    int rc = run_stress(first);
    if (rc == 0 && (strcmp(mode, "both") != 0 || cap != 1))
        zs_say("zz-stress: PASS (seed %llu)\n", (unsigned long long)zs_cfg.seed);
    if (rc != 0 || strcmp(mode, "both") != 0 || cap != 1)
        return rc;
    rc = run_nocap(argv, zs_cfg.seconds - first);
    if (rc == 0)
        zs_say("zz-stress: PASS (seed %llu)\n", (unsigned long long)zs_cfg.seed);
    return rc;
}
