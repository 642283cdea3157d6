/*
 * reliability.c - how far the figures can be trusted.  Samples how busy the
 * machine was (load average, time this process waited for a CPU, time the
 * hypervisor stole) at the start and at the end of the run, and holds the one
 * rule that marks a figure unreliable, so that the cells, the targets, the
 * JSON and the summary line all apply the same rule.
 */
#include "bench.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int valid;
    double load1;            /* 1-minute load average                       */
    char loadavg[64];        /* /proc/loadavg as read                        */
    double on_cpu_s;         /* main thread: time on a CPU                   */
    double waited_s;         /* main thread: time runnable but not running   */
    double steal_s;          /* machine: time the hypervisor ran others      */
} load_sample;

static load_sample at_start, at_end;
static double highest_load;  /* highest 1-minute load seen in any sample */
static double highest_other; /* highest of that load less zz-bench's own (own_load) */
static time_t last_sample;

/* The 1-minute load average counts zz-bench's own threads and children: its
 * 2- and 4-thread runs and the unprivileged profile's child alone lift it
 * over 2 on a 2-CPU machine.  What competes with the figures is the rest:
 * the load less zz-bench's own share of it, which is kept here the way the
 * kernel keeps the load average, as an exponential average (time constant
 * one minute) of how many of its threads were runnable.  That is the time
 * they spent on a CPU (every thread and reaped child: /proc/self/stat) plus
 * the time they waited for one (the main thread's /proc/self/schedstat, and
 * what worker threads report through zb_note_thread_waited: 4 threads on 2
 * CPUs add 2 to the load while using 2 CPUs).
 *
 * A child that zz-bench execs (the unprivileged profile) starts from its
 * parent's share, through ZB_OWN_LOAD_ENV: the load average still holds the
 * parent's last minute of work.  The parent goes on from the child's share
 * when the child ends (an "L" line of its results): the child's threads'
 * waits for a CPU are in no file the parent can read.  (Until ee758ee the share was the CPU rate
 * over the last minute, and a child started at 0: at 4c4d676 every
 * unprivileged figure of `zz-bench all` read NOISE, "the load of other work
 * reached 2.20", on an idle machine, while the privileged ones read 40 PASS.) */
#define OWN_TAU_S 60.0
#define ZB_OWN_LOAD_ENV "ZZ_BENCH_OWN_LOAD"

static struct {
    int valid;
    double at_s, cpu_s, waited_s; /* the last sample */
    double share;                 /* the exponential average at at_s */
} own;
static _Atomic unsigned long long workers_waited_ns;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process (every thread) and of its reaped children. */
static double own_cpu_s(void)
{
    char line[1024];
    zb_read_first_line("/proc/self/stat", line, sizeof(line));
    const char *after = strrchr(line, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    if (after == NULL || sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                                &ut, &st, &cut, &cst) != 4)
        return 0;
    return (double)(ut + st + cut + cst) / (double)sysconf(_SC_CLK_TCK);
}

/* Nanoseconds on a CPU and waiting on a run queue, from a schedstat file. */
static int read_schedstat(const char *path, unsigned long long *run, unsigned long long *wait)
{
    char line[256];
    zb_read_first_line(path, line, sizeof(line));
    return sscanf(line, "%llu %llu", run, wait) == 2 ? 0 : -1;
}

unsigned long long zb_thread_waited_ns(void)
{
    unsigned long long run = 0, wait = 0;
    read_schedstat("/proc/thread-self/schedstat", &run, &wait);
    return wait;
}

void zb_note_thread_waited(unsigned long long ns)
{
    atomic_fetch_add_explicit(&workers_waited_ns, ns, memory_order_relaxed);
}

static double own_waited_s(void)
{
    unsigned long long run = 0, wait = 0;
    read_schedstat("/proc/self/schedstat", &run, &wait);
    return (double)(wait + atomic_load_explicit(&workers_waited_ns, memory_order_relaxed)) / 1e9;
}

/* The share a parent handed over, decayed to now; 0 when none. */
static double inherited_share(double now)
{
    const char *v = getenv(ZB_OWN_LOAD_ENV);
    double share = 0, at = 0;
    if (v == NULL || sscanf(v, "%lf@%lf", &share, &at) != 2 || share < 0 || at > now)
        return 0;
    return share * exp(-(now - at) / OWN_TAU_S);
}

/* zz-bench's own share of the 1-minute load average, as of now. */
static double own_load(void)
{
    double now = now_s(), cpu = own_cpu_s(), waited = own_waited_s();
    if (!own.valid) {
        own.valid = 1;
        own.share = inherited_share(now);
    } else if (now > own.at_s) {
        double dt = now - own.at_s, decay = exp(-dt / OWN_TAU_S);
        double runnable = (cpu - own.cpu_s + waited - own.waited_s) / dt;
        own.share = own.share * decay + runnable * (1 - decay);
    }
    own.at_s = now;
    own.cpu_s = cpu;
    own.waited_s = waited;
    return own.share;
}

static struct {
    int pending;
    double share, at_s;
} from_child;

void zb_load_dump(FILE *f)
{
    fprintf(f, "L\x1f%.6f\x1f%.6f\n", own_load(), now_s());
}

void zb_load_child_share(double share, double at_s)
{
    from_child.pending = 1;
    from_child.share = share;
    from_child.at_s = at_s;
}

void zb_load_resume_after_child(void)
{
    if (!from_child.pending)
        return;
    from_child.pending = 0;
    double now = now_s();
    own.valid = 1;
    own.share = from_child.at_s <= now ? from_child.share * exp(-(now - from_child.at_s) / OWN_TAU_S) : 0;
    own.at_s = now;
    own.cpu_s = own_cpu_s(); /* the child's CPU time, reaped by now, is in its share */
    own.waited_s = own_waited_s();
}

void zb_load_hand_over(void)
{
    char v[64];
    snprintf(v, sizeof(v), "%.3f@%.3f", own_load(), now_s());
    setenv(ZB_OWN_LOAD_ENV, v, 1);
}

static void take_sample(load_sample *s)
{
    memset(s, 0, sizeof(*s));
    zb_read_first_line("/proc/loadavg", s->loadavg, sizeof(s->loadavg));
    s->load1 = s->loadavg[0] ? strtod(s->loadavg, NULL) : 0;
    char line[256];
    unsigned long long run = 0, wait = 0;
    if (read_schedstat("/proc/self/schedstat", &run, &wait) == 0) {
        s->on_cpu_s = (double)run / 1e9;
        s->waited_s = (double)wait / 1e9;
    }
    /* cpu  user nice system idle iowait irq softirq steal ... (USER_HZ ticks) */
    zb_read_first_line("/proc/stat", line, sizeof(line));
    unsigned long long v[8] = {0};
    if (sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) == 8)
        s->steal_s = (double)v[7] / (double)sysconf(_SC_CLK_TCK);
    s->valid = 1;
    if (s->load1 > highest_load)
        highest_load = s->load1;
    double other = s->load1 - own_load();
    if (other > highest_other)
        highest_other = other;
    last_sample = time(NULL);
}

void zb_load_start(void)
{
    take_sample(&at_start);
}

void zb_load_end(void)
{
    take_sample(&at_end);
}

void zb_load_refresh(void)
{
    if (time(NULL) - last_sample >= 1) {
        load_sample s;
        take_sample(&s);
    }
}

static long online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

static double load_limit(void)
{
    const char *v = getenv("ZZ_BENCH_LOAD_LIMIT");
    double limit = v ? strtod(v, NULL) : 0;
    return limit > 0 ? limit : (double)online_cpus();
}

int zb_load_exceeded(void)
{
    return highest_other > load_limit();
}

double zb_spread_pct(zb_summary s)
{
    if (s.n <= 1 || s.median == 0)
        return 0;
    return fmax(s.max - s.median, s.median - s.min) / fabs(s.median) * 100.0;
}

int zb_spread_too_wide(zb_summary s)
{
    return zb_spread_pct(s) > ZB_UNRELIABLE_SPREAD_PCT;
}

int zb_unreliable(zb_summary s)
{
    /* a single measurement (a count, a one-shot time) has no spread to judge */
    return s.n > 1 && (zb_spread_too_wide(s) || zb_load_exceeded());
}

const char *zb_reliability_rule(void)
{
    return "A median of repetitions is marked " ZB_UNRELIABLE_MARK " (unreliable) when its spread is over\n"
           "50% (a repetition more than half the median away from it), or when the 1-minute load\n"
           "average of other work (the load less zz-bench's own share of it: its threads on a CPU\n"
           "or waiting for one, averaged as the kernel does) at the start of the run or at any\n"
           "later sample exceeded the number of online CPUs; the report ends with a Reliability\n"
           "section that counts them.  (Single measurements, such as the scale counts and timings,\n"
           "carry no mark.)";
}

void zb_print_unreliable_footnote(FILE *out)
{
    if (zb_load_exceeded())
        fprintf(out, "%s unreliable: the load of other work reached %.2f on %ld CPUs (it competed for "
                     "them), so every median of repetitions is marked. Re-run on an idle machine.\n\n",
                ZB_UNRELIABLE_MARK, highest_other, online_cpus());
    else
        fprintf(out, "%s unreliable: the spread is over %.0f%% (a repetition more than %.0f%% away from "
                     "the median). Re-run on an idle machine, or with more --reps.\n\n",
                ZB_UNRELIABLE_MARK, ZB_UNRELIABLE_SPREAD_PCT, ZB_UNRELIABLE_SPREAD_PCT);
}

static void print_sample(FILE *out, const char *when, const load_sample *s)
{
    fprintf(out, "- load average %s (1, 5, 15 min; runnable/total; last pid): %s\n", when, s->loadavg);
}

void zb_load_print_start(FILE *out)
{
    print_sample(out, "at start", &at_start);
}

void zb_load_print_summary(FILE *out, size_t unreliable, size_t total)
{
    fprintf(out, "## Reliability\n\n");
    print_sample(out, "at start", &at_start);
    print_sample(out, "at end", &at_end);
    fprintf(out, "- main thread of zz-bench (not its child processes): %.1f s on a CPU, %.1f s runnable "
                 "but waiting for one; hypervisor steal on the whole machine: %.1f s\n",
            at_end.on_cpu_s - at_start.on_cpu_s, at_end.waited_s - at_start.waited_s,
            at_end.steal_s - at_start.steal_s);
    fprintf(out, "- highest 1-minute load average %.2f; less zz-bench's own share of it (its threads "
                 "and children on a CPU or waiting for one): %.2f\n",
            highest_load, highest_other);
    if (zb_load_exceeded())
        fprintf(out, "- UNRELIABLE RUN: the load of other work reached %.2f, above the %ld online CPUs: "
                     "it competed for the CPUs, every figure is marked %s and every target "
                     "that would PASS or FAIL says NOISE\n",
                highest_other, online_cpus(), ZB_UNRELIABLE_MARK);
    fprintf(out, "- %zu of %zu figures unreliable (%s: spread over %.0f%%%s)\n\n", unreliable, total,
            ZB_UNRELIABLE_MARK, ZB_UNRELIABLE_SPREAD_PCT, zb_load_exceeded() ? ", or the load" : "");
}

static void json_sample(FILE *out, const char *name, const load_sample *s, int last)
{
    fprintf(out, "    \"%s\": {\"loadavg\": \"%s\", \"load1\": %.2f, \"main_thread_on_cpu_s\": %.3f, "
                 "\"main_thread_waited_s\": %.3f, \"steal_s\": %.3f}%s\n",
            name, s->loadavg, s->load1, s->on_cpu_s, s->waited_s, s->steal_s, last ? "" : ",");
}

void zb_load_json(FILE *out, size_t unreliable, size_t total)
{
    fputs("{\n", out);
    json_sample(out, "at_start", &at_start, 0);
    json_sample(out, "at_end", &at_end, 0);
    fprintf(out, "    \"online_cpus\": %ld,\n    \"highest_load1\": %.2f,\n    \"highest_other_load1\": %.2f,\n"
                 "    \"load_exceeded_cpus\": %s,\n",
            online_cpus(), highest_load, highest_other, zb_load_exceeded() ? "true" : "false");
    fprintf(out, "    \"spread_threshold_pct\": %.0f,\n    \"unreliable_figures\": %zu,\n    \"figures\": %zu\n  }",
            ZB_UNRELIABLE_SPREAD_PCT, unreliable, total);
}

/* The machine description's copy of the start figures (JSON, machine.c). */
const char *zb_loadavg_at_start(void)
{
    return at_start.loadavg;
}

const char *zb_loadavg_at_end(void)
{
    return at_end.valid ? at_end.loadavg : "";
}
