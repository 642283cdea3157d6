/* Four threads allocate and free at random (sizes 0..70000, a seeded PRNG
 * per thread).  Each block is filled with a pattern derived from its owner,
 * slot and size, and checked in full before it is freed.  Kept in its own
 * program so it can run under ThreadSanitizer. */
#include "test_util.h"

#include <pthread.h>
#include <sched.h>

/* Stands for a failed zz_alloc in the hand-off queue. */
#define ALLOC_FAILED ((unsigned char *)(uintptr_t)1)

#define THREADS 4
#define SLOTS 48
#define MAX_SIZE 70000

struct worker {
    int id;
    unsigned ops;
    uint64_t seed;
    int failed;              /* 0, or the first check that failed */
    size_t sizes[SLOTS];
    unsigned char *blocks[SLOTS];
};

static unsigned char pattern_byte(int id, size_t slot, size_t n, size_t i)
{
    return (unsigned char)(id * 31 + slot * 7 + n + i * 13 + 1);
}

static void fill(struct worker *w, size_t slot)
{
    unsigned char *p = w->blocks[slot];
    size_t n = w->sizes[slot];
    for (size_t i = 0; i < n; i++)
        p[i] = pattern_byte(w->id, slot, n, i);
}

static int intact(const struct worker *w, size_t slot)
{
    const unsigned char *p = w->blocks[slot];
    size_t n = w->sizes[slot];
    for (size_t i = 0; i < n; i++) {
        if (p[i] != pattern_byte(w->id, slot, n, i))
            return 0;
    }
    return zz_size(p) == n;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t s = w->seed;
    for (unsigned op = 0; op < w->ops && !w->failed; op++) {
        uint64_t r = tu_prng_next(&s);
        size_t slot = (size_t)(r % SLOTS);
        if (w->blocks[slot] != NULL) {
            if (!intact(w, slot)) {
                w->failed = 1;
                break;
            }
            zz_free(w->blocks[slot]);
            w->blocks[slot] = NULL;
            continue;
        }
        /* mostly small secrets, sometimes large ones */
        size_t n = (r >> 32) % 8 == 0 ? (size_t)((r >> 8) % (MAX_SIZE + 1)) : (size_t)((r >> 8) % 257);
        unsigned char *p = zz_alloc(n);
        if (p == NULL) {
            w->failed = 2;
            break;
        }
        if ((uintptr_t)p % 16 != 0 || !zz_is_zero(p, n)) {
            w->failed = 3;
            break;
        }
        w->blocks[slot] = p;
        w->sizes[slot] = n;
        fill(w, slot);
    }
    for (size_t slot = 0; slot < SLOTS; slot++) {
        if (w->blocks[slot] != NULL) {
            if (!intact(w, slot) && !w->failed)
                w->failed = 4;
            zz_free(w->blocks[slot]);
            w->blocks[slot] = NULL;
        }
    }
    return NULL;
}

static void run_workers(unsigned ops, uint64_t base_seed)
{
    static struct worker workers[THREADS];
    pthread_t tid[THREADS];
    zz_stats before, after;
    zz_get_stats(&before);
    for (int i = 0; i < THREADS; i++) {
        memset(&workers[i], 0, sizeof workers[i]);
        workers[i].id = i;
        workers[i].ops = ops;
        workers[i].seed = base_seed + (uint64_t)i * 0x1000193u;
        assert_int_equal(pthread_create(&tid[i], NULL, work, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(tid[i], NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        if (workers[i].failed) {
            print_error("thread %d failed check %d (1,4: pattern corrupted; 2: zz_alloc NULL, "
                        "errno-less; 3: not aligned or not zero)\n",
                        i, workers[i].failed);
            fail();
        }
    }
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
    assert_int_equal(after.live_bytes, before.live_bytes);
}

static unsigned scaled_ops(unsigned normal)
{
    /* memcheck is ~50x slower; the interleavings still get exercised */
    return TU_ON_VALGRIND() ? normal / 20 : normal;
}

static void test_threads_random_alloc_free(void **state)
{
    (void)state;
    run_workers(scaled_ops(6000), 0x5EED0001ull);
}

/* Same, with the lock policy switched under the workers' feet (root keeps
 * every block locked anyway; this checks the policy switch is race-free). */
struct flipper {
    volatile int stop;
};

static void *flip_policy(void *arg)
{
    struct flipper *f = arg;
    unsigned i = 0;
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        zz_set_lock_policy((i++ & 1) ? ZZ_LOCK_BEST_EFFORT : ZZ_LOCK_REQUIRED);
        (void)zz_get_lock_policy();
        zz_stats s;
        zz_get_stats(&s);
        sched_yield();
    }
    zz_set_lock_policy(ZZ_LOCK_REQUIRED);
    return NULL;
}

static void test_threads_with_policy_and_stats_readers(void **state)
{
    (void)state;
    struct flipper f = { 0 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flip_policy, &f), 0);
    run_workers(scaled_ops(3000), 0x5EED0100ull);
    __atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* Blocks allocated by one thread and freed by another. */
#define HANDOFF 2000
static unsigned char *handoff[HANDOFF];
static size_t handoff_n[HANDOFF];

static void *produce(void *arg)
{
    (void)arg;
    uint64_t s = 77;
    for (size_t i = 0; i < HANDOFF; i++) {
        size_t n = (size_t)(tu_prng_next(&s) % 5000);
        unsigned char *p = zz_alloc(n);
        if (p != NULL)
            memset(p, (int)(i & 0xff), n);
        else
            p = ALLOC_FAILED;
        handoff_n[i] = n;
        __atomic_store_n(&handoff[i], p, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *consume(void *arg)
{
    int *bad = arg;
    for (size_t i = 0; i < HANDOFF; i++) {
        unsigned char *p;
        while ((p = __atomic_load_n(&handoff[i], __ATOMIC_ACQUIRE)) == NULL)
            sched_yield();
        if (p == ALLOC_FAILED) {
            *bad = 1;
            continue;
        }
        for (size_t k = 0; k < handoff_n[i]; k++)
            *bad |= p[k] != (unsigned char)(i & 0xff);
        zz_free(p);
    }
    return NULL;
}

static void test_threads_cross_thread_free(void **state)
{
    (void)state;
    zz_stats before, after;
    zz_get_stats(&before);
    int bad = 0;
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, produce, NULL), 0);
    assert_int_equal(pthread_create(&b, NULL, consume, &bad), 0);
    assert_int_equal(pthread_join(a, NULL), 0);
    assert_int_equal(pthread_join(b, NULL), 0);
    assert_int_equal(bad, 0);
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
    assert_int_equal(after.live_bytes, before.live_bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_random_alloc_free),
        cmocka_unit_test(test_threads_with_policy_and_stats_readers),
        cmocka_unit_test(test_threads_cross_thread_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
