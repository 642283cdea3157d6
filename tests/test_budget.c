/* zz_alloc's caches under a finite lock budget (issue 18): they are on for
 * unprivileged processes too, and never cost anyone else locked memory.
 *
 *   - a process that warms its threads' caches as root and then drops to a
 *     service user (an 8 MiB RLIMIT_MEMLOCK, no CAP_IPC_LOCK) while one
 *     thread stays idle allocates as much as one whose caches were never
 *     warm: the idle thread's slots and slabs are taken back by the thread
 *     whose mapping or lock was refused;
 *   - unprivileged, the caches keep at most half the limit locked (shown in
 *     cache_locked_bytes and cache_share_bytes), so a plain mlock of 2 MiB
 *     succeeds beside a freed burst; after zz_trim nothing of zz_alloc's
 *     stays locked or mapped and the program can lock the whole limit;
 *   - a limit lowered at run time (setrlimit) is noticed by the next call
 *     that takes the global lock;
 *   - threads' fast paths racing a thief (zz_trim) in a loop: no slot is
 *     handed out twice, no block loses its contents, the counts balance
 *     (run under TSan too);
 *   - a fork while a thread's cache pins slabs a steal unmapped;
 *   - a live batch that fits in the share is kept whole: after warm-up, no
 *     round of it maps or unmaps a slab. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "test_util.h"

static size_t *shared_counts; /* results from children, through shared memory */

static void *map_shared(void)
{
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    return m;
}

/* Locks len bytes with the raw system call (the sanitizers' mlock
 * interceptors do nothing).  Returns 0 or -1. */
static int raw_mlock(void *p, size_t len)
{
    return (int)syscall(SYS_mlock, p, len);
}

/* ---- 1. warm as root, then drop to a service user -------------------------------- */

#define DROP_LIMIT ((rlim_t)8 << 20)
#define DROP_MAX 8192

/* Blocks of n bytes until the limit says no, each locked; frees them. */
static size_t count_until_refused(size_t n)
{
    static void *mine[DROP_MAX];
    size_t got = 0;
    while (got < DROP_MAX && (mine[got] = zz_alloc(n)) != NULL) {
        child_check(zz_info(mine[got]) & ZZ_INFO_LOCKED);
        got++;
    }
    child_check(got < DROP_MAX);
    child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    for (size_t i = 0; i < got; i++)
        zz_free(mine[i]);
    return got;
}

/* The usual daemon start-up: a lower limit, then another user (glibc
 * changes every thread's ids, and the kernel clears their capabilities). */
static void drop_to_service_user(void)
{
    struct rlimit rl = { DROP_LIMIT, DROP_LIMIT };
    child_check(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    child_check(setresgid(65534, 65534, 65534) == 0);
    child_check(setresuid(65534, 65534, 65534) == 0);
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    child_check(syscall(SYS_capget, &hdr, data) == 0);
    child_check(!(data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32))));
}

struct idle_thread {
    pthread_t tid;
    int go[2]; /* the thread waits for a byte here */
    _Atomic int ok;
};

/* Warms the thread's cache with a burst of 16,000-byte blocks that fills
 * exactly the 8 slabs it pins (16 + 16 + 32 + 64 + 4 x 102 slots: more
 * than 8 MiB locked on either guard path), frees everything, then sits
 * idle.  The main thread then wants blocks of another size: new slabs,
 * which the limit refuses unless the idle thread's slabs are unmapped. */
#define WARM_N 536
#define WARM_SIZE 16000
static void *warm_then_idle(void *arg)
{
    struct idle_thread *t = arg;
    static void *p[WARM_N];
    for (size_t i = 0; i < WARM_N; i++)
        if ((p[i] = zz_alloc(WARM_SIZE)) == NULL)
            return NULL;
    for (size_t i = 0; i < WARM_N; i++)
        zz_free(p[i]);
    t->ok = 1;
    char c;
    if (read(t->go[0], &c, 1) != 1)
        t->ok = 0;
    /* awake again: its cache's entries were stolen, and it still works */
    for (size_t i = 0; i < 100; i++) {
        unsigned char *q = zz_alloc(32);
        if (q == NULL || !zz_is_zero(q, 32)) {
            t->ok = 0;
            return NULL;
        }
        memset(q, 0x5a, 32);
        zz_free(q);
    }
    return NULL;
}

static void child_drop_after_warm(void *arg)
{
    int warm = arg != NULL;
    alarm(60);
    child_check(zz_set_cache_decay_ms(86400000ul) == 0); /* the caches keep all they can */
    zz_free(zz_alloc(6000)); /* initialised as root, as a daemon is */
    struct idle_thread t;
    atomic_init(&t.ok, 0);
    if (warm) {
        child_check(pipe(t.go) == 0);
        child_check(pthread_create(&t.tid, NULL, warm_then_idle, &t) == 0);
        while (!atomic_load(&t.ok)) /* warm: then idle on the pipe */
            sched_yield();
        zz_stats s;
        zz_get_stats(&s);
        child_check(s.locked_bytes > DROP_LIMIT); /* more than the new limit */
    }
    drop_to_service_user();
    zz_stats after;
    zz_get_stats(&after);
    shared_counts[2 + warm] = after.locked_bytes;
    shared_counts[warm] = count_until_refused(6000);
    if (warm) {
        child_check(write(t.go[1], "x", 1) == 1);
        child_check(pthread_join(t.tid, NULL) == 0);
        child_check(t.ok);
    }
}

static void test_budget_root_warm_then_drop(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: needs root (to drop from it)\n");
        skip();
    }
    shared_counts = map_shared();
    expect_child_ok(child_drop_after_warm, NULL);
    expect_child_ok(child_drop_after_warm, (void *)1);
    print_message("6000-byte blocks after dropping to uid 65534 under 8 MiB: %zu cold, %zu with "
                  "an idle thread whose caches were warmed as root (%zu KiB locked at the drop)\n",
                  shared_counts[0], shared_counts[1], shared_counts[3] >> 10);
    assert_true(shared_counts[0] >= 300);
    assert_true(shared_counts[1] * 10 >= shared_counts[0] * 9);
    munmap(shared_counts, 4096);
}

/* ---- 2. the share, and zz_trim ------------------------------------------------- */

#define UNPRIV_LIMIT ((size_t)8 << 20)

struct burst {
    void *p[2000];
    size_t got;
};

static void *burst_and_free(void *arg)
{
    struct burst *b = arg;
    b->got = 0;
    while (b->got < 2000 && (b->p[b->got] = zz_alloc(32)) != NULL)
        b->got++;
    for (size_t i = 0; i < b->got; i++)
        zz_free(b->p[i]);
    return NULL;
}

/* Unprivileged, 8 MiB: bursts of 2,000 x 32 B (as many as fit) in a thread
 * that stays alive, idle, and in the main thread, all freed.  The caches
 * keep at most 4 MiB locked, so a plain mlock(2 MiB) succeeds at once
 * (5c03a46 kept the bursts' whole limit locked, and it failed); after
 * zz_trim, zz_alloc keeps nothing locked or mapped and the whole limit is
 * the program's. */
#define SLACK ((size_t)64 << 10) /* slabs' leading guard pages, locked on the guard-install path */
static void child_share_then_trim(void *arg)
{
    (void)arg;
    alarm(60);
    child_check(tu_drop_ipc_lock(UNPRIV_LIMIT) == 0);
    child_check(zz_set_cache_decay_ms(86400000ul) == 0); /* no decay: only the share trims */
    static struct burst main_burst, thread_burst;
    pthread_t t;
    child_check(pthread_create(&t, NULL, burst_and_free, &thread_burst) == 0);
    child_check(pthread_join(t, NULL) == 0);
    burst_and_free(&main_burst);
    child_check(main_burst.got >= 500 && thread_burst.got >= 500);
    zz_stats s;
    zz_get_stats(&s);
    child_check(s.live_blocks == 0);
    child_check(s.cache_share_bytes == UNPRIV_LIMIT / 2);
    child_check(s.cache_locked_bytes <= s.cache_share_bytes);
    child_check(s.cached_bytes <= s.cache_bound_bytes);
    child_check(s.locked_bytes <= UNPRIV_LIMIT / 2 + SLACK);

    size_t len = 2u << 20;
    unsigned char *m = mmap(NULL, UNPRIV_LIMIT, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(m != MAP_FAILED);
    child_check(raw_mlock(m, len) == 0);
    child_check(syscall(SYS_munlock, m, len) == 0);

    zz_trim();
    zz_get_stats(&s);
    child_check(s.cached_bytes == 0 && s.locked_bytes == 0 && s.mapped_bytes == 0);
    /* all the limit but what the process locked before (the library's fork
     * sentinel page among it) */
    long before_kb = tu_status_kb("VmLck");
    child_check(before_kb >= 0 && (size_t)before_kb * 1024 < UNPRIV_LIMIT / 8);
    len = UNPRIV_LIMIT - (size_t)before_kb * 1024;
    child_check(raw_mlock(m, len) == 0);
    child_check(syscall(SYS_munlock, m, len) == 0);
    munmap(m, UNPRIV_LIMIT);
    /* and zz_alloc works as before */
    burst_and_free(&main_burst);
    child_check(main_burst.got >= 500);
}

static void test_budget_share_and_trim(void **state)
{
    (void)state;
    expect_child_ok(child_share_then_trim, NULL);
}

/* ---- 3. a limit lowered at run time -------------------------------------------- */

/* Unprivileged under 8 MiB, a freed burst of 32-byte blocks (as many as
 * fit) is cached up to the share, 4 MiB locked.  The limit drops to 2 MiB:
 * the next call that takes the global lock (an allocation of another
 * size) trims the caches to the new share, 1 MiB.  5c03a46 kept the whole
 * burst cached, locked. */
#define LOWERED_LIMIT ((size_t)2 << 20)
static void child_lowered_limit(void *arg)
{
    (void)arg;
    alarm(60);
    child_check(tu_drop_ipc_lock(UNPRIV_LIMIT) == 0);
    child_check(zz_set_cache_decay_ms(86400000ul) == 0);
    static struct burst b;
    burst_and_free(&b);
    child_check(b.got >= 500);
    zz_stats s;
    zz_get_stats(&s);
    child_check(s.cache_locked_bytes > LOWERED_LIMIT / 2);
    struct rlimit rl = { (rlim_t)LOWERED_LIMIT, (rlim_t)LOWERED_LIMIT };
    child_check(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    struct timespec tick = { 0, 20 * 1000 * 1000 }; /* the limit is read once per clock tick */
    nanosleep(&tick, NULL);
    zz_free(zz_alloc(5000));
    zz_get_stats(&s);
    if (s.cache_locked_bytes > LOWERED_LIMIT / 2)
        fprintf(stderr, "cached %zu KiB (%zu KiB locked), share %zu KiB, locked %zu KiB\n",
                s.cached_bytes >> 10, s.cache_locked_bytes >> 10, s.cache_share_bytes >> 10,
                s.locked_bytes >> 10);
    child_check(s.cache_share_bytes == LOWERED_LIMIT / 2);
    child_check(s.cache_locked_bytes <= LOWERED_LIMIT / 2);
    child_check(s.locked_bytes <= LOWERED_LIMIT / 2 + SLACK);
}

static void test_budget_lowered_limit_noticed(void **state)
{
    (void)state;
    expect_child_ok(child_lowered_limit, NULL);
}

/* ---- 4. stealing races the fast paths ---------------------------------------------- */

enum { RACERS = 3 };
static atomic_int race_stop;
static atomic_int race_failed;

static unsigned char race_byte(unsigned id, size_t round)
{
    return (unsigned char)(0x11u * (id + 1) + round);
}

/* Pairs and small bursts of the thread-cached sizes; every block is
 * zero when handed out and keeps its owner's bytes until freed (a slot
 * handed to two threads would mix them). */
static void *racer(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    static const size_t sizes[] = { 32, 256, 5000, 12000 };
    unsigned char *held[8];
    size_t n[8];
    for (size_t round = 0; !atomic_load(&race_stop); round++) {
        size_t k = 1 + round % 8;
        for (size_t j = 0; j < k; j++) {
            n[j] = sizes[(round + j) % 4];
            held[j] = zz_alloc(n[j]);
            if (held[j] == NULL || !zz_is_zero(held[j], n[j])) {
                atomic_store(&race_failed, __LINE__);
                return NULL;
            }
            memset(held[j], race_byte(id, round), n[j]);
        }
        sched_yield();
        for (size_t j = 0; j < k; j++) {
            for (size_t b = 0; b < n[j]; b += 61)
                if (held[j][b] != race_byte(id, round))
                    atomic_store(&race_failed, __LINE__);
            zz_free(held[j]);
        }
    }
    return NULL;
}

static void test_budget_steal_races_fast_paths(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    atomic_store(&race_stop, 0);
    atomic_store(&race_failed, 0);
    pthread_t t[RACERS];
    for (unsigned i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)i), 0);
    unsigned trims = TU_ON_VALGRIND() ? 50 : 2000;
    for (unsigned i = 0; i < trims && !atomic_load(&race_failed); i++) {
        zz_trim();
        if (i % 8 == 0)
            zz_get_stats(&s1);
        sched_yield();
    }
    atomic_store(&race_stop, 1);
    for (unsigned i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    if (atomic_load(&race_failed))
        print_error("racer failed at line %d\n", atomic_load(&race_failed));
    assert_int_equal(atomic_load(&race_failed), 0);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
    zz_trim();
    zz_get_stats(&s1);
    assert_int_equal(s1.cached_bytes, 0);
}

/* ---- 5. fork after a steal ------------------------------------------------------ */

/* A thread's cache pins slabs that a steal unmapped (their structs wait for
 * the thread's next call) and holds stale entries when the process forks:
 * the child has no such thread, rebuilds every slab, frees the dead
 * slabs' structs, allocates locked blocks of every cached size and gives
 * everything back with zz_trim; the parent's thread, woken, drops its
 * stale entries and dead pins. */
static void child_after_steal(void *arg)
{
    (void)arg;
    static const size_t sizes[] = { 32, 256, 5000, 12000 };
    for (size_t k = 0; k < 4; k++) {
        unsigned char *p = zz_alloc(sizes[k]);
        child_check(p != NULL && zz_is_zero(p, sizes[k]));
        child_check(zz_info(p) & ZZ_INFO_LOCKED);
        memset(p, 0x33, sizes[k]);
        zz_free(p);
    }
    zz_trim();
    zz_stats s;
    zz_get_stats(&s);
    child_check(s.cached_bytes == 0 && s.live_blocks == 0);
}

static void *warm_and_wait(void *arg)
{
    struct idle_thread *t = arg;
    static const size_t sizes[] = { 32, 256, 5000, 12000 };
    void *p[64];
    for (size_t i = 0; i < 64; i++)
        if ((p[i] = zz_alloc(sizes[i % 4])) == NULL)
            return NULL;
    for (size_t i = 0; i < 64; i++)
        zz_free(p[i]);
    atomic_store(&t->ok, 1);
    char c;
    if (read(t->go[0], &c, 1) != 1)
        atomic_store(&t->ok, 0);
    for (size_t i = 0; i < 64; i++) /* its stale entries are dropped, its dead pins let go */
        zz_free(zz_alloc(sizes[i % 4]));
    return NULL;
}

static void test_budget_fork_after_steal(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    struct idle_thread t;
    atomic_init(&t.ok, 0);
    assert_int_equal(pipe(t.go), 0);
    assert_int_equal(pthread_create(&t.tid, NULL, warm_and_wait, &t), 0);
    while (!atomic_load(&t.ok))
        sched_yield();
    zz_trim(); /* steals the idle thread's slots, unmaps the slabs it pins */
    expect_child_ok(child_after_steal, NULL);
    assert_int_equal(write(t.go[1], "x", 1), 1);
    assert_int_equal(pthread_join(t.tid, NULL), 0);
    assert_int_equal(atomic_load(&t.ok), 1);
    close(t.go[0]);
    close(t.go[1]);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
}

/* ---- 6. a live batch that fits in the share stays cached whole ---------------- */

/* Unprivileged, 8 MiB: a live batch of 32-byte blocks, allocated, then all
 * freed, again and again; after two rounds of warm-up no round maps or
 * unmaps anything: the freed batch fits in the caches' share and is kept
 * whole, and the caches stay within it.  Alone, the batch fills 1000/1024
 * of the share (1,000 blocks on the mprotect path, where a slot locks its
 * data page; 500 on the guard-install path, where it locks its guard page
 * too).  Beside 20 cached blocks of 5,000 bytes (32 two-page slots: 256 KiB
 * locked, 512 KiB on guard-install), it is 900 (450) blocks.
 * 68b0b8d counted the threads' cached slots with their guard pages, found
 * the lone freed batch 32 KiB over the share and unmapped a 2 MiB slab in
 * every round, mapped again in the next (12-43 us a block instead of about
 * 80 ns); beside the other blocks, its geometric slabs (1,024 slots for 900
 * blocks) overshot the share whatever the count, and the trim to an eighth
 * below it dropped 1 MiB of them a round. */
#define BATCH_ROUNDS 6
struct batch_case {
    size_t others; /* blocks of 5,000 bytes allocated and freed first */
    size_t fill;   /* the batch fills fill/1024 of the share */
    int secretmem; /* first a burst of 32-byte secretmem blocks, as many as the limit takes, freed */
};

static void child_batch_kept_whole(void *arg)
{
    const struct batch_case *bc = arg;
    alarm(60);
    child_check(tu_drop_ipc_lock(UNPRIV_LIMIT) == 0);
    child_check(zz_set_cache_decay_ms(86400000ul) == 0); /* no decay: only the share trims */
    static void *p[1000];
    /* what a one-page slot locks, the guard path's answer: the first slab
     * locks its data pages (fewer than half its pages), or all of them */
    zz_trim(); /* what the parent's earlier tests left cached */
    zz_stats s0, s;
    zz_get_stats(&s0);
    p[0] = zz_alloc(32);
    child_check(p[0] != NULL);
    zz_get_stats(&s);
    size_t locked = s.locked_bytes - s0.locked_bytes, mapped = s.mapped_bytes - s0.mapped_bytes;
    child_check(mapped != 0 && locked != 0);
    size_t slot_locked = 2 * locked > mapped ? 8192 : 4096;
    zz_free(p[0]);
    for (size_t i = 0; i < bc->others; i++)
        child_check((p[i] = zz_alloc(5000)) != NULL);
    for (size_t i = 0; i < bc->others; i++)
        zz_free(p[i]);
    size_t burst = 0;
    while (bc->secretmem && burst < 1000 && (p[burst] = zz_alloc_backend(32, ZZ_BACKEND_SECRETMEM)) != NULL)
        burst++;
    child_check(!bc->secretmem || burst >= 500);
    for (size_t i = 0; i < burst; i++)
        zz_free(p[i]);
    zz_get_stats(&s);
    child_check(s.cache_share_bytes == UNPRIV_LIMIT / 2);
    size_t n = s.cache_share_bytes / slot_locked * bc->fill / 1024;
    size_t peak_mapped = 0, idle_mapped = 0;
    for (int round = 0; round < BATCH_ROUNDS; round++) {
        for (size_t i = 0; i < n; i++) {
            p[i] = zz_alloc(32);
            child_check(p[i] != NULL);
        }
        zz_get_stats(&s);
        size_t peak = s.mapped_bytes;
        for (size_t i = 0; i < n; i++)
            zz_free(p[i]);
        zz_get_stats(&s);
        child_check(s.cache_locked_bytes <= s.cache_share_bytes);
        if (round >= 2) { /* warm: nothing mapped, nothing unmapped */
            child_check(peak == peak_mapped);
            child_check(s.mapped_bytes == idle_mapped);
            child_check(s.mapped_bytes == peak);
        }
        peak_mapped = peak;
        idle_mapped = s.mapped_bytes;
    }
    zz_trim();
    zz_get_stats(&s);
    child_check(s.cached_bytes == 0 && s.locked_bytes == 0 && s.mapped_bytes == 0);
}

static void test_budget_batch_kept_whole(void **state)
{
    (void)state;
    static struct batch_case alone = { 0, 1000, 0 }, beside_others = { 20, 900, 0 };
    expect_child_ok(child_batch_kept_whole, &alone);
    expect_child_ok(child_batch_kept_whole, &beside_others);
}

/* The same batch after a burst of secretmem blocks that was freed and is
 * not used again: the share keeps the batch that comes back, not the cold
 * slabs of the other backend.  Until 218fe51 the trim took the smallest
 * empty slabs whatever their class: the batch's own, as each round freed
 * them, while the idle secretmem slabs kept the share; every round mapped
 * the whole batch again (unprivileged, 32 B: ~37 us a block, against ~0.2
 * from the cache; zz-bench alloc --unprivileged's live batch read 286x the
 * OpenSSL secure heap with the zz_secretmem column beside it). */
static void test_budget_batch_kept_beside_cold_secretmem(void **state)
{
    (void)state;
    if (!tu_have_secretmem())
        skip();
    static struct batch_case after_secretmem = { 0, 1000, 1 };
    expect_child_ok(child_batch_kept_whole, &after_secretmem);
}

/* ---- 7. two backends of one page class share the share -------------------------- */

/* After a burst of each backend is freed (together over the share), what
 * stays locked is within the share, and steady pairs of either backend,
 * one after the other, map and unmap nothing.  Until c54c37e a freed
 * secretmem slot counted its data page only, not its guard page (which
 * the kernel charges too): 1,010 freed secretmem blocks kept the whole
 * 8 MiB locked while the stats said half, every new slab of the other
 * backend was refused and each refusal dropped every cache (zz-bench alloc
 * --unprivileged, zz_alloc and zz_secretmem columns side by side: a 32 B
 * pair cost 6-15 us). */
#define MIX_BURST 1000
#define MIX_PAIRS 300
static void child_two_backends(void *arg)
{
    (void)arg;
    alarm(60);
    child_check(tu_drop_ipc_lock(UNPRIV_LIMIT) == 0);
    child_check(zz_set_cache_decay_ms(86400000ul) == 0); /* no decay: only the share trims */
    zz_trim();
    static void *p[MIX_BURST];
    static const int backends[2] = { ZZ_BACKEND_ANON, ZZ_BACKEND_SECRETMEM };
    size_t changes = 0, last = 0;
    for (int round = 0; round < 4; round++) {
        for (int b = 0; b < 2; b++) {
            /* the bursts come first, once: as many as the limit takes */
            size_t n = 0;
            while (round == 0 && n < MIX_BURST && (p[n] = zz_alloc_backend(32, backends[b])) != NULL)
                n++;
            child_check(round != 0 || n >= MIX_BURST / 2);
            for (size_t i = 0; i < n; i++)
                zz_free(p[i]);
            zz_stats f;
            zz_get_stats(&f);
            /* all free: what stays locked is the caches', within the share
             * (each slab's leading guard page aside: the share's 32nd) */
            child_check(f.live_blocks == 0);
            child_check(f.locked_bytes <= f.cache_share_bytes + f.cache_share_bytes / 32);
            for (size_t i = 0; i < MIX_PAIRS; i++) {
                void *q = zz_alloc_backend(32 + (i & 32), backends[b]);
                child_check(q != NULL);
                ((volatile unsigned char *)q)[0] = 1;
                zz_free(q);
                zz_stats s;
                zz_get_stats(&s);
                child_check(s.cache_locked_bytes <= s.cache_share_bytes);
                if (round >= 2 && s.mapped_bytes != last)
                    changes++;
                last = s.mapped_bytes;
            }
        }
    }
    if (changes != 0)
        fprintf(stderr, "child: mapped_bytes changed on %zu of %d steady pairs\n", changes,
                4 * MIX_PAIRS);
    child_check(changes == 0);
}

static void test_budget_two_backends_steady(void **state)
{
    (void)state;
    if (!tu_have_secretmem())
        skip();
    expect_child_ok(child_two_backends, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_root_warm_then_drop),
        cmocka_unit_test(test_budget_share_and_trim),
        cmocka_unit_test(test_budget_lowered_limit_noticed),
        cmocka_unit_test(test_budget_steal_races_fast_paths),
        cmocka_unit_test(test_budget_fork_after_steal),
        cmocka_unit_test(test_budget_batch_kept_whole),
        cmocka_unit_test(test_budget_batch_kept_beside_cold_secretmem),
        cmocka_unit_test(test_budget_two_backends_steady),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
