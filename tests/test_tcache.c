/* zz_alloc / zz_free across threads: the guarantees that per-thread caches of
 * free slots (a free that takes no global lock when the freeing thread pins
 * the block's slab) must keep, crossed with fork, the lock policy, zz_purge,
 * zz_get_stats and RLIMIT_MEMLOCK.  They hold without such caches too.
 *
 *   - two frees of one block, from two threads at once or one after the
 *     other with the slot in a thread's cache: exactly one goes through, the
 *     other aborts with "zeroize: double free" ("misuse" group);
 *   - blocks freed by a thread other than their allocator keep their
 *     contents until then, and the counts balance;
 *   - zz_get_stats counts exactly what running threads hold, and the bytes
 *     their caches keep (as cached, not lost, not counted twice);
 *   - zz_purge wipes live blocks of other threads, and a freed block's secret
 *     is gone even while its slot sits in a thread's cache;
 *   - a forked child (one thread) counts what the parent held, hands out
 *     locked, guarded blocks (the forking thread's cache included) and never
 *     hangs, even when the fork lands inside another thread's alloc/free;
 *   - ZZ_LOCK_REQUIRED hands out no unlocked slot that a cache kept from
 *     ZZ_LOCK_BEST_EFFORT;
 *   - under a finite RLIMIT_MEMLOCK, locked memory goes to live blocks
 *     before caches: idle threads with warm caches cost another thread
 *     (almost) nothing;
 *   - threads that exit give their caches back (no growth, no leak: memcheck
 *     runs the default group).
 *
 * Without arguments: every test but the death tests, so memcheck runs them;
 * "misuse": the death tests. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "test_util.h"

/* Sizes in each class a thread's cache may keep (1 to 4 data pages: blocks
 * up to 16 KiB, zeroize.h), the empty block, and one beyond (5 pages: a
 * slab slot that only the global path serves). */
static const size_t sizes[] = { 0, 1, 24, 32, 100, 1000, 4096, 5000, 8000, 12288, 16000, 20000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* memcheck is ~50x slower: fewer rounds there, the same interleavings. */
static unsigned scaled(unsigned normal)
{
    unsigned n = TU_ON_VALGRIND() ? normal / 10 : normal;
    return n > 0 ? n : 1;
}

static unsigned child_alarm_seconds(void)
{
    return TU_ON_VALGRIND() ? 120 : 10;
}

static unsigned char pattern(size_t tag, size_t i)
{
    return (unsigned char)(tag * 131u + i * 7u + 1u);
}

static void fill(unsigned char *p, size_t n, size_t tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(tag, i);
}

static int intact(const unsigned char *p, size_t n, size_t tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern(tag, i))
            return 0;
    return 1;
}

/* The bytes of slab a block of n bytes takes: its data pages and the guard
 * page they share with the next slot (docs/DESIGN.md, Slabs); what
 * cached_bytes counts for a free slot ("guard pages included"). */
static size_t slot_bytes(size_t n)
{
    size_t pg = tu_page_size(), span = tu_round16(n);
    size_t pages = span == 0 ? 1 : (span + pg - 1) / pg;
    return (pages + 1) * pg;
}

/* Flags every zz_alloc block must have when the policy is
 * ZZ_LOCK_REQUIRED and the kernel has the advice. */
#define ZZ_INFO_EXPECTED (ZZ_INFO_LOCKED | ZZ_INFO_GUARDED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK)

/* ZZ_INFO_EXPECTED, and the kernel agrees (smaps).  A 0-byte block points
 * at a guard page, which on the mprotect path is a VMA of its own: flags
 * only. */
static int fully_protected(const void *p, size_t n)
{
    if ((zz_info(p) & ZZ_INFO_EXPECTED) != ZZ_INFO_EXPECTED)
        return 0;
    if (n == 0)
        return 1;
    return tu_addr_has_flag(p, "lo") && tu_addr_has_flag(p, "dd") && tu_addr_has_flag(p, "wf");
}

/* ---- a crew: threads that run one step at a time, when told ---------------- */

#define CREW_MAX 8
#define HELD_MAX 512

struct crew;

struct member {
    pthread_t tid;
    unsigned id;
    struct crew *crew;
    unsigned char *held[HELD_MAX]; /* live blocks, each filled with pattern(tag_of) */
    size_t held_n[HELD_MAX];
    size_t nheld;
    size_t count;                  /* a step's result */
    int failed_line;               /* 0, or the line of the first failed check */
};

struct crew {
    unsigned n;
    pthread_barrier_t go, done;
    void (*step)(struct member *);
    int stop;
    struct member m[CREW_MAX];
};

/* A check in a crew thread: records the first failure for the main thread,
 * which asserts on it (cmocka's assert_* must not run off the main thread,
 * and child_check would end a child from the wrong thread). */
#define MCHECK(m, cond)                                                                            \
    do {                                                                                           \
        if (!(cond) && (m)->failed_line == 0)                                                      \
            (m)->failed_line = __LINE__;                                                           \
    } while (0)

static void *crew_main(void *arg)
{
    struct member *m = arg;
    struct crew *c = m->crew;
    for (;;) {
        pthread_barrier_wait(&c->go);
        if (c->stop)
            break;
        c->step(m);
        pthread_barrier_wait(&c->done);
    }
    return NULL;
}

/* Starts n threads, all waiting for a step.  Returns 0, or -1. */
static int crew_start(struct crew *c, unsigned n)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    if (n > CREW_MAX || pthread_barrier_init(&c->go, NULL, n + 1) != 0 ||
        pthread_barrier_init(&c->done, NULL, n + 1) != 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        c->m[i].id = i;
        c->m[i].crew = c;
        if (pthread_create(&c->m[i].tid, NULL, crew_main, &c->m[i]) != 0)
            return -1;
    }
    return 0;
}

/* Every thread runs step once; returns when all have finished (the
 * barriers order their work before whatever the caller does next). */
static void crew_run(struct crew *c, void (*step)(struct member *))
{
    c->step = step;
    pthread_barrier_wait(&c->go);
    pthread_barrier_wait(&c->done);
}

static int crew_failed(const struct crew *c)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->m[i].failed_line != 0)
            return c->m[i].failed_line;
    return 0;
}

static void crew_stop(struct crew *c)
{
    c->stop = 1;
    pthread_barrier_wait(&c->go);
    for (unsigned i = 0; i < c->n; i++)
        pthread_join(c->m[i].tid, NULL);
    pthread_barrier_destroy(&c->go);
    pthread_barrier_destroy(&c->done);
}

static size_t tag_of(const struct member *m, size_t k)
{
    return m->id * HELD_MAX + k;
}

/* Allocates and frees `rounds` blocks of every size, so the thread's cache
 * (if any) holds free slots of every class. */
static void member_warm(struct member *m, unsigned rounds)
{
    unsigned char *tmp[NSIZES];
    for (unsigned r = 0; r < rounds; r++) {
        for (size_t i = 0; i < NSIZES; i++) {
            tmp[i] = zz_alloc(sizes[i]);
            MCHECK(m, tmp[i] != NULL && zz_is_zero(tmp[i], sizes[i]));
            if (tmp[i] != NULL)
                memset(tmp[i], 0xC3, sizes[i]);
        }
        for (size_t i = 0; i < NSIZES; i++)
            zz_free(tmp[i]);
    }
}

/* One more live block of n bytes, zero-filled when handed out, then filled
 * with its own pattern. */
static void member_hold(struct member *m, size_t n)
{
    MCHECK(m, m->nheld < HELD_MAX);
    if (m->nheld >= HELD_MAX)
        return;
    unsigned char *p = zz_alloc(n);
    MCHECK(m, p != NULL && zz_is_zero(p, n));
    if (p == NULL)
        return;
    fill(p, n, tag_of(m, m->nheld));
    m->held[m->nheld] = p;
    m->held_n[m->nheld] = n;
    m->nheld++;
}

/* Checks and frees the held blocks from index `from` on. */
static void member_release_from(struct member *m, size_t from)
{
    while (m->nheld > from) {
        size_t k = --m->nheld;
        MCHECK(m, intact(m->held[k], m->held_n[k], tag_of(m, k)));
        MCHECK(m, zz_size(m->held[k]) == m->held_n[k]);
        zz_free(m->held[k]);
    }
}

static size_t member_held_bytes(const struct member *m, size_t from)
{
    size_t bytes = 0;
    for (size_t k = from; k < m->nheld; k++)
        bytes += m->held_n[k];
    return bytes;
}

static size_t member_held_slots(const struct member *m, size_t from)
{
    size_t bytes = 0;
    for (size_t k = from; k < m->nheld; k++)
        bytes += slot_bytes(m->held_n[k]);
    return bytes;
}

/* ---- 1. frees from another thread ------------------------------------------ */

/* Threads in a ring, round after round: each allocates a batch and hands it
 * to the next thread, which checks every byte and frees it, while the
 * allocator goes on allocating.  Catches a remote free that lands the slot
 * in the freeing thread's cache while the allocator's cache still hands it
 * out (one slot, two owners: a block's bytes change under it), and counts
 * that drift when a block is freed by a thread that did not allocate it. */
enum { RING = 4, RING_BATCH = 12 };

struct ring {
    pthread_barrier_t round;
    unsigned rounds;
    unsigned char *box[2][RING][RING_BATCH];
    int failed_line[RING];
};

struct ring_member {
    struct ring *ring;
    unsigned id;
};

static size_t ring_size(unsigned r, unsigned id, unsigned k)
{
    return sizes[(r * 7u + id * 3u + k) % NSIZES];
}

static size_t ring_tag(unsigned r, unsigned id, unsigned k)
{
    return ((size_t)r * RING + id) * RING_BATCH + k;
}

#define RCHECK(g, id, cond)                                                                        \
    do {                                                                                           \
        if (!(cond) && (g)->failed_line[id] == 0)                                                  \
            (g)->failed_line[id] = __LINE__;                                                       \
    } while (0)

/* Checks and frees what thread `from` allocated in round r. */
static void ring_take(struct ring *g, unsigned id, unsigned r, unsigned from)
{
    for (unsigned k = 0; k < RING_BATCH; k++) {
        unsigned char *p = g->box[r & 1][from][k];
        size_t n = ring_size(r, from, k);
        RCHECK(g, id, p != NULL && intact(p, n, ring_tag(r, from, k)) && zz_size(p) == n);
        zz_free(p);
    }
}

static void *ring_main(void *arg)
{
    struct ring_member *rm = arg;
    struct ring *g = rm->ring;
    unsigned id = rm->id, prev = (id + RING - 1) % RING;
    for (unsigned r = 0; r < g->rounds; r++) {
        for (unsigned k = 0; k < RING_BATCH; k++) {
            size_t n = ring_size(r, id, k);
            unsigned char *p = zz_alloc(n);
            RCHECK(g, id, p != NULL && zz_is_zero(p, n));
            if (p != NULL)
                fill(p, n, ring_tag(r, id, k));
            g->box[r & 1][id][k] = p;
            if (r > 0 && k == RING_BATCH / 2)
                ring_take(g, id, r - 1, prev); /* frees in the middle of allocating */
        }
        pthread_barrier_wait(&g->round);
    }
    ring_take(g, id, g->rounds - 1, prev);
    return NULL;
}

static void test_frees_handed_between_threads(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    struct ring *g = calloc(1, sizeof *g);
    assert_non_null(g);
    g->rounds = scaled(60);
    assert_int_equal(pthread_barrier_init(&g->round, NULL, RING), 0);
    pthread_t t[RING];
    struct ring_member rm[RING];
    for (unsigned i = 0; i < RING; i++) {
        rm[i] = (struct ring_member){ g, i };
        assert_int_equal(pthread_create(&t[i], NULL, ring_main, &rm[i]), 0);
    }
    for (unsigned i = 0; i < RING; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < RING; i++)
        if (g->failed_line[i] != 0)
            fail_msg("ring thread %u: check at line %d failed", i, g->failed_line[i]);
    pthread_barrier_destroy(&g->round);
    free(g);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
}

/* ---- 2. stats ------------------------------------------------------------------- */

enum { STATS_CREW = 4, STATS_HELD = 96 };

/* Warm the cache, then hold STATS_HELD blocks of every size in turn. */
static void step_warm_and_hold(struct member *m)
{
    member_warm(m, 4);
    for (size_t k = 0; k < STATS_HELD; k++)
        member_hold(m, sizes[(k + m->id) % NSIZES]);
}

static void step_release_half(struct member *m)
{
    member_release_from(m, m->nheld / 2);
}

static void step_release_all(struct member *m)
{
    member_release_from(m, 0);
}

/* mapped_bytes - cached_bytes: the bytes of live slots, plus a guard page
 * per slab (nothing else of the library's is mapped in this program: no
 * arena, no block above 64 KiB). */
static size_t uncached(const zz_stats *s)
{
    return s->mapped_bytes - s->cached_bytes;
}

/* zz_get_stats, read while other threads hold blocks and warm caches, counts
 * exactly what they hold (live_blocks, live_bytes).  Catches counts kept per
 * thread and not all added up (or a thread's cached slots counted as live).
 * And the slots they free stay accounted for: the bytes that leave the live
 * slots reappear as cached_bytes (exactly, when no slab was unmapped), so a
 * thread-cached slot counted neither as cached nor as live, or counted
 * twice, or without its guard page, shows. */
static void test_stats_count_what_threads_hold(void **state)
{
    (void)state;
    zz_stats s0, s1, s2, s3;
    zz_get_stats(&s0);
    struct crew *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(crew_start(c, STATS_CREW), 0);
    crew_run(c, step_warm_and_hold);
    assert_int_equal(crew_failed(c), 0);
    size_t blocks = 0, bytes = 0;
    for (unsigned i = 0; i < c->n; i++) {
        blocks += c->m[i].nheld;
        bytes += member_held_bytes(&c->m[i], 0);
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks + blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes + bytes);

    size_t freed_blocks = 0, freed_bytes = 0, freed_slots = 0;
    for (unsigned i = 0; i < c->n; i++) {
        freed_blocks += c->m[i].nheld - c->m[i].nheld / 2;
        freed_bytes += member_held_bytes(&c->m[i], c->m[i].nheld / 2);
        freed_slots += member_held_slots(&c->m[i], c->m[i].nheld / 2);
    }
    crew_run(c, step_release_half);
    assert_int_equal(crew_failed(c), 0);
    zz_get_stats(&s2);
    assert_int_equal(s2.live_blocks, s1.live_blocks - freed_blocks);
    assert_int_equal(s2.live_bytes, s1.live_bytes - freed_bytes);
    /* Each unmapped slab takes its leading guard page out of the difference
     * too (and mapped_bytes says whether any was unmapped). */
    size_t moved = uncached(&s1) - uncached(&s2);
    print_message("freed %zu slot bytes; uncached bytes fell by %zu, mapped by %zu\n", freed_slots,
                  moved, s1.mapped_bytes - s2.mapped_bytes);
    if (s2.mapped_bytes == s1.mapped_bytes)
        assert_int_equal(moved, freed_slots);
    else
        assert_in_range(moved, freed_slots, freed_slots + 64 * tu_page_size());

    crew_run(c, step_release_all);
    assert_int_equal(crew_failed(c), 0);
    zz_get_stats(&s3);
    assert_int_equal(s3.live_blocks, s0.live_blocks);
    assert_int_equal(s3.live_bytes, s0.live_bytes);
    crew_stop(c);
    zz_get_stats(&s3); /* the exits changed no count */
    assert_int_equal(s3.live_blocks, s0.live_blocks);
    assert_int_equal(s3.live_bytes, s0.live_bytes);
    assert_true(s3.cached_bytes <= s3.mapped_bytes);
    free(c);
}

enum { TRIM_CREW = 4, TRIM_HELD = 400 };

static void step_hold_32(struct member *m)
{
    member_warm(m, 2);
    for (size_t k = 0; k < TRIM_HELD; k++)
        member_hold(m, 32);
}

/* What zeroize.h promises about the cache's size: each class keeps up to the
 * largest of 1 MiB, its live bytes and its remembered peak; with decay 0 no
 * peak is remembered, so once the threads that held 12 MiB of 32-byte
 * blocks have freed them and exited, the class keeps about 1 MiB (test_stats
 * allows a slab of at most 2 MiB over it: slabs are unmapped whole).
 * cached_bytes <= cache_bound_bytes is not promised (that slab), so the
 * check is on the growth of cached_bytes.  Catches a thread-exit flush that
 * returns its slots without trimming the class, and slots left pinned in
 * dead threads' caches, which no trim can reach. */
static void test_stats_cache_trimmed_after_threads_exit(void **state)
{
    (void)state;
    unsigned long decay = zz_get_cache_decay_ms();
    assert_int_equal(zz_set_cache_decay_ms(0), 0);
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    struct crew *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(crew_start(c, TRIM_CREW), 0);
    crew_run(c, step_hold_32);
    assert_int_equal(crew_failed(c), 0);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks + (size_t)TRIM_CREW * TRIM_HELD);
    crew_run(c, step_release_all);
    assert_int_equal(crew_failed(c), 0);
    crew_stop(c);
    free(c);
    zz_get_stats(&s2);
    print_message("held %zu KiB of slots; cached %zu KiB before, %zu KiB after the threads exited "
                  "(bound %zu KiB)\n", (size_t)TRIM_CREW * TRIM_HELD * slot_bytes(32) >> 10,
                  s0.cached_bytes >> 10, s2.cached_bytes >> 10, s2.cache_bound_bytes >> 10);
    assert_int_equal(s2.live_blocks, s0.live_blocks);
    assert_true(s1.mapped_bytes >= (size_t)TRIM_CREW * TRIM_HELD * slot_bytes(32));
    assert_true(s2.cached_bytes <= s0.cached_bytes + (3u << 20));
    assert_true(s2.mapped_bytes <= s0.mapped_bytes + (3u << 20) + (64u << 10));
    assert_int_equal(zz_set_cache_decay_ms(decay), 0);
}

/* ---- 3. purge --------------------------------------------------------------------- */

enum { PURGE_CREW = 2, SECRET = 64 };
/* Every live block holds the secret of live_seed, every freed one that of
 * freed_seed: a scan's count then says how many copies exist, in two scans
 * instead of one per block (each reads all of memory). */
static const uint64_t live_seed = 0x7CAC4E5EC2E7ull, freed_seed = 0x7CAC4E5EC2E8ull;
static const size_t secret_sizes[] = { 64, 5000 }; /* classes of 1 and 2 pages */

/* The thread sanitizer intercepts memmem, which makes one scan take seconds:
 * the scans run in the plain, ASan and memcheck builds. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* The secret sits at the end of the block, next to the tail canary. */
static unsigned char *secret_at(unsigned char *p, size_t n)
{
    return p + n - SECRET;
}

/* Two blocks live, two freed (their slots now in this thread's cache, if it
 * has one), each with the secret at its end. */
static void step_hold_secrets(struct member *m)
{
    member_warm(m, 2);
    for (unsigned k = 0; k < 4; k++) {
        size_t n = secret_sizes[k % 2];
        unsigned char *p = zz_alloc(n);
        MCHECK(m, p != NULL);
        if (p == NULL)
            return;
        tu_fill_secret(secret_at(p, n), k < 2 ? live_seed : freed_seed, SECRET);
        if (k < 2) {
            m->held[k] = p;
            m->held_n[k] = n;
            m->nheld = k + 1;
        } else {
            zz_free(p); /* wiped now, whether its slot stays in this thread's cache or not */
        }
    }
}

/* After the purge, from the owner: its blocks read zero, take new data, and
 * free without a canary report (a purge zeroes the canaries too; a fast path
 * that compares them with the slab's words, as a plain free would not,
 * aborts here).  Then blocks from the cache are zero and free cleanly. */
static void step_after_purge(struct member *m)
{
    for (size_t k = 0; k < m->nheld; k++) {
        MCHECK(m, zz_is_zero(m->held[k], m->held_n[k]));
        memset(m->held[k], 0x6B, m->held_n[k]);
    }
    for (size_t k = 0; k < m->nheld; k++)
        zz_free(m->held[k]);
    m->nheld = 0;
    for (unsigned r = 0; r < 4; r++) {
        for (size_t k = 0; k < 2; k++) {
            unsigned char *p = zz_alloc(secret_sizes[k]);
            MCHECK(m, p != NULL && zz_is_zero(p, secret_sizes[k]));
            if (p != NULL)
                memset(p, 0x6C, secret_sizes[k]);
            zz_free(p);
        }
    }
}

static size_t copies_of(uint64_t seed)
{
    return UNDER_TSAN ? 0 : tu_scan_memory(seed, SECRET, NULL);
}

/* zz_purge wipes the live blocks of threads that are not calling into the
 * library; the secrets of blocks freed into thread caches were gone before
 * (zz_free wipes at once: a cache that wiped a slot only when handing it
 * out again would leave them in memory). */
static void test_purge_reaches_other_threads_and_caches(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    struct crew *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(crew_start(c, PURGE_CREW), 0);
    crew_run(c, step_hold_secrets);
    assert_int_equal(crew_failed(c), 0);
    if (!UNDER_TSAN) /* positive control: every live copy is found */
        assert_int_equal(copies_of(live_seed), 2 * PURGE_CREW);
    assert_int_equal(copies_of(freed_seed), 0);
    zz_purge();
    assert_int_equal(copies_of(live_seed), 0);
    assert_int_equal(copies_of(freed_seed), 0);
    for (unsigned i = 0; i < c->n; i++) {
        for (size_t k = 0; k < c->m[i].nheld; k++) {
            assert_true(zz_is_zero(c->m[i].held[k], c->m[i].held_n[k]));
            assert_int_equal(zz_size(c->m[i].held[k]), c->m[i].held_n[k]);
        }
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks + 2 * PURGE_CREW); /* a purge frees nothing */
    crew_run(c, step_after_purge);
    assert_int_equal(crew_failed(c), 0);
    crew_stop(c);
    free(c);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
}

/* ---- 4. fork ------------------------------------------------------------------------ */

enum { FORK_CREW = 3, FORK_HELD = 24 };

static void step_warm_hold_some(struct member *m)
{
    member_warm(m, 3);
    for (size_t k = 0; k < FORK_HELD; k++)
        member_hold(m, sizes[(k * 5 + m->id) % NSIZES]);
    /* and a few freed last, so the cache's top slots are of blocks that
     * were live a moment ago */
    member_release_from(m, FORK_HELD - 4);
}

struct fork_case {
    struct crew *crew;
    unsigned char *mine[NSIZES]; /* the forking thread's own live blocks */
    size_t parent_live;          /* live_blocks at the fork */
    zz_stats parent;             /* zz_get_stats just before the fork */
};

/* In the child: allocates and frees every size `rounds` times; the first
 * round's blocks are checked against smaps too.  The counts stay where
 * they were. */
static void child_alloc_rounds(size_t live, unsigned rounds)
{
    zz_stats s;
    unsigned char *p[NSIZES];
    for (unsigned r = 0; r < rounds; r++) {
        for (size_t i = 0; i < NSIZES; i++) {
            p[i] = zz_alloc(sizes[i]);
            child_check(p[i] != NULL && zz_is_zero(p[i], sizes[i]));
            if (r == 0)
                child_check(fully_protected(p[i], sizes[i]));
            else
                child_check((zz_info(p[i]) & ZZ_INFO_EXPECTED) == ZZ_INFO_EXPECTED);
            memset(p[i], 0x3A, sizes[i]);
        }
        zz_get_stats(&s);
        child_check(s.live_blocks == live + NSIZES);
        for (size_t i = 0; i < NSIZES; i++)
            zz_free(p[i]);
        zz_get_stats(&s);
        child_check(s.live_blocks == live);
    }
}

/* The child has one thread; the other threads' caches and live blocks are
 * its to account for.  It counts exactly the blocks live in the parent
 * (their cached slots are not live blocks), its first blocks (which a
 * naive cache takes from the forking thread's cache, on slabs whose locks
 * and, on the guard-install path, guards the kernel did not copy) are
 * locked, guarded, not dumped and wiped on fork, and it frees every
 * inherited block, its own thread's and the vanished threads'. */
static void child_after_fork_with_caches(void *arg)
{
    struct fork_case *f = arg;
    alarm(child_alarm_seconds());
    zz_stats s;
    zz_get_stats(&s);
    child_check(s.live_blocks == f->parent_live);
    child_check(s.live_bytes == f->parent.live_bytes);
    /* The vanished threads' cached slots are still cached (free slots of
     * their slabs), not lost: mapped - cached, the live slots and a guard
     * page per slab, is what it was in the parent, less a page for each
     * empty slab the child may have unmapped. */
    size_t was = uncached(&f->parent), now = uncached(&s);
    if (s.mapped_bytes == f->parent.mapped_bytes)
        child_check(now == was);
    else
        child_check(now <= was && now + 64 * tu_page_size() >= was);
    child_alloc_rounds(f->parent_live, scaled(20));
    size_t live = f->parent_live;
    for (size_t i = 0; i < NSIZES; i++) {
        child_check(zz_is_zero(f->mine[i], sizes[i]));
        zz_free(f->mine[i]);
        live--;
    }
    zz_get_stats(&s);
    child_check(s.live_blocks == live);
    for (unsigned t = 0; t < f->crew->n; t++) {
        const struct member *m = &f->crew->m[t];
        for (size_t k = 0; k < m->nheld; k++) {
            child_check(zz_is_zero(m->held[k], m->held_n[k]));
            child_check(zz_size(m->held[k]) == m->held_n[k]);
            zz_free(m->held[k]);
            live--;
        }
    }
    zz_get_stats(&s);
    child_check(s.live_blocks == live);
    child_alloc_rounds(live, 2);
}

static void test_fork_while_threads_hold_caches(void **state)
{
    (void)state;
    struct fork_case f;
    f.crew = calloc(1, sizeof *f.crew);
    assert_non_null(f.crew);
    assert_int_equal(crew_start(f.crew, FORK_CREW), 0);
    crew_run(f.crew, step_warm_hold_some);
    assert_int_equal(crew_failed(f.crew), 0);
    /* the forking thread's own cache, warm too, and blocks of its own */
    for (unsigned r = 0; r < 3; r++) {
        for (size_t i = 0; i < NSIZES; i++) {
            unsigned char *p = zz_alloc(sizes[i]);
            assert_non_null(p);
            memset(p, 0x17, sizes[i]);
            zz_free(p);
        }
    }
    for (size_t i = 0; i < NSIZES; i++) {
        f.mine[i] = zz_alloc(sizes[i]);
        assert_non_null(f.mine[i]);
        fill(f.mine[i], sizes[i], 9000 + i);
    }
    zz_get_stats(&f.parent);
    f.parent_live = f.parent.live_blocks;
    expect_child_ok(child_after_fork_with_caches, &f);
    /* the parent's blocks are untouched by the child's frees */
    for (size_t i = 0; i < NSIZES; i++) {
        assert_true(intact(f.mine[i], sizes[i], 9000 + i));
        zz_free(f.mine[i]);
    }
    crew_run(f.crew, step_release_all);
    assert_int_equal(crew_failed(f.crew), 0);
    crew_stop(f.crew);
    free(f.crew);
}

/* A thread in a tight loop of alloc/free (sizes of the four cached classes)
 * while the main thread forks, again and again: a fork lands anywhere in a
 * lock-free fast path.  It publishes its live blocks, so the child knows
 * them: a block is published only once zz_alloc has returned it, and
 * unpublished before zz_free is called. */
enum { LOOP_HOLD = 4 };
static const size_t loop_sizes[LOOP_HOLD] = { 32, 5000, 12288, 16000 };

struct looper {
    pthread_t tid;
    atomic_int stop;
    atomic_ulong rounds;
    _Atomic(unsigned char *) pub[LOOP_HOLD];
    int failed_line;
    size_t base_live; /* live_blocks before it started */
};

static void *loop_main(void *arg)
{
    struct looper *l = arg;
    for (size_t k = 0; !atomic_load_explicit(&l->stop, memory_order_relaxed); k = (k + 1) % LOOP_HOLD) {
        unsigned char *old = atomic_exchange(&l->pub[k], NULL);
        if (old != NULL) {
            if (!intact(old, loop_sizes[k], k) && l->failed_line == 0)
                l->failed_line = __LINE__;
            zz_free(old);
        }
        unsigned char *p = zz_alloc(loop_sizes[k]);
        if ((p == NULL || !zz_is_zero(p, loop_sizes[k])) && l->failed_line == 0)
            l->failed_line = __LINE__;
        if (p != NULL)
            fill(p, loop_sizes[k], k);
        atomic_store(&l->pub[k], p);
        atomic_fetch_add_explicit(&l->rounds, 1, memory_order_relaxed);
    }
    for (size_t k = 0; k < LOOP_HOLD; k++)
        zz_free(atomic_exchange(&l->pub[k], NULL));
    return NULL;
}

/* A fork that lands between zz_alloc's return and the looper's store of the
 * pointer leaves the child a live block whose only reference was in a
 * register of a thread the child does not have: memcheck's leak check at
 * the child's end (SIGKILL included) calls it definitely lost, and ctest's
 * memcheck step would count that.  Such a child checks no leaks (the parent
 * process does, for every test). */
static void forget_in_flight_block(void)
{
#if defined(ZZ_TEST_HAVE_MEMCHECK_H) && defined(VALGRIND_CLO_CHANGE)
    if (TU_ON_VALGRIND())
        VALGRIND_CLO_CHANGE("--leak-check=no");
#endif
}

/* The child: never hangs (a lock or a cache the looping thread held at the
 * fork), counts the looper's live blocks (between the published ones and
 * one more, in flight) but no cached slot as live, hands out protected
 * blocks, and frees the published blocks. */
static void child_after_fork_mid_loop(void *arg)
{
    struct looper *l = arg;
    alarm(child_alarm_seconds());
    forget_in_flight_block();
    size_t published = 0;
    for (size_t k = 0; k < LOOP_HOLD; k++)
        published += atomic_load(&l->pub[k]) != NULL;
    zz_stats s;
    zz_get_stats(&s);
    size_t live = s.live_blocks;
    child_check(live >= l->base_live + published && live <= l->base_live + published + 1);
    for (unsigned r = 0; r < scaled(20); r++) {
        unsigned char *p[LOOP_HOLD];
        for (size_t k = 0; k < LOOP_HOLD; k++) {
            p[k] = zz_alloc(loop_sizes[k]);
            child_check(p[k] != NULL && zz_is_zero(p[k], loop_sizes[k]));
            if (r == 0)
                child_check(fully_protected(p[k], loop_sizes[k]));
            memset(p[k], 0x42, loop_sizes[k]);
        }
        for (size_t k = 0; k < LOOP_HOLD; k++)
            zz_free(p[k]);
    }
    zz_get_stats(&s);
    child_check(s.live_blocks == live);
    for (size_t k = 0; k < LOOP_HOLD; k++) {
        unsigned char *p = atomic_load(&l->pub[k]);
        if (p == NULL)
            continue;
        child_check(zz_is_zero(p, loop_sizes[k]));
        zz_free(p);
    }
    zz_get_stats(&s);
    child_check(s.live_blocks == live - published);
}

static void test_fork_during_tight_alloc_free_loop(void **state)
{
    (void)state;
    struct looper *l = calloc(1, sizeof *l);
    assert_non_null(l);
    zz_stats s;
    zz_get_stats(&s);
    l->base_live = s.live_blocks;
    assert_int_equal(pthread_create(&l->tid, NULL, loop_main, l), 0);
    /* Under TSan fewer: a child forked from its runtime in a threaded
     * process now and then dies before running a line (.ci/test.sh). */
    unsigned forks = UNDER_TSAN ? 5 : scaled(20);
    for (unsigned i = 0; i < forks; i++) {
        unsigned long seen = atomic_load(&l->rounds);
        while (atomic_load(&l->rounds) < seen + scaled(50)) /* it is running */
            sched_yield();
        expect_child_ok(child_after_fork_mid_loop, l);
    }
    atomic_store(&l->stop, 1);
    pthread_join(l->tid, NULL);
    assert_int_equal(l->failed_line, 0);
    zz_get_stats(&s);
    assert_int_equal(s.live_blocks, l->base_live);
    free(l);
}

/* ---- 5. lock policy ------------------------------------------------------------------ */

enum { POLICY_BLOCKS = 48, POLICY_BIG = 12 }; /* blocks of 32 and 5000 bytes */

/* The hard RLIMIT_MEMLOCK the policy child keeps: what it has (it cannot
 * raise it without CAP_SYS_RESOURCE), at most 16 MiB.  Set in the child
 * before its threads read it. */
static rlim_t policy_hard_limit;

static rlim_t hard_memlock_up_to_16_mib(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_max == RLIM_INFINITY ||
        rl.rlim_max > ((rlim_t)16 << 20))
        return (rlim_t)16 << 20;
    return rl.rlim_max;
}

static int set_soft_memlock(rlim_t soft)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return -1;
    rl.rlim_cur = soft;
    return setrlimit(RLIMIT_MEMLOCK, &rl);
}

/* Capabilities belong to threads: each one drops CAP_IPC_LOCK itself. */
static void step_drop_ipc_lock(struct member *m)
{
    MCHECK(m, tu_drop_ipc_lock(policy_hard_limit) == 0);
}

static void step_warm(struct member *m)
{
    member_warm(m, 4);
}

/* Allocates until it has unlocked blocks of both sizes (the slots cached
 * before, locked, come first; then new slabs, which under best effort with
 * nothing lockable left stay unlocked), counts the unlocked ones in
 * m->count, and frees them all, newest first: a cache that takes frees
 * until it is full then holds unlocked slots (freed oldest first, it would
 * fill up with the locked ones and the policy switch would prove nothing). */
enum { CHURN_MAX = 4096, CHURN_UNLOCKED = 8 };

static void churn_counting_unlocked(struct member *m)
{
    /* One live block of each size, kept across the policy switch (freed by
     * alloc_all_locked): a class whose last block goes may give its cached
     * slots back to be trimmed, and the switch would then meet empty caches. */
    member_hold(m, 32);
    member_hold(m, 5000);
    unsigned char **p = malloc(CHURN_MAX * sizeof *p);
    MCHECK(m, p != NULL);
    if (p == NULL)
        return;
    size_t n = 0, unlocked[2] = { 0, 0 }; /* 32 B, 5000 B */
    while (n < CHURN_MAX && (unlocked[0] < CHURN_UNLOCKED || unlocked[1] < CHURN_UNLOCKED)) {
        int big = unlocked[0] >= CHURN_UNLOCKED;
        p[n] = zz_alloc(big ? 5000 : 32);
        MCHECK(m, p[n] != NULL);
        if (p[n] == NULL)
            break;
        unlocked[big] += !(zz_info(p[n]) & ZZ_INFO_LOCKED);
        n++;
    }
    m->count = unlocked[0] < unlocked[1] ? unlocked[0] : unlocked[1];
    while (n > 0)
        zz_free(p[--n]);
    free(p);
}

/* Under ZZ_LOCK_REQUIRED: every block is locked (zz_info; smaps for the
 * first 8 of each size, the ones a cache would hand out, and every 8th
 * after: a read of smaps is slow under memcheck).  Then frees them and the
 * two kept by churn_counting_unlocked. */
static void alloc_all_locked(struct member *m)
{
    for (size_t k = 0; k < POLICY_BLOCKS + POLICY_BIG; k++) {
        size_t before = m->nheld, j = k < POLICY_BLOCKS ? k : k - POLICY_BLOCKS;
        member_hold(m, k < POLICY_BLOCKS ? 32 : 5000);
        if (m->nheld == before)
            break; /* refused: member_hold recorded it */
        const unsigned char *p = m->held[m->nheld - 1];
        MCHECK(m, zz_info(p) & ZZ_INFO_LOCKED);
        if (j < 8 || j % 8 == 0)
            MCHECK(m, tu_addr_has_flag(p, "lo"));
    }
    member_release_from(m, 0);
}

static struct member main_member; /* the child's main thread, as a crew member */

/* Caches warm with locked slots (CAP_IPC_LOCK), then, without the capability
 * and with a soft RLIMIT_MEMLOCK of 0 under ZZ_LOCK_BEST_EFFORT, with
 * unlocked ones; the limit comes back and the policy becomes
 * ZZ_LOCK_REQUIRED: no thread may get one of those unlocked slots (a cache
 * that is not flushed, or not checked, when the policy changes hands them
 * out).  Twice, and for both threads. */
static void child_policy_with_warm_caches(void *arg)
{
    (void)arg;
    alarm(child_alarm_seconds());
    struct crew *c = calloc(1, sizeof *c);
    child_check(c != NULL && crew_start(c, 1) == 0);
    struct member *me = &main_member;
    memset(me, 0, sizeof *me);
    me->id = 7;
    crew_run(c, step_warm);
    step_warm(me);
    policy_hard_limit = hard_memlock_up_to_16_mib();
    child_check(tu_drop_ipc_lock(policy_hard_limit) == 0);
    crew_run(c, step_drop_ipc_lock);
    child_check(crew_failed(c) == 0);
    for (int flip = 0; flip < 2; flip++) {
        child_check(set_soft_memlock(0) == 0);
        child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
        crew_run(c, churn_counting_unlocked);
        churn_counting_unlocked(me);
        child_check(crew_failed(c) == 0 && me->failed_line == 0);
        /* the set-up worked: unlocked slots of both sizes were made (and
         * freed) in both threads */
        child_check(c->m[0].count == CHURN_UNLOCKED && me->count == CHURN_UNLOCKED);
        child_check(set_soft_memlock(policy_hard_limit) == 0);
        child_check(zz_set_lock_policy(ZZ_LOCK_REQUIRED) == 0);
        crew_run(c, alloc_all_locked);
        alloc_all_locked(me);
        if (crew_failed(c) != 0 || me->failed_line != 0)
            fprintf(stderr, "unlocked block under ZZ_LOCK_REQUIRED: line %d (thread), %d (main)\n",
                    crew_failed(c), me->failed_line);
        child_check(crew_failed(c) == 0 && me->failed_line == 0);
    }
    crew_stop(c);
    free(c);
}

static void test_policy_required_after_warm_caches(void **state)
{
    (void)state;
    expect_child_ok(child_policy_with_warm_caches, NULL);
}

/* ---- 6. the lock limit ------------------------------------------------------------------ */

#define LIMIT_BYTES ((rlim_t)1 << 20)
enum { LIMIT_CREW = 4, LIMIT_MAX = 4096 };
static size_t *limit_counts; /* shared: [0], [1] alone; [2], [3] with idle threads */

/* Warm the caches under the limit (a refusal here is the limit's business,
 * not a failure), then stay alive, idle, holding nothing live. */
static void step_churn_under_limit(struct member *m)
{
    unsigned char *p[12];
    m->count = 0; /* allocations refused */
    for (unsigned r = 0; r < scaled(100); r++) {
        for (size_t k = 0; k < 12; k++) {
            p[k] = zz_alloc(k < 8 ? 32 : 5000);
            m->count += p[k] == NULL;
        }
        for (size_t k = 0; k < 12; k++)
            zz_free(p[k]);
    }
}

/* Blocks of n bytes until the limit says no (each locked). */
static size_t count_until_refused(size_t n)
{
    static void *mine[LIMIT_MAX];
    size_t got = 0;
    while (got < LIMIT_MAX && (mine[got] = zz_alloc(n)) != NULL) {
        child_check(zz_info(mine[got]) & ZZ_INFO_LOCKED);
        got++;
    }
    child_check(got < LIMIT_MAX);
    child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    for (size_t i = 0; i < got; i++)
        zz_free(mine[i]);
    return got;
}

static void child_count_under_limit(void *arg)
{
    int with_threads = arg != NULL;
    alarm(child_alarm_seconds());
    /* dropped before the threads start, so they inherit it */
    child_check(tu_drop_ipc_lock(LIMIT_BYTES) == 0);
    struct crew *c = NULL;
    if (with_threads) {
        c = calloc(1, sizeof *c);
        child_check(c != NULL && crew_start(c, LIMIT_CREW) == 0);
        crew_run(c, step_churn_under_limit);
    }
    limit_counts[2 * with_threads] = count_until_refused(32);
    limit_counts[2 * with_threads + 1] = count_until_refused(5000);
    if (c != NULL) {
        crew_stop(c);
        free(c);
    }
}

/* Without CAP_IPC_LOCK, under a 1 MiB RLIMIT_MEMLOCK: four threads whose
 * caches are warm, idle, cost the main thread (almost) none of its live
 * blocks.  Catches caches that keep locked slots under a finite limit and
 * do not give them back when a lock is refused (the global cache's slabs
 * give way; slots pinned by other threads' caches cannot unless they are
 * taken back too).  The tolerance, 10%, is for slab rounding; one idle
 * thread keeping a slot of each size would already cost 80 KiB of 1 MiB. */
static void test_memlock_limit_live_blocks_before_caches(void **state)
{
    (void)state;
    limit_counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(limit_counts != MAP_FAILED);
    expect_child_ok(child_count_under_limit, NULL);
    expect_child_ok(child_count_under_limit, (void *)1);
    print_message("RLIMIT_MEMLOCK 1 MiB, 32 B / 5000 B blocks: %zu / %zu alone, %zu / %zu with "
                  "%d idle threads\n", limit_counts[0], limit_counts[1], limit_counts[2],
                  limit_counts[3], LIMIT_CREW);
    assert_true(limit_counts[0] >= 32 && limit_counts[1] >= 16);
    assert_true(limit_counts[2] * 10 >= limit_counts[0] * 9);
    assert_true(limit_counts[3] * 10 >= limit_counts[1] * 9);
    munmap(limit_counts, 4096);
}

/* ---- 7. threads that come and go ---------------------------------------------------------- */

enum { WAVES = 32, WAVE_THREADS = 2 };

static void *come_and_go(void *arg)
{
    int *failed = arg;
    unsigned char *p[NSIZES];
    for (unsigned r = 0; r < 3; r++) {
        for (size_t i = 0; i < NSIZES; i++) {
            p[i] = zz_alloc(sizes[i]);
            if (p[i] == NULL || !zz_is_zero(p[i], sizes[i])) {
                *failed = __LINE__;
                return NULL;
            }
            fill(p[i], sizes[i], i);
        }
        for (size_t i = 0; i < NSIZES; i++) {
            if (!intact(p[i], sizes[i], i))
                *failed = __LINE__;
            zz_free(p[i]);
        }
    }
    return NULL; /* with a warm cache: its exit must give it back */
}

/* 64 threads, two at a time, each ending with free slots in its cache.  The
 * counts come back to zero and, after the first waves, the mappings stay
 * within one slab (at most 2 MiB) per size class touched of where they
 * were: a cache lost at thread exit pins its slabs for good, and every
 * later thread, which prefers slabs no other thread pins, maps new ones
 * (hundreds of MiB over the waves).  The slack is for two threads of one
 * wave that find no unpinned slab with room and map one each.  Under
 * memcheck (and LeakSanitizer) a per-thread structure not freed at exit is
 * a definite leak. */
static void test_threads_come_and_go(void **state)
{
    (void)state;
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    for (unsigned wave = 0; wave < WAVES; wave++) {
        pthread_t t[WAVE_THREADS];
        int failed[WAVE_THREADS] = { 0 };
        for (unsigned i = 0; i < WAVE_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, come_and_go, &failed[i]), 0);
        for (unsigned i = 0; i < WAVE_THREADS; i++) {
            pthread_join(t[i], NULL);
            if (failed[i] != 0)
                fail_msg("wave %u thread %u: check at line %d failed", wave, i, failed[i]);
        }
        if (wave == 1)
            zz_get_stats(&s1);
    }
    zz_get_stats(&s2);
    print_message("mapped after 2 waves: %zu KiB, after %d: %zu KiB\n", s1.mapped_bytes >> 10,
                  WAVES, s2.mapped_bytes >> 10);
    assert_int_equal(s2.live_blocks, s0.live_blocks);
    assert_int_equal(s2.live_bytes, s0.live_bytes);
    assert_true(s2.mapped_bytes <= s1.mapped_bytes + (size_t)5 * (2u << 20)); /* 5 classes */
}

/* ---- misuse: double frees across threads ------------------------------------------------- */

/* Two threads free one block at once.  Whatever the interleaving, exactly
 * one free goes through and the other aborts with the library's line: never
 * two successes (a fast path that tests "is it live?" and then marks it
 * free, racing a locked free that does the same, puts the slot in two free
 * lists), never another crash (the loser must not check canaries the winner
 * is wiping: "canary corrupted").  Each racer has used the block's class
 * first, so its cache (if any) pins slabs of it; in half of the rounds the
 * block's own allocator is one of the racers.
 *
 * A pthread barrier wakes its waiters tens of microseconds apart, time
 * enough for one free to finish before the other starts; so the racers
 * spin until both have arrived (two cores: both are running) and leave
 * within a few hundred nanoseconds, and one waits a little longer, a
 * different time each round, to sweep one free's claim across the other's.  Measured against a
 * claim made of a load and a separate store (a window of a nanosecond or
 * two): about 1 race in 100 goes wrong, so a run of 40 catches it now and
 * then (no race test can do better); with a microsecond between the load
 * and the store, every run. */
enum { RACE_ROUNDS = 40 };

struct race {
    size_t n;
    unsigned char *_Atomic p;
    atomic_int ready;
};

struct racer {
    struct race *race;
    int allocates; /* this racer allocates the block */
    unsigned delay; /* spins after the start */
};

static void warm_class(size_t n)
{
    void *tmp[8];
    for (size_t i = 0; i < 8; i++)
        tmp[i] = zz_alloc(n);
    for (size_t i = 0; i < 8; i++)
        zz_free(tmp[i]);
}

static void *race_free(void *arg)
{
    struct racer *r = arg;
    struct race *g = r->race;
    warm_class(g->n);
    if (r->allocates) {
        unsigned char *p = zz_alloc(g->n);
        if (p != NULL)
            memset(p, 0x5A, g->n);
        atomic_store(&g->p, p);
    }
    /* released by the other racer's arrival, not by the main thread: that
     * one would hold a core when it let them go, and on two cores one racer
     * would start only once it slept */
    atomic_fetch_add(&g->ready, 1);
    for (unsigned spins = 0; atomic_load(&g->ready) < 2; spins++)
        if (spins > 1000000) /* not both running: let the other one in */
            sched_yield();
    for (volatile unsigned d = 0; d < r->delay; d++)
        ;
    zz_free(atomic_load(&g->p));
    return NULL;
}

static void child_concurrent_double_free(void *arg)
{
    unsigned round = (unsigned)(uintptr_t)arg;
    static const size_t race_sizes[] = { 32, 5000, 16000 };
    static struct race g;
    g.n = race_sizes[round % 3];
    int allocator_races = round % 2 == 0;
    if (!allocator_races) {
        atomic_store(&g.p, zz_alloc(g.n));
        child_check(atomic_load(&g.p) != NULL);
    }
    /* the first racer waits: when it is the allocator, its free takes the
     * short lock-free path, and must start later to meet the other's claim */
    unsigned delay = round / 2 % 10 * 60;
    struct racer r1 = { &g, allocator_races, delay }, r2 = { &g, 0, allocator_races ? 0 : delay / 2 };
    pthread_t t1, t2;
    child_check(pthread_create(&t1, NULL, race_free, &r1) == 0);
    child_check(pthread_create(&t2, NULL, race_free, &r2) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    /* reached only if both frees went through */
}

static void test_concurrent_double_free_aborts(void **state)
{
    (void)state;
    for (unsigned round = 0; round < RACE_ROUNDS; round++)
        expect_fatal(child_concurrent_double_free, (void *)(uintptr_t)round, "zeroize: double free");
}

/* A thread allocates a block and frees it (its slot may now sit in that
 * thread's cache, wiped); then the block is freed again: by another thread
 * while the first still runs, by another thread after the first exited
 * (its cache given back), or by the same thread.  Each is the double free
 * it is.  Catches a cached slot that the locked path still takes for live
 * (it would free it a second time: the slot then in two places). */
enum second_free { BY_OTHER_WHILE_ALIVE, BY_OTHER_AFTER_EXIT, BY_SAME_THREAD };

struct first_free {
    size_t n;
    enum second_free how;
    unsigned char *p;
    pthread_barrier_t freed, done;
};

static void *alloc_then_free(void *arg)
{
    struct first_free *f = arg;
    warm_class(f->n);
    f->p = zz_alloc(f->n);
    if (f->p != NULL)
        memset(f->p, 0x77, f->n);
    zz_free(f->p);
    if (f->how == BY_SAME_THREAD) {
        zz_free(f->p);
        return NULL;
    }
    if (f->how == BY_OTHER_WHILE_ALIVE) {
        pthread_barrier_wait(&f->freed);
        pthread_barrier_wait(&f->done); /* never: the process aborts first */
    }
    return NULL;
}

static void child_second_free(void *arg)
{
    struct first_free *f = arg;
    pthread_barrier_init(&f->freed, NULL, 2);
    pthread_barrier_init(&f->done, NULL, 2);
    pthread_t t;
    child_check(pthread_create(&t, NULL, alloc_then_free, f) == 0);
    if (f->how == BY_OTHER_WHILE_ALIVE) {
        pthread_barrier_wait(&f->freed);
    } else {
        pthread_join(t, NULL);
        if (f->how == BY_SAME_THREAD)
            return; /* that thread's second free went through */
    }
    child_check(f->p != NULL);
    zz_free(f->p);
}

static void test_double_free_of_a_slot_another_thread_cached(void **state)
{
    (void)state;
    static const size_t ns[] = { 32, 5000 };
    for (size_t i = 0; i < 2; i++) {
        for (int how = BY_OTHER_WHILE_ALIVE; how <= BY_SAME_THREAD; how++) {
            struct first_free f;
            memset(&f, 0, sizeof f);
            f.n = ns[i];
            f.how = (enum second_free)how;
            expect_fatal(child_second_free, &f, "zeroize: double free");
        }
    }
}

/* ---- 8. slabs of their own ------------------------------------------------------ */

/* Threads whose caches free into one slab write the same cache lines of its
 * slot metadata on every pair: each pair then costs several times as much
 * (measured: 420-540 ns instead of ~40 ns in each of 2 threads).  A thread's
 * first slow path must already prefer a slab no other thread's cache pins,
 * because a steady pair never takes the slow path again. */
struct steady {
    pthread_barrier_t *start, *end; /* both threads (and caches) live in between */
    unsigned char *last;            /* a block allocated after the loop, still live */
};

static void *steady_pairs(void *arg)
{
    struct steady *st = arg;
    pthread_barrier_wait(st->start);
    for (unsigned k = 0; k < scaled(2000); k++) {
        unsigned char *p = zz_alloc(32);
        if (p == NULL)
            break; /* the main thread's check fails on st->last */
        VWRITE(p, k);
        zz_free(p);
    }
    st->last = zz_alloc(32);
    pthread_barrier_wait(st->end); /* a cache that went with its thread pins nothing */
    return NULL;
}

static void test_fresh_threads_take_slabs_of_their_own(void **state)
{
    (void)state;
    unsigned char *mine = zz_alloc(32); /* this thread's cache pins the slab */
    assert_non_null(mine);
    pthread_barrier_t start, end;
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&end, NULL, 2), 0);
    struct steady st[2] = {{&start, &end, NULL}, {&start, &end, NULL}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, steady_pairs, &st[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
    assert_non_null(st[0].last);
    assert_non_null(st[1].last);
    /* One slab is one VMA (the guard pages inside it are markers, and
     * neighbouring slabs do not merge: test_names counts them).  Under the
     * mprotect fallback every slot is a VMA of its own and the check says
     * nothing more than that the blocks differ. */
    struct tu_vma v[3];
    const unsigned char *blocks[3] = {mine, st[0].last, st[1].last};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_smaps_vma(blocks[i], &v[i]), 0);
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (v[i].start == v[j].start)
                fail_msg("blocks of threads %d and %d share a slab (%#lx-%#lx)", i, j,
                         (unsigned long)v[i].start, (unsigned long)v[i].end);
    zz_free(st[0].last); /* freed by a thread that never pinned their slabs */
    zz_free(st[1].last);
    zz_free(mine);
}

/* A thread's first miss prefers a slab that no other thread's cache pins;
 * when the class has room only in slabs that others pin (here: the slabs
 * of a burst this thread just freed), the thread gets a small slab of its
 * own, not the class's next geometric step (2 MiB for 32-byte blocks).
 * Mapping 2 MiB per thread, then unmapping it when the thread exits (the
 * class is over its bound), made every repetition of zz-bench's thread
 * pairs and the live batch after them map, lock and unmap 8 MiB. */
enum { BURST = 1000, CREW = 4 };

struct small_own {
    pthread_barrier_t *ready, *done;
    int ok;
};

static void *pairs_then_wait(void *arg)
{
    struct small_own *so = arg;
    so->ok = 1;
    for (unsigned k = 0; k < 100 && so->ok; k++) {
        unsigned char *p = zz_alloc(32);
        so->ok = p != NULL;
        if (p != NULL) {
            VWRITE(p, k);
            zz_free(p);
        }
    }
    pthread_barrier_wait(so->ready); /* caches full and pinned: the main thread looks */
    pthread_barrier_wait(so->done);
    return NULL;
}

/* The scenario, in a fresh process (what earlier tests left mapped would
 * give the threads unpinned slabs with room): exit status 0 when the
 * threads mapped at most a quarter of a MiB each. */
static size_t small_own_round(int *ok)
{
    static void *burst[BURST];
    for (size_t i = 0; i < BURST; i++)
        if ((burst[i] = zz_alloc(32)) == NULL)
            *ok = 0;
    for (size_t i = 0; i < BURST; i++) /* in allocation order, as zz-bench's live batch */
        zz_free(burst[i]);
    zz_stats before, during;
    zz_get_stats(&before);
    pthread_barrier_t ready, done;
    pthread_barrier_init(&ready, NULL, CREW + 1);
    pthread_barrier_init(&done, NULL, CREW + 1);
    struct small_own so[CREW];
    pthread_t t[CREW];
    for (int i = 0; i < CREW; i++) {
        so[i] = (struct small_own){&ready, &done, 0};
        if (pthread_create(&t[i], NULL, pairs_then_wait, &so[i]) != 0)
            abort();
    }
    pthread_barrier_wait(&ready);
    zz_get_stats(&during);
    pthread_barrier_wait(&done);
    for (int i = 0; i < CREW; i++) {
        pthread_join(t[i], NULL);
        *ok &= so[i].ok;
    }
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&done);
    return during.mapped_bytes > before.mapped_bytes ? during.mapped_bytes - before.mapped_bytes : 0;
}

/* The scenario, in a fresh process (what earlier tests left mapped would
 * give the threads unpinned slabs with room), in rounds as zz-bench runs
 * it (the threads of the second round found every slab with room pinned):
 * exit status 0 when the threads mapped at most a quarter of a MiB each. */
static int small_own_scenario(void)
{
    int ok = 1;
    size_t most = 0;
    for (int round = 0; round < 4; round++) {
        size_t grew = small_own_round(&ok);
        most = grew > most ? grew : most;
    }
    printf("%d threads mapped at most %zu KiB beside a cached burst of %d blocks\n", CREW, most >> 10,
           BURST);
    return ok && most <= (size_t)CREW * (256u << 10) ? 0 : 1;
}

static void test_threads_map_small_slabs_of_their_own(void **state)
{
    (void)state;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = '\0';
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static char mode[] = "small-own";
        char *argv[] = {self, mode, NULL};
        execv(self, argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frees_handed_between_threads),
        cmocka_unit_test(test_stats_count_what_threads_hold),
        cmocka_unit_test(test_stats_cache_trimmed_after_threads_exit),
        cmocka_unit_test(test_purge_reaches_other_threads_and_caches),
        cmocka_unit_test(test_fork_while_threads_hold_caches),
        cmocka_unit_test(test_fork_during_tight_alloc_free_loop),
        cmocka_unit_test(test_policy_required_after_warm_caches),
        cmocka_unit_test(test_memlock_limit_live_blocks_before_caches),
        cmocka_unit_test(test_threads_come_and_go),
        cmocka_unit_test(test_fresh_threads_take_slabs_of_their_own),
        cmocka_unit_test(test_threads_map_small_slabs_of_their_own),
    };
    const struct CMUnitTest misuse[] = {
        cmocka_unit_test(test_concurrent_double_free_aborts),
        cmocka_unit_test(test_double_free_of_a_slot_another_thread_cached),
    };
    if (argc > 1 && strcmp(argv[1], "small-own") == 0)
        return small_own_scenario();
    if (argc > 1 && strcmp(argv[1], "misuse") == 0)
        return cmocka_run_group_tests(misuse, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
