/*
 * selftest.c - made-up figures for the tests: "zz-bench _selftest plot FILE"
 * draws a plot in which one line stops early, and "zz-bench _selftest
 * verdicts" prints a table with a failed cell and targets resting on a
 * reliable and on an unreliable figure.  Nothing here is a measurement.
 */
#include "bench.h"

#include <string.h>

static zb_summary three(double low, double mid, double high)
{
    double samples[3] = {low, mid, high};
    return zb_summarize(samples, 3);
}

static int plot(const char *path)
{
    static const size_t sizes[] = {32, 256, 4096, 65536};
    for (size_t i = 0; i < ZB_ARRAY_LEN(sizes); i++) {
        char row[32];
        zb_format_size(row, sizeof(row), sizes[i]);
        zb_summary s = three(90.0 + (double)i, 100.0 + (double)i, 120.0 + (double)i);
        zb_record("alloc", "pair, 1 thread", row, (double)sizes[i], "full_line", "ns_per_pair", "ns", s);
        if (sizes[i] < 4096)
            zb_record("alloc", "pair, 1 thread", row, (double)sizes[i], "short_line", "ns_per_pair", "ns", s);
    }
    zb_note("alloc", "short_line, 4 KiB: alloc+free pair failed: made-up reason for the test");
    return zb_write_plot_titled(path, "_selftest plot", 1) == 0 ? 0 : 1;
}

/* Figures "steady" (spread 10%) and "shaky" (spread 80%), a failed cell,
 * and one target on each: the one on "shaky" must say NOISE. */
static int verdicts(void)
{
    zb_record("t", "x", "1", 0, "steady", "m", "u", three(90, 100, 110));
    zb_record("t", "x", "1", 0, "shaky", "m", "u", three(20, 100, 180));
    zb_record("t", "x", "1", 0, "base", "m", "u", three(45, 50, 55));
    zb_note("t", "lost, 4 KiB: alloc+free pair failed: made-up reason for the test");
    zb_declare_column("t", "steady", "a made-up figure with a 10% spread");

    zb_table *t = zb_table_new(3);
    zb_table_header(t, 0, "allocator");
    zb_table_header(t, 1, "1");
    zb_table_header(t, 2, "4 KiB");
    const char *rows[] = {"steady", "shaky", "lost"};
    for (int r = 0; r < 3; r++) {
        char cell[64] = "1.0";
        const zb_summary *s = zb_lookup("t", "x", "1", rows[r], "m");
        if (s)
            zb_format_summary(cell, sizeof(cell), *s, 1);
        zb_table_cell(t, r, 0, rows[r]);
        zb_table_cell(t, r, 1, cell);
        /* "lost" failed at 4 KiB: the note above says why */
        zb_table_cell(t, r, 2, strcmp(rows[r], "lost") == 0 ? "failed" : "1.0");
    }
    zb_table_print(stdout, t);
    zb_table_free(t);

    const char *const cols[] = {"steady", "shaky"};
    for (int c = 0; c < 2; c++) {
        const zb_summary *a = zb_lookup("t", "x", "1", cols[c], "m");
        const zb_summary *b = zb_lookup("t", "x", "1", "base", "m");
        char what[64];
        snprintf(what, sizeof(what), "%s vs base", cols[c]);
        zb_target("t", what, a->median / b->median, a->q3 / b->q1, 1.5, 0, ">= 1.5x base");
    }
    zb_print_targets(stdout, "t");
    zb_print_notes(stdout, "t");
    return 0;
}

int zb_selftest_main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "plot") == 0)
        return plot(argv[2]);
    if (argc == 2 && strcmp(argv[1], "verdicts") == 0)
        return verdicts();
    fprintf(stderr, "usage: zz-bench _selftest plot FILE.png | _selftest verdicts\n");
    return 2;
}
