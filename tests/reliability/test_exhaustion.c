/*
 * test_exhaustion.c - the library at the edge of its resources: a small
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK, a small RLIMIT_AS, 64 threads at
 * once, a fixed arena filled to the last cell.
 *
 * Under each, the test asserts that (1) failures are clean: NULL or -1 with
 * the documented errno and a zz_last_error() sentence; (2) every block that
 * was handed out keeps its contents; (3) once memory is freed the library
 * works again and nothing is left counted.
 *
 * The rlimit cases run in forked children (they change process-wide limits).
 * CAP_IPC_LOCK is dropped with capset(2) and PR_CAPBSET_DROP in the child
 * (tu_drop_ipc_lock); each child first proves that mlock(2) really fails.
 */
#include <pthread.h>

#include "../test_util.h"

#define PATTERN(i, j) ((unsigned char)((i) * 131u + (j) * 7u + 1u))

struct held {
    unsigned char *p;
    size_t n;
    int in_arena;
};

static void fill_held(const struct held *h, size_t i)
{
    for (size_t j = 0; j < h->n; j++)
        h->p[j] = PATTERN(i, j);
}

static int intact_held(const struct held *h, size_t i)
{
    for (size_t j = 0; j < h->n; j++)
        if (h->p[j] != PATTERN(i, j))
            return 0;
    return 1;
}

static int all_intact(const struct held *h, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (h[i].p != NULL && !intact_held(&h[i], i))
            return 0;
    return 1;
}

static int all_equal_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static int is_lock_errno(int e)
{
    return e == ENOMEM || e == EAGAIN || e == EPERM;
}

/* AddressSanitizer replaces mlock(2) with a no-op that reports success, so
 * under it zz_lock cannot be refused; the checks that need a real refusal of
 * mlock (not mlock2, which the allocator uses) are left out there. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_INTERCEPTED 1
#else
#define MLOCK_INTERCEPTED 0
#endif

/* In the child: without CAP_IPC_LOCK and with RLIMIT_MEMLOCK = limit, a lock
 * of more than the limit must fail.  Proves the setup, not the library (the
 * raw system call, which no sanitizer intercepts). */
static void child_limit_memlock(rlim_t limit)
{
    child_check(tu_drop_ipc_lock(limit) == 0);
    size_t len = (size_t)limit * 2;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(m != MAP_FAILED);
    errno = 0;
    child_check(syscall(SYS_mlock, m, len) != 0 && is_lock_errno(errno));
    munmap(m, len);
}

/* ---- RLIMIT_MEMLOCK ---------------------------------------------------------------- */

#define MEMLOCK_LIMIT (256 * 1024)
#define MAX_HELD 4096

static struct held held[MAX_HELD];

/* zz_alloc and a growing arena compete for 256 KiB of locked memory. */
static void child_memlock_exhausted(void *arg)
{
    (void)arg;
    child_limit_memlock(MEMLOCK_LIMIT);
    zz_arena *arena = zz_arena_create(0);
    child_check(arena != NULL);
    size_t count = 0;
    int alloc_err = 0, arena_err = 0;
    /* zz_alloc until refused. */
    while (count < MAX_HELD) {
        size_t n = 1 + (count * 37) % 3000;
        errno = 0;
        unsigned char *p = zz_alloc(n);
        if (p == NULL) {
            alloc_err = errno;
            break;
        }
        held[count] = (struct held){p, n, 0};
        fill_held(&held[count], count);
        count++;
    }
    child_check(count > 0 && count < MAX_HELD);
    child_check(is_lock_errno(alloc_err));
    size_t by_alloc = count;
    child_check(strstr(zz_last_error(), "ulimit -l") != NULL);
    /* The arena until refused (it grows in new locked chunks). */
    while (count < MAX_HELD) {
        size_t n = 16 + (count * 53) % 2000;
        errno = 0;
        unsigned char *p = zz_arena_alloc(arena, n);
        if (p == NULL) {
            arena_err = errno;
            break;
        }
        held[count] = (struct held){p, n, 1};
        fill_held(&held[count], count);
        count++;
    }
    child_check(count < MAX_HELD && is_lock_errno(arena_err));
    printf("    RLIMIT_MEMLOCK %d KiB: %zu zz_alloc blocks, then %zu arena blocks, VmLck %ld kB\n",
           MEMLOCK_LIMIT / 1024, by_alloc, count - by_alloc, tu_status_kb("VmLck"));
    fflush(stdout);
    /* zz_lock on caller memory is refused too, and leaves nothing locked. */
    long vmlck_before = tu_status_kb("VmLck");
    unsigned char *buf = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(buf != MAP_FAILED);
    memset(buf, 0x5C, 64 * 1024);
    if (!MLOCK_INTERCEPTED) {
        errno = 0;
        child_check(zz_lock(buf, 64 * 1024) == -1 && is_lock_errno(errno));
        child_check(tu_status_kb("VmLck") == vmlck_before);
        child_check(!tu_addr_has_flag(buf, "lo"));
    }
    /* The kernel's count never went over the limit; every block is intact
     * and every zz_alloc block still claims (and has) its lock. */
    child_check(tu_status_kb("VmLck") <= MEMLOCK_LIMIT / 1024);
    child_check(all_intact(held, count));
    for (size_t i = 0; i < count; i++)
        child_check(zz_info(held[i].p) & ZZ_INFO_LOCKED);
    /* Free every other block: allocation works again. */
    for (size_t i = 0; i < count; i += 2) {
        if (held[i].in_arena)
            zz_arena_free(arena, held[i].p);
        else
            zz_free(held[i].p);
        held[i].p = NULL;
    }
    unsigned char *again = zz_alloc(100);
    child_check(again != NULL && (zz_info(again) & ZZ_INFO_LOCKED));
    memset(again, 0x77, 100);
    child_check(all_intact(held, count));
    zz_free(again);
    for (size_t i = 1; i < count; i += 2) {
        if (held[i].in_arena)
            zz_arena_free(arena, held[i].p);
        else
            zz_free(held[i].p);
    }
    zz_arena_destroy(arena);
    zz_stats st;
    zz_get_stats(&st);
    child_check(st.live_blocks == 0 && st.live_bytes == 0);
    child_check(zz_lock(buf, 4096) == 0); /* within the limit now */
    child_check(zz_unlock(buf, 4096) == 0);
    munmap(buf, 64 * 1024);
}

static void test_exhaustion_memlock_limit_without_cap(void **state)
{
    (void)state;
    expect_child_ok(child_memlock_exhausted, NULL);
}

/* ---- RLIMIT_AS --------------------------------------------------------------------------- */

static void child_address_space_exhausted(void *arg)
{
    (void)arg;
    long vm_kb = tu_status_kb("VmSize");
    child_check(vm_kb > 0);
    rlim_t limit = (rlim_t)vm_kb * 1024 + 24u * 1024 * 1024;
    struct rlimit rl = {limit, limit};
    child_check(setrlimit(RLIMIT_AS, &rl) == 0);
    /* One request bigger than what is left: refused at once. */
    errno = 0;
    child_check(zz_alloc((size_t)64 << 20) == NULL && errno == ENOMEM);
    child_check(zz_last_error()[0] != '\0');
    size_t count = 0;
    int err = 0;
    while (count < MAX_HELD) {
        size_t n = 20000 + (count * 4099) % 50000; /* mostly one mapping each */
        errno = 0;
        unsigned char *p = zz_alloc(n);
        if (p == NULL) {
            err = errno;
            break;
        }
        held[count] = (struct held){p, n, 0};
        fill_held(&held[count], count);
        count++;
    }
    child_check(count > 0 && count < MAX_HELD);
    child_check(err == ENOMEM);
    printf("    RLIMIT_AS VmSize+24 MiB: %zu blocks of 20-70 KB before ENOMEM\n", count);
    fflush(stdout);
    child_check(zz_last_error()[0] != '\0');
    errno = 0;
    child_check(zz_arena_create(1 << 20) == NULL && errno == ENOMEM);
    child_check(all_intact(held, count));
    for (size_t i = 0; i < count; i += 2) {
        zz_free(held[i].p);
        held[i].p = NULL;
    }
    unsigned char *again = zz_alloc(30000);
    child_check(again != NULL);
    memset(again, 0x42, 30000);
    zz_free(again);
    child_check(all_intact(held, count));
    for (size_t i = 1; i < count; i += 2)
        zz_free(held[i].p);
    zz_stats st;
    zz_get_stats(&st);
    child_check(st.live_blocks == 0);
}

static void test_exhaustion_address_space_limit(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    skip(); /* sanitizer shadow memory needs terabytes of address space */
#endif
    expect_child_ok(child_address_space_exhausted, NULL);
}

/* ---- many threads ------------------------------------------------------------------------------- */

#define NTHREADS 64
#define PER_THREAD 12
#define ROUNDS 150

struct worker {
    pthread_t tid;
    unsigned id;
    zz_arena *arena;         /* shared by all workers */
    pthread_barrier_t *start;
    int tolerate_refusal;    /* under a memlock limit: refusals are expected */
    unsigned refused, made;
    int failed_line;         /* 0, or the line of the failed check */
};

#define WCHECK(w, cond)                                                                            \
    do {                                                                                           \
        if (!(cond) && (w)->failed_line == 0)                                                      \
            (w)->failed_line = __LINE__;                                                           \
    } while (0)

static uint64_t wrand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct held mine[PER_THREAD];
    memset(mine, 0, sizeof mine);
    uint64_t s = 0x9E3779B97F4A7C15ull * (w->id + 1);
    pthread_barrier_wait(w->start);
    for (unsigned r = 0; r < ROUNDS; r++) {
        size_t k = (size_t)(wrand(&s) % PER_THREAD);
        size_t tag = w->id * PER_THREAD + k;
        if (mine[k].p != NULL) {
            WCHECK(w, intact_held(&mine[k], tag));
            if (mine[k].in_arena)
                zz_arena_free(w->arena, mine[k].p);
            else
                zz_free(mine[k].p);
            mine[k].p = NULL;
            continue;
        }
        size_t n = 1 + (size_t)(wrand(&s) % 700);
        int in_arena = (wrand(&s) & 1) != 0;
        errno = 0;
        unsigned char *p = in_arena ? zz_arena_alloc(w->arena, n) : zz_alloc(n);
        if (p == NULL) {
            WCHECK(w, w->tolerate_refusal && is_lock_errno(errno));
            w->refused++;
            continue;
        }
        w->made++;
        for (size_t j = 0; j < n; j++)
            WCHECK(w, p[j] == 0);
        mine[k] = (struct held){p, n, in_arena};
        fill_held(&mine[k], tag);
        for (size_t i = 0; i < PER_THREAD; i++) /* nobody touched my other blocks */
            if (mine[i].p != NULL)
                WCHECK(w, intact_held(&mine[i], w->id * PER_THREAD + i));
    }
    for (size_t k = 0; k < PER_THREAD; k++) {
        if (mine[k].p == NULL)
            continue;
        WCHECK(w, intact_held(&mine[k], w->id * PER_THREAD + k));
        if (mine[k].in_arena)
            zz_arena_free(w->arena, mine[k].p);
        else
            zz_free(mine[k].p);
    }
    return NULL;
}

/* Runs NTHREADS workers; returns the first failed line (0 if none) and the
 * totals of blocks made and refused. */
static int run_workers(int tolerate_refusal, unsigned *made, unsigned *refused)
{
    static struct worker w[NTHREADS];
    pthread_barrier_t start;
    zz_arena *arena = zz_arena_create(0);
    if (arena == NULL)
        return -1;
    pthread_barrier_init(&start, NULL, NTHREADS);
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){.id = i, .arena = arena, .start = &start,
                               .tolerate_refusal = tolerate_refusal};
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
            return -2;
    }
    int failed = 0;
    *made = *refused = 0;
    for (unsigned i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].tid, NULL);
        if (w[i].failed_line != 0 && failed == 0)
            failed = w[i].failed_line;
        *made += w[i].made;
        *refused += w[i].refused;
    }
    pthread_barrier_destroy(&start);
    zz_arena_destroy(arena);
    return failed;
}

static void test_exhaustion_64_threads(void **state)
{
    (void)state;
    zz_stats before, after;
    zz_get_stats(&before);
    unsigned made, refused;
    int failed = run_workers(0, &made, &refused);
    if (failed != 0)
        fail_msg("a worker's check failed at line %d", failed);
    assert_int_equal(refused, 0);
    assert_true(made > NTHREADS);
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
    assert_int_equal(after.live_bytes, before.live_bytes);
}

/* 64 threads competing for 512 KiB of locked memory: some requests are
 * refused (cleanly), none corrupts another thread's blocks, and afterwards
 * everything is released. */
static void child_threads_under_memlock(void *arg)
{
    (void)arg;
    child_limit_memlock(512 * 1024);
    unsigned made, refused;
    int failed = run_workers(1, &made, &refused);
    if (failed != 0)
        fprintf(stderr, "worker check failed at line %d\n", failed);
    child_check(failed == 0);
    child_check(refused > 0); /* the limit was really hit */
    printf("    64 threads, RLIMIT_MEMLOCK 512 KiB: %u blocks made, %u refused\n", made, refused);
    fflush(stdout);
    child_check(made > 0);
    zz_stats st;
    zz_get_stats(&st);
    child_check(st.live_blocks == 0 && st.live_bytes == 0);
    child_check(tu_status_kb("VmLck") <= 512);
    unsigned char *p = zz_alloc(64);
    child_check(p != NULL && (zz_info(p) & ZZ_INFO_LOCKED));
    zz_free(p);
}

static void test_exhaustion_64_threads_under_memlock_limit(void **state)
{
    (void)state;
    expect_child_ok(child_threads_under_memlock, NULL);
}

/* ---- a fixed arena, full -------------------------------------------------------------------------- */

static void test_exhaustion_fixed_arena_full(void **state)
{
    (void)state;
    /* Bystanders that must not notice. */
    unsigned char *outside = zz_alloc(300);
    zz_arena *other = zz_arena_create(0);
    assert_non_null(outside);
    assert_non_null(other);
    unsigned char *other_blk = zz_arena_alloc(other, 32);
    assert_non_null(other_blk);
    memset(outside, 0xE1, 300);
    memset(other_blk, 0xE2, 32);
    zz_stats before;
    zz_get_stats(&before);

    /* The header: capacity = count * (round_up(n, 16) + 16) holds count
     * blocks of n bytes. */
    const size_t n = 32, promised = 100, capacity = promised * (32 + 16);
    zz_arena *a = zz_arena_create(capacity);
    assert_non_null(a);
    static struct held cells[4096];
    size_t count = 0;
    for (;;) {
        assert_true(count < 4096);
        errno = 0;
        unsigned char *p = zz_arena_alloc(a, n);
        if (p == NULL) {
            assert_int_equal(errno, ENOMEM);
            assert_non_null(strstr(zz_last_error(), "arena"));
            break;
        }
        cells[count] = (struct held){p, n, 1};
        fill_held(&cells[count], count);
        count++;
    }
    assert_true(count >= promised);
    print_message("    fixed arena of %zu bytes: %zu blocks of %zu bytes\n", capacity, count, n);
    /* Full stays full, and a fixed arena never takes memory from elsewhere. */
    errno = 0;
    assert_null(zz_arena_alloc(a, n));
    assert_int_equal(errno, ENOMEM);
    assert_true(all_intact(cells, count));
    /* One freed cell can be had again, exactly one. */
    zz_arena_free(a, cells[count / 2].p);
    cells[count / 2].p = zz_arena_alloc(a, n);
    assert_non_null(cells[count / 2].p);
    fill_held(&cells[count / 2], count / 2);
    assert_null(zz_arena_alloc(a, n));
    assert_true(all_intact(cells, count));
    assert_true(all_equal_bytes(outside, 300, 0xE1));
    assert_true(all_equal_bytes(other_blk, 32, 0xE2));
    /* The arena that grows is not limited by its full neighbour. */
    unsigned char *more = zz_arena_alloc(other, 32);
    assert_non_null(more);
    zz_arena_free(other, more);
    zz_arena_destroy(a);
    zz_stats after;
    zz_get_stats(&after);
    assert_int_equal(after.live_blocks, before.live_blocks);
    assert_int_equal(after.mapped_bytes, before.mapped_bytes);
    assert_int_equal(after.locked_bytes, before.locked_bytes);
    zz_arena_free(other, other_blk);
    zz_arena_destroy(other);
    zz_free(outside);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exhaustion_memlock_limit_without_cap),
        cmocka_unit_test(test_exhaustion_address_space_limit),
        cmocka_unit_test(test_exhaustion_64_threads),
        cmocka_unit_test(test_exhaustion_64_threads_under_memlock_limit),
        cmocka_unit_test(test_exhaustion_fixed_arena_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
