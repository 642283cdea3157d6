/*
 * bench_alloc.c - what a secret allocation costs: zz_alloc and zz_arena
 * against libsodium's guarded allocations, OpenSSL's and libgcrypt's secure
 * heaps and plain glibc malloc, in time (1, 2, 4 threads), in system calls,
 * and in mappings, locked and resident memory per live block.
 */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zeroize.h"

#ifdef ZB_HAVE_SODIUM
#include <sodium.h>
#endif
#ifdef ZB_HAVE_OPENSSL
#include <openssl/crypto.h>
#endif
#ifdef ZB_HAVE_GCRYPT
#include <gcrypt.h>
#endif

/* ------------------------------------------------------------ allocators */

typedef struct {
    const char *name;
    const char *description;
    /* Prepares the allocator for blocks of up to max_size bytes, live_max of
     * them at once.  Returns 0, or -1 with a reason in why. */
    int (*init)(size_t max_size, size_t live_max, char *why, size_t whylen);
    void *(*alloc)(size_t n);
    void (*release)(void *p, size_t n);
    /* A fixed pool locked at init (OpenSSL, libgcrypt): memory per live block
     * is then counted after init, and the pool size is noted instead. */
    int fixed_pool;
} allocator;

static void *alloc_zz(size_t n)
{
    return zz_alloc(n);
}

static void release_zz(void *p, size_t n)
{
    (void)n;
    zz_free(p);
}

static int init_secretmem(size_t max_size, size_t live_max, char *why, size_t whylen)
{
    (void)max_size;
    (void)live_max;
    void *probe = zz_alloc_backend(32, ZZ_BACKEND_SECRETMEM);
    if (!probe) {
        snprintf(why, whylen, "memfd_secret unavailable: %s (%s)", strerror(errno), zz_last_error());
        return -1;
    }
    zz_free(probe);
    return 0;
}

static void *alloc_secretmem(size_t n)
{
    return zz_alloc_backend(n, ZZ_BACKEND_SECRETMEM);
}

static zz_arena *shared_arena;

static int init_arena(size_t max_size, size_t live_max, char *why, size_t whylen)
{
    (void)max_size;
    (void)live_max;
    if (shared_arena)
        return 0;
    shared_arena = zz_arena_create(0);
    if (!shared_arena) {
        snprintf(why, whylen, "zz_arena_create(0) failed: %s (%s)", strerror(errno), zz_last_error());
        return -1;
    }
    return 0;
}

/* A fresh shared arena for each size and for the mixed workload: a growable
 * arena keeps the chunks it grew for its life, and the 64 KiB live batch
 * grows it to the whole lock limit in the unprivileged profile, where no
 * later zz_alloc or arena figure could then lock a block (until cf62d8a the
 * mixed workload failed there: 8 MiB locked with 175 blocks live).  Every
 * block of the old arena is freed by then. */
static void renew_shared_arena(void)
{
    if (shared_arena == NULL)
        return;
    zz_arena_destroy(shared_arena);
    shared_arena = zz_arena_create(0);
}

static void *alloc_arena(size_t n)
{
    return zz_arena_alloc(shared_arena, n);
}

static void release_arena(void *p, size_t n)
{
    (void)n;
    zz_arena_free(shared_arena, p);
}

/* A fixed arena takes its lock on every call (its capacity must stay
 * available to every thread, so it keeps no per-thread caches): this column
 * shows what that costs.  Sized for four live batches of the largest size an
 * arena block may have (runs, once given to a size, keep it). */
static zz_arena *fixed_arena;
static size_t fixed_arena_capacity;

static int init_fixed_arena(size_t max_size, size_t live_max, char *why, size_t whylen)
{
    if (fixed_arena)
        return 0;
    size_t n = max_size > 4096 ? 4096 : max_size;
    size_t capacity = 4 * (live_max + 64) * (((n + 15) & ~(size_t)15) + 16);
    fixed_arena = zz_arena_create(capacity);
    fixed_arena_capacity = capacity;
    if (!fixed_arena) {
        snprintf(why, whylen, "zz_arena_create(%zu) failed: %s (%s)", capacity, strerror(errno),
                 zz_last_error());
        return -1;
    }
    return 0;
}

static void *alloc_fixed_arena(size_t n)
{
    return zz_arena_alloc(fixed_arena, n);
}

static void release_fixed_arena(void *p, size_t n)
{
    (void)n;
    zz_arena_free(fixed_arena, p);
}

#ifdef ZB_HAVE_SODIUM
static int init_sodium(size_t max_size, size_t live_max, char *why, size_t whylen)
{
    (void)max_size;
    (void)live_max;
    if (sodium_init() < 0) {
        snprintf(why, whylen, "sodium_init() failed");
        return -1;
    }
    return 0;
}

static void *alloc_sodium(size_t n)
{
    return sodium_malloc(n);
}

static void release_sodium(void *p, size_t n)
{
    (void)n;
    sodium_free(p);
}
#endif

#if defined(ZB_HAVE_OPENSSL) || defined(ZB_HAVE_GCRYPT)
/* The secure heaps of OpenSSL and libgcrypt are fixed pools, locked up front:
 * size them for the largest live batch we will ask for. */
static size_t pool_size_for(size_t max_size, size_t live_max)
{
    size_t need = (max_size < 16 ? 16 : max_size) * (live_max + 64) + ZB_MIB;
    size_t pool = 4 * ZB_MIB;
    while (pool < 2 * need)
        pool *= 2; /* OpenSSL wants a power of two; the slack absorbs rounding */
    return pool;
}
#endif

#ifdef ZB_HAVE_OPENSSL
static size_t openssl_pool;

static int init_openssl(size_t max_size, size_t live_max, char *why, size_t whylen)
{
    if (openssl_pool)
        return 0;
    size_t pool = pool_size_for(max_size, live_max);
    int rc = CRYPTO_secure_malloc_init(pool, 16);
    if (rc == 0) {
        snprintf(why, whylen, "CRYPTO_secure_malloc_init(%zu, 16) failed", pool);
        return -1;
    }
    openssl_pool = pool;
    if (rc == 2)
        zb_note("alloc", "OpenSSL secure heap: CRYPTO_secure_malloc_init returned 2, the heap is not "
                         "fully protected (mlock or guard pages failed).");
    return 0;
}

static void *alloc_openssl(size_t n)
{
    return OPENSSL_secure_malloc(n);
}

static void release_openssl(void *p, size_t n)
{
    OPENSSL_secure_clear_free(p, n);
}
#endif

#ifdef ZB_HAVE_GCRYPT
static int gcrypt_ready;

static int init_gcrypt(size_t max_size, size_t live_max, char *why, size_t whylen)
{
    if (gcrypt_ready)
        return 0;
    if (!gcry_check_version(NULL)) {
        snprintf(why, whylen, "gcry_check_version failed");
        return -1;
    }
    /* GCRYCTL_INIT_SECMEM also drops setuid privileges; we are not setuid, so
     * that is a no-op here.  If mlock fails, libgcrypt would print "Warning:
     * using insecure memory!" on first use; keep the table clean and say so
     * in a note instead. */
    gcry_control(GCRYCTL_DISABLE_SECMEM_WARN, 0);
    size_t pool = pool_size_for(max_size, live_max);
    if (pool > 0xFFFFFFFFu)
        pool = 0xFFFFFFFFu;
    long long locked_before = zb_status_bytes("VmLck");
    if (gcry_control(GCRYCTL_INIT_SECMEM, (unsigned int)pool, 0) != 0) {
        snprintf(why, whylen, "GCRYCTL_INIT_SECMEM %zu failed", pool);
        return -1;
    }
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    if (zb_status_bytes("VmLck") - locked_before < (long long)pool / 2)
        zb_note("alloc", "libgcrypt: the secure memory pool could not be locked (mlock failed).");
    gcrypt_ready = 1;
    return 0;
}

static void *alloc_gcrypt(size_t n)
{
    return gcry_malloc_secure(n);
}

static void release_gcrypt(void *p, size_t n)
{
    (void)n;
    gcry_free(p); /* wipes secure blocks before freeing them */
}
#endif

static void *alloc_malloc(size_t n)
{
    return malloc(n);
}

static void release_malloc_bzero(void *p, size_t n)
{
    explicit_bzero(p, n);
    free(p);
}

static void release_malloc(void *p, size_t n)
{
    (void)n;
    free(p);
}

static const allocator allocators[] = {
    {"zz_alloc", "zz_alloc(n) + zz_free(p) from this library", NULL, alloc_zz, release_zz, 0},
    {"zz_arena", "zz_arena_alloc/zz_arena_free on one growable arena (zz_arena_create(0)) shared by all threads",
     init_arena, alloc_arena, release_arena, 0},
    {"zz_arena_fixed", "zz_arena_alloc/zz_arena_free on one fixed arena (zz_arena_create(capacity), "
                       "reserved up front; every call takes the arena's lock) shared by all threads",
     init_fixed_arena, alloc_fixed_arena, release_fixed_arena, 1},
    {"zz_secretmem", "zz_alloc_backend(n, ZZ_BACKEND_SECRETMEM) + zz_free: blocks in memfd_secret memory "
                     "(left out where the kernel lacks it)",
     init_secretmem, alloc_secretmem, release_zz, 0},
#ifdef ZB_HAVE_SODIUM
    {"sodium_malloc", "libsodium sodium_malloc + sodium_free (after sodium_init)", init_sodium,
     alloc_sodium, release_sodium, 0},
#endif
#ifdef ZB_HAVE_OPENSSL
    {"openssl_secure", "OpenSSL secure heap: CRYPTO_secure_malloc_init(pool, 16), then "
                       "OPENSSL_secure_malloc + OPENSSL_secure_clear_free",
     init_openssl, alloc_openssl, release_openssl, 1},
#endif
#ifdef ZB_HAVE_GCRYPT
    {"gcry_secure", "libgcrypt secure memory: GCRYCTL_INIT_SECMEM(pool), then gcry_malloc_secure + gcry_free",
     init_gcrypt, alloc_gcrypt, release_gcrypt, 1},
#endif
    {"malloc_bzero", "glibc malloc + explicit_bzero + free", NULL, alloc_malloc, release_malloc_bzero, 0},
    {"malloc", "glibc malloc + free (no wipe, no lock, no guard: the floor)", NULL, alloc_malloc,
     release_malloc, 0},
};

static const allocator *find_allocator(const char *name)
{
    for (size_t i = 0; i < ZB_ARRAY_LEN(allocators); i++)
        if (strcmp(allocators[i].name, name) == 0)
            return &allocators[i];
    return NULL;
}

static int init_allocator(const allocator *a, size_t max_size, size_t live_max, char *why,
                          size_t whylen)
{
    why[0] = '\0';
    return a->init ? a->init(max_size, live_max, why, whylen) : 0;
}

/* ------------------------------------------------------------- the loops */

/* Writes one byte per page and the last byte, so every page of the block is
 * really backed, as it would be once a secret is stored in it. */
static void touch(void *p, size_t n)
{
    volatile unsigned char *b = p;
    for (size_t off = 0; off < n; off += 4096)
        b[off] = 1;
    b[n - 1] = 1;
}

/* iters alloc+touch+free pairs.  Returns 0, or -1 (errno set) on a failure. */
static int pair_loop(const allocator *a, size_t n, uint64_t iters)
{
    for (uint64_t i = 0; i < iters; i++) {
        void *p = a->alloc(n);
        if (!p)
            return -1;
        touch(p, n);
        a->release(p, n);
    }
    return 0;
}

/* Allocates count live blocks, then frees them all in allocation order.
 * Returns the number allocated (count unless one failed, errno then set). */
static size_t batch_loop(const allocator *a, size_t n, void **ptrs, size_t count)
{
    size_t got = 0;
    int saved = 0;
    for (; got < count; got++) {
        ptrs[got] = a->alloc(n);
        if (!ptrs[got]) {
            saved = errno;
            break;
        }
        touch(ptrs[got], n);
    }
    for (size_t i = 0; i < got; i++)
        a->release(ptrs[i], n);
    errno = saved;
    return got;
}

typedef struct {
    const allocator *a;
    size_t n;
    uint64_t iters;
    pthread_barrier_t *start;
    uint64_t t0, t1;       /* wall clock: the aggregate figure      */
    uint64_t c0, c1;       /* zb_clock_ns: the per-thread figure    */
    int failed, err;
} thread_job;

/* zz_last_error() is the calling thread's: a worker thread that fails
 * keeps its own here for note_failure, which the main thread calls (until
 * cf62d8a the report quoted the main thread's last error, from another
 * column: "memfd_secret" for an anon zz_alloc that a worker could not lock). */
static pthread_mutex_t worker_why_lock = PTHREAD_MUTEX_INITIALIZER;
static char worker_why[512];

static void keep_worker_failure(const allocator *a)
{
    if (strncmp(a->name, "zz_", 3) != 0)
        return;
    zz_stats st;
    zz_get_stats(&st);
    pthread_mutex_lock(&worker_why_lock);
    if (worker_why[0] == '\0')
        snprintf(worker_why, sizeof(worker_why),
                 "%s; then zz_stats: %zu live blocks, %zu bytes locked, %zu of them cached",
                 zz_last_error(), st.live_blocks, st.locked_bytes, st.cache_locked_bytes);
    pthread_mutex_unlock(&worker_why_lock);
}

static void *thread_main(void *arg)
{
    thread_job *job = arg;
    /* One untimed pair first: what an allocator sets up for a new thread
     * (glibc's arena attach, zeroize's per-thread cache) is not the cost of
     * a pair, and with 4 threads on 2 cores a thread that sleeps on a lock at
     * start-up reshuffles the scheduling of all of them. */
    if (pair_loop(job->a, job->n, 1) != 0) {
        job->failed = 1, job->err = errno;
        keep_worker_failure(job->a);
        pthread_barrier_wait(job->start);
        zb_note_thread_waited(zb_thread_waited_ns());
        return NULL;
    }
    pthread_barrier_wait(job->start);
    job->t0 = zb_now_ns();
    job->c0 = zb_clock_ns();
    job->failed = pair_loop(job->a, job->n, job->iters) != 0;
    job->err = errno;
    if (job->failed)
        keep_worker_failure(job->a);
    job->c1 = zb_clock_ns();
    job->t1 = zb_now_ns();
    zb_note_thread_waited(zb_thread_waited_ns());
    return NULL;
}

/* Runs the pair loop in nthreads threads at once.  per_thread: mean over the
 * threads of each thread's ns per pair, on zb_clock_ns (by default the
 * thread's CPU time: with more threads than cores, a thread that waits for a
 * core would otherwise be charged for the others' work); aggregate: wall
 * time / all pairs, which does count waiting (for a core or a lock). */
static int threaded_pairs(const allocator *a, size_t n, uint64_t iters, int nthreads,
                          double *per_thread, double *aggregate)
{
    if (nthreads == 1) {
        uint64_t t0 = zb_clock_ns();
        if (pair_loop(a, n, iters) != 0)
            return -1;
        *per_thread = *aggregate = (double)(zb_clock_ns() - t0) / (double)iters;
        return 0;
    }
    pthread_t tid[8];
    thread_job job[8];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    zb_unpinned_thread_attr(&attr);
    for (int t = 0; t < nthreads; t++) {
        job[t] = (thread_job){.a = a, .n = n, .iters = iters, .start = &start};
        if (pthread_create(&tid[t], &attr, thread_main, &job[t]) != 0)
            abort();
    }
    pthread_attr_destroy(&attr);
    uint64_t first = UINT64_MAX, last = 0;
    double sum = 0;
    int failed = 0, err = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
        first = job[t].t0 < first ? job[t].t0 : first;
        last = job[t].t1 > last ? job[t].t1 : last;
        sum += (double)(job[t].c1 - job[t].c0) / (double)iters;
        if (job[t].failed)
            failed = 1, err = job[t].err;
    }
    pthread_barrier_destroy(&start);
    if (failed) {
        errno = err;
        return -1;
    }
    *per_thread = sum / nthreads;
    *aggregate = (double)(last - first) / ((double)iters * nthreads);
    return 0;
}

static uint64_t calibrate_pairs(const allocator *a, size_t n, double min_time_ms)
{
    double goal = min_time_ms * 1e6;
    uint64_t iters = 16;
    for (;;) {
        uint64_t t0 = zb_clock_ns();
        if (pair_loop(a, n, iters) != 0)
            return 0;
        double took = (double)(zb_clock_ns() - t0);
        if (took >= goal / 8 || iters >= ((uint64_t)1 << 28)) {
            double want = goal / (took / (double)iters);
            return want < 16 ? 16 : (uint64_t)want + 1;
        }
        iters *= 8;
    }
}

/* ------------------------------------------------------- the measurement */

static const int thread_counts[] = {1, 2, 4};
static const size_t default_sizes[] = {16, 32, 64, 128, 256, 4096, 65536};

typedef struct {
    const allocator *list[16];
    int count;
    int usable[16]; /* init succeeded */
} allocator_set;

static void table_name_pairs(char *buf, size_t len, int nthreads)
{
    snprintf(buf, len, "pair, %d thread%s", nthreads, nthreads == 1 ? "" : "s");
}

static void note_failure(const allocator *a, size_t n, const char *what, int err)
{
    char size[32], why[512];
    zb_format_size(size, sizeof(size), n);
    pthread_mutex_lock(&worker_why_lock);
    snprintf(why, sizeof(why), "%s",
             worker_why[0] ? worker_why : strncmp(a->name, "zz_", 3) == 0 ? zz_last_error() : "");
    worker_why[0] = '\0';
    pthread_mutex_unlock(&worker_why_lock);
    zb_note("alloc", "%s, %s: %s failed: %s (%s)", a->name, size, what, strerror(err), why);
}

/* The comparisons the targets make: mine's cost over other's. */
static const struct {
    const char *mine, *other;
} compared[] = {
    {"zz_alloc", "sodium_malloc"}, {"zz_alloc", "openssl_secure"}, {"zz_alloc", "malloc_bzero"},
    {"zz_arena", "openssl_secure"}, {"zz_arena", "malloc"},
};

static int allocator_index(const allocator_set *set, const char *name)
{
    for (int i = 0; i < set->count; i++)
        if (strcmp(set->list[i]->name, name) == 0)
            return i;
    return -1;
}

/* Records mine/other per repetition ("cost_vs_<other>"): each ratio comes
 * from two figures measured moments apart, so drift in the machine's speed
 * cancels out, which a ratio of two medians would not do. */
static void record_paired_ratios(const allocator_set *set, size_t n, const double *per,
                                 const int *ok_pairs, int reps)
{
    int nt = (int)ZB_ARRAY_LEN(thread_counts);
    double *ratio = calloc((size_t)reps, sizeof(double));
    if (!ratio)
        abort();
    char row[32], table[48], metric[64];
    zb_format_size(row, sizeof(row), n);
    for (size_t c = 0; c < ZB_ARRAY_LEN(compared); c++) {
        int m = allocator_index(set, compared[c].mine), o = allocator_index(set, compared[c].other);
        if (m < 0 || o < 0)
            continue;
        for (int t = 0; t < nt; t++) {
            if (!ok_pairs[m * nt + t] || !ok_pairs[o * nt + t])
                continue;
            for (int r = 0; r < reps; r++)
                ratio[r] = per[(m * nt + t) * reps + r] / per[(o * nt + t) * reps + r];
            table_name_pairs(table, sizeof(table), thread_counts[t]);
            snprintf(metric, sizeof(metric), "cost_vs_%s", compared[c].other);
            zb_record("alloc", table, row, (double)n, compared[c].mine, metric, "x",
                      zb_summarize(ratio, reps));
        }
    }
    free(ratio);
}

/* Measures one size for every allocator, round robin. */
static void measure_size(const zb_options *opt, allocator_set *set, size_t n, void **ptrs)
{
    int reps = opt->reps, nt = (int)ZB_ARRAY_LEN(thread_counts);
    int na = set->count;
    uint64_t iters[16] = {0}, batch_reps[16] = {0};
    /* samples[a][t][r] per-thread and aggregate, batch[a][r] */
    double *per = calloc((size_t)(na * nt * reps), sizeof(double));
    double *agg = calloc((size_t)(na * nt * reps), sizeof(double));
    double *bat = calloc((size_t)(na * reps), sizeof(double));
    int *ok_pairs = calloc((size_t)(na * nt), sizeof(int));
    int *ok_batch = calloc((size_t)na, sizeof(int));
    if (!per || !agg || !bat || !ok_pairs || !ok_batch)
        abort();
    for (int i = 0; i < na; i++) {
        if (!set->usable[i])
            continue;
        iters[i] = calibrate_pairs(set->list[i], n, opt->min_time_ms);
        if (iters[i] == 0) {
            note_failure(set->list[i], n, "alloc+free pair", errno);
            continue;
        }
        for (int t = 0; t < nt; t++)
            ok_pairs[i * nt + t] = 1;
        /* A live batch is slow enough that a few per repetition suffice.
         * Calibrated on a second batch: the first one maps and faults the
         * memory (12 ms for 1000 zz_alloc blocks), and sized on it every
         * repetition timed a single 100-microsecond batch, which one
         * interrupt doubles. */
        size_t got = batch_loop(set->list[i], n, ptrs, opt->batch);
        uint64_t t0 = zb_clock_ns();
        if (got == opt->batch)
            got = batch_loop(set->list[i], n, ptrs, opt->batch);
        if (got < opt->batch) {
            char what[64];
            snprintf(what, sizeof(what), "live batch (after %zu blocks)", got);
            note_failure(set->list[i], n, what, errno);
            continue;
        }
        double one = (double)(zb_clock_ns() - t0);
        batch_reps[i] = (uint64_t)(opt->min_time_ms * 1e6 / one) + 1;
        ok_batch[i] = 1;
        /* Untimed warm-up with the most threads, as calibration is for one:
         * what an allocator sets up once for many threads (glibc's arenas,
         * an arena's runs per thread) is not charged to the first
         * repetition, which --quick would show as a 2x outlier. */
        double ignored_per, ignored_agg;
        threaded_pairs(set->list[i], n, iters[i] / 4 + 1,
                       thread_counts[ZB_ARRAY_LEN(thread_counts) - 1], &ignored_per, &ignored_agg);
    }
    /* Each repetition measures one thread count for every allocator back to
     * back, so a figure and the one it is compared with are taken a few
     * milliseconds apart (this VM's speed drifts over seconds). */
    for (int r = 0; r < reps; r++) {
        for (int t = 0; t < nt; t++) {
            for (int k = 0; k < na; k++) {
                int i = (k + r) % na;
                int idx = (i * nt + t) * reps + r;
                if (iters[i] && ok_pairs[i * nt + t] &&
                    threaded_pairs(set->list[i], n, iters[i], thread_counts[t], &per[idx], &agg[idx]) != 0) {
                    char what[48];
                    snprintf(what, sizeof(what), "pairs in %d threads", thread_counts[t]);
                    note_failure(set->list[i], n, what, errno);
                    ok_pairs[i * nt + t] = 0;
                }
            }
        }
        for (int k = 0; k < na; k++) {
            int i = (k + r) % na;
            if (!iters[i] || !ok_batch[i])
                continue;
            uint64_t t0 = zb_clock_ns();
            for (uint64_t b = 0; b < batch_reps[i]; b++) {
                if (batch_loop(set->list[i], n, ptrs, opt->batch) < opt->batch) {
                    note_failure(set->list[i], n, "live batch", errno);
                    ok_batch[i] = 0;
                    break;
                }
            }
            bat[i * reps + r] = (double)(zb_clock_ns() - t0) / (double)(batch_reps[i] * opt->batch);
        }
    }
    char row[32], table[48];
    zb_format_size(row, sizeof(row), n);
    for (int i = 0; i < na; i++) {
        for (int t = 0; t < nt; t++) {
            if (!ok_pairs[i * nt + t])
                continue;
            int idx = (i * nt + t) * reps;
            table_name_pairs(table, sizeof(table), thread_counts[t]);
            zb_record("alloc", table, row, (double)n, set->list[i]->name, "ns_per_pair", "ns",
                      zb_summarize(&per[idx], reps));
            zb_record("alloc", table, row, (double)n, set->list[i]->name, "aggregate_ns_per_pair",
                      "ns", zb_summarize(&agg[idx], reps));
        }
        if (ok_batch[i])
            zb_record("alloc", "live batch", row, (double)n, set->list[i]->name, "ns_per_block", "ns",
                      zb_summarize(&bat[i * reps], reps));
    }
    record_paired_ratios(set, n, per, ok_pairs, reps);
    free(per);
    free(agg);
    free(bat);
    free(ok_pairs);
    free(ok_batch);
}

/* ------------------------------------------- per-block memory, syscalls */

#define STRACE_MARK "zz-bench-strace-mark"

static void mark_for_strace(void)
{
    ssize_t ignored = write(-1, STRACE_MARK, sizeof(STRACE_MARK) - 1);
    (void)ignored;
}

/* Child: init, one warm-up pair, then either measure memory per live block
 * ("mem"), or ("sys") run count pairs and then a live batch of count blocks
 * between markers, so that strace can count the system calls of each. */
/* The "sys" child: count pairs, then a live batch of count blocks, each
 * between markers that strace shows and nothing else makes. */
static int child_syscalls(const allocator *a, size_t n, size_t count, void **ptrs)
{
    mark_for_strace();
    int ok = pair_loop(a, n, count) == 0;
    mark_for_strace();
    ok &= batch_loop(a, n, ptrs, count) == count;
    mark_for_strace();
    return ok ? 0 : 1;
}

/* The "burst" child: one live batch of count blocks in this fresh process
 * (after one warm-up pair: the library's set-up is not the burst's cost),
 * then what the kernel alone needs for the pages such blocks occupy: mmap,
 * mlock and a write to each page of count blocks of n bytes. */
static int child_first_burst(const allocator *a, size_t n, size_t count, void **ptrs)
{
    uint64_t t0 = zb_now_ns();
    size_t got = batch_loop(a, n, ptrs, count);
    uint64_t t1 = zb_now_ns();
    if (got < count)
        return 1;
    printf("burst_ns_per_block %.1f\n", (double)(t1 - t0) / (double)count);
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = count * ((n + (size_t)page - 1) / (size_t)page), len = pages * (size_t)page;
    t0 = zb_now_ns();
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mlock(m, len) != 0)
        return 1;
    for (size_t i = 0; i < pages; i++)
        ((volatile unsigned char *)m)[i * (size_t)page] = 1;
    t1 = zb_now_ns();
    munmap(m, len);
    printf("kernel_ns_per_block %.1f\n", (double)(t1 - t0) / (double)count);
    return 0;
}

typedef struct {
    long vmas;
    long long locked, resident;
} memory_sample;

static memory_sample sample_memory(void)
{
    memory_sample m = {zb_count_vmas(), zb_status_bytes("VmLck"), zb_status_bytes("VmRSS")};
    return m;
}

/* The "mem" child: count live blocks, and what they cost beyond before. */
static int child_memory(const allocator *a, size_t n, size_t count, void **ptrs, memory_sample before)
{
    size_t got = 0;
    for (; got < count; got++) {
        ptrs[got] = a->alloc(n);
        if (!ptrs[got])
            break;
        touch(ptrs[got], n);
    }
    int err = got < count ? errno : 0;
    memory_sample after = sample_memory();
    printf("allocated %zu\nerrno %d\n", got, err);
    if (got) {
        printf("vmas_per_block %.4f\n", (double)(after.vmas - before.vmas) / (double)got);
        printf("vmlck_per_block %.1f\n", (double)(after.locked - before.locked) / (double)got);
        printf("rss_per_block %.1f\n", (double)(after.resident - before.resident) / (double)got);
    }
    for (size_t i = 0; i < got; i++)
        a->release(ptrs[i], n);
    return got == count ? 0 : 1;
}

int zb_alloc_child_main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    const char *mode = argv[1];
    const allocator *a = find_allocator(argv[2]);
    size_t n = strtoull(argv[3], NULL, 10);
    size_t count = strtoull(argv[4], NULL, 10);
    int mem = strcmp(mode, "mem") == 0, burst = strcmp(mode, "burst") == 0;
    if (!a || n == 0 || !(mem || burst || strcmp(mode, "sys") == 0))
        return 2;
    void **ptrs = calloc(count ? count : 1, sizeof(void *));
    if (!ptrs)
        return 1;
    /* Memory per live block: an allocator that grows on demand is charged
     * for what it maps from its first call on; a fixed pool is locked at init
     * whatever the load, so its blocks are counted after init (and the pool
     * size is reported in a note). */
    memory_sample before = sample_memory();
    char why[256];
    int rc = 1;
    if (init_allocator(a, n, count, why, sizeof(why)) != 0) {
        printf("error %s\n", why);
    } else {
        if (!mem || a->fixed_pool) {
            /* first-use costs (library set-up) out of the way */
            void *warm = a->alloc(n);
            if (warm)
                a->release(warm, n);
            before = sample_memory();
        }
        rc = burst ? child_first_burst(a, n, count, ptrs)
             : mem ? child_memory(a, n, count, ptrs, before) : child_syscalls(a, n, count, ptrs);
    }
    free(ptrs);
    return rc;
}

static char strace_path[256];

static int find_strace(void)
{
    const char *path = getenv("PATH");
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(strace_path, sizeof(strace_path), "%s/strace", dir);
        if (access(strace_path, X_OK) == 0)
            return 0;
    }
    strace_path[0] = '\0';
    return -1;
}

/* Runs "zz-bench _alloc-child sys ALLOC SIZE COUNT" under strace -f and
 * counts the system calls between its markers: calls[0] during count pairs,
 * calls[1] during a live batch of count blocks.  Returns 0, or -1. */
static int strace_counts(const allocator *a, size_t n, size_t count, long calls[2])
{
    char out_file[] = "/tmp/zz-bench-strace-XXXXXX";
    int fd = mkstemp(out_file);
    if (fd < 0)
        return -1;
    close(fd);
    char size_arg[32], count_arg[32], self[4096];
    snprintf(size_arg, sizeof(size_arg), "%zu", n);
    snprintf(count_arg, sizeof(count_arg), "%zu", count);
    snprintf(self, sizeof(self), "%s", zb_self_path());
    const char *argv[] = {strace_path, "-f", "-qq", "-o", out_file, self, "_alloc-child", "sys",
                          a->name, size_arg, count_arg, NULL};
    char ignored[512];
    /* In a sanitizer build, LeakSanitizer cannot work under ptrace and
     * would fail the child; the variable is ignored otherwise. */
    int rc = zb_run_capture(argv, "ASAN_OPTIONS=detect_leaks=0", ignored, sizeof(ignored));
    int marks = 0;
    calls[0] = calls[1] = 0;
    FILE *f = rc == 0 ? fopen(out_file, "r") : NULL;
    if (f) {
        char line[4096];
        while (fgets(line, sizeof(line), f)) {
            if (strstr(line, STRACE_MARK)) {
                marks++;
                continue;
            }
            /* one line per call; a call split across threads shows as
             * "<unfinished ...>" then "<... resumed>": count it once */
            if (marks >= 1 && marks <= 2 && !strstr(line, "resumed>") && !strstr(line, "+++") &&
                !strstr(line, "---"))
                calls[marks - 1]++;
        }
        fclose(f);
    }
    unlink(out_file);
    return marks == 3 ? 0 : -1;
}

static void measure_syscalls(const zb_options *opt, const allocator *a, size_t n)
{
    char row[32];
    zb_format_size(row, sizeof(row), n);
    long calls[2];
    if (strace_counts(a, n, opt->batch, calls) != 0)
        return;
    zb_record("alloc", "syscalls", row, (double)n, a->name, "syscalls_per_pair", "calls",
              zb_single((double)calls[0] / (double)opt->batch));
    zb_record("alloc", "syscalls", row, (double)n, a->name, "syscalls_per_batch_block", "calls",
              zb_single((double)calls[1] / (double)opt->batch));
}

static void measure_memory(const zb_options *opt, const allocator *a, size_t n)
{
    char size_arg[32], count_arg[32], self[4096], out[1024];
    snprintf(size_arg, sizeof(size_arg), "%zu", n);
    snprintf(count_arg, sizeof(count_arg), "%zu", opt->batch);
    snprintf(self, sizeof(self), "%s", zb_self_path());
    const char *argv[] = {self, "_alloc-child", "mem", a->name,
                    size_arg, count_arg, NULL};
    zb_run_capture(argv, NULL, out, sizeof(out));
    char row[32];
    zb_format_size(row, sizeof(row), n);
    double v, got = 0, err = 0;
    zb_kv_double(out, "allocated", &got);
    zb_kv_double(out, "errno", &err);
    if (got < (double)opt->batch) {
        char why[256] = "";
        zb_kv_string(out, "error", why, sizeof(why));
        zb_note("alloc", "%s, %s: only %.0f of %zu live blocks: %s %s", a->name, row, got, opt->batch,
                err ? strerror((int)err) : "", why);
    }
    if (zb_kv_double(out, "vmas_per_block", &v) == 0)
        zb_record("alloc", "memory", row, (double)n, a->name, "vmas_per_block", "VMAs", zb_single(v));
    if (zb_kv_double(out, "vmlck_per_block", &v) == 0)
        zb_record("alloc", "memory", row, (double)n, a->name, "vmlck_bytes_per_block", "bytes",
                  zb_single(v));
    if (zb_kv_double(out, "rss_per_block", &v) == 0)
        zb_record("alloc", "memory", row, (double)n, a->name, "rss_bytes_per_block", "bytes",
                  zb_single(v));
}

/* The first live batch in a fresh process, next to the kernel's own cost for
 * its pages (recorded under the allocator's name as kernel_ns_per_block). */
static void measure_first_burst(const zb_options *opt, const allocator *a, size_t n)
{
    char size_arg[32], count_arg[32], self[4096], out[1024];
    snprintf(size_arg, sizeof(size_arg), "%zu", n);
    snprintf(count_arg, sizeof(count_arg), "%zu", opt->batch);
    snprintf(self, sizeof(self), "%s", zb_self_path());
    const char *argv[] = {self, "_alloc-child", "burst", a->name, size_arg, count_arg, NULL};
    zb_run_capture(argv, NULL, out, sizeof(out));
    char row[32];
    zb_format_size(row, sizeof(row), n);
    double v;
    if (zb_kv_double(out, "burst_ns_per_block", &v) == 0)
        zb_record("alloc", "first burst", row, (double)n, a->name, "ns_per_block", "ns", zb_single(v));
    if (zb_kv_double(out, "kernel_ns_per_block", &v) == 0)
        zb_record("alloc", "first burst", row, (double)n, a->name, "kernel_ns_per_block", "ns",
                  zb_single(v));
}

/* ------------------------------------------------- mixed, 4 threads */

/* Each of 4 threads allocates blocks of 16 B to 8 KiB (log-uniform), writes
 * its size into it and keeps it in a ring of 64; one in four goes instead
 * to a shared mailbox of 16 slots, and the block it displaces (most often
 * another thread's) is freed by this thread.  Every block is freed once. */
#define MIX_THREADS 4
#define MIX_RING 64
#define MIX_MAILBOX 16
#define MIX_MAX_SIZE 8192u
static const char *const mixed_columns[] = {"zz_alloc", "zz_arena", "malloc_bzero", "openssl_secure"};
static _Atomic(void *) mix_mailbox[MIX_MAILBOX];

typedef struct {
    const allocator *a;
    uint64_t iters, rng;
    pthread_barrier_t *start;
    uint64_t c0, c1, t0, t1;
    int failed, err;
} mix_job;

static uint64_t mix_rand(uint64_t *s) /* xorshift64 */
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t mix_size(uint64_t *rng)
{
    uint64_t r = mix_rand(rng);
    unsigned shift = 4 + (unsigned)(r % 10); /* 16 .. 8192 */
    size_t lo = (size_t)1 << shift;
    return shift == 13 ? MIX_MAX_SIZE : lo + (size_t)((r >> 8) % lo);
}

static void mix_release(const allocator *a, void *p)
{
    size_t n;
    memcpy(&n, p, sizeof(n));
    a->release(p, n);
}

static void *mix_thread(void *arg)
{
    mix_job *job = arg;
    void *ring[MIX_RING] = {0};
    pthread_barrier_wait(job->start);
    job->t0 = zb_now_ns();
    job->c0 = zb_clock_ns();
    for (uint64_t i = 0; i < job->iters; i++) {
        size_t n = mix_size(&job->rng);
        void *p = job->a->alloc(n);
        if (!p) {
            job->failed = 1, job->err = errno;
            keep_worker_failure(job->a);
            break;
        }
        touch(p, n);
        memcpy(p, &n, sizeof(n));
        uint64_t r = mix_rand(&job->rng);
        void *old;
        if (r % 4 == 0) {
            old = atomic_exchange(&mix_mailbox[(r >> 8) % MIX_MAILBOX], p);
        } else {
            old = ring[i % MIX_RING];
            ring[i % MIX_RING] = p;
        }
        if (old)
            mix_release(job->a, old);
    }
    job->c1 = zb_clock_ns();
    job->t1 = zb_now_ns();
    for (size_t k = 0; k < MIX_RING; k++)
        if (ring[k])
            mix_release(job->a, ring[k]);
    zb_note_thread_waited(zb_thread_waited_ns());
    return NULL;
}

/* One repetition: CPU ns per operation (alloc + free) in each thread, mean
 * over the threads; aggregate: wall time / all operations. */
static int mixed_once(const allocator *a, uint64_t iters, uint64_t seed, double *per, double *agg)
{
    pthread_t tid[MIX_THREADS];
    mix_job job[MIX_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, MIX_THREADS);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    zb_unpinned_thread_attr(&attr);
    for (int t = 0; t < MIX_THREADS; t++) {
        job[t] = (mix_job){.a = a, .iters = iters, .rng = seed * 7919 + (uint64_t)t + 1, .start = &start};
        if (pthread_create(&tid[t], &attr, mix_thread, &job[t]) != 0)
            abort();
    }
    pthread_attr_destroy(&attr);
    uint64_t first = UINT64_MAX, last = 0;
    double sum = 0;
    int failed = 0, err = 0;
    for (int t = 0; t < MIX_THREADS; t++) {
        pthread_join(tid[t], NULL);
        first = job[t].t0 < first ? job[t].t0 : first;
        last = job[t].t1 > last ? job[t].t1 : last;
        sum += (double)(job[t].c1 - job[t].c0) / (double)iters;
        if (job[t].failed)
            failed = 1, err = job[t].err;
    }
    pthread_barrier_destroy(&start);
    for (size_t k = 0; k < MIX_MAILBOX; k++) {
        void *p = atomic_exchange(&mix_mailbox[k], NULL);
        if (p)
            mix_release(a, p);
    }
    if (failed) {
        errno = err;
        return -1;
    }
    *per = sum / MIX_THREADS;
    *agg = (double)(last - first) / ((double)iters * MIX_THREADS);
    return 0;
}

static void measure_mixed(const zb_options *opt, const allocator_set *set)
{
    uint64_t iters = opt->quick ? 2000 : 20000;
    int reps = opt->reps;
    double *per = calloc((size_t)reps, sizeof(double)), *agg = calloc((size_t)reps, sizeof(double));
    if (!per || !agg)
        abort();
    for (int i = 0; i < set->count; i++) {
        int wanted = 0;
        for (size_t c = 0; c < ZB_ARRAY_LEN(mixed_columns); c++)
            wanted |= strcmp(set->list[i]->name, mixed_columns[c]) == 0;
        if (!wanted || !set->usable[i])
            continue;
        int ok = 1;
        for (int r = 0; r < reps && ok; r++) {
            if (mixed_once(set->list[i], iters, (uint64_t)r, &per[r], &agg[r]) != 0) {
                note_failure(set->list[i], MIX_MAX_SIZE, "mixed workload", errno);
                ok = 0;
            }
        }
        if (!ok)
            continue;
        zb_record("alloc", "mixed, 4 threads", "16 B-8 KiB", 0, set->list[i]->name, "ns_per_op", "ns",
                  zb_summarize(per, reps));
        zb_record("alloc", "mixed, 4 threads", "16 B-8 KiB", 0, set->list[i]->name,
                  "aggregate_ns_per_op", "ns", zb_summarize(agg, reps));
    }
    free(per);
    free(agg);
}

/* ---------------------------------------------------------------- report */

/* A table with an "allocator" column and one column per block size. */
static zb_table *new_size_table(const size_t *sizes, int nsizes)
{
    zb_table *tb = zb_table_new(nsizes + 1);
    zb_table_header(tb, 0, "allocator");
    for (int s = 0; s < nsizes; s++) {
        char h[32];
        zb_format_size(h, sizeof(h), sizes[s]);
        zb_table_header(tb, s + 1, h);
    }
    return tb;
}

static void print_pair_tables(const allocator_set *set, const size_t *sizes, int nsizes)
{
    for (size_t t = 0; t < ZB_ARRAY_LEN(thread_counts); t++) {
        char table[48];
        table_name_pairs(table, sizeof(table), thread_counts[t]);
        if (thread_counts[t] == 1)
            printf("### alloc + touch + free, ns per pair, 1 thread\n\n");
        else
            printf("### alloc + touch + free, ns per pair in each of %d threads (in brackets: "
                   "wall time / all pairs)\n\n",
                   thread_counts[t]);
        zb_table *tb = new_size_table(sizes, nsizes);
        for (int i = 0; i < set->count; i++) {
            zb_table_cell(tb, i, 0, set->list[i]->name);
            for (int s = 0; s < nsizes; s++) {
                char row[32], cell[96], a[48], b[48];
                zb_format_size(row, sizeof(row), sizes[s]);
                const zb_summary *p = zb_lookup("alloc", table, row, set->list[i]->name, "ns_per_pair");
                const zb_summary *g =
                    zb_lookup("alloc", table, row, set->list[i]->name, "aggregate_ns_per_pair");
                if (!p || !g) {
                    zb_table_cell(tb, i, s + 1, "failed");
                    continue;
                }
                zb_format_summary(a, sizeof(a), *p, 1);
                zb_format_summary(b, sizeof(b), *g, 1);
                if (thread_counts[t] == 1)
                    snprintf(cell, sizeof(cell), "%s", a);
                else
                    snprintf(cell, sizeof(cell), "%s (%.1f)", a, g->median);
                zb_table_cell(tb, i, s + 1, cell);
            }
        }
        zb_table_print(stdout, tb);
        zb_table_free(tb);
    }
}

static void print_batch_table(const zb_options *opt, const allocator_set *set, const size_t *sizes,
                              int nsizes)
{
    printf("### live batch: allocate and touch %zu blocks, then free them all; ns per block\n\n",
           opt->batch);
    zb_table *tb = new_size_table(sizes, nsizes);
    for (int i = 0; i < set->count; i++) {
        zb_table_cell(tb, i, 0, set->list[i]->name);
        for (int s = 0; s < nsizes; s++) {
            char row[32], cell[64];
            zb_format_size(row, sizeof(row), sizes[s]);
            const zb_summary *b = zb_lookup("alloc", "live batch", row, set->list[i]->name, "ns_per_block");
            if (b)
                zb_format_summary(cell, sizeof(cell), *b, 1);
            else
                snprintf(cell, sizeof(cell), "failed");
            zb_table_cell(tb, i, s + 1, cell);
        }
    }
    zb_table_print(stdout, tb);
    zb_table_free(tb);
}

static void print_first_burst_table(const zb_options *opt, const allocator_set *set,
                                    const size_t *sizes, int nsizes)
{
    printf("### first burst in a fresh process: %zu blocks allocated and touched, then freed; ns per "
           "block (in brackets: mmap + mlock + a write per page of the same blocks, the kernel "
           "alone)\n\n", opt->batch);
    zb_table *tb = new_size_table(sizes, nsizes);
    for (int i = 0; i < set->count; i++) {
        zb_table_cell(tb, i, 0, set->list[i]->name);
        for (int s = 0; s < nsizes; s++) {
            char row[32], cell[64];
            zb_format_size(row, sizeof(row), sizes[s]);
            const zb_summary *b = zb_lookup("alloc", "first burst", row, set->list[i]->name, "ns_per_block");
            const zb_summary *k =
                zb_lookup("alloc", "first burst", row, set->list[i]->name, "kernel_ns_per_block");
            if (b && k)
                snprintf(cell, sizeof(cell), "%.0f (%.0f)", b->median, k->median);
            else
                snprintf(cell, sizeof(cell), "failed");
            zb_table_cell(tb, i, s + 1, cell);
        }
    }
    zb_table_print(stdout, tb);
    zb_table_free(tb);
}

static void print_mixed_table(const allocator_set *set)
{
    printf("### mixed, %d threads: blocks of 16 B to 8 KiB (log-uniform), one in four freed by "
           "whichever thread takes it from a shared mailbox; ns of CPU per alloc + touch + free in "
           "each thread (in brackets: wall time / all operations)\n\n", MIX_THREADS);
    zb_table *tb = zb_table_new(2);
    zb_table_header(tb, 0, "allocator");
    zb_table_header(tb, 1, "16 B-8 KiB");
    int row = 0;
    for (int i = 0; i < set->count; i++) {
        const zb_summary *p =
            zb_lookup("alloc", "mixed, 4 threads", "16 B-8 KiB", set->list[i]->name, "ns_per_op");
        const zb_summary *g = zb_lookup("alloc", "mixed, 4 threads", "16 B-8 KiB", set->list[i]->name,
                                        "aggregate_ns_per_op");
        if (!p || !g)
            continue;
        char cell[96], a[48];
        zb_format_summary(a, sizeof(a), *p, 1);
        snprintf(cell, sizeof(cell), "%s (%.0f)", a, g->median);
        zb_table_cell(tb, row, 0, set->list[i]->name);
        zb_table_cell(tb, row, 1, cell);
        row++;
    }
    zb_table_print(stdout, tb);
    zb_table_free(tb);
}

static void format_single(char *buf, size_t len, const zb_summary *s, int decimals)
{
    if (s)
        snprintf(buf, len, "%.*f", decimals, s->median);
    else
        snprintf(buf, len, "n/a");
}

static void print_resource_table(const zb_options *opt, const allocator_set *set, const size_t *sizes,
                                 int nsizes)
{
    printf("### Resources: per live block (%zu live, each in a fresh process) and system calls "
           "(strace -f: calls per pair in steady state over --batch pairs, and per block in a live batch)\n\n",
           opt->batch);
    static const char *const metric[] = {"vmas_per_block", "vmlck_bytes_per_block",
                                         "rss_bytes_per_block", "syscalls_per_pair",
                                         "syscalls_per_batch_block"};
    static const char *const header[] = {"VMAs / block", "VmLck B / block", "RSS B / block",
                                         "syscalls / pair", "syscalls / batch block"};
    static const int decimals[] = {2, 0, 0, 2, 2};
    zb_table *tb = zb_table_new(7);
    zb_table_header(tb, 0, "allocator");
    zb_table_header(tb, 1, "size");
    for (int m = 0; m < 5; m++)
        zb_table_header(tb, m + 2, header[m]);
    int row_index = 0;
    for (int i = 0; i < set->count; i++) {
        for (int s = 0; s < nsizes; s++, row_index++) {
            char row[32], cell[48];
            zb_format_size(row, sizeof(row), sizes[s]);
            zb_table_cell(tb, row_index, 0, set->list[i]->name);
            zb_table_cell(tb, row_index, 1, row);
            for (int m = 0; m < 5; m++) {
                const char *table = m < 3 ? "memory" : "syscalls";
                format_single(cell, sizeof(cell), zb_lookup("alloc", table, row, set->list[i]->name, metric[m]),
                              decimals[m]);
                zb_table_cell(tb, row_index, m + 2, cell);
            }
        }
    }
    zb_table_print(stdout, tb);
    zb_table_free(tb);
}

/* Cost ratio other/mine (how many times cheaper "mine" is), with the most
 * favourable ratio the interquartile ranges allow. */
/* other's cost over mine's: the median of the per-repetition ratios, and
 * (best) the most favourable end of their interquartile range. */
static int cost_ratio(const char *table, const char *row, const char *mine, const char *other,
                      double *ratio, double *best)
{
    char metric[64];
    snprintf(metric, sizeof(metric), "cost_vs_%s", other);
    const zb_summary *c = zb_lookup("alloc", table, row, mine, metric);
    if (!c || c->median <= 0 || c->q1 <= 0)
        return -1;
    *ratio = 1.0 / c->median;
    *best = 1.0 / c->q1;
    return 0;
}

static void target_cheaper(const char *table, const char *row, const char *mine, const char *other,
                           double goal, const char *label)
{
    double ratio, best;
    if (cost_ratio(table, row, mine, other, &ratio, &best) != 0)
        return;
    char what[160], goal_text[48];
    snprintf(what, sizeof(what), "%s cheaper than %s, %s, %s", mine, label, row, table);
    snprintf(goal_text, sizeof(goal_text), ">= %.0fx cheaper", goal);
    zb_target("alloc", what, ratio, best, goal, 0, goal_text);
}

static void target_at_most(const char *table, const char *row, const char *mine, const char *other,
                           double goal, const char *label)
{
    double ratio, best;
    if (cost_ratio(table, row, mine, other, &ratio, &best) != 0)
        return;
    char what[160], goal_text[48];
    snprintf(what, sizeof(what), "%s cost relative to %s, %s, %s", mine, label, row, table);
    snprintf(goal_text, sizeof(goal_text), "<= %.0fx the cost", goal);
    /* ratio is other/mine; turn it into mine/other */
    zb_target("alloc", what, 1.0 / ratio, 1.0 / best, goal, 1, goal_text);
}

/* mine's figure over other's (table, row, metric of each), the median over
 * the medians, and the most favourable end of the interquartile ranges. */
static void target_figure_ratio(const char *table_m, const char *table_o, const char *row,
                                const char *mine, const char *other, const char *metric,
                                double goal, const char *label)
{
    const zb_summary *m = zb_lookup("alloc", table_m, row, mine, metric);
    const zb_summary *o = zb_lookup("alloc", table_o, row, other, metric);
    if (!m || !o || m->median <= 0 || o->median <= 0 || o->q3 <= 0)
        return;
    char what[160], goal_text[48];
    snprintf(what, sizeof(what), "%s, %s, %s relative to %s", mine, table_m, row, label);
    snprintf(goal_text, sizeof(goal_text), "<= %.1fx", goal);
    zb_target("alloc", what, m->median / o->median, m->q1 / o->q3, goal, 1, goal_text);
}

/* Issue 13: zz_alloc at malloc's pace with any number of threads, bursts
 * that come back for free. */
static void add_issue13_targets(const char *row, size_t n)
{
    char one[48];
    table_name_pairs(one, sizeof(one), 1);
    for (size_t t = 0; t < ZB_ARRAY_LEN(thread_counts); t++) {
        char table[48];
        table_name_pairs(table, sizeof(table), thread_counts[t]);
        target_at_most(table, row, "zz_alloc", "malloc_bzero", 3, "malloc+explicit_bzero+free");
        if (thread_counts[t] > 1)
            target_figure_ratio(table, one, row, "zz_alloc", "zz_alloc", "ns_per_pair", 1.3,
                                "its 1-thread CPU per pair");
    }
    if (n == 32)
        target_figure_ratio("live batch", "live batch", row, "zz_alloc", "openssl_secure",
                            "ns_per_block", 5, "OpenSSL secure heap per block");
}

/* Issue 18, unprivileged (8 MiB RLIMIT_MEMLOCK, no CAP_IPC_LOCK): the pair
 * scales on 2 cores: wall time over all pairs with 2 threads at most 0.65x
 * the 1-thread time per pair. */
static void add_scaling_target(const char *row)
{
    char one[48], two[48];
    table_name_pairs(one, sizeof(one), 1);
    table_name_pairs(two, sizeof(two), 2);
    const zb_summary *w = zb_lookup("alloc", two, row, "zz_alloc", "aggregate_ns_per_pair");
    const zb_summary *o = zb_lookup("alloc", one, row, "zz_alloc", "ns_per_pair");
    if (!w || !o || w->median <= 0 || o->median <= 0 || o->q3 <= 0)
        return;
    char what[160];
    snprintf(what, sizeof(what), "zz_alloc, %s, %s, wall time / all pairs relative to the 1-thread pair",
             two, row);
    zb_target("alloc", what, w->median / o->median, w->q1 / o->q3, 0.65, 1, "<= 0.65x");
}

static int unprivileged_profile(void)
{
    return strcmp(zb_profile(), "unprivileged") == 0;
}

static void add_targets(const size_t *sizes, int nsizes)
{
    for (int s = 0; s < nsizes; s++) {
        char row[32];
        zb_format_size(row, sizeof(row), sizes[s]);
        if (sizes[s] == 32 || sizes[s] == 256 || sizes[s] == 4096) {
            target_cheaper("pair, 1 thread", row, "zz_alloc", "sodium_malloc", 100, "sodium_malloc");
            target_cheaper("pair, 1 thread", row, "zz_alloc", "openssl_secure", 5, "OpenSSL secure heap");
            target_at_most("pair, 1 thread", row, "zz_alloc", "malloc_bzero", 10,
                           "malloc+explicit_bzero+free");
        }
        if (sizes[s] == 16 || sizes[s] == 64 || sizes[s] == 128) /* issue 18: every small class */
            add_issue13_targets(row, sizes[s]);
        if ((sizes[s] == 32 || sizes[s] == 256) && unprivileged_profile())
            add_scaling_target(row);
        if (sizes[s] == 32 || sizes[s] == 256) {
            for (size_t t = 0; t < ZB_ARRAY_LEN(thread_counts); t++) {
                char table[48];
                table_name_pairs(table, sizeof(table), thread_counts[t]);
                target_cheaper(table, row, "zz_arena", "openssl_secure", 5, "OpenSSL secure heap");
                target_at_most(table, row, "zz_arena", "malloc", 4, "malloc+free");
            }
            add_issue13_targets(row, sizes[s]);
        }
    }
}

void zb_alloc_help(FILE *out)
{
    fprintf(out, "alloc columns (ns per alloc+touch+free pair; \"touch\" writes one byte per page and\n"
                 "the last byte; per live block: VMAs = lines of /proc/self/maps, VmLck and RSS from\n"
                 "/proc/self/status, measured around %s live blocks in a fresh process):\n",
            "--batch");
    for (size_t i = 0; i < ZB_ARRAY_LEN(allocators); i++)
        fprintf(out, "  %-16s %s\n", allocators[i].name, allocators[i].description);
}

int zb_run_alloc(const zb_options *opt)
{
    const size_t *sizes = default_sizes;
    int nsizes = (int)ZB_ARRAY_LEN(default_sizes);
    if (opt->nsizes) {
        sizes = opt->sizes;
        nsizes = opt->nsizes;
    }
    size_t max_size = MIX_MAX_SIZE; /* the mixed workload's largest block */
    for (int s = 0; s < nsizes; s++)
        max_size = sizes[s] > max_size ? sizes[s] : max_size;
#ifndef ZB_HAVE_SODIUM
    zb_note("alloc", "sodium_malloc left out: libsodium was not found at build time.");
#endif
#ifndef ZB_HAVE_OPENSSL
    zb_note("alloc", "openssl_secure left out: OpenSSL was not found at build time.");
#endif
#ifndef ZB_HAVE_GCRYPT
    zb_note("alloc", "gcry_secure left out: libgcrypt was not found at build time.");
#endif
    allocator_set set = {.count = 0};
    for (size_t i = 0; i < ZB_ARRAY_LEN(allocators); i++)
        if (zb_column_selected(opt, allocators[i].name))
            set.list[set.count++] = &allocators[i];
    if (set.count == 0) {
        printf("(alloc: no column selected by --columns)\n\n");
        return 0;
    }
    int count_syscalls = opt->count_syscalls;
    if (count_syscalls && find_strace() != 0) {
        zb_note("alloc", "system calls not counted (n/a): strace is not installed.");
        count_syscalls = 0;
    }
    fprintf(stderr, "zz-bench: alloc: %d sizes x %d allocators x %d reps; memory%s in child processes\n",
            nsizes, set.count, opt->reps, count_syscalls ? " and syscalls" : "");
    /* Fresh processes first, before this one has initialised any allocator. */
    uint64_t phase = zb_now_ns();
    for (int i = 0; i < set.count; i++) {
        for (int s = 0; s < nsizes; s++) {
            measure_memory(opt, set.list[i], sizes[s]);
            measure_first_burst(opt, set.list[i], sizes[s]);
            if (count_syscalls)
                measure_syscalls(opt, set.list[i], sizes[s]);
        }
    }
    fprintf(stderr, "zz-bench: alloc: resources measured in %.1f s\n", (double)(zb_now_ns() - phase) / 1e9);
    phase = zb_now_ns();
    for (int i = 0; i < set.count; i++) {
        char why[256];
        set.usable[i] = init_allocator(set.list[i], max_size, opt->batch, why, sizeof(why)) == 0;
        if (!set.usable[i])
            zb_note("alloc", "%s left out: %s", set.list[i]->name, why);
        else
            zb_declare_column("alloc", set.list[i]->name, set.list[i]->description);
    }
    void **ptrs = calloc(opt->batch, sizeof(void *));
    if (!ptrs)
        return -1;
    for (int s = 0; s < nsizes; s++) {
        renew_shared_arena();
        measure_size(opt, &set, sizes[s], ptrs);
        fprintf(stderr, "zz-bench: alloc: %zu-byte blocks timed (%.1f s so far)\n", sizes[s],
                (double)(zb_now_ns() - phase) / 1e9);
    }
    free(ptrs);
    renew_shared_arena();
    measure_mixed(opt, &set);
    fprintf(stderr, "zz-bench: alloc: mixed workload timed (%.1f s so far)\n",
            (double)(zb_now_ns() - phase) / 1e9);
#ifdef ZB_HAVE_OPENSSL
    if (openssl_pool)
        zb_note("alloc", "openssl_secure used a %zu MiB secure heap, locked at init (not counted per block).",
                openssl_pool / ZB_MIB);
#endif
#ifdef ZB_HAVE_GCRYPT
    if (gcrypt_ready)
        zb_note("alloc", "gcry_secure used a %zu MiB secure pool, locked at init (not counted per block); "
                         "gcry_free wipes secure blocks before freeing.",
                pool_size_for(max_size, opt->batch) / ZB_MIB);
#endif
    if (fixed_arena)
        zb_note("alloc", "zz_arena_fixed: one fixed arena of %zu KiB, locked at creation (not counted per "
                         "block).",
                fixed_arena_capacity / 1024);
    zb_note("alloc", "zz_arena, zz_arena_fixed: one arena each, shared by all threads; the other allocators "
                     "are likewise process-wide (glibc malloc uses per-thread arenas internally).");

    printf("## alloc\n\nProfile: %s.\n\n", zb_profile_description());
    printf("Each cell: median of %d repetitions (each at least %.0f ms), ± as in the wipe tables. "
           "The allocators take turns within each repetition. Clock: %s, per thread, for the pair "
           "tables and the live batch; the bracketed figures of the 2- and 4-thread tables are wall "
           "time / all pairs (this machine has %ld cores).\n\n",
           opt->reps, opt->min_time_ms, zb_clock_is_cpu() ? "CPU time of the thread" : "wall time",
           sysconf(_SC_NPROCESSORS_ONLN));
    print_pair_tables(&set, sizes, nsizes);
    print_batch_table(opt, &set, sizes, nsizes);
    print_first_burst_table(opt, &set, sizes, nsizes);
    print_mixed_table(&set);
    print_resource_table(opt, &set, sizes, nsizes);
    add_targets(sizes, nsizes);
    zb_print_targets(stdout, "alloc");
    zb_print_notes(stdout, "alloc");
    return 0;
}
