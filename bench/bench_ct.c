/*
 * bench_ct.c - zz-ct: a dudect-style check that zz_equal and zz_is_zero take
 * the same time whatever the data (Reparaz, Balasch, Verbauwhede, "Dude, is
 * my code constant time?", 2017).
 *
 * For each function two input classes are timed in random interleaved order:
 *   zz_equal    class 0: b equals a            class 1: b differs at byte 0
 *   zz_is_zero  class 0: all bytes zero        class 1: byte 0 nonzero
 *   memcmp      (control) the zz_equal classes: memcmp stops at the first
 *               difference, so it must show a large |t| - if it does not,
 *               the measurement is not sensitive enough to trust.
 * Each measurement is one call timed with rdtsc (x86) or clock_gettime.
 * Welch's t-test compares the classes, on all measurements and on copies
 * cropped at a range of percentiles (slow outliers come from interrupts and
 * preemption, not from the data).  |t| < 4.5 after N measurements: no leak
 * detected.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "zeroize.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define CT_TIMER "rdtsc (lfence-serialised), cycles"
static inline uint64_t ct_timestamp(void)
{
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}
#else
#define CT_TIMER "clock_gettime(CLOCK_MONOTONIC), ns"
static inline uint64_t ct_timestamp(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

#define CT_THRESHOLD 4.5
#define CT_PERCENTILES 100 /* cropped tests, as in dudect */
#define CT_BATCH 10000

/* Welford's online mean and variance, one per class. */
typedef struct {
    double n[2], mean[2], m2[2];
} welch;

static void welch_push(welch *w, int cls, double x)
{
    w->n[cls] += 1;
    double delta = x - w->mean[cls];
    w->mean[cls] += delta / w->n[cls];
    w->m2[cls] += delta * (x - w->mean[cls]);
}

static double welch_t(const welch *w)
{
    if (w->n[0] < 2 || w->n[1] < 2)
        return 0;
    double v0 = w->m2[0] / (w->n[0] - 1), v1 = w->m2[1] / (w->n[1] - 1);
    double se = sqrt(v0 / w->n[0] + v1 / w->n[1]);
    return se > 0 ? (w->mean[0] - w->mean[1]) / se : 0;
}

/* ---------------------------------------------------------- the targets */

typedef int (*ct_fn)(const unsigned char *a, const unsigned char *b, size_t n);

static int call_zz_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
    return zz_equal(a, b, n);
}

static int call_zz_is_zero(const unsigned char *a, const unsigned char *b, size_t n)
{
    (void)b;
    return zz_is_zero(a, n);
}

static int call_memcmp(const unsigned char *a, const unsigned char *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

typedef struct {
    const char *name;
    ct_fn fn;
    int zero_classes; /* 1: the zz_is_zero classes, 0: the zz_equal ones */
    int is_control;
} ct_target;

static int compare_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* xorshift64*: fast, and good enough to pick classes and fill buffers */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* Prepares the inputs of one measurement of class cls. */
static void prepare(const ct_target *t, int cls, unsigned char *a, unsigned char *b, size_t len)
{
    if (t->zero_classes) {
        memset(a, 0, len);
        if (cls == 1)
            a[0] = (unsigned char)(1 + rng_next() % 255);
        return;
    }
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = rng_next();
        memcpy(a + i, &r, len - i < 8 ? len - i : 8);
    }
    memcpy(b, a, len);
    if (cls == 1)
        b[0] ^= (unsigned char)(1 + rng_next() % 255);
}


typedef struct {
    double max_t;
    int max_test;       /* -1: uncropped, else the percentile index */
    double median[2];   /* per class: robust to the outliers the crops remove */
    double measurements;
} ct_result;

static double median_u64(uint64_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(uint64_t), compare_u64);
    return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

static ct_result run_target(const ct_target *t, size_t len, long total)
{
    unsigned char *inputs_a = malloc(CT_BATCH * len), *inputs_b = malloc(CT_BATCH * len);
    uint64_t *times = malloc(CT_BATCH * sizeof(uint64_t)), *sorted = malloc(CT_BATCH * sizeof(uint64_t));
    int *classes = malloc(CT_BATCH * sizeof(int));
    uint64_t *by_class[2] = {malloc((size_t)total * sizeof(uint64_t)),
                             malloc((size_t)total * sizeof(uint64_t))};
    size_t in_class[2] = {0, 0};
    if (!inputs_a || !inputs_b || !times || !sorted || !classes || !by_class[0] || !by_class[1])
        abort();
    welch all, cropped[CT_PERCENTILES];
    memset(&all, 0, sizeof(all));
    memset(cropped, 0, sizeof(cropped));
    double thresholds[CT_PERCENTILES];
    int have_thresholds = 0;
    static volatile int sink; /* keeps the calls from being optimised out */
    ct_fn volatile fn = t->fn;
    long done = 0;
    for (int warm = 1; done < total; warm = 0) {
        for (int i = 0; i < CT_BATCH; i++) {
            classes[i] = (int)(rng_next() & 1);
            prepare(t, classes[i], inputs_a + (size_t)i * len, inputs_b + (size_t)i * len, len);
        }
        for (int i = 0; i < CT_BATCH; i++) {
            const unsigned char *a = inputs_a + (size_t)i * len, *b = inputs_b + (size_t)i * len;
            uint64_t t0 = ct_timestamp();
            sink = fn(a, b, len);
            uint64_t t1 = ct_timestamp();
            times[i] = t1 - t0;
        }
        if (warm)
            continue; /* the first batch only warms caches and branch predictors */
        if (!have_thresholds) {
            /* dudect's crop points: percentiles 1 - 0.5^(10 (k+1) / 100) */
            memcpy(sorted, times, CT_BATCH * sizeof(uint64_t));
            qsort(sorted, CT_BATCH, sizeof(uint64_t), compare_u64);
            for (int k = 0; k < CT_PERCENTILES; k++) {
                double q = 1.0 - pow(0.5, 10.0 * (k + 1) / CT_PERCENTILES);
                thresholds[k] = (double)sorted[(size_t)(q * (CT_BATCH - 1))];
            }
            have_thresholds = 1;
        }
        for (int i = 0; i < CT_BATCH; i++) {
            double x = (double)times[i];
            by_class[classes[i]][in_class[classes[i]]++] = times[i];
            welch_push(&all, classes[i], x);
            for (int k = 0; k < CT_PERCENTILES; k++)
                if (x < thresholds[k])
                    welch_push(&cropped[k], classes[i], x);
        }
        done += CT_BATCH;
    }
    ct_result r = {fabs(welch_t(&all)), -1,
                   {median_u64(by_class[0], in_class[0]), median_u64(by_class[1], in_class[1])},
                   all.n[0] + all.n[1]};
    free(by_class[0]);
    free(by_class[1]);
    for (int k = 0; k < CT_PERCENTILES; k++) {
        /* a cropped test needs enough samples to mean anything */
        if (cropped[k].n[0] + cropped[k].n[1] < 10000)
            continue;
        double tk = fabs(welch_t(&cropped[k]));
        if (tk > r.max_t) {
            r.max_t = tk;
            r.max_test = k;
        }
    }
    (void)sink;
    free(inputs_a);
    free(inputs_b);
    free(times);
    free(sorted);
    free(classes);
    return r;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: zz-ct [--measurements N] [--len BYTES] [--seed S]\n"
                 "Dudect-style constant-time check of zz_equal and zz_is_zero, with memcmp as a\n"
                 "control that must leak.  Defaults: 2000000 measurements per function, 512 bytes.\n"
                 "Exit status: 0 no leak found and the control leaked; 1 a zz function leaked;\n"
                 "3 the control did not leak (the measurement is too insensitive to conclude).\n");
}

int main(int argc, char **argv)
{
    long total = 2000000;
    size_t len = 512;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--measurements") == 0 && i + 1 < argc)
            total = atol(argv[++i]);
        else if (strcmp(argv[i], "--len") == 0 && i + 1 < argc)
            len = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng_state = strtoull(argv[++i], NULL, 0) | 1;
        else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (total < CT_BATCH || len < 1 || len > (1u << 20)) {
        fprintf(stderr, "zz-ct: need --measurements >= %d and 1 <= --len <= 1 MiB\n", CT_BATCH);
        return 2;
    }
    static const ct_target targets[] = {
        {"zz_equal", call_zz_equal, 0, 0},
        {"zz_is_zero", call_zz_is_zero, 1, 0},
        {"memcmp (control)", call_memcmp, 0, 1},
    };
    printf("## zz-ct: constant-time check (dudect method)\n\n");
    printf("zeroize %s; %zu-byte inputs; %ld measurements per function; timer: %s; "
           "threshold |t| < %.1f\n\n",
           zz_version(), len, total, CT_TIMER, CT_THRESHOLD);
    printf("| function | classes | measurements | median class 0 | median class 1 | max abs t | "
           "at crop | verdict |\n");
    printf("| :--- | :--- | ---: | ---: | ---: | ---: | ---: | :--- |\n");
    int leaked = 0, control_leaked = 0;
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        const ct_target *t = &targets[i];
        fprintf(stderr, "zz-ct: %s ...\n", t->name);
        ct_result r = run_target(t, len, total);
        int leak = r.max_t >= CT_THRESHOLD;
        char crop[32];
        if (r.max_test < 0)
            snprintf(crop, sizeof(crop), "none");
        else
            snprintf(crop, sizeof(crop), "p%.2f",
                     100 * (1.0 - pow(0.5, 10.0 * (r.max_test + 1) / CT_PERCENTILES)));
        const char *verdict = t->is_control ? (leak ? "leaks, as it must (test is sensitive)"
                                                    : "NO LEAK SEEN: test not sensitive enough")
                                            : (leak ? "LEAK" : "no leak detected");
        printf("| %s | %s | %.0f | %.1f | %.1f | %.2f | %s | %s |\n", t->name,
               t->zero_classes ? "zero / byte 0 set" : "equal / differ at byte 0", r.measurements,
               r.median[0], r.median[1], r.max_t, crop, verdict);
        if (t->is_control)
            control_leaked = leak;
        else
            leaked |= leak;
    }
    printf("\n");
    if (leaked)
        return 1;
    return control_leaked ? 0 : 3;
}
