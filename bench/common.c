/*
 * common.c - timing, statistics, formatting, the Markdown table builder,
 * /proc probes and running a copy of ourselves.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- options */

int zb_column_selected(const zb_options *opt, const char *name)
{
    if (opt->columns == NULL || opt->columns[0] == '\0')
        return 1;
    size_t len = strlen(name);
    const char *p = opt->columns;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, name, n) == 0)
            return 1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ timing */

uint64_t zb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int clock_cpu = 1;

void zb_clock_from_env(void)
{
    const char *v = getenv("ZZ_BENCH_CLOCK");
    clock_cpu = !(v && strcmp(v, "wall") == 0);
}

int zb_clock_is_cpu(void)
{
    return clock_cpu;
}

uint64_t zb_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(clock_cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ CPU pinning */

static cpu_set_t cpus_before_pinning;
static int pinned_cpu = -1;

int zb_pin_main_thread(int cpu)
{
    if (cpu < 0)
        cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE ||
        sched_getaffinity(0, sizeof cpus_before_pinning, &cpus_before_pinning) != 0)
        return -1;
    if (!CPU_ISSET(cpu, &cpus_before_pinning)) {
        errno = EINVAL;
        return -1;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)
        return -1;
    pinned_cpu = cpu;
    return cpu;
}

int zb_pinned_cpu(void)
{
    return pinned_cpu;
}

/* A process about to exec itself (the unprivileged profile's child) gives
 * the CPUs back: an affinity survives exec, and the child's own pinning
 * would then take {the pinned CPU} for "every CPU", so its 2- and 4-thread
 * runs all ran on one CPU (wall time per pair did not fall with threads). */
void zb_unpin_before_exec(void)
{
    if (pinned_cpu >= 0)
        (void)sched_setaffinity(0, sizeof cpus_before_pinning, &cpus_before_pinning);
}

void zb_unpinned_thread_attr(pthread_attr_t *attr)
{
    if (pinned_cpu >= 0)
        pthread_attr_setaffinity_np(attr, sizeof cpus_before_pinning, &cpus_before_pinning);
}

/* -------------------------------------------------------------- statistics */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics (the "type 7" quantile that
 * numpy and R use by default), so small samples give sensible quartiles. */
static double quantile_sorted(const double *s, int n, double q)
{
    if (n == 1)
        return s[0];
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;
    double frac = pos - lo;
    return s[lo] + (s[hi] - s[lo]) * frac;
}

zb_summary zb_summarize(double *samples, int n)
{
    zb_summary s = {0, 0, 0, 0, 0, n};
    if (n <= 0)
        return s;
    qsort(samples, (size_t)n, sizeof(double), compare_doubles);
    s.min = samples[0];
    s.max = samples[n - 1];
    s.median = quantile_sorted(samples, n, 0.5);
    s.q1 = quantile_sorted(samples, n, 0.25);
    s.q3 = quantile_sorted(samples, n, 0.75);
    return s;
}

zb_summary zb_single(double v)
{
    zb_summary s = {v, v, v, v, v, 1};
    return s;
}

void zb_format_summary(char *buf, size_t len, zb_summary s, int decimals)
{
    if (s.n <= 0) {
        snprintf(buf, len, "n/a");
        return;
    }
    if (s.n == 1 || s.median == 0) {
        snprintf(buf, len, "%.*f", decimals, s.median);
        return;
    }
    snprintf(buf, len, "%.*f ±%.0f%%%s", decimals, s.median, zb_spread_pct(s),
             zb_unreliable(s) ? " " ZB_UNRELIABLE_MARK : "");
}

void zb_read_first_line(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(buf, (int)len, f))
        buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

void zb_format_size(char *buf, size_t len, size_t n)
{
    if (n >= ZB_MIB && n % ZB_MIB == 0)
        snprintf(buf, len, "%zu MiB", n / ZB_MIB);
    else if (n >= ZB_KIB && n % ZB_KIB == 0)
        snprintf(buf, len, "%zu KiB", n / ZB_KIB);
    else
        snprintf(buf, len, "%zu B", n);
}

/* ------------------------------------------------------------- the table */

struct zb_table {
    int ncols, nrows, cap;
    char **header; /* ncols */
    char **cells;  /* cap * ncols */
};

zb_table *zb_table_new(int ncols)
{
    zb_table *t = calloc(1, sizeof(*t));
    if (!t)
        abort();
    t->ncols = ncols;
    t->header = calloc((size_t)ncols, sizeof(char *));
    if (!t->header)
        abort();
    return t;
}

static char *copy_text(const char *text)
{
    char *c = strdup(text ? text : "");
    if (!c)
        abort();
    return c;
}

void zb_table_header(zb_table *t, int col, const char *text)
{
    free(t->header[col]);
    t->header[col] = copy_text(text);
}

static void table_grow(zb_table *t, int rows)
{
    if (rows <= t->cap)
        return;
    int cap = t->cap ? t->cap : 16;
    while (cap < rows)
        cap *= 2;
    char **cells = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof(char *));
    if (!cells)
        abort();
    memset(cells + (size_t)t->cap * (size_t)t->ncols, 0,
           (size_t)(cap - t->cap) * (size_t)t->ncols * sizeof(char *));
    t->cells = cells;
    t->cap = cap;
}

void zb_table_cell(zb_table *t, int row, int col, const char *text)
{
    table_grow(t, row + 1);
    if (row + 1 > t->nrows)
        t->nrows = row + 1;
    char **slot = &t->cells[(size_t)row * (size_t)t->ncols + (size_t)col];
    free(*slot);
    *slot = copy_text(text);
}

/* Display width in columns: count UTF-8 lead bytes, not continuation bytes
 * (the "±" and "–" we print are two or three bytes but one column). */
static int text_width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void print_padded(FILE *out, const char *text, int width, int right)
{
    int pad = width - text_width(text);
    if (right)
        fprintf(out, " %*s%s |", pad > 0 ? pad : 0, "", text);
    else
        fprintf(out, " %s%*s |", text, pad > 0 ? pad : 0, "");
}

/* The text a cell shows: a "failed" cell gets "[k]", the number of the
 * footnote with its reason (from the notes naming its row and its column). */
typedef struct {
    char **text;          /* nrows * ncols, owned                    */
    const char *why[32];  /* footnote k + 1: the note it quotes      */
    int nwhy, unexplained, marked;
} table_view;

static const char *failure_reason(const zb_table *t, int r, int c)
{
    const char *row = t->cells[(size_t)r * (size_t)t->ncols];
    const char *col = t->header[c];
    if (!row || !col)
        return NULL;
    return zb_find_note(row, col);
}

static void view_build(const zb_table *t, table_view *v)
{
    memset(v, 0, sizeof(*v));
    v->text = calloc((size_t)t->nrows * (size_t)t->ncols + 1, sizeof(char *));
    if (!v->text)
        abort();
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            size_t i = (size_t)r * (size_t)t->ncols + (size_t)c;
            const char *cell = t->cells[i] ? t->cells[i] : "";
            v->marked |= strstr(cell, ZB_UNRELIABLE_MARK) != NULL;
            const char *why = strcmp(cell, "failed") == 0 ? failure_reason(t, r, c) : NULL;
            int k = 0;
            while (why && k < v->nwhy && v->why[k] != why)
                k++;
            if (why && k == v->nwhy && v->nwhy < (int)ZB_ARRAY_LEN(v->why))
                v->why[v->nwhy++] = why;
            char buf[64];
            if (why && k < v->nwhy) {
                snprintf(buf, sizeof(buf), "failed [%d]", k + 1);
                cell = buf;
            } else if (strcmp(cell, "failed") == 0) {
                v->unexplained = 1;
            }
            v->text[i] = copy_text(cell);
        }
    }
}

static void view_free(const zb_table *t, table_view *v)
{
    for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++)
        free(v->text[i]);
    free(v->text);
}

/* Under the table: why each failed cell failed, and what the mark means. */
static void print_footnotes(FILE *out, const table_view *v)
{
    for (int k = 0; k < v->nwhy; k++)
        fprintf(out, "[%d] %s\n%s", k + 1, v->why[k], k + 1 == v->nwhy ? "\n" : "");
    if (v->unexplained)
        fprintf(out, "failed: the measurement stopped with an error; see the notes below.\n\n");
    if (v->marked)
        zb_print_unreliable_footnote(out);
}

void zb_table_print(FILE *out, const zb_table *t)
{
    /* the lookups that filled this table were for display, not a target */
    zb_target_inputs_clear();
    table_view v;
    view_build(t, &v);
    int *width = calloc((size_t)t->ncols, sizeof(int));
    if (!width)
        abort();
    for (int c = 0; c < t->ncols; c++) {
        width[c] = t->header[c] ? text_width(t->header[c]) : 0;
        if (width[c] < 3)
            width[c] = 3;
        for (int r = 0; r < t->nrows; r++) {
            const char *cell = v.text[(size_t)r * (size_t)t->ncols + (size_t)c];
            if (text_width(cell) > width[c])
                width[c] = text_width(cell);
        }
    }
    fputc('|', out);
    for (int c = 0; c < t->ncols; c++)
        print_padded(out, t->header[c] ? t->header[c] : "", width[c], 0);
    fputs("\n|", out);
    for (int c = 0; c < t->ncols; c++) {
        /* first column (labels) left-aligned, figures right-aligned */
        fputs(c == 0 ? " :" : " ", out);
        for (int i = 0; i < width[c] - 1; i++)
            fputc('-', out);
        fputs(c == 0 ? " |" : ": |", out);
    }
    fputc('\n', out);
    for (int r = 0; r < t->nrows; r++) {
        fputc('|', out);
        for (int c = 0; c < t->ncols; c++)
            print_padded(out, v.text[(size_t)r * (size_t)t->ncols + (size_t)c], width[c], c != 0);
        fputc('\n', out);
    }
    fputc('\n', out);
    print_footnotes(out, &v);
    view_free(t, &v);
    free(width);
}

void zb_table_free(zb_table *t)
{
    if (!t)
        return;
    for (int c = 0; c < t->ncols; c++)
        free(t->header[c]);
    for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->header);
    free(t->cells);
    free(t);
}

/* ------------------------------------------------------------ /proc probes */

long zb_count_vmas(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[65536];
    long lines = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < got; i++)
            lines += buf[i] == '\n';
    close(fd);
    return lines;
}

long long zb_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return -1;
    char line[256];
    size_t flen = strlen(field);
    long long value = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            value = strtoll(line + flen + 1, NULL, 10) * 1024; /* kB */
            break;
        }
    }
    fclose(f);
    return value;
}

/* ------------------------------------------------------- running ourselves */

static char self_path[PATH_MAX];

void zb_set_self_path(const char *argv0)
{
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n > 0) {
        self_path[n] = '\0';
        return;
    }
    snprintf(self_path, sizeof(self_path), "%s", argv0);
}

const char *zb_self_path(void)
{
    return self_path;
}

int zb_run_capture(const char *const argv[], const char *env_extra, char *out, size_t outlen)
{
    /* execve wants char *const[]; it does not write through them */
    char *vec[32];
    size_t argc = 0;
    for (; argv[argc] && argc + 1 < ZB_ARRAY_LEN(vec); argc++)
        vec[argc] = (char *)(uintptr_t)argv[argc];
    vec[argc] = NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (env_extra)
            putenv((char *)(uintptr_t)env_extra);
        execve(vec[0], vec, environ);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    for (;;) {
        char sink[4096];
        char *dst = used + 1 < outlen ? out + used : sink;
        size_t room = used + 1 < outlen ? outlen - 1 - used : sizeof(sink);
        ssize_t got = read(fds[0], dst, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (dst != sink)
            used += (size_t)got;
    }
    if (outlen)
        out[used] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Finds "key" at the start of a line, followed by a space. */
static const char *find_key(const char *text, const char *key)
{
    size_t klen = strlen(key);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ')
            return p + klen + 1;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

int zb_kv_double(const char *text, const char *key, double *out)
{
    const char *v = find_key(text, key);
    if (!v)
        return -1;
    char *end;
    double d = strtod(v, &end);
    if (end == v)
        return -1;
    *out = d;
    return 0;
}

int zb_kv_string(const char *text, const char *key, char *out, size_t len)
{
    const char *v = find_key(text, key);
    if (!v || len == 0)
        return -1;
    size_t n = strcspn(v, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}
