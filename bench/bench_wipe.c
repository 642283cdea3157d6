/*
 * bench_wipe.c - how fast can a secret be wiped?  zz_wipe against memset (with
 * a compiler barrier, the usual hand-rolled idiom), explicit_bzero, volatile
 * loops, the crypto libraries' wipes, the Rust zeroize crate, and two faster
 * strategies we considered for zz_wipe (non-temporal AVX2 stores, rep stosb).
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "zeroize.h"

#ifdef ZB_HAVE_SODIUM
#include <sodium.h>
#endif
#ifdef ZB_HAVE_OPENSSL
#include <openssl/crypto.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ZB_X86 1
#endif

#ifdef ZB_HAVE_RUST_ZEROIZE
/* bench/rust: `core::slice::from_raw_parts_mut(p, n).zeroize()` */
void rust_zeroize_wipe(void *p, size_t n);
#endif

#define FILL_BYTE 0xA5

typedef void (*wipe_fn)(void *p, size_t n);

/* ------------------------------------------------------------ the wipers */

static void wipe_zz(void *p, size_t n)
{
    zz_wipe(p, n);
}

static void wipe_memset_barrier(void *p, size_t n)
{
    memset(p, 0, n);
    zb_barrier(p);
}

static void wipe_explicit_bzero(void *p, size_t n)
{
    explicit_bzero(p, n);
}

static void wipe_volatile_bytes(void *p, size_t n)
{
    volatile unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = 0;
}

/* 8 bytes per store where aligned; the unaligned head and the tail go byte by
 * byte, as a careful hand-written wipe would do it. */
static void wipe_volatile_words(void *p, size_t n)
{
    volatile unsigned char *b = p;
    size_t i = 0;
    while (i < n && ((uintptr_t)(b + i) & 7u) != 0)
        b[i++] = 0;
    volatile uint64_t *w = (volatile uint64_t *)(uintptr_t)(b + i);
    size_t words = (n - i) / 8;
    for (size_t k = 0; k < words; k++)
        w[k] = 0;
    for (i += words * 8; i < n; i++)
        b[i] = 0;
}

#ifdef ZB_HAVE_SODIUM
static void wipe_sodium(void *p, size_t n)
{
    sodium_memzero(p, n);
}
#endif

#ifdef ZB_HAVE_OPENSSL
static void wipe_openssl(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}
#endif

#ifdef ZB_HAVE_RUST_ZEROIZE
static void wipe_rust(void *p, size_t n)
{
    rust_zeroize_wipe(p, n);
}
#endif

#ifdef ZB_X86
/* Non-temporal stores bypass the caches, so a wipe of a buffer larger than
 * the last-level cache does not first read every line for ownership and does
 * not evict everything else.  Head and tail go through memset; sfence orders
 * the weakly-ordered streaming stores before anything that follows. */
__attribute__((target("avx2"))) static void wipe_nt_avx2(void *p, size_t n)
{
    unsigned char *b = p;
    size_t head = (32 - ((uintptr_t)b & 31u)) & 31u;
    if (head > n)
        head = n;
    memset(b, 0, head);
    b += head;
    n -= head;
    __m256i zero = _mm256_setzero_si256();
    size_t blocks = n / 128;
    for (size_t i = 0; i < blocks; i++, b += 128) {
        _mm256_stream_si256((__m256i *)(void *)b, zero);
        _mm256_stream_si256((__m256i *)(void *)(b + 32), zero);
        _mm256_stream_si256((__m256i *)(void *)(b + 64), zero);
        _mm256_stream_si256((__m256i *)(void *)(b + 96), zero);
    }
    n -= blocks * 128;
    for (; n >= 32; n -= 32, b += 32)
        _mm256_stream_si256((__m256i *)(void *)b, zero);
    memset(b, 0, n);
    _mm_sfence();
    zb_barrier(p);
}

/* Plain (temporal) AVX2 stores, 128 bytes per iteration: what a wipe that
 * bypassed glibc's size heuristics (which switch to rep stosb above about
 * 2 KiB on this kind of CPU) would do in the cache-resident middle sizes. */
__attribute__((target("avx2"))) static void wipe_avx2_store(void *p, size_t n)
{
    unsigned char *b = p;
    size_t head = (32 - ((uintptr_t)b & 31u)) & 31u;
    if (head > n)
        head = n;
    memset(b, 0, head);
    b += head;
    n -= head;
    __m256i zero = _mm256_setzero_si256();
    size_t blocks = n / 128;
    for (size_t i = 0; i < blocks; i++, b += 128) {
        _mm256_store_si256((__m256i *)(void *)b, zero);
        _mm256_store_si256((__m256i *)(void *)(b + 32), zero);
        _mm256_store_si256((__m256i *)(void *)(b + 64), zero);
        _mm256_store_si256((__m256i *)(void *)(b + 96), zero);
    }
    n -= blocks * 128;
    for (; n >= 32; n -= 32, b += 32)
        _mm256_store_si256((__m256i *)(void *)b, zero);
    memset(b, 0, n);
    zb_barrier(p);
}

/* rep stosb: microcoded string store, fast on CPUs with ERMS/FSRM. */
static void wipe_rep_stosb(void *p, size_t n)
{
    void *dst = p;
    size_t count = n;
    __asm__ volatile("rep stosb" : "+D"(dst), "+c"(count) : "a"(0) : "memory");
}
#endif

/* Deliberately wrong wipers, present only when ZZ_BENCH_TEST_COLUMNS=1: the
 * tests use them to prove that check_wiped() catches a wipe that leaves data
 * behind or writes past its end. */
static void wipe_broken_leaves_last_byte(void *p, size_t n)
{
    memset(p, 0, n - 1);
    zb_barrier(p);
}

static void wipe_broken_overruns(void *p, size_t n)
{
    memset(p, 0, n + 1);
    zb_barrier(p);
}

typedef struct {
    const char *name;
    wipe_fn fn;
    const char *description;
} wipe_column;

static wipe_column all_columns[16];
static int ncolumns_available;

static void add_column(const char *name, wipe_fn fn, const char *description)
{
    all_columns[ncolumns_available++] = (wipe_column){name, fn, description};
}

static void build_column_list(void)
{
    if (ncolumns_available)
        return;
    add_column("zz_wipe", wipe_zz, "zz_wipe() from this library");
    add_column("memset", wipe_memset_barrier,
               "glibc memset() then an empty asm statement with a \"memory\" clobber (compiler barrier)");
    add_column("explicit_bzero", wipe_explicit_bzero, "glibc explicit_bzero()");
    add_column("volatile_byte", wipe_volatile_bytes, "a loop storing 0 through a volatile unsigned char *");
    add_column("volatile_u64", wipe_volatile_words,
               "a loop storing 0 through a volatile uint64_t * (bytewise head and tail)");
#ifdef ZB_HAVE_SODIUM
    add_column("sodium_memzero", wipe_sodium, "libsodium sodium_memzero()");
#endif
#ifdef ZB_HAVE_OPENSSL
    add_column("OPENSSL_cleanse", wipe_openssl, "OpenSSL OPENSSL_cleanse()");
#endif
#ifdef ZB_HAVE_RUST_ZEROIZE
    add_column("rust_zeroize", wipe_rust,
               "Rust zeroize crate " ZB_RUST_ZEROIZE_VERSION ": slice.zeroize() on a &mut [u8]");
#endif
#ifdef ZB_X86
    if (__builtin_cpu_supports("avx2")) {
        add_column("nt_avx2", wipe_nt_avx2,
                   "candidate: AVX2 non-temporal stores (_mm256_stream_si256) + sfence, any size");
        add_column("avx2_store", wipe_avx2_store,
                   "candidate: plain AVX2 stores (_mm256_store_si256), 128 bytes a turn, any size");
    }
    add_column("rep_stosb", wipe_rep_stosb, "candidate: a single rep stosb instruction");
#endif
    const char *test_columns = getenv("ZZ_BENCH_TEST_COLUMNS");
    if (test_columns && strcmp(test_columns, "1") == 0) {
        add_column("broken_short", wipe_broken_leaves_last_byte, "test only: leaves the last byte");
        add_column("broken_overrun", wipe_broken_overruns, "test only: writes one byte too many");
    }
}

static void note_missing_columns(void)
{
#ifndef ZB_HAVE_SODIUM
    zb_note("wipe", "sodium_memzero left out: libsodium was not found at build time (pkg-config libsodium).");
#endif
#ifndef ZB_HAVE_OPENSSL
    zb_note("wipe", "OPENSSL_cleanse left out: OpenSSL was not found at build time (pkg-config libcrypto).");
#endif
#ifndef ZB_HAVE_RUST_ZEROIZE
    zb_note("wipe", "rust_zeroize left out: %s.", ZB_RUST_MISSING_REASON);
#endif
#ifdef ZB_X86
    if (!__builtin_cpu_supports("avx2"))
        zb_note("wipe", "nt_avx2 and avx2_store left out: this CPU has no AVX2.");
#else
    zb_note("wipe", "nt_avx2, avx2_store and rep_stosb left out: not an x86 build.");
#endif
}

/* ------------------------------------------------------------ the buffer */

typedef struct {
    unsigned char *map;
    size_t map_len;
    unsigned char *base; /* page aligned, a page of slack before and after */
} wipe_buffer;

static int buffer_open(wipe_buffer *b, size_t max_size)
{
    size_t page = 4096;
    b->map_len = max_size + 3 * page;
    b->map = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                  -1, 0);
    if (b->map == MAP_FAILED) {
        fprintf(stderr, "zz-bench: cannot map a %zu-byte wipe buffer: %s\n", b->map_len, strerror(errno));
        return -1;
    }
    /* fault every page in now, so no timed run pays for a page fault */
    memset(b->map, FILL_BYTE, b->map_len);
    b->base = b->map + page;
    return 0;
}

static void buffer_close(wipe_buffer *b)
{
    munmap(b->map, b->map_len);
}

/* Fills [p - 64, p + n + 64) with FILL_BYTE so the check afterwards can tell
 * that the wiper zeroed its range and nothing beyond it. */
static void fill_around(unsigned char *p, size_t n)
{
    memset(p - 64, FILL_BYTE, n + 128);
}

static int all_zero(const unsigned char *p, size_t n)
{
    static const unsigned char zeros[4096];
    while (n > 0) {
        size_t chunk = n < sizeof(zeros) ? n : sizeof(zeros);
        if (memcmp(p, zeros, chunk) != 0)
            return 0;
        p += chunk;
        n -= chunk;
    }
    return 1;
}

/* Fails loudly when a wiper left a byte nonzero or wrote outside its range. */
static void check_wiped(const char *column, const unsigned char *p, size_t n)
{
    if (!all_zero(p, n)) {
        size_t i = 0;
        while (p[i] == 0)
            i++;
        fprintf(stderr,
                "zz-bench: FATAL: %s left byte %zu of %zu nonzero (0x%02x) after a timed run\n",
                column, i, n, p[i]);
        exit(2);
    }
    for (int k = 1; k <= 64; k++) {
        if (p[-k] != FILL_BYTE || p[n + (size_t)k - 1] != FILL_BYTE) {
            fprintf(stderr, "zz-bench: FATAL: %s wrote outside the %zu bytes it was given\n", column,
                    n);
            exit(2);
        }
    }
}

/* ----------------------------------------------------------- measurement */

/* One timed batch: fill (untimed), iters calls, check.  Returns ns per call. */
static double timed_batch(const wipe_column *c, unsigned char *p, size_t n, uint64_t iters)
{
    fill_around(p, n);
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < iters; i++)
        c->fn(p, n);
    uint64_t t1 = zb_clock_ns();
    check_wiped(c->name, p, n);
    return (double)(t1 - t0) / (double)iters;
}

/* How many calls make one repetition last at least min_time_ms. */
static uint64_t calibrate(const wipe_column *c, unsigned char *p, size_t n, double min_time_ms)
{
    double goal_ns = min_time_ms * 1e6;
    uint64_t iters = 1;
    for (;;) {
        double per_call = timed_batch(c, p, n, iters);
        double total = per_call * (double)iters;
        if (total >= goal_ns / 8 || iters >= ((uint64_t)1 << 30)) {
            double want = goal_ns / (per_call > 0.05 ? per_call : 0.05);
            return want < 1 ? 1 : (uint64_t)(want + 1);
        }
        iters *= 8;
    }
}

static const size_t default_sizes[] = {16, 64, 256, 1024, 4096, 16384, 65536, 262144,
                                       1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20};
static const size_t quick_sizes[] = {16, 256, 1024, 4096, 65536, 1 << 20, 16 << 20};

typedef struct {
    const wipe_column *cols[16];
    int ncols;
} selection;

static void measure_size(const zb_options *opt, const selection *sel, unsigned char *p, size_t n,
                         const char *table)
{
    int reps = opt->reps;
    uint64_t iters[16];
    double *ns = calloc((size_t)sel->ncols * (size_t)reps, sizeof(double));
    double *gbps = calloc((size_t)sel->ncols * (size_t)reps, sizeof(double));
    if (!ns || !gbps)
        abort();
    for (int c = 0; c < sel->ncols; c++)
        iters[c] = calibrate(sel->cols[c], p, n, opt->min_time_ms);
    /* round robin, starting one column later each repetition, so drifts in
     * clock speed or background noise hit every column alike */
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < sel->ncols; k++) {
            int c = (k + r) % sel->ncols;
            double per_call = timed_batch(sel->cols[c], p, n, iters[c]);
            ns[c * reps + r] = per_call;
            gbps[c * reps + r] = (double)n / per_call; /* bytes per ns = GB/s */
        }
    }
    char row[32];
    zb_format_size(row, sizeof(row), n);
    for (int c = 0; c < sel->ncols; c++) {
        zb_record("wipe", table, row, (double)n, sel->cols[c]->name, "ns_per_call", "ns",
                  zb_summarize(&ns[c * reps], reps));
        zb_record("wipe", table, row, (double)n, sel->cols[c]->name, "throughput", "GB/s",
                  zb_summarize(&gbps[c * reps], reps));
    }
    free(ns);
    free(gbps);
}

/* ---------------------------------------------------------------- report */

static void print_table(const selection *sel, const size_t *sizes, int nsizes, const char *table,
                        const char *metric, const char *title, int decimals)
{
    printf("### %s\n\n", title);
    zb_table *t = zb_table_new(sel->ncols + 1);
    zb_table_header(t, 0, "size");
    for (int c = 0; c < sel->ncols; c++)
        zb_table_header(t, c + 1, sel->cols[c]->name);
    for (int i = 0; i < nsizes; i++) {
        char row[32], cell[64];
        zb_format_size(row, sizeof(row), sizes[i]);
        zb_table_cell(t, i, 0, row);
        for (int c = 0; c < sel->ncols; c++) {
            const zb_summary *s = zb_lookup("wipe", table, row, sel->cols[c]->name, metric);
            if (s)
                zb_format_summary(cell, sizeof(cell), *s, decimals);
            else
                snprintf(cell, sizeof(cell), "n/a");
            zb_table_cell(t, i, c + 1, cell);
        }
    }
    zb_table_print(stdout, t);
    zb_table_free(t);
}

/* ratio of throughputs a/b: median and the best the interquartile ranges allow */
static void throughput_ratio(const char *table, const char *row, const char *a, const char *b,
                             double *ratio, double *best)
{
    zb_target_inputs_clear(); /* the target rests on these two figures only */
    const zb_summary *sa = zb_lookup("wipe", table, row, a, "throughput");
    const zb_summary *sb = zb_lookup("wipe", table, row, b, "throughput");
    *ratio = *best = 0;
    if (sa && sb && sb->median > 0 && sb->q1 > 0) {
        *ratio = sa->median / sb->median;
        *best = sa->q3 / sb->q1;
    }
}

static void add_targets(const size_t *sizes, int nsizes)
{
    static const char *const tables[] = {"aligned", "misaligned"};
    for (size_t t = 0; t < ZB_ARRAY_LEN(tables); t++) {
        for (int i = 0; i < nsizes; i++) {
            char row[32], what[160];
            double ratio, best;
            zb_format_size(row, sizeof(row), sizes[i]);
            if (sizes[i] >= 4096 && sizes[i] <= ZB_MIB * 256) {
                throughput_ratio(tables[t], row, "zz_wipe", "memset", &ratio, &best);
                snprintf(what, sizeof(what), "zz_wipe vs memset, %s, %s", row, tables[t]);
                if (ratio > 0)
                    zb_target("wipe", what, ratio, best, 0.95, 0, ">= 0.95x memset");
            } else if (sizes[i] < 4096) {
                throughput_ratio(tables[t], row, "zz_wipe", "explicit_bzero", &ratio, &best);
                snprintf(what, sizeof(what), "zz_wipe vs explicit_bzero, %s, %s", row, tables[t]);
                if (ratio > 0)
                    zb_target("wipe", what, ratio, best, 1.0, 0, ">= 1x explicit_bzero");
            }
            if (sizes[i] >= 1024) {
                throughput_ratio(tables[t], row, "zz_wipe", "volatile_byte", &ratio, &best);
                snprintf(what, sizeof(what), "zz_wipe vs volatile byte loop, %s, %s", row,
                         tables[t]);
                if (ratio > 0)
                    zb_target("wipe", what, ratio, best, 15.0, 0, ">= 15x volatile_byte");
            }
        }
    }
}

void zb_wipe_help(FILE *out)
{
    build_column_list();
    fprintf(out, "wipe columns (GB/s = 1e9 bytes per second, and ns per call):\n");
    for (int c = 0; c < ncolumns_available; c++)
        fprintf(out, "  %-16s %s\n", all_columns[c].name, all_columns[c].description);
#ifndef ZB_HAVE_RUST_ZEROIZE
    fprintf(out, "  (rust_zeroize not built: %s)\n", ZB_RUST_MISSING_REASON);
#endif
}

int zb_run_wipe(const zb_options *opt)
{
    build_column_list();
    note_missing_columns();
    selection sel = {.ncols = 0};
    for (int c = 0; c < ncolumns_available; c++) {
        if (!zb_column_selected(opt, all_columns[c].name))
            continue;
        sel.cols[sel.ncols++] = &all_columns[c];
        zb_declare_column("wipe", all_columns[c].name, all_columns[c].description);
    }
    if (sel.ncols == 0) {
        printf("(wipe: no column selected by --columns)\n\n");
        return 0;
    }
#ifdef ZB_HAVE_SODIUM
    if (sodium_init() < 0) {
        fprintf(stderr, "zz-bench: sodium_init failed\n");
        return -1;
    }
#endif
    const size_t *sizes = opt->quick ? quick_sizes : default_sizes;
    int nsizes = opt->quick ? (int)ZB_ARRAY_LEN(quick_sizes) : (int)ZB_ARRAY_LEN(default_sizes);
    if (opt->nsizes) {
        sizes = opt->sizes;
        nsizes = opt->nsizes;
    }
    size_t max_size = 0;
    for (int i = 0; i < nsizes; i++)
        if (sizes[i] > max_size)
            max_size = sizes[i];
    wipe_buffer buf;
    if (buffer_open(&buf, max_size) != 0)
        return -1;
    fprintf(stderr, "zz-bench: wipe: %d sizes x %d columns x %d reps, aligned and +1\n", nsizes,
            sel.ncols, opt->reps);
    for (int i = 0; i < nsizes; i++) {
        measure_size(opt, &sel, buf.base, sizes[i], "aligned");
        measure_size(opt, &sel, buf.base + 1, sizes[i], "misaligned");
    }
    buffer_close(&buf);

    printf("## wipe\n\n");
    printf("Each cell: median of %d repetitions (each at least %.0f ms of back-to-back calls on a "
           "pre-faulted buffer, the columns taking turns), then ±: the largest distance from the "
           "median to the fastest or slowest repetition. Clock: %s. After every repetition the "
           "buffer was checked to be all zero, and the bytes around it untouched.\n\n",
           opt->reps, opt->min_time_ms,
           zb_clock_is_cpu() ? "CPU time of the thread" : "wall time");
    print_table(&sel, sizes, nsizes, "aligned", "throughput", "Throughput, GB/s, page-aligned buffer", 2);
    print_table(&sel, sizes, nsizes, "aligned", "ns_per_call", "ns per call, page-aligned buffer", 1);
    print_table(&sel, sizes, nsizes, "misaligned", "throughput",
                "Throughput, GB/s, buffer misaligned by 1 byte", 2);
    print_table(&sel, sizes, nsizes, "misaligned", "ns_per_call",
                "ns per call, buffer misaligned by 1 byte", 1);
    int failed = zb_run_wipe_guard(opt) != 0;
    add_targets(sizes, nsizes);
    zb_print_targets(stdout, "wipe");
    zb_print_notes(stdout, "wipe");
    return failed ? -1 : 0;
}
