/* zz_free from two threads at once: the guarantees a faster free must keep
 * (issue 13).  Exactly one of two concurrent frees of the same block goes
 * through; the other dies with the library's message.  Blocks freed by a
 * thread other than the one that allocated them come back zero-filled. */
#include <pthread.h>

#include "test_util.h"

struct racer {
    void *p;
    pthread_barrier_t *go;
};

static void *race_free(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->go);
    zz_free(r->p);
    return NULL;
}

static void child_concurrent_double_free(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    void *p = zz_alloc(n);
    child_check(p != NULL);
    memset(p, 0x5a, n);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    struct racer r = { p, &go };
    pthread_t t1, t2;
    child_check(pthread_create(&t1, NULL, race_free, &r) == 0);
    child_check(pthread_create(&t2, NULL, race_free, &r) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
}

static void test_concurrent_double_free_aborts(void **state)
{
    (void)state;
    static const size_t sizes[] = { 32, 256, 5000 };
    for (int i = 0; i < 12; i++)
        expect_fatal(child_concurrent_double_free, (void *)(uintptr_t)sizes[i % 3],
                     "zeroize: double free");
}

/* Blocks handed to another thread and freed there: each new block is zero,
 * and the counters come back to where they started. */
enum { HANDED = 2000 };
static void *handed[HANDED];

static void *free_handed(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < HANDED; i++)
        zz_free(handed[i]);
    return NULL;
}

static void test_frees_from_another_thread(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < HANDED; i++) {
            size_t n = 16 + (i * 37) % 3000;
            unsigned char *p = zz_alloc(n);
            assert_non_null(p);
            for (size_t k = 0; k < n; k++)
                assert_int_equal(p[k], 0);
            memset(p, 0xa5, n);
            handed[i] = p;
        }
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, free_handed, NULL), 0);
        pthread_join(t, NULL);
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_double_free_aborts),
        cmocka_unit_test(test_frees_from_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
