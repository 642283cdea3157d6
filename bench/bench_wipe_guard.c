/*
 * bench_wipe_guard.c - the wipe of a small block's bytes where zz_alloc puts
 * them: ending at the last byte before a guard page.  On Intel Xeon (family
 * 6 model 167) a short `rep stos` that ends there costs about 140 ns, against
 * 9 ns in the middle of a page (issue 18); AMD EPYC shows no such cliff.  One
 * table, 16 B to 256 B: zz_wipe, memset and rep stosb ending at a PROT_NONE
 * page, next to memset in the middle of a page.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "zeroize.h"

#define TABLE "guard page"

static const size_t sizes[] = {16, 32, 48, 64, 128, 256};

static void wipe_zz(unsigned char *p, size_t n)
{
    zz_wipe(p, n);
}

static void wipe_memset(unsigned char *p, size_t n)
{
    memset(p, 0, n);
    zb_barrier(p);
}

#if defined(__x86_64__) || defined(__i386__)
static void wipe_rep_stosb(unsigned char *p, size_t n)
{
    void *dst = p;
    size_t count = n;
    __asm__ volatile("rep stosb" : "+D"(dst), "+c"(count) : "a"(0) : "memory");
}
#endif

typedef struct {
    const char *name;
    void (*fn)(unsigned char *p, size_t n);
    int mid_page; /* 1: in the middle of a page, 0: ending at the guard page */
    const char *description;
} guard_column;

static const guard_column columns[] = {
    {"zz_wipe", wipe_zz, 0, NULL},
    {"memset", wipe_memset, 0, NULL},
#if defined(__x86_64__) || defined(__i386__)
    {"rep_stosb", wipe_rep_stosb, 0, NULL},
#endif
    {"memset_mid_page", wipe_memset, 1,
     "memset() + barrier on bytes in the middle of a page (the guard page table's baseline)"},
};

static double timed(const guard_column *c, unsigned char *p, size_t n, uint64_t iters)
{
    memset(p, 0xA5, n);
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < iters; i++)
        c->fn(p, n);
    uint64_t t1 = zb_clock_ns();
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            fprintf(stderr, "zz-bench: FATAL: %s left byte %zu of %zu nonzero at the guard page\n",
                    c->name, i, n);
            exit(2);
        }
    }
    return (double)(t1 - t0) / (double)iters;
}

static uint64_t calibrate(const guard_column *c, unsigned char *p, size_t n, double min_time_ms)
{
    uint64_t iters = 64;
    for (;;) {
        double per_call = timed(c, p, n, iters);
        if (per_call * (double)iters >= min_time_ms * 1e6 / 8 || iters >= ((uint64_t)1 << 30))
            return (uint64_t)(min_time_ms * 1e6 / (per_call > 0.05 ? per_call : 0.05)) + 1;
        iters *= 8;
    }
}

/* [page: the middle-of-page buffer][page: wiped up to its end][PROT_NONE] */
static unsigned char *map_pages(size_t page)
{
    unsigned char *m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (mprotect(m + 2 * page, page, PROT_NONE) != 0) {
        munmap(m, 3 * page);
        return NULL;
    }
    memset(m, 0xA5, 2 * page);
    return m;
}

static void print_guard_table(size_t ncols)
{
    printf("### ns per call, ending at the last byte before a guard page (PROT_NONE), 16 B to 256 B\n\n");
    zb_table *t = zb_table_new((int)ncols + 1);
    zb_table_header(t, 0, "size");
    for (size_t c = 0; c < ncols; c++)
        zb_table_header(t, (int)c + 1, columns[c].name);
    for (size_t i = 0; i < ZB_ARRAY_LEN(sizes); i++) {
        char row[32], cell[64];
        zb_format_size(row, sizeof(row), sizes[i]);
        zb_table_cell(t, (int)i, 0, row);
        for (size_t c = 0; c < ncols; c++) {
            const zb_summary *s = zb_lookup("wipe", TABLE, row, columns[c].name, "ns_per_call");
            if (s)
                zb_format_summary(cell, sizeof(cell), *s, 1);
            else
                snprintf(cell, sizeof(cell), "n/a");
            zb_table_cell(t, (int)i, (int)c + 1, cell);
        }
    }
    zb_table_print(stdout, t);
    zb_table_free(t);
    printf("Every column but memset_mid_page wipes the last n bytes before a PROT_NONE page, where "
           "every zz_alloc block of up to 128 bytes ends; rep_stosb shows what a CPU charges for a "
           "string store there.\n\n");
}

/* zz_wipe at the guard page costs at most 2x memset in the middle of a page. */
static void add_guard_targets(void)
{
    for (size_t i = 0; i < ZB_ARRAY_LEN(sizes); i++) {
        char row[32], what[160];
        zb_format_size(row, sizeof(row), sizes[i]);
        zb_target_inputs_clear();
        const zb_summary *z = zb_lookup("wipe", TABLE, row, "zz_wipe", "ns_per_call");
        const zb_summary *m = zb_lookup("wipe", TABLE, row, "memset_mid_page", "ns_per_call");
        if (!z || !m || m->median <= 0 || m->q3 <= 0)
            continue;
        snprintf(what, sizeof(what), "zz_wipe at a guard page vs memset mid-page, %s (ns per call)", row);
        zb_target("wipe", what, z->median / m->median, z->q1 / m->q3, 2.0, 1, "<= 2x");
    }
}

int zb_run_wipe_guard(const zb_options *opt)
{
    size_t page = 4096, ncols = ZB_ARRAY_LEN(columns);
    unsigned char *m = map_pages(page);
    if (m == NULL) {
        fprintf(stderr, "zz-bench: wipe: cannot map the guard-page buffer: %s\n", strerror(errno));
        return -1;
    }
    int reps = opt->reps;
    double *ns = calloc(ncols * (size_t)reps, sizeof(double));
    if (!ns)
        abort();
    for (size_t i = 0; i < ZB_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *at[ZB_ARRAY_LEN(columns)];
        uint64_t iters[ZB_ARRAY_LEN(columns)];
        for (size_t c = 0; c < ncols; c++) {
            at[c] = columns[c].mid_page ? m + page / 2 : m + 2 * page - n;
            iters[c] = calibrate(&columns[c], at[c], n, opt->min_time_ms);
        }
        for (int r = 0; r < reps; r++)
            for (size_t k = 0; k < ncols; k++) {
                size_t c = (k + (size_t)r) % ncols;
                ns[c * (size_t)reps + (size_t)r] = timed(&columns[c], at[c], n, iters[c]);
            }
        char row[32];
        zb_format_size(row, sizeof(row), n);
        for (size_t c = 0; c < ncols; c++)
            zb_record("wipe", TABLE, row, (double)n, columns[c].name, "ns_per_call", "ns",
                      zb_summarize(&ns[c * (size_t)reps], reps));
    }
    free(ns);
    munmap(m, 3 * page);
    for (size_t c = 0; c < ncols; c++)
        if (columns[c].description)
            zb_declare_column("wipe", columns[c].name, columns[c].description);
    print_guard_table(ncols);
    add_guard_targets();
    return 0;
}
