/*
 * main.c - zz-bench: command line, then the scenarios, then JSON and plot.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "zeroize.h"

/* The options, each with the commands it applies to, so that a command's
 * help lists only its own. */
enum { FOR_WIPE = 1, FOR_ALLOC = 2, FOR_SCALE = 4, FOR_ALL = 7 };
static const struct {
    int commands;
    const char *text;
} option_help[] = {
    {FOR_ALL, "  --reps N          repetitions per figure; the median is shown (default 7, quick 3)\n"},
    {FOR_WIPE | FOR_ALLOC,
     "  --min-time MS     each repetition runs at least MS milliseconds (default 10, quick 2)\n"},
    {FOR_ALL, "  --columns a,b,c   only these columns (the names this help lists); the others are skipped\n"},
    {FOR_ALL, "  --clock cpu|wall  timings in each thread's CPU time (default: time spent\n"
              "                    descheduled by other load does not count) or wall time; the\n"
              "                    multi-thread aggregate (wall time / all pairs) is always wall time\n"},
    {FOR_WIPE | FOR_ALLOC,
     "  --cpu N           pin the main thread (single-thread figures) to CPU N (default:\n"
     "                    the CPU it starts on; threads of 2/4-thread runs are never pinned)\n"},
    {FOR_WIPE | FOR_ALLOC, "  --sizes LIST      sizes for wipe/alloc, e.g. 16,4K,1M (suffix K or M = KiB, MiB)\n"},
    {FOR_ALLOC, "  --unprivileged    alloc: run the tables in a child without CAP_IPC_LOCK, under an 8 MiB\n"
                "                    RLIMIT_MEMLOCK, as uid 65534 when started as root (`all` runs\n"
                "                    both profiles, privileged as started and unprivileged)\n"},
    {FOR_ALLOC, "  --batch N         alloc: live blocks per batch (default 1000, quick 100)\n"},
    {FOR_SCALE, "  --cap N           scale: stop at N live blocks (default 200000, quick 20000)\n"},
    {FOR_ALLOC, "  --count-syscalls  alloc: count system calls per pair under strace -f (the default\n"
                "                    when strace is installed); --no-count-syscalls skips it\n"},
    {FOR_ALL, "  --json FILE       write every figure, with its spread, and the machine to FILE\n"},
    {FOR_WIPE | FOR_ALLOC,
     "  --plot FILE.png   draw wipe throughput and allocation cost against size (gnuplot)\n"},
    {FOR_ALL, "  --quick           small sizes and few repetitions (tests, demos: well under a minute)\n"},
    {FOR_ALL, "  --help            this text\n"},
};

static void print_options(FILE *out, int commands)
{
    fprintf(out, "options:\n");
    for (size_t i = 0; i < ZB_ARRAY_LEN(option_help); i++)
        if (option_help[i].commands & commands)
            fputs(option_help[i].text, out);
    fputc('\n', out);
}

/* How to read a cell, what the marks mean, how targets are judged: common to
 * every command. */
static void print_reading_guide(FILE *out)
{
    fprintf(out,
            "How to read a cell: \"12.3 ±4%%\" is the median of the repetitions, and the largest\n"
            "distance from the median to the fastest or slowest repetition, as a percentage.\n"
            "The columns of one table take turns within each repetition, so background noise\n"
            "and clock changes hit them alike.\n%s\n"
            "Targets print PASS when the median ratio meets the goal, FAIL when it misses, and\n"
            "NOISE when the figures cannot decide: the median misses but the interquartile ranges\n"
            "still allow the goal, a figure it rests on is marked unreliable, or the load was\n"
            "above the CPU count.\n\n",
            zb_reliability_rule());
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: zz-bench COMMAND [options]\n"
            "       zz-bench COMMAND --help     (what COMMAND measures, its columns, its options)\n"
            "\n"
            "Benchmarks zeroize against the usual ways to wipe and to allocate secrets.\n"
            "Results print as Markdown tables, with the machine description on top.\n"
            "\n"
            "commands:\n"
            "  wipe    wipe throughput (GB/s) and ns per call, 16 B to 256 MiB, aligned and +1\n"
            "  alloc   cost of allocating secrets: ns per alloc+touch+free pair with 1, 2, 4\n"
            "          threads, ns per block in a live batch, system calls, VMAs, locked\n"
            "          and resident bytes per live block\n"
            "  scale   how many guarded blocks fit before the kernel says no; arena density;\n"
            "          zz_purge() time\n"
            "  shield  shielded secrets (when built with libzeroize-shield): open+close of\n"
            "          32 B vs a zz_alloc pair and the prekey hash; seal of 1 MiB vs the AEAD\n"
            "  all     wipe, alloc and scale (and shield, when built)\n"
            "\n");
    print_options(out, FOR_ALL);
    print_reading_guide(out);
    zb_wipe_help(out);
    fputc('\n', out);
    zb_alloc_help(out);
    fputc('\n', out);
    zb_scale_help(out);
}

/* zz-bench COMMAND --help: that command only. */
static void command_usage(FILE *out, const char *command)
{
    static const struct {
        const char *name;
        int mask;
        const char *what;
        void (*columns)(FILE *);
    } commands[] = {
        {"wipe", FOR_WIPE,
         "How fast a buffer is wiped: throughput (GB/s = 1e9 bytes per second) and ns per call,\n"
         "16 B to 256 MiB (16 B to 16 MiB with --quick), on a page-aligned buffer and on one\n"
         "misaligned by 1 byte.  After every timed repetition the buffer is checked to be all\n"
         "zero and the bytes around it untouched.  One column per wiper:\n",
         zb_wipe_help},
        {"alloc", FOR_ALLOC,
         "What a secret allocation costs: ns per alloc+touch+free pair with 1, 2 and 4 threads,\n"
         "ns per block in a live batch of --batch blocks, system calls per pair (strace), and\n"
         "VMAs, locked (VmLck) and resident (RSS) bytes per live block, measured in a fresh\n"
         "process.  Tables have one row per allocator and one column per block size:\n",
         zb_alloc_help},
        {"scale", FOR_SCALE,
         "How far guarded allocations scale: live 32-byte blocks until the kernel refuses or\n"
         "--cap is reached (with the VMAs, locked and resident bytes per block and why it\n"
         "stopped), one arena holding many secrets, and zz_purge() over many live blocks.\n"
         "Every experiment runs in a fresh process.  Rows:\n",
         zb_scale_help},
    };
    for (size_t i = 0; i < ZB_ARRAY_LEN(commands); i++) {
        if (strcmp(commands[i].name, command) != 0)
            continue;
        fprintf(out, "usage: zz-bench %s [options]\n\n%s\n", command, commands[i].what);
        commands[i].columns(out);
        fputc('\n', out);
        print_options(out, commands[i].mask);
        print_reading_guide(out);
        return;
    }
    usage(out); /* "all" */
}

static int parse_size(const char *text, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || errno)
        return -1;
    if (*end == 'K' || *end == 'k')
        v *= 1024, end++;
    else if (*end == 'M' || *end == 'm')
        v *= 1024 * 1024, end++;
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0' || v == 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_sizes(const char *list, zb_options *opt)
{
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", list);
    opt->nsizes = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (opt->nsizes == (int)ZB_ARRAY_LEN(opt->sizes) || parse_size(tok, &opt->sizes[opt->nsizes]))
            return -1;
        opt->nsizes++;
    }
    return opt->nsizes ? 0 : -1;
}

static int parse_positive(const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !(v > 0))
        return -1;
    *out = v;
    return 0;
}

/* Parses argv[first..]; returns 0, 1 for --help, -1 on error. */
static int parse_options(int argc, char **argv, int first, zb_options *opt)
{
    int reps_set = 0, time_set = 0, cap_set = 0, batch_set = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--quick") == 0) {
            opt->quick = 1;
        } else if (strcmp(a, "--count-syscalls") == 0) {
            opt->count_syscalls = 1;
        } else if (strcmp(a, "--no-count-syscalls") == 0) {
            opt->count_syscalls = 0;
        } else if (strcmp(a, "--unprivileged") == 0) {
            opt->unprivileged = 1;
        } else if (!val) {
            fprintf(stderr, "zz-bench: %s: unknown option or missing value\n", a);
            return -1;
        } else if (strcmp(a, "--reps") == 0 && parse_positive(val, &d) == 0) {
            opt->reps = (int)d, reps_set = 1, i++;
        } else if (strcmp(a, "--min-time") == 0 && parse_positive(val, &d) == 0) {
            opt->min_time_ms = d, time_set = 1, i++;
        } else if (strcmp(a, "--batch") == 0 && parse_positive(val, &d) == 0) {
            opt->batch = (size_t)d, batch_set = 1, i++;
        } else if (strcmp(a, "--cap") == 0 && parse_positive(val, &d) == 0) {
            opt->scale_cap = (size_t)d, cap_set = 1, i++;
        } else if (strcmp(a, "--clock") == 0 && (strcmp(val, "cpu") == 0 || strcmp(val, "wall") == 0)) {
            /* through the environment, so the child processes follow */
            setenv("ZZ_BENCH_CLOCK", val, 1);
            zb_clock_from_env();
            i++;
        } else if (strcmp(a, "--cpu") == 0 && (parse_positive(val, &d) == 0 || strcmp(val, "0") == 0)) {
            opt->cpu = strcmp(val, "0") == 0 ? 0 : (int)d, i++;
        } else if (strcmp(a, "--columns") == 0) {
            opt->columns = val, i++;
        } else if (strcmp(a, "--sizes") == 0 && parse_sizes(val, opt) == 0) {
            i++;
        } else if (strcmp(a, "--json") == 0) {
            opt->json_path = val, i++;
        } else if (strcmp(a, "--plot") == 0) {
            opt->plot_path = val, i++;
        } else {
            fprintf(stderr, "zz-bench: bad option or value: %s %s\n", a, val);
            return -1;
        }
    }
    if (opt->quick) {
        if (!reps_set)
            opt->reps = 3;
        if (!time_set)
            opt->min_time_ms = 2;
        if (!cap_set)
            opt->scale_cap = 20000;
        if (!batch_set)
            opt->batch = 100;
    }
    if (opt->reps < 1 || opt->reps > 1000) {
        fprintf(stderr, "zz-bench: --reps must be 1..1000\n");
        return -1;
    }
    return 0;
}

/* Creates the directories leading to path (mkdir -p of its parent), so that
 * "--json results/run1.json" works in a fresh checkout. */
static int make_parent_dirs(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "zz-bench: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    zb_set_self_path(argv[0]);
    zb_clock_from_env();
    if (argc >= 2 && strcmp(argv[1], "_alloc-child") == 0)
        return zb_alloc_child_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "_scale-child") == 0)
        return zb_scale_child_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "_selftest") == 0)
        return zb_selftest_main(argc - 1, argv + 1);

    zb_options opt = {.reps = 7, .min_time_ms = 10, .count_syscalls = 1, .scale_cap = 200000,
                      .batch = 1000, .cpu = -1};
    if (argc >= 3 && strcmp(argv[1], "_alloc-unprivileged") == 0) {
        if (parse_options(argc, argv, 3, &opt) != 0)
            return 2;
        zb_pin_main_thread(opt.cpu);
        return zb_alloc_unprivileged_child(atoi(argv[2]), &opt);
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *command = argv[1];
    int do_wipe = strcmp(command, "wipe") == 0, do_alloc = strcmp(command, "alloc") == 0;
    int do_scale = strcmp(command, "scale") == 0;
    int do_shield = strcmp(command, "shield") == 0; /* bench_shield.c */
    int run_all = strcmp(command, "all") == 0;
    if (run_all)
        do_wipe = do_alloc = do_scale = do_shield = 1;
#ifndef ZB_HAVE_SHIELD
    if (do_shield && !run_all) {
        fprintf(stderr, "zz-bench: shield: built without libzeroize-shield (needs libsodium)\n");
        return 2;
    }
    do_shield = 0;
#endif
    if (!do_wipe && !do_alloc && !do_scale && !do_shield) {
        fprintf(stderr, "zz-bench: unknown command '%s' (try --help)\n", command);
        return 2;
    }
    int parsed = parse_options(argc, argv, 2, &opt);
    if (parsed == 1) {
        command_usage(stdout, command);
        return 0;
    }
    if (parsed < 0)
        return 2;

    if ((opt.json_path && make_parent_dirs(opt.json_path) != 0) ||
        (opt.plot_path && make_parent_dirs(opt.plot_path) != 0))
        return 2;
    if (zb_pin_main_thread(opt.cpu) < 0 && opt.cpu >= 0) {
        fprintf(stderr, "zz-bench: --cpu %d: cannot run there: %s\n", opt.cpu, strerror(errno));
        return 2;
    }
    zb_load_start();
    printf("# zz-bench %s%s\n\n", command, opt.quick ? " --quick" : "");
    zb_machine_print(stdout);
    fflush(stdout);
    int failed = 0;
    if (do_wipe)
        failed |= zb_run_wipe(&opt) != 0;
    fflush(stdout);
    if (do_alloc && !opt.unprivileged)
        failed |= zb_run_alloc(&opt) != 0;
    fflush(stdout);
    if (do_alloc && (opt.unprivileged || run_all)) {
        failed |= zb_run_alloc_unprivileged(argv + 2, argc - 2) != 0;
        if (!run_all) /* this profile only: the plot shows it */
            zb_set_profile("unprivileged");
    }
    fflush(stdout);
    if (do_scale)
        failed |= zb_run_scale(&opt) != 0;
    fflush(stdout);
#ifdef ZB_HAVE_SHIELD
    if (do_shield)
        failed |= zb_run_shield(&opt) != 0;
    fflush(stdout);
#endif
    zb_load_end();
    size_t unreliable, total;
    zb_count_unreliable(&unreliable, &total);
    zb_load_print_summary(stdout, unreliable, total);
    fflush(stdout);
    if (opt.json_path && zb_write_json(opt.json_path, &opt, command) != 0)
        failed = 1;
    if (opt.plot_path && (do_wipe || do_alloc) && zb_write_plot_titled(opt.plot_path, command, opt.quick) != 0)
        failed = 1;
    if (opt.json_path)
        fprintf(stderr, "zz-bench: wrote %s\n", opt.json_path);
    if (opt.plot_path && !failed)
        fprintf(stderr, "zz-bench: wrote %s\n", opt.plot_path);
    return failed ? 1 : 0;
}
