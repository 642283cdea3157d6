/*
 * bench.h - shared pieces of zz-bench: options, timing, statistics, the
 * result store (every figure goes through it, so the Markdown tables, the
 * JSON file and the plot all show the same numbers), machine information and
 * running a copy of ourselves in a fresh process.
 */
#ifndef ZZ_BENCH_H
#define ZZ_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>

#define ZB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ZB_KIB ((size_t)1024)
#define ZB_MIB ((size_t)1024 * 1024)

/* ---------------------------------------------------------------- options */

typedef struct {
    int reps;              /* repetitions per figure (median of these)        */
    double min_time_ms;    /* each repetition runs at least this long         */
    int quick;             /* small sizes, few reps: tests and the demo       */
    const char *json_path; /* --json FILE, or NULL                            */
    const char *plot_path; /* --plot FILE.png, or NULL                        */
    const char *columns;   /* --columns a,b,c (comma list), or NULL = all     */
    size_t sizes[32];      /* --sizes override; nsizes == 0 = defaults        */
    int nsizes;
    int count_syscalls;    /* alloc: count system calls with strace           */
    size_t scale_cap;      /* scale: stop after this many live blocks         */
    size_t batch;          /* alloc: live blocks per batch                    */
    int cpu;               /* --cpu N: pin the main thread there; -1: where it starts */
    int unprivileged;      /* alloc --unprivileged: only the unprivileged profile */
} zb_options;

/* True when --columns is unset or names this column. */
int zb_column_selected(const zb_options *opt, const char *name);

/* ------------------------------------------------------------------ timing */

/* Monotonic wall clock in nanoseconds (multi-thread runs, progress). */
uint64_t zb_now_ns(void);

/* The clock of single-thread measurements, in nanoseconds: by default the
 * calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so time the thread
 * spends descheduled by unrelated load on a busy machine is not counted;
 * "--clock wall" (environment ZZ_BENCH_CLOCK=wall, inherited by the child
 * processes) switches to CLOCK_MONOTONIC. */
uint64_t zb_clock_ns(void);
void zb_clock_from_env(void);
int zb_clock_is_cpu(void);

/* Pins the calling (main) thread to the CPU it runs on, so that the figures
 * a single-thread table compares are measured on the same core (the vCPUs of
 * a shared VM can differ in speed by 2x).  Returns that CPU, or -1 if the
 * thread could not be pinned (then nothing changed, errno set). */
int zb_pin_main_thread(int cpu); /* cpu < 0: the CPU it runs on now */
/* The CPU zb_pin_main_thread pinned to, or -1. */
int zb_pinned_cpu(void);
/* Sets attr so that a new thread may run on every CPU the process could use
 * before pinning (multi-thread runs must not share the main thread's CPU). */
void zb_unpinned_thread_attr(pthread_attr_t *attr);
/* Before exec: the affinity the process had before zb_pin_main_thread. */
void zb_unpin_before_exec(void);

/* Tells the compiler that memory at p may be read: stores before it cannot be
 * removed as dead.  This is the "memset + compiler barrier" idiom. */
static inline void zb_barrier(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* -------------------------------------------------------------- statistics */

typedef struct {
    double median, min, max, q1, q3; /* q1/q3: 25th and 75th percentiles */
    int n;                           /* number of repetitions            */
} zb_summary;

/* Summarises n samples (sorts them in place). */
zb_summary zb_summarize(double *samples, int n);

/* A summary of one measurement (n = 1, every statistic equal to v). */
zb_summary zb_single(double v);

/* "12.3 ±4%": median, then the largest distance from the median to the min or
 * the max as a percentage of the median. */
void zb_format_summary(char *buf, size_t len, zb_summary s, int decimals);

/* Formats a byte count as "16 B", "4 KiB", "256 MiB". */
void zb_format_size(char *buf, size_t len, size_t n);

/* Reads the first line of a small file (/proc, /sys) into buf, newline
 * stripped; an empty string when it cannot be read. */
void zb_read_first_line(const char *path, char *buf, size_t len);

/* ------------------------------------------------------------ reliability */

/* A figure with repetitions is unreliable when its spread (the "±" of
 * zb_format_summary) is over this many percent, or when the machine's load
 * average exceeded its number of online CPUs (reliability.c). */
#define ZB_UNRELIABLE_SPREAD_PCT 50.0
/* The mark an unreliable cell carries; zb_table_print adds the footnote. */
#define ZB_UNRELIABLE_MARK "\xe2\x80\xa0" /* U+2020 dagger */

/* Samples the load (load average, run-queue wait of the main thread, steal)
 * at the start and at the end of the run; zb_load_refresh samples again if
 * the last sample is a second old (called as figures are recorded). */
void zb_load_start(void);
void zb_load_end(void);
void zb_load_refresh(void);
/* Run-queue wait of the calling thread so far, in ns (/proc/thread-self/schedstat). */
unsigned long long zb_thread_waited_ns(void);
/* A worker thread's wait for a CPU (ns), counted in zz-bench's own share
 * of the load average: call once, before the thread ends. */
void zb_note_thread_waited(unsigned long long ns);
/* Puts zz-bench's own share of the load average in the environment, for a
 * child process about to be exec'd to start from (call before fork). */
void zb_load_hand_over(void);
/* The way back: a child writes its share with its results (zb_load_dump),
 * the parent's zb_results_load passes it to zb_load_child_share, and once
 * the child is reaped zb_load_resume_after_child goes on from it. */
void zb_load_dump(FILE *f);
void zb_load_child_share(double share, double at_s);
void zb_load_resume_after_child(void);
/* True when any sample so far saw a 1-minute load above the CPU count (or
 * above ZZ_BENCH_LOAD_LIMIT when set: the tests set it, so that a busy
 * machine does not turn the verdicts they check into NOISE). */
int zb_load_exceeded(void);
/* The spread of s in percent (0 for a single measurement). */
double zb_spread_pct(zb_summary s);
int zb_spread_too_wide(zb_summary s);
/* The rule: n > 1 and (spread too wide or load exceeded). */
int zb_unreliable(zb_summary s);
/* The rule in words (help text). */
const char *zb_reliability_rule(void);
/* The footnote zb_table_print prints under a table holding a marked cell. */
void zb_print_unreliable_footnote(FILE *out);
/* The "load average at start" line of the machine description. */
void zb_load_print_start(FILE *out);
/* The closing "Reliability" section and its JSON object. */
void zb_load_print_summary(FILE *out, size_t unreliable, size_t total);
void zb_load_json(FILE *out, size_t unreliable, size_t total);
const char *zb_loadavg_at_start(void);
const char *zb_loadavg_at_end(void);

/* --------------------------------------------------------------- results */

/* Stores one figure.  scenario: "wipe", "alloc", "scale"; table: which table
 * it belongs to (e.g. "aligned"); row: e.g. "4 KiB"; column: what was measured
 * (e.g. "zz_wipe"); metric and unit: e.g. "throughput", "GB/s".  x is the
 * numeric value of the row (a size in bytes) or 0. */
void zb_record(const char *scenario, const char *table, const char *row, double x,
               const char *column, const char *metric, const char *unit, zb_summary s);

/* The profile figures, notes, columns and targets are recorded under from
 * now on, and the one lookups, tables, notes and the plot read:
 * "privileged" (the default: zz-bench as it was started) or "unprivileged"
 * (profile.c).  The JSON file holds every profile, each entry naming its own. */
void zb_set_profile(const char *name);
const char *zb_profile(void);
/* Writes every entry of the current profile to f in a line format, and reads
 * such lines back into the current profile: how the unprivileged child
 * passes its results to its parent.  zb_results_load returns the number of
 * entries, or -1 at a malformed line. */
void zb_results_dump(FILE *f);
int zb_results_load(FILE *f);

/* Looks a figure up (in the current profile); returns NULL when it was not
 * measured. */
const zb_summary *zb_lookup(const char *scenario, const char *table, const char *row,
                            const char *column, const char *metric);

/* A remark printed under the tables and stored in the JSON (e.g. why a
 * column is missing). printf-style. */
void zb_note(const char *scenario, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the notes of one scenario as a Markdown list. */
void zb_print_notes(FILE *out, const char *scenario);

/* Records which columns a scenario measured (for the JSON and its checker).
 * The descriptions are also the legend that zb_print_notes prints. */
void zb_declare_column(const char *scenario, const char *column, const char *description);

/* The first note that names both a and b (whole words), or NULL: the reason
 * zb_table_print gives for a cell reading "failed" (a = the row's label,
 * b = the column's header, in either order). */
const char *zb_find_note(const char *a, const char *b);

/* Counts the figures with repetitions, and those of them zb_unreliable marks. */
void zb_count_unreliable(size_t *unreliable, size_t *total);

/* Target verdicts. */
typedef enum { ZB_PASS, ZB_FAIL, ZB_NOISE, ZB_NA } zb_verdict;

/* Records a target: "goal" is what the issue asks and "ratio" the ratio of
 * medians.  at_most == 0: met when ratio >= goal; at_most == 1: met when
 * ratio <= goal.  "ratio_best" is the most favourable ratio the
 * interquartile ranges still allow.  The verdict is NOISE, not PASS or FAIL,
 * when the median misses the goal but ratio_best meets it, or when the
 * ratio rests on an unreliable figure: the figures it rests on are those
 * zb_lookup returned since the previous zb_target, zb_table_print or
 * zb_target_inputs_clear (so look them up right before the call). */
void zb_target(const char *scenario, const char *what, double ratio, double ratio_best,
               double goal, int at_most, const char *goal_text);
/* Forgets the figures looked up so far (see zb_target). */
void zb_target_inputs_clear(void);

/* Prints the targets of a scenario as a Markdown table. */
void zb_print_targets(FILE *out, const char *scenario);

/* Writes everything recorded, with the machine description, as JSON. */
int zb_write_json(const char *path, const zb_options *opt, const char *command);

/* Draws the plot (gnuplot). Returns 0, or -1 after printing why not.
 * command: what was run, for the title. */
int zb_write_plot(const char *path);
int zb_write_plot_titled(const char *path, const char *command, int quick);

/* The source commit zz-bench was built from ("unknown" outside git). */
const char *zb_build_commit(void);

/* ------------------------------------------------------------- a table */

/* A small Markdown table builder: cells are copied, widths aligned. */
typedef struct zb_table zb_table;
zb_table *zb_table_new(int ncols);
void zb_table_header(zb_table *t, int col, const char *text);
void zb_table_cell(zb_table *t, int row, int col, const char *text);
void zb_table_print(FILE *out, const zb_table *t);
void zb_table_free(zb_table *t);

/* ---------------------------------------------------------------- machine */

void zb_machine_print(FILE *out);
void zb_print_timestamp(FILE *out);
void zb_print_load(FILE *out, const char *when);
void zb_machine_json(FILE *out);
/* The CPU model line of the machine description (for the plot's title). */
const char *zb_cpu_model(void);

/* Library versions, for the machine description. */
const char *zb_sodium_version(void);  /* NULL when not built in */
const char *zb_openssl_version(void); /* NULL when not built in */
const char *zb_gcrypt_version(void);  /* NULL when not built in */

/* ------------------------------------------------------------ /proc probes */

/* Number of lines in /proc/self/maps: the process's mappings (VMAs). */
long zb_count_vmas(void);

/* A "Name:   123 kB" field of /proc/self/status, in bytes (-1 if absent). */
long long zb_status_bytes(const char *field);

/* ------------------------------------------------------- running ourselves */

/* The absolute path of this executable (resolved once at start-up). */
const char *zb_self_path(void);
void zb_set_self_path(const char *argv0);

/* Runs argv (argv[0] = program) in a child process with the extra environment
 * variable env_extra ("NAME=value" or NULL), captures its stdout into out
 * (NUL-terminated, truncated to outlen - 1) and returns its exit status, or
 * -1 if it died of a signal or could not start. */
int zb_run_capture(const char *const argv[], const char *env_extra, char *out, size_t outlen);

/* Reads "key value" from captured child output; returns 0 if found. */
int zb_kv_double(const char *text, const char *key, double *out);
int zb_kv_string(const char *text, const char *key, char *out, size_t len);

/* -------------------------------------------------------------- scenarios */

int zb_run_wipe(const zb_options *opt);
int zb_run_alloc(const zb_options *opt);
int zb_run_scale(const zb_options *opt);
int zb_run_shield(const zb_options *opt); /* bench_shield.c: only with ZB_HAVE_SHIELD */

/* The wipe's guard-page table (bench_wipe_guard.c): 16 B to 256 B wiped
 * up to a PROT_NONE page, next to memset in the middle of a page.  Part of
 * zb_run_wipe; returns 0 or -1. */
int zb_run_wipe_guard(const zb_options *opt);

/* Hidden child entry points (run through zb_run_capture). */
int zb_alloc_child_main(int argc, char **argv);
int zb_scale_child_main(int argc, char **argv);
/* _selftest plot FILE.png | _selftest verdicts: made-up figures for tests. */
int zb_selftest_main(int argc, char **argv);

/* The unprivileged profile (profile.c): runs `zz-bench _alloc-unprivileged
 * FD OPTIONS...` (the alloc tables in a child without CAP_IPC_LOCK, under an
 * 8 MiB RLIMIT_MEMLOCK, as uid 65534 when started as root) and loads what it
 * measured under the profile "unprivileged".  Returns 0 or -1. */
int zb_run_alloc_unprivileged(char **options, int noptions);
/* The child's side: gives up the privileges, runs the alloc tables, sends
 * the results to fd.  Returns the exit status. */
int zb_alloc_unprivileged_child(int fd, const zb_options *opt);
/* "privileged: uid 0, with CAP_IPC_LOCK, RLIMIT_MEMLOCK unlimited". */
const char *zb_profile_description(void);

/* Help text for each scenario's columns. */
void zb_wipe_help(FILE *out);
void zb_alloc_help(FILE *out);
void zb_scale_help(FILE *out);

#endif /* ZZ_BENCH_H */
