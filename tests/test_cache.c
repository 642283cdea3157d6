/* zz_alloc's free-slot cache remembers demand: a burst that is freed and
 * comes back finds its slots still mapped; the remembered peak decays; the
 * bound is set by ZEROIZE_CACHE_DECAY_MS or zz_set_cache_decay_ms, shown in
 * zz_get_stats, and gives way at once to live blocks when the lock limit is
 * reached. */
#include "test_util.h"

enum { BURST = 1000 };
static void *blocks[BURST];

static void burst_alloc(size_t size, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        blocks[i] = zz_alloc(size);
        assert_non_null(blocks[i]);
    }
}

static void burst_free(size_t n)
{
    for (size_t i = 0; i < n; i++)
        zz_free(blocks[i]);
}

/* Must stay the first test: ZEROIZE_CACHE_DECAY_MS is read on first use, and
 * the children are forked before the parent has used it. */
static void child_env_decay(void *arg)
{
    const char *value = arg;
    child_check(setenv("ZEROIZE_CACHE_DECAY_MS", value, 1) == 0);
    unsigned long want = strcmp(value, "1234") == 0 ? 1234 : strcmp(value, "0") == 0 ? 0 : 10000;
    child_check(zz_get_cache_decay_ms() == want);
    void *p = zz_alloc(32);
    child_check(p != NULL);
    zz_free(p);
}

static void test_cache_env_sets_decay(void **state)
{
    (void)state;
    expect_child_ok(child_env_decay, (void *)(uintptr_t)"1234");
    expect_child_ok(child_env_decay, (void *)(uintptr_t)"0");
    expect_child_ok(child_env_decay, (void *)(uintptr_t)"12x"); /* not a number: default */
    expect_child_ok(child_env_decay, (void *)(uintptr_t)"-5");
    expect_child_ok(child_env_decay, (void *)(uintptr_t)"99999999999999999999");
}

static void test_cache_default_and_set(void **state)
{
    (void)state;
    assert_int_equal(zz_get_cache_decay_ms(), 10000);
    errno = 0;
    assert_int_equal(zz_set_cache_decay_ms(86400001ul), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(zz_last_error_code(), ZZ_ERR_ARGUMENT);
    assert_int_equal(zz_get_cache_decay_ms(), 10000);
    assert_int_equal(zz_set_cache_decay_ms(86400000ul), 0);
    assert_int_equal(zz_get_cache_decay_ms(), 86400000ul);
    assert_int_equal(zz_set_cache_decay_ms(10000), 0);
}

/* The second burst of 1,000 x 32 B maps nothing: the first one's slots were
 * kept (the old cache trimmed them to 1 MiB when the last block went). */
static void test_cache_burst_comes_back_without_mapping(void **state)
{
    (void)state;
    zz_stats s0, s1, s2, s3;
    zz_get_stats(&s0);
    burst_alloc(32, BURST);
    zz_get_stats(&s1);
    assert_true(s1.mapped_bytes - s0.mapped_bytes >= (size_t)BURST * 4096);
    burst_free(BURST);
    zz_get_stats(&s2);
    assert_int_equal(s2.live_blocks, s0.live_blocks);
    print_message("mapped +%zu KiB with %d live blocks, +%zu KiB once freed; cached %zu KiB, "
                  "bound %zu KiB\n", (s1.mapped_bytes - s0.mapped_bytes) >> 10, BURST,
                  (s2.mapped_bytes - s0.mapped_bytes) >> 10, s2.cached_bytes >> 10,
                  s2.cache_bound_bytes >> 10);
    assert_true(s2.cached_bytes >= (size_t)BURST * 2 * 4096);
    assert_true(s2.cache_bound_bytes >= (size_t)BURST * 2 * 4096); /* the peak, held for a period */
    burst_alloc(32, BURST);
    zz_get_stats(&s3);
    assert_int_equal(s3.mapped_bytes, s2.mapped_bytes); /* no new mapping */
    assert_true(s3.cached_bytes < s2.cached_bytes);
    burst_free(BURST);
}

/* With no memory of demand, the cache shrinks to its floor in the free of the
 * class's last block. */
static void test_cache_decay_zero_trims_at_once(void **state)
{
    (void)state;
    assert_int_equal(zz_set_cache_decay_ms(0), 0);
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    burst_alloc(5000, 400); /* a class of its own: 2 data pages */
    zz_get_stats(&s1);
    burst_free(400);
    zz_get_stats(&s2);
    size_t kept = s2.mapped_bytes > s0.mapped_bytes ? s2.mapped_bytes - s0.mapped_bytes : 0;
    print_message("decay 0: +%zu KiB live, +%zu KiB kept\n",
                  (s1.mapped_bytes - s0.mapped_bytes) >> 10, kept >> 10);
    assert_true(kept <= (3u << 20) + (64u << 10));
    assert_int_equal(zz_set_cache_decay_ms(10000), 0);
}

/* cache_bound_bytes is the most the cache keeps, in the unit of
 * cached_bytes (issue 19, item 6a): after a burst of 5,000 x 32 B is freed
 * with no memory of demand, 5c03a46 showed cached_bytes 2,048 KiB against a
 * bound of 1,024 KiB (a class kept a whole slab beyond its bound).  In a
 * child, alone with its caches; sizes in one class and in several, and
 * blocks freed by a thread that goes on running. */
static void child_cached_within_bound(void *arg)
{
    size_t nsizes = (size_t)(uintptr_t)arg;
    static const size_t sizes[] = { 32, 5000, 9000, 100 };
    enum { N = 5000 };
    static void *p[N];
    child_check(zz_set_cache_decay_ms(0) == 0);
    for (size_t i = 0; i < N; i++)
        child_check((p[i] = zz_alloc(sizes[i % nsizes])) != NULL);
    for (size_t i = 0; i < N; i++)
        zz_free(p[i]);
    zz_stats s;
    zz_get_stats(&s);
    if (s.cached_bytes > s.cache_bound_bytes)
        fprintf(stderr, "%zu size(s): cached %zu KiB, bound %zu KiB\n", nsizes, s.cached_bytes >> 10,
                s.cache_bound_bytes >> 10);
    child_check(s.cached_bytes <= s.cache_bound_bytes);
    child_check(s.cache_bound_bytes <= nsizes * ((1u << 20) + (256u << 10)));
}

static void test_cache_cached_within_bound(void **state)
{
    (void)state;
    expect_child_ok(child_cached_within_bound, (void *)(uintptr_t)1);
    expect_child_ok(child_cached_within_bound, (void *)(uintptr_t)4);
}

/* A peak that is not seen again fades: after many decay periods, the next
 * frees in the class give the burst's memory back. */
static void test_cache_peak_decays(void **state)
{
    (void)state;
    assert_int_equal(zz_set_cache_decay_ms(20), 0);
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    burst_alloc(9000, 400); /* 3 data pages */
    burst_free(400);
    zz_get_stats(&s1);
    size_t kept1 = s1.mapped_bytes - s0.mapped_bytes;
    assert_true(kept1 >= (size_t)300 * 4 * 4096); /* the free itself took well under 20 ms */
    struct timespec pause = { 0, 400 * 1000 * 1000 }; /* 20 periods */
    nanosleep(&pause, NULL);
    for (int k = 0; k < 32; k++) { /* the clock is read once every 16 slab-emptying frees */
        void *p = zz_alloc(9000);
        assert_non_null(p);
        zz_free(p);
    }
    zz_get_stats(&s2);
    size_t kept2 = s2.mapped_bytes > s0.mapped_bytes ? s2.mapped_bytes - s0.mapped_bytes : 0;
    print_message("decay 20 ms: %zu KiB kept after the burst, %zu KiB 400 ms later\n",
                  kept1 >> 10, kept2 >> 10);
    assert_true(kept2 <= (3u << 20) + (64u << 10));
    assert_int_equal(zz_set_cache_decay_ms(10000), 0);
}

/* Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 4 MiB, a child counts how
 * many live 32-byte blocks it gets, each locked, until the limit says no;
 * with burst set, it first fills and frees a burst of 200 blocks of another
 * size, whose slots its cache remembers (decay: a day).  The cached burst
 * must cost the live blocks nothing: the cache gives way when a lock is
 * refused.  Counts go back through shared memory. */
static size_t *live_counts; /* [0]: after no burst, [1]: after a cached burst */

static void child_count_live_blocks(void *arg)
{
    int burst = arg != NULL;
    child_check(tu_drop_ipc_lock(4u << 20) == 0);
    child_check(zz_set_cache_decay_ms(86400000ul) == 0);
    static void *mine[4096];
    if (burst) {
        for (size_t i = 0; i < 200; i++)
            child_check((mine[i] = zz_alloc(5000)) != NULL); /* 12 KiB slots */
        for (size_t i = 0; i < 200; i++)
            zz_free(mine[i]);
        zz_stats s;
        zz_get_stats(&s);
        /* what the burst left, within the caches' share of the limit */
        child_check(s.cached_bytes > 0 && s.cached_bytes <= s.cache_bound_bytes);
        child_check(s.cache_share_bytes == (4u << 20) / 2);
        if (s.cache_locked_bytes > s.cache_share_bytes)
            fprintf(stderr, "cached %zu KiB, %zu KiB locked, locked %zu KiB\n", s.cached_bytes >> 10,
                    s.cache_locked_bytes >> 10, s.locked_bytes >> 10);
        child_check(s.cache_locked_bytes <= s.cache_share_bytes);
    }
    size_t got = 0;
    while (got < 4096 && (mine[got] = zz_alloc(32)) != NULL) {
        child_check(zz_info(mine[got]) & ZZ_INFO_LOCKED);
        got++;
    }
    child_check(got < 4096);
    child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    live_counts[burst] = got;
    for (size_t i = 0; i < got; i++)
        zz_free(mine[i]);
}

static void test_cache_gives_way_to_live_blocks_under_memlock(void **state)
{
    (void)state;
    live_counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(live_counts != MAP_FAILED);
    expect_child_ok(child_count_live_blocks, NULL);
    expect_child_ok(child_count_live_blocks, (void *)1);
    print_message("live 32-byte blocks under a 4 MiB lock limit: %zu, %zu after a cached burst of "
                  "200 x 5000 B\n", live_counts[0], live_counts[1]);
    assert_true(live_counts[0] >= 100);
    assert_true(live_counts[1] + 8 >= live_counts[0]);
    munmap(live_counts, 4096);
}

/* The cache gives way to every other user of locked memory too: arenas
 * (their first chunk, under either policy, and a fixed arena's reserve) and
 * zz_lock of the caller's memory.  Each case in a child that drops
 * CAP_IPC_LOCK, fills the lock limit with zz_alloc blocks and frees them all
 * (the cache keeps its share), then locks the rest of the limit itself, so
 * the cache holds every locked byte left. */
enum cache_rival { RIVAL_GROWABLE, RIVAL_FIXED, RIVAL_BEST_EFFORT, RIVAL_ZZ_LOCK };

static void child_rival_after_cached_burst(void *arg)
{
    enum cache_rival rival = (enum cache_rival)(uintptr_t)arg;
    child_check(tu_drop_ipc_lock(1u << 20) == 0);
    static void *mine[1024];
    size_t got = 0;
    while (got < 1024 && (mine[got] = zz_alloc(32)) != NULL)
        got++;
    child_check(got < 1024); /* the limit was reached */
    for (size_t i = 0; i < got; i++)
        zz_free(mine[i]);
    zz_stats s;
    zz_get_stats(&s);
    /* the cache keeps its share of the limit, half ... */
    child_check(s.cached_bytes > 0 && s.cache_locked_bytes <= (1u << 20) / 2);
    /* ... and the rest goes to a lock of our own (raw system calls: the
     * sanitizers' mlock interceptors do nothing), so that the rival needs
     * the cache's locked memory */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), limit = 1u << 20;
    unsigned char *hog = mmap(NULL, limit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(hog != MAP_FAILED);
    for (size_t at = 0; at < limit && syscall(SYS_mlock, hog + at, pg) == 0;)
        at += pg;
    if (rival == RIVAL_ZZ_LOCK) {
        size_t n = 64 * 1024;
        unsigned char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        child_check(m != MAP_FAILED);
        child_check(zz_lock(m, n) == 0);
        child_check(tu_addr_has_flag(m, "lo"));
        child_check(zz_unlock(m, n) == 0);
        return;
    }
    if (rival == RIVAL_BEST_EFFORT)
        child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
    zz_arena *a = zz_arena_create(rival == RIVAL_FIXED ? 64 * 1024 : 0);
    child_check(a != NULL);
    void *p = zz_arena_alloc(a, 32);
    child_check(p != NULL);
    child_check(zz_info(p) & ZZ_INFO_LOCKED);
    zz_arena_free(a, p);
    zz_arena_destroy(a);
}

static void test_cache_gives_way_to_arenas_and_zz_lock(void **state)
{
    (void)state;
    expect_child_ok(child_rival_after_cached_burst, (void *)(uintptr_t)RIVAL_GROWABLE);
    expect_child_ok(child_rival_after_cached_burst, (void *)(uintptr_t)RIVAL_FIXED);
    expect_child_ok(child_rival_after_cached_burst, (void *)(uintptr_t)RIVAL_BEST_EFFORT);
    expect_child_ok(child_rival_after_cached_burst, (void *)(uintptr_t)RIVAL_ZZ_LOCK);
}

/* An arena chunk mapped unlocked under best effort is locked when the policy
 * becomes required, even if zz_alloc's cache holds the locked memory by then
 * (it gives way): the chunk's live blocks become LOCKED, rather than the
 * chunk being retired with them unlocked. */
static void child_relock_chunk_after_cached_burst(void *arg)
{
    (void)arg;
    size_t limit = 1u << 20, pg = (size_t)sysconf(_SC_PAGESIZE);
    child_check(tu_drop_ipc_lock(limit) == 0);
    child_check(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT) == 0);
    /* Fill the limit with a lock of our own (raw system calls: the
     * sanitizers' mlock interceptors do nothing), so the chunk maps unlocked. */
    unsigned char *hog = mmap(NULL, limit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(hog != MAP_FAILED);
    for (size_t at = 0; at < limit && syscall(SYS_mlock, hog + at, pg) == 0;)
        at += pg;
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    void *p = zz_arena_alloc(a, 32);
    child_check(p != NULL && !(zz_info(p) & ZZ_INFO_LOCKED));
    child_check(syscall(SYS_munlock, hog, limit) == 0);
    /* Now zz_alloc's cache takes the room: a burst to the limit, all freed. */
    static void *mine[1024];
    size_t got = 0;
    while (got < 1024 && (mine[got] = zz_alloc(32)) != NULL) {
        if (!(zz_info(mine[got]) & ZZ_INFO_LOCKED)) {
            zz_free(mine[got]);
            break;
        }
        got++;
    }
    child_check(got < 1024);
    for (size_t at = 0; at < limit && syscall(SYS_mlock, hog + at, pg) == 0;)
        at += pg; /* what the burst left: ours again */
    for (size_t i = 0; i < got; i++)
        zz_free(mine[i]); /* cached, still locked: the only room left */
    zz_stats s;
    zz_get_stats(&s);
    child_check(s.cached_bytes > 0);
    child_check(zz_set_lock_policy(ZZ_LOCK_REQUIRED) == 0);
    void *q = zz_arena_alloc(a, 32);
    child_check(q != NULL && (zz_info(q) & ZZ_INFO_LOCKED));
    child_check(zz_info(p) & ZZ_INFO_LOCKED); /* its chunk was locked, not retired */
    child_check(tu_addr_has_flag(p, "lo"));
    zz_arena_free(a, q);
    zz_arena_free(a, p);
    zz_arena_destroy(a);
    munmap(hog, limit);
}

static void test_cache_gives_way_to_a_chunk_locked_on_policy_change(void **state)
{
    (void)state;
    expect_child_ok(child_relock_chunk_after_cached_burst, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_env_sets_decay),
        cmocka_unit_test(test_cache_default_and_set),
        cmocka_unit_test(test_cache_burst_comes_back_without_mapping),
        cmocka_unit_test(test_cache_decay_zero_trims_at_once),
        cmocka_unit_test(test_cache_cached_within_bound),
        cmocka_unit_test(test_cache_peak_decays),
        cmocka_unit_test(test_cache_gives_way_to_live_blocks_under_memlock),
        cmocka_unit_test(test_cache_gives_way_to_arenas_and_zz_lock),
        cmocka_unit_test(test_cache_gives_way_to_a_chunk_locked_on_policy_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
