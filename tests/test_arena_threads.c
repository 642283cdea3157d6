/* Arenas shared by threads, and the per-thread caches of free cells behind
 * growable arenas (src/arena_cache.c): counts that include blocks held by
 * live threads, frees from other threads, two threads freeing one block at
 * once, a thread whose cache outlives its arena, more arenas than cache
 * slots, fixed arenas whose capacity no thread can hoard, threads that come
 * and go without growing the arena, and fork() with caches full. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "test_util.h"

#define RUN 16384u

static unsigned char pattern_of(size_t i)
{
    return (unsigned char)(0x21 + i * 13);
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

/* A thread that runs one step each time the main thread says so. */
struct stepper {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int asked, done; /* steps asked for and finished */
    void (*step)(struct stepper *, int);
    zz_arena *arena;
    void *held[256];
    size_t nheld;
    int errors;
};

static void *stepper_main(void *arg)
{
    struct stepper *s = arg;
    pthread_mutex_lock(&s->mu);
    for (int k = 0;; k++) {
        while (s->asked == k)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->asked < 0)
            break;
        pthread_mutex_unlock(&s->mu);
        s->step(s, k);
        pthread_mutex_lock(&s->mu);
        s->done = k + 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void stepper_start(struct stepper *s, void (*step)(struct stepper *, int), zz_arena *a)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->step = step;
    s->arena = a;
    assert_int_equal(pthread_create(&s->tid, NULL, stepper_main, s), 0);
}

/* Runs the thread's next step and waits for it. */
static void stepper_run(struct stepper *s)
{
    pthread_mutex_lock(&s->mu);
    int k = s->asked++;
    pthread_cond_broadcast(&s->cv);
    while (s->done <= k)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void stepper_finish(struct stepper *s)
{
    pthread_mutex_lock(&s->mu);
    s->asked = -1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->tid, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

/* Step 0: fill the cache (allocate and free 200 blocks), then hold 100
 * blocks of assorted sizes.  Step 1: free what is held. */
static void hold_then_free(struct stepper *s, int k)
{
    if (k == 0) {
        void *tmp[200];
        for (size_t i = 0; i < 200; i++)
            tmp[i] = zz_arena_alloc(s->arena, 32);
        for (size_t i = 0; i < 200; i++)
            zz_arena_free(s->arena, tmp[i]);
        for (s->nheld = 0; s->nheld < 100; s->nheld++) {
            size_t n = 1 + s->nheld % 50;
            unsigned char *p = zz_arena_alloc(s->arena, n);
            if (p == NULL || !zz_is_zero(p, n))
                s->errors++;
            else
                memset(p, pattern_of(s->nheld), n);
            s->held[s->nheld] = p;
        }
    } else {
        for (size_t i = 0; i < s->nheld; i++) {
            if (!all_bytes(s->held[i], 1 + i % 50, pattern_of(i)))
                s->errors++;
            zz_arena_free(s->arena, s->held[i]);
        }
        s->nheld = 0;
    }
}

static size_t held_bytes(void)
{
    size_t bytes = 0;
    for (size_t i = 0; i < 100; i++)
        bytes += 1 + i % 50;
    return bytes;
}

/* zz_get_stats counts the blocks of a thread that is still running, and the
 * counts come back to where they were once it freed them and exited. */
static void test_stats_include_live_threads(void **state)
{
    (void)state;
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    struct stepper t;
    stepper_start(&t, hold_then_free, a);
    stepper_run(&t);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks - s0.live_blocks, 100);
    assert_int_equal(s1.live_bytes - s0.live_bytes, held_bytes());
    stepper_run(&t);
    zz_get_stats(&s2);
    assert_int_equal(s2.live_blocks, s0.live_blocks);
    assert_int_equal(s2.live_bytes, s0.live_bytes);
    stepper_finish(&t);
    assert_int_equal(t.errors, 0);
    zz_get_stats(&s2);
    assert_int_equal(s2.live_blocks, s0.live_blocks);
    zz_arena_destroy(a);
}

/* Every step: fill the cache and hold 100 blocks (the caller frees them). */
static void hold_only(struct stepper *s, int k)
{
    (void)k;
    hold_then_free(s, 0);
}

/* Blocks allocated by one thread and freed by another (the main thread),
 * round after round: the contents arrive intact and the counts balance. */
static void test_frees_from_another_thread(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    struct stepper t;
    stepper_start(&t, hold_only, a);
    for (int round = 0; round < 20; round++) {
        stepper_run(&t);
        assert_int_equal(t.errors, 0);
        for (size_t i = 0; i < t.nheld; i++) {
            assert_true(all_bytes(t.held[i], 1 + i % 50, pattern_of(i)));
            zz_arena_free(a, t.held[i]);
        }
        t.nheld = 0;
        zz_get_stats(&s1);
        assert_int_equal(s1.live_blocks, s0.live_blocks);
        assert_int_equal(s1.live_bytes, s0.live_bytes);
    }
    stepper_finish(&t);
    zz_arena_destroy(a);
}

/* Two threads free the same block at the same moment: exactly one of them
 * finds it live; the other reports a double free. */
struct racer {
    zz_arena *a;
    void *p;
    pthread_barrier_t *go;
};

static void *race_free(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->go);
    zz_arena_free(r->a, r->p);
    return NULL;
}

static void child_concurrent_double_free(void *arg)
{
    (void)arg;
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    void *p = zz_arena_alloc(a, 32);
    child_check(p != NULL);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    struct racer r = { a, p, &go };
    pthread_t t1, t2;
    child_check(pthread_create(&t1, NULL, race_free, &r) == 0);
    child_check(pthread_create(&t2, NULL, race_free, &r) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
}

static void test_concurrent_double_free_aborts(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++)
        expect_fatal(child_concurrent_double_free, NULL, "zeroize: double free");
}

/* Step 0: fill the cache from s->arena.  Step 1: s->arena is now a new arena
 * (the old one destroyed, its cells still in this thread's cache): 500
 * blocks from it are zero, distinct and really the new arena's. */
static void use_old_then_new(struct stepper *s, int k)
{
    if (k == 0) {
        hold_then_free(s, 0);
        hold_then_free(s, 1);
        return;
    }
    void *p[500];
    for (size_t i = 0; i < 500; i++) {
        p[i] = zz_arena_alloc(s->arena, 1 + i % 50);
        if (p[i] == NULL || !zz_is_zero(p[i], 1 + i % 50) || !(zz_info(p[i]) & ZZ_INFO_CANARY))
            s->errors++;
        else
            memset(p[i], pattern_of(i), 1 + i % 50);
    }
    for (size_t i = 0; i < 500; i++) {
        if (p[i] != NULL && !all_bytes(p[i], 1 + i % 50, pattern_of(i)))
            s->errors++;
        zz_arena_free(s->arena, p[i]);
    }
}

/* A thread's cache outlives the arena it was filled from: the thread uses a
 * new arena (often at the old one's address) and exits, and no stale cell
 * is ever handed out or touched. */
static void test_cache_outlives_its_arena(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    struct stepper t;
    stepper_start(&t, use_old_then_new, a);
    stepper_run(&t);
    zz_arena_destroy(a);
    zz_arena *b = zz_arena_create(0);
    assert_non_null(b);
    t.arena = b;
    stepper_run(&t);
    stepper_finish(&t);
    assert_int_equal(t.errors, 0);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    zz_arena_destroy(b);
    zz_get_stats(&s1);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes);
}

/* One thread, more arenas than its cache has slots, used in turn. */
static void test_more_arenas_than_cache_slots(void **state)
{
    (void)state;
    enum { ARENAS = 7, LIVE = 64, OPS = 20000 };
    zz_stats s0, s1;
    zz_get_stats(&s0);
    zz_arena *a[ARENAS];
    for (int i = 0; i < ARENAS; i++)
        assert_non_null(a[i] = zz_arena_create(0));
    unsigned char *live[ARENAS][LIVE] = { { 0 } };
    unsigned char tag[ARENAS][LIVE];
    uint64_t rng = 0x5107;
    size_t count = 0;
    for (int op = 0; op < OPS; op++) {
        unsigned ai = (unsigned)(tu_prng_next(&rng) % ARENAS), k = (unsigned)(tu_prng_next(&rng) % LIVE);
        unsigned char *p = live[ai][k];
        if (p != NULL) {
            assert_true(all_bytes(p, 24, tag[ai][k]));
            zz_arena_free(a[ai], p);
            live[ai][k] = NULL;
            count--;
        } else {
            p = zz_arena_alloc(a[ai], 24);
            assert_non_null(p);
            assert_true(zz_is_zero(p, 24));
            tag[ai][k] = (unsigned char)(op | 1);
            memset(p, tag[ai][k], 24);
            live[ai][k] = p;
            count++;
        }
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks - s0.live_blocks, count);
    for (int i = 0; i < ARENAS; i++) {
        for (int k = 0; k < LIVE; k++)
            zz_arena_free(a[i], live[i][k]);
        zz_arena_destroy(a[i]);
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.mapped_bytes, s0.mapped_bytes);
}

/* Step 0: allocate blocks until the fixed arena is full, then free them all;
 * the count is left in nheld. */
static void fill_and_empty(struct stepper *s, int k)
{
    (void)k;
    void **p = malloc(4096 * sizeof *p);
    size_t n = 0;
    while (n < 4096 && (p[n] = zz_arena_alloc(s->arena, 32)) != NULL)
        n++;
    for (size_t i = 0; i < n; i++)
        zz_arena_free(s->arena, p[i]);
    s->nheld = n;
    free(p);
}

/* A fixed arena's whole capacity stays available to every thread: what one
 * thread (still running) freed, another can allocate. */
static void test_fixed_arena_capacity_is_shared(void **state)
{
    (void)state;
    zz_arena *a = zz_arena_create(2 * RUN);
    assert_non_null(a);
    struct stepper t;
    stepper_start(&t, fill_and_empty, a);
    stepper_run(&t);
    size_t filled = t.nheld;
    assert_true(filled >= 2 * RUN / 48);
    void **p = calloc(filled + 1, sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < filled; i++)
        assert_non_null(p[i] = zz_arena_alloc(a, 32));
    assert_null(zz_arena_alloc(a, 32)); /* and then it is full */
    assert_int_equal(errno, ENOMEM);
    for (size_t i = 0; i < filled; i++)
        zz_arena_free(a, p[i]);
    free(p);
    stepper_finish(&t);
    zz_arena_destroy(a);
}

struct churner {
    zz_arena *arena;
    size_t pad;
};

static void *churn(void *arg)
{
    const struct churner *c = arg;
    /* Without this the new thread's cache tends to land where the last
     * one's was, and would inherit its runs by address alone. */
    void *pad = malloc(c->pad);
    if (pad != NULL)
        VWRITE(pad, 1); /* used, so the compiler keeps the malloc */
    void *p[50];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 50; i++)
            p[i] = zz_arena_alloc(c->arena, 32);
        for (int i = 0; i < 50; i++)
            zz_arena_free(c->arena, p[i]);
    }
    free(pad);
    return NULL;
}

/* Threads that come and go leave their runs to the next ones: after the
 * first few, the arena maps no more memory. */
static void test_threads_come_and_go_without_growth(void **state)
{
    (void)state;
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    zz_stats s1, s2;
    for (int wave = 0; wave < 40; wave++) {
        pthread_t t[2];
        struct churner c[2] = { { a, 64 + 1024 * (size_t)wave }, { a, 128 + 1024 * (size_t)wave } };
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&t[i], NULL, churn, &c[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        if (wave == 1)
            zz_get_stats(&s1);
    }
    zz_get_stats(&s2);
    assert_int_equal(s2.mapped_bytes, s1.mapped_bytes);
    zz_arena_destroy(a);
}

/* ---- fork with full caches ------------------------------------------------ */

struct fork_case {
    zz_arena *arena;
    size_t live_blocks;
};

static void child_after_fork_with_caches(void *arg)
{
    struct fork_case *f = arg;
    zz_stats s;
    zz_get_stats(&s);
    child_check(s.live_blocks == f->live_blocks); /* the other thread's 100 blocks */
    enum { N = 3000 };
    static void *p[N];
    for (size_t i = 0; i < N; i++) {
        p[i] = zz_arena_alloc(f->arena, 1 + i % 50);
        child_check(p[i] != NULL && zz_is_zero(p[i], 1 + i % 50));
        memset(p[i], 0x5A, 1 + i % 50);
    }
    for (size_t i = 0; i < N; i++)
        zz_arena_free(f->arena, p[i]);
    zz_get_stats(&s);
    child_check(s.live_blocks == f->live_blocks);
    zz_arena_destroy(f->arena); /* checks every canary, the cached cells' too */
}

static void test_fork_while_threads_hold_cells(void **state)
{
    (void)state;
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    struct stepper t;
    stepper_start(&t, hold_then_free, a);
    stepper_run(&t); /* its cache is full and it holds 100 blocks */
    zz_stats s;
    zz_get_stats(&s);
    struct fork_case f = { a, s.live_blocks };
    expect_child_ok(child_after_fork_with_caches, &f);
    stepper_run(&t);
    stepper_finish(&t);
    assert_int_equal(t.errors, 0);
    zz_arena_destroy(a);
}

/* zz_info on a block of a chunk that another thread locks at that moment: a
 * chunk mapped unlocked under ZZ_LOCK_BEST_EFFORT is locked on its next use
 * once the policy is ZZ_LOCK_REQUIRED, under the arena's lock, while zz_info
 * reads the chunk's flags without it.  Those reads and the flag's update must
 * not race (TSan reported it through zz-stress), and zz_info ends up saying
 * LOCKED, as smaps does. */
struct info_reader {
    void *block;
    _Atomic int started, stop; /* relaxed: they must not order the reads */
    unsigned seen;
};

static void *read_info_until_stopped(void *arg)
{
    struct info_reader *r = arg;
    r->seen |= zz_info(r->block);
    atomic_store_explicit(&r->started, 1, memory_order_relaxed);
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed))
        r->seen |= zz_info(r->block);
    return NULL;
}

static void child_info_while_chunk_is_locked(void *arg)
{
    (void)arg;
    size_t limit = 256 * 1024, pg = (size_t)sysconf(_SC_PAGESIZE);
    child_check(tu_drop_ipc_lock(limit) == 0);
    child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
    /* Use up the lock limit, so that the arena's first chunk maps unlocked
     * (raw system calls: the sanitizers' mlock interceptors do nothing). */
    unsigned char *hog = mmap(NULL, limit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(hog != MAP_FAILED);
    size_t hogged = 0;
    while (hogged < limit && syscall(SYS_mlock, hog + hogged, pg) == 0)
        hogged += pg;
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    void *p = zz_arena_alloc(a, 32);
    child_check(p != NULL);
    child_check(!(zz_info(p) & ZZ_INFO_LOCKED));
    child_check(syscall(SYS_munlock, hog, limit) == 0);
    struct info_reader r = { .block = p };
    pthread_t tid;
    child_check(pthread_create(&tid, NULL, read_info_until_stopped, &r) == 0);
    while (!atomic_load_explicit(&r.started, memory_order_relaxed))
        sched_yield();
    child_check(zz_set_lock_policy(ZZ_LOCK_REQUIRED) == 0);
    void *q = zz_arena_alloc(a, 32); /* checks the chunk again: locks it */
    child_check(q != NULL);
    child_check(zz_info(q) & ZZ_INFO_LOCKED);
    atomic_store_explicit(&r.stop, 1, memory_order_relaxed);
    child_check(pthread_join(tid, NULL) == 0);
    child_check(zz_info(p) & ZZ_INFO_LOCKED);
    child_check(tu_addr_has_flag(p, "lo"));
    zz_arena_free(a, q);
    zz_arena_free(a, p);
    zz_arena_destroy(a);
    munmap(hog, limit);
}

static void test_info_while_another_thread_locks_the_chunk(void **state)
{
    (void)state;
    expect_child_ok(child_info_while_chunk_is_locked, NULL);
}

/* Without arguments: every test but the death test, so valgrind's memcheck
 * (which skips death tests) runs the cache paths; "misuse": the death test. */
int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_include_live_threads),
        cmocka_unit_test(test_frees_from_another_thread),
        cmocka_unit_test(test_cache_outlives_its_arena),
        cmocka_unit_test(test_more_arenas_than_cache_slots),
        cmocka_unit_test(test_fixed_arena_capacity_is_shared),
        cmocka_unit_test(test_threads_come_and_go_without_growth),
        cmocka_unit_test(test_fork_while_threads_hold_cells),
        cmocka_unit_test(test_info_while_another_thread_locks_the_chunk),
    };
    const struct CMUnitTest misuse[] = {
        cmocka_unit_test(test_concurrent_double_free_aborts),
    };
    if (argc > 1 && strcmp(argv[1], "misuse") == 0)
        return cmocka_run_group_tests(misuse, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
