/* zz_purge: every live block (zz_alloc of several sizes, aligned, arena
 * blocks, blocks in ZZ_NOACCESS and ZZ_READONLY) reads as zero afterwards,
 * keeps its mode, stays valid, and frees without a false canary report; the
 * secret is gone from /proc/self/mem; real overflows are still caught.
 *
 * `test_purge stress`: zz_purge from a 1 ms SIGALRM while threads allocate
 * and free (zz_alloc and a shared arena), or change protection modes.  The
 * purge writes into blocks that other threads use at that moment; that race
 * is the documented behaviour, so ctest labels this group "nosan".
 *
 * `test_purge teardown`: zz_purge from another thread, and from a signal on
 * the same thread, while arenas are created, filled and destroyed (issue 11,
 * defect 1).  `test_purge first_use`: zz_purge from a thread while another
 * makes the library's first call. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <time.h>

#include "test_util.h"

static const size_t sizes[] = { 1, 15, 16, 32, 100, 4095, 4096, 5000, 70000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])
static const size_t arena_sizes[] = { 1, 20, 32, 500, 3000 };
#define NARENA (sizeof arena_sizes / sizeof arena_sizes[0])

static char perm_of(const void *p)
{
    struct tu_vma v;
    if (tu_smaps_vma(p, &v) != 0)
        return '?';
    return v.perms[0];
}

struct live_set {
    unsigned char *blk[NSIZES];
    unsigned char *aligned;
    zz_arena *grow, *fixed;
    unsigned char *ga[NARENA], *fa[NARENA];
    unsigned char *noaccess, *readonly;
};

static void make_live_set(struct live_set *s)
{
    for (size_t i = 0; i < NSIZES; i++) {
        s->blk[i] = zz_alloc(sizes[i]);
        assert_non_null(s->blk[i]);
        memset(s->blk[i], 0xA5, sizes[i]);
    }
    s->aligned = zz_alloc_aligned(100, 256);
    assert_non_null(s->aligned);
    memset(s->aligned, 0xA6, 100);
    s->grow = zz_arena_create(0);
    s->fixed = zz_arena_create(65536);
    assert_non_null(s->grow);
    assert_non_null(s->fixed);
    for (size_t i = 0; i < NARENA; i++) {
        s->ga[i] = zz_arena_alloc(s->grow, arena_sizes[i]);
        s->fa[i] = zz_arena_alloc(s->fixed, arena_sizes[i]);
        assert_non_null(s->ga[i]);
        assert_non_null(s->fa[i]);
        memset(s->ga[i], 0xA7, arena_sizes[i]);
        memset(s->fa[i], 0xA8, arena_sizes[i]);
    }
    s->noaccess = zz_alloc(64);
    s->readonly = zz_alloc(64);
    assert_non_null(s->noaccess);
    assert_non_null(s->readonly);
    memset(s->noaccess, 0xA9, 64);
    memset(s->readonly, 0xAA, 64);
    assert_int_equal(zz_protect(s->noaccess, ZZ_NOACCESS), 0);
    assert_int_equal(zz_protect(s->readonly, ZZ_READONLY), 0);
}

static void free_live_set(struct live_set *s)
{
    for (size_t i = 0; i < NSIZES; i++)
        zz_free(s->blk[i]);
    zz_free(s->aligned);
    for (size_t i = 0; i < NARENA; i++) {
        zz_arena_free(s->grow, s->ga[i]);
        zz_arena_free(s->fixed, s->fa[i]);
    }
    zz_arena_destroy(s->grow);
    zz_arena_destroy(s->fixed);
    zz_free(s->noaccess); /* any mode */
    zz_free(s->readonly);
}

static void test_purge_wipes_every_live_block(void **state)
{
    (void)state;
    struct live_set s;
    make_live_set(&s);
    zz_stats before, after;
    zz_get_stats(&before);
    zz_purge();
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
    assert_int_equal(after.live_bytes, before.live_bytes);
    for (size_t i = 0; i < NSIZES; i++) {
        assert_true(zz_is_zero(s.blk[i], sizes[i]));
        assert_int_equal(zz_size(s.blk[i]), sizes[i]);
    }
    assert_true(zz_is_zero(s.aligned, 100));
    for (size_t i = 0; i < NARENA; i++) {
        assert_true(zz_is_zero(s.ga[i], arena_sizes[i]));
        assert_true(zz_is_zero(s.fa[i], arena_sizes[i]));
        assert_int_equal(zz_info(s.ga[i]) & ZZ_INFO_CANARY, ZZ_INFO_CANARY);
    }
    /* Modes are kept, and the protected blocks were wiped too. */
    assert_int_equal(perm_of(s.noaccess), '-');
    assert_int_equal(perm_of(s.readonly), 'r');
    assert_true(zz_is_zero(s.readonly, 64));
    assert_int_equal(zz_protect(s.noaccess, ZZ_READONLY), 0);
    assert_true(zz_is_zero(s.noaccess, 64));
    assert_int_equal(zz_protect(s.noaccess, ZZ_NOACCESS), 0);
    /* Still usable: write again, purge twice more, write, free. */
    for (size_t i = 0; i < NSIZES; i++)
        memset(s.blk[i], 0x3C, sizes[i]);
    zz_purge();
    zz_purge();
    for (size_t i = 0; i < NSIZES; i++) {
        assert_true(zz_is_zero(s.blk[i], sizes[i]));
        memset(s.blk[i], 0x3D, sizes[i]);
    }
    for (size_t i = 0; i < NARENA; i++)
        memset(s.ga[i], 0x3E, arena_sizes[i]);
    free_live_set(&s); /* a false canary report would abort here */
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks - NSIZES - 3 - 2 * NARENA);
}

/* Blocks made after a purge have fresh canaries and zero contents. */
static void test_blocks_after_purge(void **state)
{
    (void)state;
    zz_purge(); /* nothing live of ours: must not crash */
    unsigned char *p = zz_alloc(40);
    assert_non_null(p);
    memset(p, 0x12, 40);
    zz_purge();
    zz_free(p);
    unsigned char *q = zz_alloc(40); /* LIFO: the same slot */
    assert_non_null(q);
    assert_true(zz_is_zero(q, 40));
    memset(q, 0x13, 40);
    zz_free(q);
}

static void test_purge_removes_secret_from_memory(void **state)
{
    (void)state;
    const uint64_t seed = 0x9E2CE5EC2E7ull;
    enum { LEN = 64 };
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    unsigned char *blk = zz_alloc(LEN), *big = zz_alloc(9000), *ab = zz_arena_alloc(a, LEN),
                  *hidden = zz_alloc(LEN);
    assert_non_null(blk);
    assert_non_null(big);
    assert_non_null(ab);
    assert_non_null(hidden);
    tu_fill_secret(blk, seed, LEN);
    tu_fill_secret(big + 5000, seed + 1, LEN);
    tu_fill_secret(ab, seed + 2, LEN);
    tu_fill_secret(hidden, seed + 3, LEN);
    assert_int_equal(zz_protect(hidden, ZZ_NOACCESS), 0); /* /proc/self/mem reads it anyway */
    for (uint64_t k = 0; k < 4; k++)
        assert_int_equal(tu_scan_memory(seed + k, LEN, NULL), 1); /* positive control */
    zz_purge();
    for (uint64_t k = 0; k < 4; k++)
        assert_int_equal(tu_scan_memory(seed + k, LEN, NULL), 0);
    zz_free(blk);
    zz_free(big);
    zz_free(hidden);
    zz_arena_free(a, ab);
    zz_arena_destroy(a);
}

/* After a purge, a real overflow (a non-zero byte) is still reported. */
struct after_purge {
    int arena;
    size_t n;
    ptrdiff_t offset;
};

static OPTNONE void child_overflow_after_purge(void *arg)
{
    const struct after_purge *c = arg;
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    unsigned char *p = c->arena ? zz_arena_alloc(a, c->n) : zz_alloc(c->n);
    child_check(p != NULL);
    zz_purge();
    /* Even and non-zero: never a canary byte (their low bit is set) nor a
     * zeroed one, so the write is always a change the check must see (a
     * value with the low bit set would equal the random canary byte there
     * once in 128 runs). */
    VWRITE(p + c->offset, 0x40);
    if (c->arena)
        zz_arena_free(a, p);
    else
        zz_free(p);
}

static void test_overflow_after_purge_detected(void **state)
{
    (void)state;
    static struct after_purge after[] = { { 0, 20, 20 }, { 0, 20, 31 }, { 1, 20, 20 },
                                          { 1, 32, 32 }, { 1, 2000, 2001 } };
    static struct after_purge before[] = { { 0, 20, -1 }, { 0, 20, -16 }, { 1, 32, -1 } };
    int failures = 0;
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        if (!fatal_ok(child_overflow_after_purge, &after[i],
                      "zeroize: canary corrupted (after block)")) {
            print_error("  ^ %s n=%zu p[%td]\n", after[i].arena ? "arena" : "zz_alloc",
                        after[i].n, after[i].offset);
            failures++;
        }
    }
    for (size_t i = 0; i < sizeof before / sizeof before[0]; i++) {
        if (!fatal_ok(child_overflow_after_purge, &before[i],
                      "zeroize: canary corrupted (before block)")) {
            print_error("  ^ %s n=%zu p[%td]\n", before[i].arena ? "arena" : "zz_alloc",
                        before[i].n, before[i].offset);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* ---- purge racing teardown (issue 11, defect 1) --------------------------- */
/* zz_purge, from another thread or from a signal handler on the same thread,
 * must never touch memory that zz_arena_destroy has released.  On 53bd339 a
 * chunk's runs were freed before the chunk left the purge list: ASan reports
 * a heap-use-after-free in the arena purge, a release build segfaults now and
 * then.  Each round makes a fixed arena of 1 MiB holding one block of every
 * size 16..16336 (step 256), and a growable arena likewise, then destroys
 * them. */

enum { TEARDOWN_MAX_ROUNDS = 400 };
#define TEARDOWN_SECONDS 3.0

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* One round: returns how many blocks were handed out. */
static size_t fill_and_destroy(size_t capacity)
{
    zz_arena *a = zz_arena_create(capacity);
    child_check(a != NULL);
    size_t got = 0;
    for (size_t n = 16; n <= 16336; n += 256) {
        unsigned char *p = zz_arena_alloc(a, n);
        if (p == NULL)
            continue;
        memset(p, 0x5A, n);
        got++;
    }
    zz_arena_destroy(a);
    return got;
}

static void teardown_rounds(unsigned long *rounds, size_t *blocks)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    *rounds = 0;
    *blocks = 0;
    while (*rounds < TEARDOWN_MAX_ROUNDS && seconds_since(&start) < TEARDOWN_SECONDS) {
        *blocks += fill_and_destroy((size_t)1 << 20);
        *blocks += fill_and_destroy(0);
        ++*rounds;
    }
}

static atomic_int purger_stop;
static atomic_ulong purger_rounds;

/* Purges until told to stop; with arg != NULL, yields the CPU after each
 * purge (so the other thread, also on a loaded machine, gets through many
 * rounds while purges keep starting). */
static void *purge_forever(void *arg)
{
    while (!atomic_load(&purger_stop)) {
        zz_purge();
        atomic_fetch_add(&purger_rounds, 1);
        if (arg != NULL)
            sched_yield();
    }
    return NULL;
}

static void child_purge_thread_vs_destroy(void *arg)
{
    (void)arg;
    alarm(60);
    atomic_store(&purger_stop, 0);
    atomic_store(&purger_rounds, 0);
    pthread_t t;
    child_check(pthread_create(&t, NULL, purge_forever, arg) == 0);
    unsigned long rounds;
    size_t blocks;
    teardown_rounds(&rounds, &blocks);
    atomic_store(&purger_stop, 1);
    child_check(pthread_join(t, NULL) == 0);
    fprintf(stderr, "%lu rounds of create/fill/destroy (%zu blocks), %lu purges meanwhile\n",
            rounds, blocks, atomic_load(&purger_rounds));
    child_check(rounds > 0 && blocks > 0);
    child_check(atomic_load(&purger_rounds) > 0);
}

static void expect_survives(tu_child_fn fn, void *arg)
{
    struct tu_child_result r;
    assert_int_equal(tu_run_child(fn, arg, &r), 0);
    print_message("%s", r.err);
    if (!r.exited || r.exit_code != 0) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail();
    }
}

static void test_purge_thread_races_arena_destroy(void **state)
{
    (void)state;
    static int yielding = 1;
    expect_survives(child_purge_thread_vs_destroy, &yielding);
}

/* 1 under a sanitizer that makes each store slow (TSan, ASan): a purge of
 * the test's full arena then takes longer than 100 us. */
static int running_under_slow_sanitizer(void)
{
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
    return 1;
#else
    return 0;
#endif
#else
    return 0;
#endif
}

static volatile sig_atomic_t chained_alarms;

static void count_chained_alarm(int sig)
{
    (void)sig;
    chained_alarms++;
}

/* The same on one thread: a 100 us timer whose SIGALRM purges (through
 * zz_purge_on_signals, chained to a handler that only counts). */
static void child_purge_signal_vs_destroy(void *arg)
{
    (void)arg;
    child_check(tu_child_watchdog(60) == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_chained_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    child_check(sigaction(SIGALRM, &sa, NULL) == 0);
    const int sigs[] = { SIGALRM };
    child_check(zz_purge_on_signals(sigs, 1) == 0);
    /* Under valgrind or a sanitizer a purge takes longer than 100 us (clang's
     * ASan build, -O0, instruments every store of zz_wipe's loop): the process
     * would do nothing but purge. */
    suseconds_t us = TU_ON_VALGRIND() ? 5000 : running_under_slow_sanitizer() ? 1000 : 100;
    struct itimerval every = { { 0, us }, { 0, us } }, off = { { 0, 0 }, { 0, 0 } };
    child_check(setitimer(ITIMER_REAL, &every, NULL) == 0);
    unsigned long rounds;
    size_t blocks;
    teardown_rounds(&rounds, &blocks);
    child_check(setitimer(ITIMER_REAL, &off, NULL) == 0);
    fprintf(stderr, "%lu rounds of create/fill/destroy (%zu blocks), %ld purges from SIGALRM\n",
            rounds, blocks, (long)chained_alarms);
    child_check(rounds > 0 && blocks > 0);
    child_check(chained_alarms > 0);
}

static void test_purge_signal_during_arena_destroy(void **state)
{
    (void)state;
    expect_survives(child_purge_signal_vs_destroy, NULL);
}

/* ---- purge during the library's first use ---------------------------------- */
/* zz_purge from one thread while another thread makes the library's first
 * call (which sets the library up): the purge must see either nothing or a
 * library fully set up, never a half-published one.  No block is live while
 * the purges run, so the thread sanitizer has nothing to report unless the
 * set-up itself is published without synchronisation. */
static void child_purge_during_first_use(void *arg)
{
    (void)arg;
    alarm(60);
    atomic_store(&purger_stop, 0);
    atomic_store(&purger_rounds, 0);
    pthread_t t;
    child_check(pthread_create(&t, NULL, purge_forever, NULL) == 0);
    while (atomic_load(&purger_rounds) < 100)
        sched_yield();
    zz_arena *a = zz_arena_create(0); /* the library's first use in this process */
    child_check(a != NULL);
    unsigned long seen = atomic_load(&purger_rounds);
    for (int i = 0; i < 1000 && atomic_load(&purger_rounds) < seen + 100; i++)
        sched_yield();
    atomic_store(&purger_stop, 1);
    child_check(pthread_join(t, NULL) == 0);
    /* destroyed once no purge runs: zz_arena_destroy waits for a moment
     * with no purge running, which a purging loop may make rare */
    zz_arena_destroy(a);
}

static void test_purge_during_first_use(void **state)
{
    (void)state;
    expect_survives(child_purge_during_first_use, NULL);
}

/* ---- stress: purge from SIGALRM while threads work ------------------------ */

static atomic_uint purges;
static atomic_int stop;

static void on_alarm(int sig)
{
    (void)sig;
    zz_purge();
    atomic_fetch_add(&purges, 1);
}

struct worker {
    zz_arena *arena;
    unsigned id;
    unsigned long ops, bad_bytes, failed_allocs;
    int toggle_protection;
};

/* Every byte holds the pattern or was zeroed by a purge. */
static void check_bytes(struct worker *w, const unsigned char *p, size_t n, unsigned char pat)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat && p[i] != 0)
            w->bad_bytes++;
}

enum { HELD = 16 };

static void *alloc_worker(void *arg)
{
    struct worker *w = arg;
    unsigned char *held[HELD] = { 0 }, *aheld[HELD] = { 0 };
    size_t hn[HELD] = { 0 }, an[HELD] = { 0 };
    unsigned char pat = (unsigned char)(0x40 + w->id);
    for (unsigned long r = 0; !atomic_load(&stop); r++) {
        unsigned k = (unsigned)(r % HELD);
        if (held[k] != NULL) {
            check_bytes(w, held[k], hn[k], pat);
            zz_free(held[k]);
        }
        if (aheld[k] != NULL) {
            check_bytes(w, aheld[k], an[k], pat);
            zz_arena_free(w->arena, aheld[k]);
        }
        hn[k] = (r * 131 + w->id * 17) % 600 + (r % 97 == 0 ? 5000 : 0);
        an[k] = (r * 71 + w->id * 5) % 400 + 1;
        held[k] = zz_alloc(hn[k]);
        aheld[k] = zz_arena_alloc(w->arena, an[k]);
        if (held[k] == NULL || aheld[k] == NULL) {
            w->failed_allocs++;
            continue;
        }
        memset(held[k], pat, hn[k]);
        memset(aheld[k], pat, an[k]);
        w->ops++;
    }
    for (unsigned k = 0; k < HELD; k++) {
        zz_free(held[k]);
        zz_arena_free(w->arena, aheld[k]);
    }
    return NULL;
}

/* Switches its own blocks between modes while purges run. */
static void *protect_worker(void *arg)
{
    struct worker *w = arg;
    unsigned char *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = zz_alloc(64);
        if (p[i] == NULL) {
            w->failed_allocs++;
            return NULL;
        }
    }
    for (unsigned long r = 0; !atomic_load(&stop); r++) {
        unsigned char *b = p[r % 4];
        if (zz_protect(b, ZZ_READWRITE) != 0) {
            w->failed_allocs++;
            continue;
        }
        memset(b, 0x77, 64);
        if (zz_protect(b, r % 2 ? ZZ_READONLY : ZZ_NOACCESS) != 0)
            w->failed_allocs++;
        w->ops++;
    }
    for (int i = 0; i < 4; i++)
        zz_free(p[i]);
    return NULL;
}

static void run_stress(unsigned alloc_threads, unsigned protect_threads, double seconds)
{
    zz_stats s0, s1;
    zz_get_stats(&s0);
    zz_arena *arena = zz_arena_create(0);
    assert_non_null(arena);
    atomic_store(&purges, 0);
    atomic_store(&stop, 0);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    struct itimerval every_ms = { { 0, 1000 }, { 0, 1000 } }, off = { { 0, 0 }, { 0, 0 } };
    assert_int_equal(setitimer(ITIMER_REAL, &every_ms, NULL), 0);

    unsigned total = alloc_threads + protect_threads;
    pthread_t th[8];
    struct worker w[8];
    assert_true(total <= 8);
    for (unsigned i = 0; i < total; i++) {
        w[i] = (struct worker){ .arena = arena, .id = i, .toggle_protection = i >= alloc_threads };
        assert_int_equal(pthread_create(&th[i], NULL,
                                        w[i].toggle_protection ? protect_worker : alloc_worker,
                                        &w[i]),
                         0);
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        struct timespec nap = { 0, 20 * 1000 * 1000 };
        nanosleep(&nap, NULL); /* EINTR from SIGALRM is fine */
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 <
             seconds);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < total; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
    assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);

    unsigned long ops = 0, bad = 0, failed = 0;
    for (unsigned i = 0; i < total; i++) {
        ops += w[i].ops;
        bad += w[i].bad_bytes;
        failed += w[i].failed_allocs;
    }
    print_message("%u purges from SIGALRM during %lu rounds of %u threads (%u toggling modes); "
                  "%lu bytes neither pattern nor zero, %lu failed calls\n",
                  atomic_load(&purges), ops, total, protect_threads, bad, failed);
    assert_true(atomic_load(&purges) > 0);
    assert_true(ops > 0);
    assert_int_equal(bad, 0);
    assert_int_equal(failed, 0);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
    zz_arena_destroy(arena);
    zz_get_stats(&s1);
    assert_true(s1.locked_bytes <= s1.mapped_bytes);
}

static void test_purge_from_sigalrm_while_threads_allocate(void **state)
{
    (void)state;
    run_stress(4, 0, 2.0);
}

static void test_purge_from_sigalrm_while_modes_change(void **state)
{
    (void)state;
    run_stress(2, 2, 2.0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purge_wipes_every_live_block),
        cmocka_unit_test(test_blocks_after_purge),
        cmocka_unit_test(test_purge_removes_secret_from_memory),
        cmocka_unit_test(test_overflow_after_purge_detected),
    };
    const struct CMUnitTest teardown[] = {
        cmocka_unit_test(test_purge_thread_races_arena_destroy),
        cmocka_unit_test(test_purge_signal_during_arena_destroy),
    };
    const struct CMUnitTest stress[] = {
        cmocka_unit_test(test_purge_from_sigalrm_while_threads_allocate),
        cmocka_unit_test(test_purge_from_sigalrm_while_modes_change),
    };
    const struct CMUnitTest first_use[] = {
        cmocka_unit_test(test_purge_during_first_use),
    };
    if (argc > 1 && strcmp(argv[1], "first_use") == 0)
        return cmocka_run_group_tests_name("purge_first_use", first_use, NULL, NULL);
    if (argc > 1 && strcmp(argv[1], "teardown") == 0)
        return cmocka_run_group_tests_name("purge_teardown", teardown, NULL, NULL);
    if (argc > 1 && strcmp(argv[1], "stress") == 0)
        return cmocka_run_group_tests_name("purge_stress", stress, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
