/*
 * stress.h - what the files of zz-stress share: the run's configuration, the
 * shadow model of one worker thread (its blocks, arenas and caller-owned
 * memory), the purge counters that make the model exact while purges race
 * with the workers, and the finding reporter.
 *
 *   zz_stress.c     options, set-up, the coordinator (pauses, quiescent
 *                   checks), the re-run without CAP_IPC_LOCK, the summary
 *   ops.c           one worker step: zz_alloc family, realloc, protect,
 *                   zz_lock, policy and backend switches, edge cases
 *   ops_arena.c     arena operations (growable, fixed, shared, per-thread)
 *   model.c         what the header promises about one block: contents
 *                   (intact / zero / either, from the purge counters), flags
 *                   (policy, backend), smaps agreeing with zz_info
 *   purge_signals.c purge counters, the purge signal handlers (direct and
 *                   through zz_purge_on_signals), the signaller and purger
 *   fork_check.c    forked children: invariants after fork, misuse still
 *                   caught; each with a timeout and a verdict
 *   procfs.c        /proc/self/smaps and /proc/self/status
 *   report.c        PRNG, per-thread operation log, findings, crash hooks
 */
#ifndef ZZ_STRESS_H
#define ZZ_STRESS_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "zeroize.h"

#define ZS_MAX_THREADS 16
#define ZS_MAX_BLOCKS 48        /* live blocks per worker */
#define ZS_MAX_ARENAS 3         /* per-thread arenas per worker */
#define ZS_SHARED_ARENAS 2      /* one growable, one fixed, shared by all workers */
#define ZS_CALLER_PAGES 4       /* caller-owned memory per worker, for zz_lock */
#define ZS_MAX_LOCKS 8          /* outstanding zz_lock ranges per worker */
#define ZS_LOG_LEN 48           /* operations remembered per thread */
#define ZS_LOG_LINE 120

/* ---- features (each can be switched off with --no=NAME, for bisecting) ---- */
enum zs_feature {
    ZS_F_FORK,       /* forked children check the invariants after fork */
    ZS_F_MISUSE,     /* forked children check that misuse is still caught */
    ZS_F_SIGNALS,    /* a signaller thread sends purge signals */
    ZS_F_PURGE,      /* direct zz_purge calls (workers and a purger thread) */
    ZS_F_ARENAS,     /* zz_arena_* */
    ZS_F_SHARED,     /* arenas shared by all workers */
    ZS_F_SECRETMEM,  /* ZZ_BACKEND_SECRETMEM anywhere */
    ZS_F_POLICY,     /* zz_set_lock_policy switches */
    ZS_F_BACKEND,    /* zz_set_backend switches */
    ZS_F_LOCK,       /* zz_lock / zz_unlock on caller-owned memory */
    ZS_F_FOREIGN,    /* a caller page locked by the harness itself, then zz_lock'ed */
    ZS_F_PROTECT,    /* zz_protect */
    ZS_F_REALLOC,    /* zz_realloc */
    ZS_F_ALIGNED,    /* zz_alloc_aligned */
    ZS_F_BIG,        /* blocks above 64 KiB (a mapping each) */
    ZS_F_SMAPS,      /* /proc/self/smaps agreeing with zz_info */
    ZS_F_STATS,      /* zz_get_stats against the model at quiescent points */
    ZS_F_CHAIN,      /* the chained handler sees the flags and mask it was installed with */
    ZS_F_RECHAIN,    /* re-installing our handler and calling zz_purge_on_signals again */
    ZS_F_EDGE,       /* bad arguments: EINVAL and friends */
    ZS_F_CAPACITY,   /* fixed arenas hold what the header's capacity formula promises */
    ZS_F_REALLOC_KEEPS, /* zz_realloc keeps backend and alignment (issue 11, defect 4) */
    ZS_F_MISUSE_INHERITED, /* misuse children also misuse blocks inherited from the parent */
    ZS_F_GUARDS,     /* the pages around a new block fault (probed in place) */
    ZS_F_FIXED,      /* fixed-capacity arenas (off: only growable ones) */
    ZS_F_CACHE,      /* zz_set_cache_decay_ms switches and bursts of blocks freed at once */
    ZS_F_LAST_ERROR, /* a successful call never changes zz_last_error_code; a failed one sets it */
    ZS_F_RAW_FORK,   /* invariant children forked with _Fork() (no atfork handler runs) */
    ZS_F_ATFORK,     /* our pthread_atfork handlers, registered after the library's, call it */
    ZS_F_ATFORK_EARLY, /* the same, registered before the library's first call */
    ZS_F_PRIVDROP,   /* a forked child drops root and CAP_IPC_LOCK while its threads run */
    ZS_F_RLIMIT,     /* RLIMIT_MEMLOCK changes while the workers run (without CAP_IPC_LOCK) */
    ZS_F_TRIM,       /* zz_trim while the others allocate; at the end, nothing of zz_alloc's cached */
    ZS_F_TRIM_LOCKED, /* at the end, after zz_trim, zz_get_stats' locked_bytes 0 too */
    ZS_NFEATURES
};
/* Features off unless --with=NAME: the ones that find defects still open on
 * main (tests/stress/README.md says which); they are turned on once the
 * fixes land (atfork-early and privdrop are on since their defects were
 * fixed: the README's record; raw-fork was on, then found one; trim-locked
 * is on since 61fad7f). */
#define ZS_DEFAULT_OFF_FEATURES {ZS_F_RAW_FORK}
const char *zs_feature_name(int f);

struct zs_config {
    uint64_t seed;
    double seconds;
    int threads;
    int on[ZS_NFEATURES];
    int nocap;             /* this process runs without CAP_IPC_LOCK (set by the re-run) */
    long memlock_limit;    /* RLIMIT_MEMLOCK for the re-run without CAP_IPC_LOCK */
    int verbose;
    char replay[1024];     /* the command line that replays this run */
};
extern struct zs_config zs_cfg;
#define ZS_ON(f) (zs_cfg.on[(f)])

/* ---- PRNG (splitmix64): every choice a worker makes comes from its own ---- */
uint64_t zs_rand(uint64_t *state);
uint64_t zs_below(uint64_t *state, uint64_t n); /* [0, n) */
int zs_chance(uint64_t *state, unsigned per_mille);

/* ---- the shadow model ---- */
enum { ZS_K_ALLOC, ZS_K_ALIGNED, ZS_K_BACKEND, ZS_K_REALLOC, ZS_K_ARENA };

struct zs_arena {
    zz_arena *a;
    size_t capacity;       /* 0: growable */
    int backend;           /* backend when created, -1 when a switch raced with it */
    int policy;            /* lock policy when created, -1 when unknown */
    int shared;
    unsigned id;
};

struct zs_block {
    unsigned char *p;
    size_t n;
    size_t align;          /* alignment asked for (16 when none) */
    int kind;
    int mode;              /* ZZ_READWRITE / ZZ_READONLY / ZZ_NOACCESS (zz_alloc blocks) */
    int backend;           /* backend asked for or in force at allocation; -1 unknown */
    int policy;            /* lock policy in force throughout the allocation; -1 unknown */
    struct zs_arena *arena;
    unsigned info;         /* zz_info right after allocation */
    unsigned char *expect; /* the n bytes it must hold, modulo purges */
    uint64_t fw;           /* purges finished before its contents were set (F) */
    uint64_t settled;      /* purges started when its contents and mode were last changed (S) */
    unsigned long op_born, op_changed; /* operation numbers in the owner's log */
};

struct zs_lockrange {
    size_t off, len;
};

struct zs_oplog {
    char line[ZS_LOG_LEN][ZS_LOG_LINE];
    _Atomic unsigned long next;
};

struct zs_counts {
    unsigned long ops, allocs, clean_failures, frees, reallocs, protects, locks, arena_ops,
        arenas_made, purges, policy_switches, backend_switches, forks, misuse_children,
        checks_exact, checks_zero, checks_either, smaps_checks, edge, trims;
};

struct zs_thread {
    int idx;
    char name[16];
    uint64_t rng;
    struct zs_block blocks[ZS_MAX_BLOCKS];
    size_t nblocks;
    struct zs_arena *arenas[ZS_MAX_ARENAS];
    size_t narenas;
    /* caller-owned memory for zz_lock: ZS_CALLER_PAGES pages of our own */
    unsigned char *cm;
    unsigned char cm_expect[ZS_CALLER_PAGES * 4096];
    unsigned cm_refs[ZS_CALLER_PAGES];  /* zz_lock counts per page, by the model */
    int cm_foreign;                     /* page ZS_CALLER_PAGES-1 locked by us (mlock + dontdump) */
    struct zs_lockrange locks[ZS_MAX_LOCKS];
    size_t nlocks;
    void *altstack;
    struct zs_oplog log;
    struct zs_counts n;
    _Atomic unsigned long steps;
    _Atomic int in_step;
    int err_code;          /* what zz_last_error_code() must return on this thread */
};

extern struct zs_thread *zs_threads[ZS_MAX_THREADS];
extern struct zs_arena *zs_shared[ZS_SHARED_ARENAS];
extern size_t zs_page;
extern pthread_t zs_worker_tids[ZS_MAX_THREADS];

/* The worker thread running this code (NULL on other threads). */
extern _Thread_local struct zs_thread *zs_self;

/* ---- process-wide settings, read around an allocation so that the model knows
 * which policy and backend the library saw (a switch is bracketed by an odd
 * sequence number) ---- */
struct zs_setting_snap {
    unsigned long seq;
    int policy, backend;
};
void zs_settings_read(struct zs_setting_snap *s);
/* Policy and backend that held throughout [s, now], or -1 each. */
void zs_settings_settle(const struct zs_setting_snap *s, int *policy, int *backend);
void zs_settings_switch_policy(int policy);
void zs_settings_switch_backend(int backend);

/* ---- purge counters (purge_signals.c) ---- */
uint64_t zs_purges_started(void);     /* S: incremented before any purge can begin */
uint64_t zs_purges_done(void);        /* F: incremented after a purge has ended */
uint64_t zs_purges_done_full(void);   /* F of purges that wiped every mode (not nested) */
void zs_purge_direct(void);           /* zz_purge with the counters */
int zs_purge_signals_install(void);
void zs_purge_signals_thread_init(struct zs_thread *t); /* the thread's alternate stack */
void zs_purge_signals_thread_fini(struct zs_thread *t);
void zs_rechain(struct zs_thread *t);  /* op: our handler again, then zz_purge_on_signals */
int zs_start_signaller(void);
int zs_start_purger(void);
void zs_stop_background(void);
void zs_check_async_findings(void);
unsigned long zs_signals_sent(void);
unsigned long zs_purger_purges(void);

/* ---- model.c ---- */
enum zs_verdict { ZS_EXACT, ZS_ZERO, ZS_EITHER };
void zs_model_add(struct zs_thread *t, const struct zs_block *b);
void zs_model_remove(struct zs_thread *t, size_t i);
/* Byte accesses to blocks that purges race with on purpose (not seen by TSan). */
void zs_block_fill(unsigned char *dst, const unsigned char *src, size_t n);
void zs_block_read(unsigned char *dst, const unsigned char *src, size_t n);
int zs_all_zero(const unsigned char *p, size_t n);
#define ZS_SCRATCH (160u << 10) /* larger than any block the workers make */
unsigned char *zs_scratch(size_t n); /* this thread's buffer for reading a block */
void zs_pattern(uint64_t *rng, unsigned char *dst, size_t n); /* bytes 1..255 */
/* Writes a new pattern into [off, off+len) of a READWRITE block, model too. */
void zs_model_write(struct zs_thread *t, struct zs_block *b, size_t off, size_t len);
/* Checks the block's contents against the model, then records what it read. */
enum zs_verdict zs_model_check(struct zs_thread *t, struct zs_block *b, const char *when);
/* Checks a block just handed out: zero-filled, size, alignment, flags,
 * policy, backend, smaps (sometimes). */
void zs_model_check_new(struct zs_thread *t, struct zs_block *b, const char *what);
/* zz_info(b) promises what the policy and backend asked for, and smaps agrees. */
void zs_check_flags(struct zs_thread *t, const struct zs_block *b, unsigned info, int in_child,
                    const char *what);
void zs_check_smaps(const struct zs_block *b, unsigned info, const char *what);
/* The pages after (and before) a zz_alloc-family block fault. */
void zs_check_guards(const struct zs_block *b, const char *what);
/* A failed allocation is clean: errno one of the lock/memory errors (or
 * ENOMEM for a full fixed arena), and zz_last_error() non-empty. */
void zs_check_clean_failure(const char *what, int err);
/* A call just returned failure: zz_last_error_code() names a reason (want,
 * unless -1), which the worker's model now expects until its next failure. */
void zs_note_failure(const char *what, int want);
/* Nothing failed since the last zs_note_failure: the code is unchanged
 * (issue 19, item 5: a successful call never changes it). */
void zs_check_last_error(struct zs_thread *t, const char *when);
int zs_find_block(struct zs_thread *t, const void *p);

/* ---- ops.c / ops_arena.c ---- */
void zs_step(struct zs_thread *t);
void zs_thread_init(struct zs_thread *t);
void zs_thread_release_all(struct zs_thread *t); /* frees everything the worker holds */
void zs_check_all(struct zs_thread *t);          /* every block, and the caller memory */
void zs_trim_check(const char *what);            /* zz_trim, errno kept, the cache's stats sane */
int zs_arena_step(struct zs_thread *t, unsigned pick);
void zs_arena_free_block(struct zs_thread *t, size_t i);
void zs_arena_destroy_own(struct zs_thread *t, size_t k);
struct zs_arena *zs_arena_new(size_t capacity, int shared);
void zs_arena_forget_blocks(struct zs_arena *ar); /* in every model (quiescent only) */
void zs_check_caller_memory(struct zs_thread *t, const char *when);
/* Quiescent only: blocks on their way between workers; and giving them all
 * to one worker (at the end). */
struct zs_block *zs_handoff_blocks(size_t *n);
void zs_handoff_drain(struct zs_thread *to);

/* ---- fork_check.c ---- */
void zs_fork_check_init(void);
/* The fork gate.  Under AddressSanitizer, GCC 12's runtime does not hold
 * its allocator's locks across fork(): a child forked while another thread
 * is inside malloc hangs in its first malloc (seen in CI).  There, each
 * worker holds the gate shared for a step and a fork takes it alone, so a
 * fork lands between steps (and mid-call forks are left to the plain
 * builds).  Elsewhere these do nothing. */
void zs_gate_step_begin(void);
void zs_gate_step_end(void);
void zs_fork_check(struct zs_thread *t, int quiescent);
void zs_misuse_check(struct zs_thread *t);
/* Runs fn in a forked child (fork(), or _Fork() when raw) under the
 * child watchdog, and fails with what unless the child passed. */
typedef void (*zs_child_fn)(struct zs_thread *t, void *arg);
void zs_run_checked_child(struct zs_thread *t, zs_child_fn fn, void *arg, int raw, const char *what);
/* The verdict page of the child being forked by this thread (for our
 * atfork child handler, which runs before fork() returns). */
extern _Thread_local struct zs_child_verdict *zs_forking_verdict;

/* ---- ops_privilege.c ---- */
/* pthread_atfork handlers that call the library (early: before its first call). */
void zs_atfork_register(int early);
void zs_atfork_arm(void);
/* Quiescent: a child frees everything it inherited, starts threads, and
 * drops root, CAP_IPC_LOCK and RLIMIT_MEMLOCK (8 MiB) while they run. */
void zs_privdrop_check(uint64_t seed);
unsigned long zs_privdrop_children(void);
unsigned long zs_atfork_handler_calls(void);
unsigned long zs_raw_fork_children(void);
/* A worker op (without CAP_IPC_LOCK): a new soft RLIMIT_MEMLOCK. */
void zs_rlimit_step(struct zs_thread *t);

/* ---- procfs.c ---- */
struct zs_vma {
    uintptr_t start, end;
    char perms[8];
    char path[64];
    char vmflags[256];
    long locked_kb;
};
int zs_smaps_find(const void *addr, struct zs_vma *out); /* 0 or -1 */
int zs_has_flag(const char *vmflags, const char *flag);
long zs_status_kb(const char *key);
int zs_have_cap_ipc_lock(void);

/* ---- report.c ---- */
void zs_log(struct zs_thread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void zs_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define ZS_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            zs_fail(__VA_ARGS__);                                                                  \
    } while (0)
/* From a signal handler: the coordinator reports it. */
void zs_fail_async(const char *static_msg);
const char *zs_async_finding(void);
void zs_install_crash_hooks(void);
/* 1 if reading the byte at addr faults (SIGSEGV/SIGBUS), else 0.  The thread's
 * other signals and the process's crash reporting are unaffected. */
int zs_probe_faults(const void *addr);
void zs_dump_log(int fd, const struct zs_thread *t, unsigned lines);
void zs_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern _Atomic int zs_stopping;
/* In a forked child, zs_fail writes its verdict here and exits. */
struct zs_child_verdict {
    char stage[64];
    char message[1024];
    int failed;
};
extern struct zs_child_verdict *zs_child;
double zs_now(void);

#endif /* ZZ_STRESS_H */
