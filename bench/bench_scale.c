/*
 * bench_scale.c - how far do guarded allocations scale?  Live 32-byte blocks
 * until the kernel refuses (or a cap), for zz_alloc (default guards and the
 * mprotect fallback) and sodium_malloc; an arena holding a million secrets;
 * and what zz_purge() costs over 100,000 live blocks.
 *
 * Every experiment runs in a fresh copy of this program, so one that
 * exhausts vm.max_map_count or RLIMIT_MEMLOCK cannot disturb the next, and
 * library state (caches, environment switches) starts clean.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zeroize.h"

#ifdef ZB_HAVE_SODIUM
#include <sodium.h>
#endif

#define SECRET_SIZE 32

static const char *errno_name(int err)
{
    const char *name = err ? strerrorname_np(err) : "none";
    return name ? name : "unknown";
}

/* ------------------------------------------------------------ children */

#define PAGE 4096u

/* Whether the page at addr can be read, without touching it: write(2) copies
 * from it into a pipe, and fails with EFAULT on a PROT_NONE page.  Returns 1
 * (readable: the byte is drained again), 0 (not readable) or -1. */
static int page_readable(const int pipe_fds[2], const void *addr)
{
    if (write(pipe_fds[1], addr, 1) == 1) {
        char sink;
        return read(pipe_fds[0], &sink, 1) == 1 ? 1 : -1;
    }
    return errno == EFAULT ? 0 : -1;
}

#ifdef ZB_HAVE_SODIUM
/* sodium_malloc(32) puts the block at the end of one page, with a PROT_NONE
 * guard page before and after that page.  At vm.max_map_count its mprotect
 * (and mlock) calls fail, and it returns the block anyway: the new mapping
 * merges into its neighbour, so it needs no VMA of its own.  Such a block is
 * not a guarded block, and the count must stop before it. */
static int sodium_block_guarded(const int pipe_fds[2], const void *p)
{
    const unsigned char *page = (const unsigned char *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1));
    return page_readable(pipe_fds, page - PAGE) == 0 && page_readable(pipe_fds, page + PAGE) == 0;
}
#endif

static void *alloc_guarded(int sodium)
{
#ifdef ZB_HAVE_SODIUM
    if (sodium)
        return sodium_malloc(SECRET_SIZE);
#endif
    (void)sodium;
    return zz_alloc(SECRET_SIZE);
}

static void free_guarded(int sodium, void *p)
{
#ifdef ZB_HAVE_SODIUM
    if (sodium) {
        sodium_free(p);
        return;
    }
#endif
    (void)sodium;
    zz_free(p);
}

/* guarded zz|sodium CAP: live SECRET_SIZE-byte blocks until failure or cap.
 * sodium's blocks are checked for their guard pages as they come (the check
 * is not timed); the count stops at the first block that has none. */
static int child_guarded(const char *kind, size_t cap)
{
    int sodium = strcmp(kind, "sodium") == 0;
    int pipe_fds[2];
#ifdef ZB_HAVE_SODIUM
    if (sodium && sodium_init() < 0)
        return 1;
#else
    if (sodium)
        return 1;
#endif
    void **ptrs = calloc(cap, sizeof(void *));
    if (!ptrs || pipe(pipe_fds) != 0)
        return 1;
    long vmas0 = zb_count_vmas();
    long long lck0 = zb_status_bytes("VmLck"), rss0 = zb_status_bytes("VmRSS");
    size_t live = 0, returned = 0;
    int err = 0;
    char why[512] = "", stopped_by[64] = "";
    uint64_t probe_ns = 0, t_start = zb_clock_ns();
    for (; live < cap; live++) {
        errno = 0;
        void *p = alloc_guarded(sodium);
        if (!p) {
            err = errno;
            if (!sodium)
                snprintf(why, sizeof(why), "%s", zz_last_error());
            else
                snprintf(why, sizeof(why), "sodium_malloc returned NULL: its mmap failed (the process "
                                           "reached vm.max_map_count, or memory ran out)");
            break;
        }
        returned++;
#ifdef ZB_HAVE_SODIUM
        uint64_t p0 = sodium ? zb_clock_ns() : 0;
        int guarded = !sodium || sodium_block_guarded(pipe_fds, p);
        probe_ns += sodium ? zb_clock_ns() - p0 : 0;
        if (!guarded) {
            err = errno; /* what the failed mprotect left, if anything */
            snprintf(stopped_by, sizeof(stopped_by), "no guard pages");
            snprintf(why, sizeof(why),
                     "sodium_malloc returned block %zu without its guard pages (errno %s): its mprotect "
                     "and mlock calls failed at vm.max_map_count, and it does not check them; the "
                     "count stops before that block",
                     live + 1, errno_name(err));
            free_guarded(sodium, p);
            break;
        }
#endif
        memset(p, 0x5A, SECRET_SIZE);
        ptrs[live] = p;
    }
    uint64_t alloc_ns = zb_clock_ns() - t_start - probe_ns; /* the guard checks not counted */
    long vmas1 = zb_count_vmas();
    long long lck1 = zb_status_bytes("VmLck"), rss1 = zb_status_bytes("VmRSS");
    printf("live %zu\nerrno %d\nreason %s\n", live, err, why);
    if (stopped_by[0])
        printf("stopped_by %s\n", stopped_by);
    if (live) {
        printf("ns_per_alloc %.1f\n", (double)alloc_ns / (double)returned);
        printf("vmas_per_block %.4f\n", (double)(vmas1 - vmas0) / (double)live);
        printf("vmlck_per_block %.1f\n", (double)(lck1 - lck0) / (double)live);
        printf("rss_per_block %.1f\n", (double)(rss1 - rss0) / (double)live);
        if (!sodium) {
            zz_stats st;
            zz_get_stats(&st);
            printf("mapped_per_block %.1f\n", (double)st.mapped_bytes / (double)live);
        }
    }
    /* Freeing is timed too: a program holding many secrets frees them all. */
    uint64_t f0 = zb_clock_ns();
    for (size_t i = 0; i < live; i++)
        free_guarded(sodium, ptrs[i]);
    if (live)
        printf("ns_per_free %.1f\n", (double)(zb_clock_ns() - f0) / (double)live);
    free(ptrs);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return 0;
}

/* arena N: N live SECRET_SIZE-byte secrets in one growable arena. */
static int child_arena(size_t count)
{
    void **ptrs = calloc(count, sizeof(void *));
    if (!ptrs)
        return 1;
    long vmas0 = zb_count_vmas();
    long long lck0 = zb_status_bytes("VmLck"), rss0 = zb_status_bytes("VmRSS");
    zz_stats st0, st1;
    zz_get_stats(&st0);
    uint64_t t0 = zb_clock_ns();
    zz_arena *a = zz_arena_create(0);
    if (!a) {
        printf("live 0\nerrno %d\nreason %s\n", errno, zz_last_error());
        return 0;
    }
    size_t live = 0;
    int err = 0;
    char why[512] = "";
    for (; live < count; live++) {
        ptrs[live] = zz_arena_alloc(a, SECRET_SIZE);
        if (!ptrs[live]) {
            err = errno;
            snprintf(why, sizeof(why), "%s", zz_last_error());
            break;
        }
        memset(ptrs[live], 0x5A, SECRET_SIZE);
    }
    uint64_t t1 = zb_clock_ns();
    zz_get_stats(&st1);
    long vmas1 = zb_count_vmas();
    long long lck1 = zb_status_bytes("VmLck"), rss1 = zb_status_bytes("VmRSS");
    printf("live %zu\nerrno %d\nreason %s\n", live, err, why);
    if (live) {
        printf("ns_per_alloc %.1f\n", (double)(t1 - t0) / (double)live);
        printf("vmas_used %ld\n", vmas1 - vmas0);
        printf("vmlck_per_secret %.2f\n", (double)(lck1 - lck0) / (double)live);
        printf("stats_locked_per_secret %.2f\n",
               (double)(st1.locked_bytes - st0.locked_bytes) / (double)live);
        printf("rss_per_secret %.2f\n", (double)(rss1 - rss0) / (double)live);
    }
    uint64_t f0 = zb_clock_ns();
    for (size_t i = 0; i < live; i++)
        zz_arena_free(a, ptrs[i]);
    zz_arena_destroy(a);
    if (live)
        printf("ns_per_free %.1f\n", (double)(zb_clock_ns() - f0) / (double)live);
    free(ptrs);
    return 0;
}

static void fill_blocks(void **ptrs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        memset(ptrs[i], 0x5A, SECRET_SIZE);
}

/* Fails loudly if zz_purge() left a secret behind. */
static void check_blocks_zero(void **ptrs, size_t count, const char *after)
{
    for (size_t i = 0; i < count; i++) {
        const unsigned char *b = ptrs[i];
        for (size_t k = 0; k < SECRET_SIZE; k++) {
            if (b[k] != 0) {
                fprintf(stderr, "zz-bench: FATAL: block %zu byte %zu is 0x%02x after %s\n", i, k, b[k],
                        after);
                exit(2);
            }
        }
    }
}

/* purge N REPS: time zz_purge() with N live zz_alloc(32) blocks, and the time
 * to zz_wipe the same blocks one by one. */
static int child_purge(size_t count, int reps)
{
    void **ptrs = calloc(count, sizeof(void *));
    double *purge_ms = calloc((size_t)reps, sizeof(double));
    double *wipe_ms = calloc((size_t)reps, sizeof(double));
    if (!ptrs || !purge_ms || !wipe_ms)
        return 1;
    size_t live = 0;
    for (; live < count; live++) {
        ptrs[live] = zz_alloc(SECRET_SIZE);
        if (!ptrs[live]) {
            printf("live %zu\nerrno %d\nreason %s\n", live, errno, zz_last_error());
            return 0;
        }
    }
    for (int r = 0; r < reps; r++) {
        fill_blocks(ptrs, count);
        uint64_t t0 = zb_clock_ns();
        zz_purge();
        uint64_t t1 = zb_clock_ns();
        check_blocks_zero(ptrs, count, "zz_purge()");
        purge_ms[r] = (double)(t1 - t0) / 1e6;

        fill_blocks(ptrs, count);
        t0 = zb_clock_ns();
        for (size_t i = 0; i < count; i++)
            zz_wipe(ptrs[i], SECRET_SIZE);
        t1 = zb_clock_ns();
        check_blocks_zero(ptrs, count, "zz_wipe() of every block");
        wipe_ms[r] = (double)(t1 - t0) / 1e6;
    }
    zb_summary p = zb_summarize(purge_ms, reps), w = zb_summarize(wipe_ms, reps);
    printf("live %zu\nerrno 0\nreason \n", live);
    printf("purge_ms %.6f %.6f %.6f %.6f %.6f %d\n", p.median, p.min, p.max, p.q1, p.q3, p.n);
    printf("wipe_ms %.6f %.6f %.6f %.6f %.6f %d\n", w.median, w.min, w.max, w.q1, w.q3, w.n);
    for (size_t i = 0; i < count; i++)
        zz_free(ptrs[i]);
    free(ptrs);
    free(purge_ms);
    free(wipe_ms);
    return 0;
}

int zb_scale_child_main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "guarded") == 0 && argc == 4)
        return child_guarded(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "arena") == 0)
        return child_arena(strtoull(argv[2], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "purge") == 0)
        return child_purge(strtoull(argv[2], NULL, 10), atoi(argv[3]));
    return 2;
}

/* -------------------------------------------------------------- parent */

typedef struct {
    char out[4096];
    int status;
} child_result;

static void run_child(child_result *res, const char *env_extra, const char *a1, const char *a2,
                      const char *a3)
{
    char self[4096];
    snprintf(self, sizeof(self), "%s", zb_self_path());
    const char *argv[] = {self, "_scale-child", a1, a2,
                    a3, NULL};
    res->status = zb_run_capture(argv, env_extra, res->out, sizeof(res->out));
}

static void record_value(const char *table, const char *row, const char *column, const char *metric,
                         const char *unit, const child_result *res, const char *key)
{
    double v;
    if (zb_kv_double(res->out, key, &v) == 0)
        zb_record("scale", table, row, 0, column, metric, unit, zb_single(v));
}

/* "live N" and errno: why the child stopped. */
static void stop_reason(const child_result *res, size_t cap, char *buf, size_t len)
{
    double live = 0, err = 0;
    char why[400] = "";
    if (res->status != 0 || zb_kv_double(res->out, "live", &live) != 0) {
        snprintf(buf, len, "child failed (status %d)", res->status);
        return;
    }
    zb_kv_double(res->out, "errno", &err);
    zb_kv_string(res->out, "reason", why, sizeof(why));
    if (err == 0 && live >= (double)cap)
        snprintf(buf, len, "cap reached");
    else
        snprintf(buf, len, "%s%s%s", errno_name((int)err), why[0] ? ": " : "", why);
}

typedef struct {
    const char *column, *kind, *env, *label, *description;
} guarded_case;

static void run_guarded(const zb_options *opt, const guarded_case *c, zb_table *tb, int row)
{
    char cap[32];
    snprintf(cap, sizeof(cap), "%zu", opt->scale_cap);
    child_result res;
    fprintf(stderr, "zz-bench: scale: %s ...\n", c->label);
    run_child(&res, c->env, "guarded", c->kind, cap);
    static const struct {
        const char *key, *metric, *unit;
        int decimals;
    } fields[] = {
        {"live", "live_blocks", "blocks", 0},
        {"vmas_per_block", "vmas_per_block", "VMAs", 3},
        {"vmlck_per_block", "vmlck_bytes_per_block", "bytes", 0},
        {"rss_per_block", "rss_bytes_per_block", "bytes", 0},
        {"mapped_per_block", "mapped_bytes_per_block", "bytes", 0},
        {"ns_per_alloc", "ns_per_alloc", "ns", 0},
        {"ns_per_free", "ns_per_free", "ns", 0},
    };
    zb_table_cell(tb, row, 0, c->label);
    for (size_t f = 0; f < ZB_ARRAY_LEN(fields); f++) {
        record_value("guarded", "32 B", c->column, fields[f].metric, fields[f].unit, &res, fields[f].key);
        double v;
        char cell[48];
        if (zb_kv_double(res.out, fields[f].key, &v) == 0)
            snprintf(cell, sizeof(cell), "%.*f", fields[f].decimals, v);
        else
            snprintf(cell, sizeof(cell), "n/a");
        zb_table_cell(tb, row, (int)f + (f == 0 ? 1 : 2), cell);
    }
    char reason[480];
    stop_reason(&res, opt->scale_cap, reason, sizeof(reason));
    /* the table shows the errno name; the note has the library's sentence */
    char short_reason[64];
    if (zb_kv_string(res.out, "stopped_by", short_reason, sizeof(short_reason)) != 0)
        snprintf(short_reason, sizeof(short_reason), "%.*s", (int)strcspn(reason, ":"), reason);
    zb_table_cell(tb, row, 2, short_reason);
    if (strcmp(reason, "cap reached") != 0)
        zb_note("scale", "%s stopped at %s live blocks: %s", c->label,
                zb_kv_string(res.out, "live", cap, sizeof(cap)) == 0 ? cap : "?", reason);
    zb_declare_column("scale", c->column, c->description);
}

static void print_guarded(const zb_options *opt)
{
    printf("### Live guarded %d-byte blocks until the kernel refuses (cap %zu), each in a fresh "
           "process\n\n",
           SECRET_SIZE, opt->scale_cap);
    static const char *const headers[] = {"allocator", "live blocks", "stopped by", "VMAs / block",
                                          "VmLck B / block", "RSS B / block", "mapped B / block",
                                          "ns / alloc", "ns / free"};
    zb_table *tb = zb_table_new(9);
    for (int h = 0; h < 9; h++)
        zb_table_header(tb, h, headers[h]);
    static const guarded_case cases[] = {
        {"zz_alloc", "zz", NULL, "zz_alloc",
         "row zz_alloc: live zz_alloc(32) blocks with the default guards, until an allocation fails or the cap"},
        {"zz_alloc_mprotect_guards", "zz", "ZEROIZE_GUARDS=mprotect", "zz_alloc, ZEROIZE_GUARDS=mprotect",
         "row \"zz_alloc, ZEROIZE_GUARDS=mprotect\": the same with the fallback guards (PROT_NONE pages, "
         "which cost VMAs)"},
        {"sodium_malloc", "sodium", NULL, "sodium_malloc",
         "row sodium_malloc: live sodium_malloc(32) blocks (a PROT_NONE page on each side of a locked "
         "page), counted up to the first that fails or comes back without its guard pages"},
    };
    int row = 0;
    for (size_t i = 0; i < ZB_ARRAY_LEN(cases); i++) {
#ifndef ZB_HAVE_SODIUM
        if (strcmp(cases[i].kind, "sodium") == 0) {
            zb_note("scale", "sodium_malloc left out: libsodium was not found at build time.");
            continue;
        }
#endif
        if (!zb_column_selected(opt, cases[i].column))
            continue;
        run_guarded(opt, &cases[i], tb, row++);
    }
    zb_table_print(stdout, tb);
    zb_table_free(tb);
}

static void print_arena(const zb_options *opt)
{
    size_t count = opt->quick ? 100000 : 1000000;
    if (!zb_column_selected(opt, "zz_arena"))
        return;
    char arg[32];
    snprintf(arg, sizeof(arg), "%zu", count);
    fprintf(stderr, "zz-bench: scale: arena with %zu secrets ...\n", count);
    child_result res;
    run_child(&res, NULL, "arena", arg, NULL);
    char row[48];
    snprintf(row, sizeof(row), "%zu x 32 B", count);
    static const struct {
        const char *key, *metric, *unit, *header;
        int decimals;
    } fields[] = {
        {"live", "live_secrets", "secrets", "live secrets", 0},
        {"vmlck_per_secret", "vmlck_bytes_per_secret", "bytes", "VmLck B / secret", 2},
        {"stats_locked_per_secret", "locked_bytes_per_secret", "bytes", "zz_stats locked B / secret", 2},
        {"rss_per_secret", "rss_bytes_per_secret", "bytes", "RSS B / secret", 2},
        {"vmas_used", "vmas_used", "VMAs", "VMAs used", 0},
        {"ns_per_alloc", "ns_per_alloc", "ns", "ns / alloc", 1},
        {"ns_per_free", "ns_per_free", "ns", "ns / free", 1},
    };
    printf("### One growable arena holding %zu live %d-byte secrets\n\n", count, SECRET_SIZE);
    zb_table *tb = zb_table_new((int)ZB_ARRAY_LEN(fields));
    for (size_t f = 0; f < ZB_ARRAY_LEN(fields); f++) {
        double v;
        char cell[48];
        zb_table_header(tb, (int)f, fields[f].header);
        record_value("arena", row, "zz_arena", fields[f].metric, fields[f].unit, &res, fields[f].key);
        if (zb_kv_double(res.out, fields[f].key, &v) == 0)
            snprintf(cell, sizeof(cell), "%.*f", fields[f].decimals, v);
        else
            snprintf(cell, sizeof(cell), "n/a");
        zb_table_cell(tb, 0, (int)f, cell);
    }
    zb_table_print(stdout, tb);
    zb_table_free(tb);
    char reason[480];
    stop_reason(&res, count, reason, sizeof(reason));
    if (strcmp(reason, "cap reached") != 0)
        zb_note("scale", "arena stopped early: %s", reason);
    zb_declare_column("scale", "zz_arena", "zz_arena_create(0) + zz_arena_alloc(32) x N");
}

static int parse_summary(const char *text, const char *key, zb_summary *s)
{
    char line[256];
    if (zb_kv_string(text, key, line, sizeof(line)) != 0)
        return -1;
    return sscanf(line, "%lf %lf %lf %lf %lf %d", &s->median, &s->min, &s->max, &s->q1, &s->q3,
                  &s->n) == 6
               ? 0
               : -1;
}

static void print_purge(const zb_options *opt)
{
    size_t count = opt->quick ? 10000 : 100000;
    if (!zb_column_selected(opt, "zz_purge"))
        return;
    char arg[32], reps[16];
    snprintf(arg, sizeof(arg), "%zu", count);
    snprintf(reps, sizeof(reps), "%d", opt->reps);
    fprintf(stderr, "zz-bench: scale: zz_purge over %zu blocks ...\n", count);
    child_result res;
    run_child(&res, NULL, "purge", arg, reps);
    char row[48];
    snprintf(row, sizeof(row), "%zu x zz_alloc(32)", count);
    zb_summary p, w;
    printf("### zz_purge() with %zu live zz_alloc(%d) blocks, against zz_wipe of each block in "
           "turn (median of %d, ms)\n\n",
           count, SECRET_SIZE, opt->reps);
    if (parse_summary(res.out, "purge_ms", &p) != 0 || parse_summary(res.out, "wipe_ms", &w) != 0) {
        char reason[480];
        stop_reason(&res, count, reason, sizeof(reason));
        printf("failed: %s\n\n", reason);
        zb_note("scale", "zz_purge measurement failed: %s", reason);
        return;
    }
    zb_record("scale", "purge", row, (double)count, "zz_purge", "ms", "ms", p);
    zb_record("scale", "purge", row, (double)count, "zz_wipe_loop", "ms", "ms", w);
    zb_record("scale", "purge", row, (double)count, "zz_purge", "ns_per_block", "ns",
              zb_single(p.median * 1e6 / (double)count));
    zb_declare_column("scale", "zz_purge", "zz_purge() over N live zz_alloc(32) blocks");
    zb_declare_column("scale", "zz_wipe_loop", "zz_wipe(p, 32) for each of the same N blocks");
    zb_table *tb = zb_table_new(5);
    zb_table_header(tb, 0, "live blocks");
    zb_table_header(tb, 1, "zz_purge() ms");
    zb_table_header(tb, 2, "zz_wipe loop ms");
    zb_table_header(tb, 3, "purge / wipe loop");
    zb_table_header(tb, 4, "purge ns / block");
    char cell[64];
    snprintf(cell, sizeof(cell), "%zu", count);
    zb_table_cell(tb, 0, 0, cell);
    zb_format_summary(cell, sizeof(cell), p, 3);
    zb_table_cell(tb, 0, 1, cell);
    zb_format_summary(cell, sizeof(cell), w, 3);
    zb_table_cell(tb, 0, 2, cell);
    snprintf(cell, sizeof(cell), "%.2fx", p.median / w.median);
    zb_table_cell(tb, 0, 3, cell);
    snprintf(cell, sizeof(cell), "%.1f", p.median * 1e6 / (double)count);
    zb_table_cell(tb, 0, 4, cell);
    zb_table_print(stdout, tb);
    zb_table_free(tb);
}

void zb_scale_help(FILE *out)
{
    fprintf(out,
            "scale columns:\n"
            "  zz_alloc                  live zz_alloc(32) blocks until failure or --cap\n"
            "  zz_alloc_mprotect_guards  the same with ZEROIZE_GUARDS=mprotect (fallback guards)\n"
            "  sodium_malloc             live sodium_malloc(32) blocks until failure, --cap, or the\n"
            "                            first block returned without its guard pages (VMAs,\n"
            "                            VmLck, RSS per block; why it stopped)\n"
            "  zz_arena                  1,000,000 live 32-byte secrets in one arena (100,000\n"
            "                            with --quick): locked bytes per secret, VMAs used\n"
            "  zz_purge                  zz_purge() over 100,000 live zz_alloc(32) blocks (10,000\n"
            "                            with --quick), against zz_wipe of each block in turn\n");
}

int zb_run_scale(const zb_options *opt)
{
    printf("## scale\n\n");
    print_guarded(opt);
    print_arena(opt);
    print_purge(opt);
    zb_print_notes(stdout, "scale");
    return 0;
}
