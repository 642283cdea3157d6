/*
 * reliability.c - how far the figures can be trusted.  Samples how busy the
 * machine was (load average, time this process waited for a CPU, time the
 * hypervisor stole) at the start and at the end of the run, and holds the one
 * rule that marks a figure unreliable, so that the cells, the targets, the
 * JSON and the summary line all apply the same rule.
 */
#include "bench.h"

#include <math.h>
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
static double highest_load; /* highest 1-minute load seen in any sample */
static time_t last_sample;

static void take_sample(load_sample *s)
{
    memset(s, 0, sizeof(*s));
    zb_read_first_line("/proc/loadavg", s->loadavg, sizeof(s->loadavg));
    s->load1 = s->loadavg[0] ? strtod(s->loadavg, NULL) : 0;
    char line[256];
    /* nanoseconds on a CPU, nanoseconds waiting on a run queue, timeslices */
    zb_read_first_line("/proc/self/schedstat", line, sizeof(line));
    unsigned long long run = 0, wait = 0;
    if (sscanf(line, "%llu %llu", &run, &wait) == 2) {
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
    return highest_load > load_limit();
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
           "average at the start of the run or at any later sample exceeded the number of online\n"
           "CPUs; the report ends with a Reliability section that counts them.  (Single\n"
           "measurements, such as the scale counts and timings, carry no mark.)";
}

void zb_print_unreliable_footnote(FILE *out)
{
    if (zb_load_exceeded())
        fprintf(out, "%s unreliable: the load average reached %.2f on %ld CPUs (other work competed for "
                     "them), so every median of repetitions is marked. Re-run on an idle machine.\n\n",
                ZB_UNRELIABLE_MARK, highest_load, online_cpus());
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
    if (zb_load_exceeded())
        fprintf(out, "- UNRELIABLE RUN: the load average reached %.2f, above the %ld online CPUs: "
                     "other work competed for the CPUs, every figure is marked %s and every target "
                     "that would PASS or FAIL says NOISE\n",
                highest_load, online_cpus(), ZB_UNRELIABLE_MARK);
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
    fprintf(out, "    \"online_cpus\": %ld,\n    \"highest_load1\": %.2f,\n    \"load_exceeded_cpus\": %s,\n",
            online_cpus(), highest_load, zb_load_exceeded() ? "true" : "false");
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
