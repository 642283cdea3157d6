/* libzeroize-shield across threads (issue 21): threads open and close
 * objects of their own while another re-keys and another seals and
 * destroys; threads that share one object get EBUSY, never two opens at
 * once.  Run under TSan by the sanitizer build. */
#include "test_util.h"
#include "zeroize_shield.h"

#include <stdatomic.h>

enum { THREADS = 4 };

static int rounds(void)
{
    return TU_ON_VALGRIND() ? 20 : 200;
}

static atomic_int stop;

struct worker {
    zz_shielded *own;
    uint64_t seed;
    int failures;
};

static void *open_own(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < rounds(); i++) {
        const unsigned char *p = zz_shield_open(w->own);
        if (p == NULL || !tu_scan_match_at(p, w->seed, 64))
            w->failures++;
        if (p != NULL)
            zz_shield_close(w->own, p);
    }
    return NULL;
}

static void *rekey_loop(void *arg)
{
    int *rekeys = arg;
    while (!atomic_load(&stop)) {
        if (zz_shield_rekey() == 0)
            (*rekeys)++;
        sched_yield();
    }
    return NULL;
}

static void *seal_destroy_loop(void *arg)
{
    int *failures = arg;
    while (!atomic_load(&stop)) {
        unsigned char secret[24] = { 4, 5, 6 };
        zz_shielded *s = zz_shield_seal(secret, sizeof secret);
        if (s == NULL) {
            (*failures)++;
            continue;
        }
        const unsigned char *p = zz_shield_open(s);
        if (p == NULL || p[0] != 4 || p[2] != 6)
            (*failures)++;
        if (p != NULL)
            zz_shield_close(s, p);
        zz_shield_destroy(s);
    }
    return NULL;
}

static zz_shielded *seal_seeded(uint64_t seed, size_t len)
{
    unsigned char *src = zz_alloc(len);
    assert_non_null(src);
    tu_fill_secret(src, seed, len);
    zz_shielded *s = zz_shield_seal(src, len);
    assert_non_null(s);
    zz_free(src);
    return s;
}

static void test_shield_threads_open_while_rekeying(void **state)
{
    (void)state;
    struct worker w[THREADS];
    pthread_t t[THREADS], rk, sd;
    int rekeys = 0, churn_failures = 0;
    atomic_store(&stop, 0);
    for (int i = 0; i < THREADS; i++) {
        w[i].seed = 0x7417ead0 + (uint64_t)i;
        w[i].own = seal_seeded(w[i].seed, 64);
        w[i].failures = 0;
    }
    assert_int_equal(pthread_create(&rk, NULL, rekey_loop, &rekeys), 0);
    assert_int_equal(pthread_create(&sd, NULL, seal_destroy_loop, &churn_failures), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, open_own, &w[i]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(rk, NULL);
    pthread_join(sd, NULL);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].failures, 0);
        zz_shield_destroy(w[i].own);
    }
    assert_int_equal(churn_failures, 0);
    assert_true(rekeys > 0);
}

/* One object, four threads: each open either succeeds alone or fails with
 * EBUSY; never two at once. */
static zz_shielded *shared;
static atomic_int inside, most_inside, opened, busy;

static void *open_shared(void *arg)
{
    (void)arg;
    for (int i = 0; i < rounds(); i++) {
        const unsigned char *p = zz_shield_open(shared);
        if (p == NULL) {
            if (errno == EBUSY)
                atomic_fetch_add(&busy, 1);
            continue;
        }
        int now = atomic_fetch_add(&inside, 1) + 1;
        int seen = atomic_load(&most_inside);
        while (now > seen && !atomic_compare_exchange_weak(&most_inside, &seen, now))
            ;
        atomic_fetch_add(&opened, 1);
        sched_yield();
        atomic_fetch_sub(&inside, 1);
        zz_shield_close(shared, p);
    }
    return NULL;
}

static void test_shield_threads_share_one_object(void **state)
{
    (void)state;
    shared = seal_seeded(0x5a5e0001, 32);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, open_shared, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&most_inside), 1);
    assert_int_equal(atomic_load(&opened) + atomic_load(&busy), THREADS * rounds());
    assert_true(atomic_load(&opened) > 0);
    zz_shield_destroy(shared);
}

/* A fork while other threads open, close and re-key: the child's locks
 * work (the atfork handlers), its opens fail with ENOKEY, it seals anew. */
static void child_after_busy_fork(void *arg)
{
    zz_shielded *s = arg;
    errno = 0;
    child_check(zz_shield_open(s) == NULL && errno == ENOKEY);
    unsigned char secret[8] = { 1, 2 };
    zz_shielded *mine = zz_shield_seal(secret, sizeof secret);
    child_check(mine != NULL);
    const unsigned char *p = zz_shield_open(mine);
    child_check(p != NULL && p[1] == 2);
    zz_shield_close(mine, p);
    zz_shield_destroy(mine);
}

static void test_shield_threads_fork_while_busy(void **state)
{
    (void)state;
    struct worker w[2];
    pthread_t t[2], rk;
    int rekeys = 0;
    atomic_store(&stop, 0);
    for (int i = 0; i < 2; i++) {
        w[i].seed = 0xf0f0 + (uint64_t)i;
        w[i].own = seal_seeded(w[i].seed, 64);
        w[i].failures = 0;
    }
    zz_shielded *probe = seal_seeded(0xf0f0f0, 16);
    assert_int_equal(pthread_create(&rk, NULL, rekey_loop, &rekeys), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, open_own, &w[i]), 0);
    for (int k = 0; k < 5; k++)
        expect_child_ok(child_after_busy_fork, probe);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(rk, NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w[i].failures, 0);
        zz_shield_destroy(w[i].own);
    }
    zz_shield_destroy(probe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shield_threads_open_while_rekeying),
        cmocka_unit_test(test_shield_threads_share_one_object),
        cmocka_unit_test(test_shield_threads_fork_while_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
