/*
 * results.c - the one place every figure is stored.  Tables, JSON and the plot
 * read from here, so they cannot disagree.
 */
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every entry carries the profile it was measured under (zb_set_profile):
 * "privileged" by default, "unprivileged" for the figures an unprivileged
 * child sent back (profile.c). */
#define PROFILE_LEN 16

typedef struct {
    char scenario[16], table[48], row[48], column[48], metric[32], unit[16];
    char profile[PROFILE_LEN];
    double x;
    zb_summary s;
} record;

typedef struct {
    char scenario[16], profile[PROFILE_LEN];
    char text[480];
} note;

typedef struct {
    char scenario[16], profile[PROFILE_LEN], column[48], description[160];
} column_decl;

typedef struct {
    char scenario[16], profile[PROFILE_LEN], what[160], goal_text[48];
    double ratio, ratio_best, goal;
    zb_verdict verdict;
    char noise_why[40]; /* why NOISE, or "" */
} target;

static record *records;
static size_t nrecords, caprecords;
static note notes[512];
static size_t nnotes;
static column_decl columns[64];
static size_t ncolumns;
static target targets[512]; /* zz-bench all: ~60 wipe and ~50 alloc targets per profile */
static size_t ntargets;
/* Indexes of the records zb_lookup returned since the last target: the
 * figures the next target's ratio rests on. */
static size_t target_inputs[16];
static size_t ntarget_inputs;

static void copy_field(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static char profile[PROFILE_LEN] = "privileged";

void zb_set_profile(const char *name)
{
    copy_field(profile, sizeof(profile), name);
}

const char *zb_profile(void)
{
    return profile;
}

/* True for an entry of the current profile. */
static int current(const char *entry_profile)
{
    return strcmp(entry_profile, profile) == 0;
}

void zb_record(const char *scenario, const char *table, const char *row, double x,
               const char *column, const char *metric, const char *unit, zb_summary s)
{
    if (nrecords == caprecords) {
        caprecords = caprecords ? caprecords * 2 : 256;
        records = realloc(records, caprecords * sizeof(*records));
        if (!records)
            abort();
    }
    record *r = &records[nrecords++];
    copy_field(r->scenario, sizeof(r->scenario), scenario);
    copy_field(r->table, sizeof(r->table), table);
    copy_field(r->row, sizeof(r->row), row);
    copy_field(r->column, sizeof(r->column), column);
    copy_field(r->metric, sizeof(r->metric), metric);
    copy_field(r->unit, sizeof(r->unit), unit);
    copy_field(r->profile, sizeof(r->profile), profile);
    r->x = x;
    r->s = s;
    zb_load_refresh();
}

const zb_summary *zb_lookup(const char *scenario, const char *table, const char *row,
                            const char *column, const char *metric)
{
    /* newest first, so a re-measured figure wins */
    for (size_t i = nrecords; i-- > 0;) {
        const record *r = &records[i];
        if (current(r->profile) && strcmp(r->scenario, scenario) == 0 && strcmp(r->table, table) == 0 &&
            strcmp(r->row, row) == 0 && strcmp(r->column, column) == 0 &&
            strcmp(r->metric, metric) == 0) {
            if (ntarget_inputs < ZB_ARRAY_LEN(target_inputs))
                target_inputs[ntarget_inputs++] = i;
            return &r->s;
        }
    }
    return NULL;
}

void zb_target_inputs_clear(void)
{
    ntarget_inputs = 0;
}

void zb_count_unreliable(size_t *unreliable, size_t *total)
{
    *unreliable = *total = 0;
    for (size_t i = 0; i < nrecords; i++) {
        if (records[i].s.n <= 1)
            continue;
        ++*total;
        *unreliable += zb_unreliable(records[i].s) != 0;
    }
}

void zb_note(const char *scenario, const char *fmt, ...)
{
    if (nnotes == ZB_ARRAY_LEN(notes))
        return;
    note *n = &notes[nnotes++];
    copy_field(n->scenario, sizeof(n->scenario), scenario);
    copy_field(n->profile, sizeof(n->profile), profile);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->text, sizeof(n->text), fmt, ap);
    va_end(ap);
}

/* The legend: each column the scenario declared, with what it measures. */
static void print_legend(FILE *out, const char *scenario)
{
    int any = 0;
    for (size_t i = 0; i < ncolumns; i++) {
        if (strcmp(columns[i].scenario, scenario) != 0 || !current(columns[i].profile))
            continue;
        if (!any)
            fprintf(out, "Legend (the names in the tables' headers and first columns):\n\n");
        any = 1;
        fprintf(out, "- `%s`: %s\n", columns[i].column, columns[i].description);
    }
    if (any)
        fputc('\n', out);
}

/* True when word occurs in text with no letter, digit or '_' on either side. */
static int has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    if (n == 0)
        return 0;
    for (const char *p = text; (p = strstr(p, word)) != NULL; p++) {
        char before = p == text ? ' ' : p[-1], after = p[n];
        int inner_b = before == '_' || (before >= '0' && before <= '9') || ((before | 32) >= 'a' && (before | 32) <= 'z');
        int inner_a = after == '_' || (after >= '0' && after <= '9') || ((after | 32) >= 'a' && (after | 32) <= 'z');
        if (!inner_b && !inner_a)
            return 1;
    }
    return 0;
}

const char *zb_find_note(const char *a, const char *b)
{
    /* a note that says what failed first, then any that names both */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < nnotes; i++)
            if (current(notes[i].profile) && has_word(notes[i].text, a) && has_word(notes[i].text, b) &&
                (pass == 1 || strstr(notes[i].text, "failed")))
                return notes[i].text;
    /* then the note that left the row's or the column's allocator out (its
     * set-up failed: every size fails, e.g. a secure heap whose pool does
     * not fit under the unprivileged profile's lock limit) */
    for (size_t i = 0; i < nnotes; i++)
        if (current(notes[i].profile) && strstr(notes[i].text, " left out: ") &&
            (strncmp(notes[i].text, a, strlen(a)) == 0 || strncmp(notes[i].text, b, strlen(b)) == 0))
            return notes[i].text;
    return NULL;
}

void zb_print_notes(FILE *out, const char *scenario)
{
    print_legend(out, scenario);
    int any = 0;
    for (size_t i = 0; i < nnotes; i++) {
        if (strcmp(notes[i].scenario, scenario) != 0 || !current(notes[i].profile))
            continue;
        if (!any)
            fprintf(out, "Notes:\n\n");
        any = 1;
        fprintf(out, "- %s\n", notes[i].text);
    }
    if (any)
        fputc('\n', out);
}

void zb_declare_column(const char *scenario, const char *column, const char *description)
{
    for (size_t i = 0; i < ncolumns; i++)
        if (strcmp(columns[i].scenario, scenario) == 0 && strcmp(columns[i].column, column) == 0 &&
            current(columns[i].profile))
            return;
    if (ncolumns == ZB_ARRAY_LEN(columns))
        return;
    column_decl *c = &columns[ncolumns++];
    copy_field(c->scenario, sizeof(c->scenario), scenario);
    copy_field(c->column, sizeof(c->column), column);
    copy_field(c->profile, sizeof(c->profile), profile);
    copy_field(c->description, sizeof(c->description), description);
}

static const char *verdict_name(zb_verdict v)
{
    switch (v) {
    case ZB_PASS: return "PASS";
    case ZB_FAIL: return "FAIL";
    case ZB_NOISE: return "NOISE";
    default: return "n/a";
    }
}

void zb_target(const char *scenario, const char *what, double ratio, double ratio_best,
               double goal, int at_most, const char *goal_text)
{
    if (ntargets == ZB_ARRAY_LEN(targets))
        return;
    target *t = &targets[ntargets++];
    copy_field(t->scenario, sizeof(t->scenario), scenario);
    copy_field(t->what, sizeof(t->what), what);
    copy_field(t->goal_text, sizeof(t->goal_text), goal_text);
    copy_field(t->profile, sizeof(t->profile), profile);
    t->ratio = ratio;
    t->ratio_best = ratio_best;
    t->goal = goal;
    const char *noise_why = NULL;
    int unreliable_input = 0;
    for (size_t i = 0; i < ntarget_inputs; i++)
        unreliable_input |= zb_spread_too_wide(records[target_inputs[i]].s);
    ntarget_inputs = 0;
    if (!(ratio > 0) || !isfinite(ratio)) {
        t->verdict = ZB_NA;
    } else if (zb_load_exceeded()) {
        t->verdict = ZB_NOISE;
        noise_why = "load above CPUs";
    } else if (unreliable_input) {
        t->verdict = ZB_NOISE;
        noise_why = "unreliable figure " ZB_UNRELIABLE_MARK;
    } else if (at_most ? ratio <= goal : ratio >= goal) {
        t->verdict = ZB_PASS;
    } else if (at_most ? ratio_best <= goal : ratio_best >= goal) {
        t->verdict = ZB_NOISE;
        noise_why = "IQR allows goal";
    } else {
        t->verdict = ZB_FAIL;
    }
    copy_field(t->noise_why, sizeof(t->noise_why), noise_why);
}

/* The load average can cross the CPU count after a target was judged (it
 * trails by a minute): every verdict printed or written is judged again
 * against the highest load seen so far, so that no PASS or FAIL stands on a
 * run the report itself calls loaded. */
static void settle_for_load(target *t)
{
    if ((t->verdict == ZB_PASS || t->verdict == ZB_FAIL) && zb_load_exceeded()) {
        t->verdict = ZB_NOISE;
        copy_field(t->noise_why, sizeof(t->noise_why), "load above CPUs");
    }
}

void zb_print_targets(FILE *out, const char *scenario)
{
    zb_table *t = zb_table_new(6);
    zb_table_header(t, 0, "target");
    zb_table_header(t, 1, "profile");
    zb_table_header(t, 2, "goal");
    zb_table_header(t, 3, "measured");
    zb_table_header(t, 4, "verdict");
    zb_table_header(t, 5, "why NOISE");
    int row = 0, pass = 0, fail = 0, noise = 0;
    for (size_t i = 0; i < ntargets; i++) {
        target *g = &targets[i];
        if (strcmp(g->scenario, scenario) != 0 || !current(g->profile))
            continue;
        settle_for_load(g);
        char measured[32];
        if (g->verdict == ZB_NA)
            snprintf(measured, sizeof(measured), "n/a");
        else
            snprintf(measured, sizeof(measured), "%.2fx", g->ratio);
        zb_table_cell(t, row, 0, g->what);
        zb_table_cell(t, row, 1, g->profile);
        zb_table_cell(t, row, 2, g->goal_text);
        zb_table_cell(t, row, 3, measured);
        zb_table_cell(t, row, 4, verdict_name(g->verdict));
        zb_table_cell(t, row, 5, g->noise_why);
        pass += g->verdict == ZB_PASS;
        fail += g->verdict == ZB_FAIL;
        noise += g->verdict == ZB_NOISE;
        row++;
    }
    if (row) {
        fprintf(out, "### Targets (%s, %s): %d PASS, %d FAIL, %d NOISE\n\n", scenario, profile, pass,
                fail, noise);
        zb_table_print(out, t);
        fprintf(out, "PASS: the median ratio meets the goal; FAIL: it misses; NOISE: these figures cannot "
                     "decide (the load was above the CPU count, a figure the ratio rests on is marked "
                     "%s, or the median misses but the interquartile ranges allow the goal).\n\n",
                ZB_UNRELIABLE_MARK);
    }
    zb_table_free(t);
}

/* ------------------------------------------------------------------ JSON */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* JSON has no NaN or infinity: write null for them. */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void json_summary(FILE *f, zb_summary s)
{
    fputs("{\"median\": ", f);
    json_number(f, s.median);
    fputs(", \"min\": ", f);
    json_number(f, s.min);
    fputs(", \"max\": ", f);
    json_number(f, s.max);
    fputs(", \"q1\": ", f);
    json_number(f, s.q1);
    fputs(", \"q3\": ", f);
    json_number(f, s.q3);
    fprintf(f, ", \"reps\": %d}", s.n);
}

static void json_options(FILE *f, const zb_options *opt, const char *command)
{
    fputs("  \"command\": ", f);
    json_string(f, command);
    fprintf(f, ",\n  \"options\": {\"reps\": %d, \"min_time_ms\": %g, \"quick\": %s, "
               "\"batch\": %zu, \"scale_cap\": %zu, \"count_syscalls\": %s, \"clock\": \"%s\"},\n",
            opt->reps, opt->min_time_ms, opt->quick ? "true" : "false", opt->batch,
            opt->scale_cap, opt->count_syscalls ? "true" : "false",
            zb_clock_is_cpu() ? "thread_cputime" : "monotonic");
}

static void json_columns(FILE *f)
{
    fputs("  \"columns\": [", f);
    for (size_t i = 0; i < ncolumns; i++) {
        fputs(i ? ",\n    {\"scenario\": " : "\n    {\"scenario\": ", f);
        json_string(f, columns[i].scenario);
        fputs(", \"column\": ", f);
        json_string(f, columns[i].column);
        fputs(", \"profile\": ", f);
        json_string(f, columns[i].profile);
        fputs(", \"description\": ", f);
        json_string(f, columns[i].description);
        fputc('}', f);
    }
    fputs("\n  ],\n", f);
}

static void json_records(FILE *f)
{
    fputs("  \"figures\": [", f);
    for (size_t i = 0; i < nrecords; i++) {
        const record *r = &records[i];
        fputs(i ? ",\n    {" : "\n    {", f);
        fputs("\"scenario\": ", f);
        json_string(f, r->scenario);
        fputs(", \"table\": ", f);
        json_string(f, r->table);
        fputs(", \"row\": ", f);
        json_string(f, r->row);
        fputs(", \"x\": ", f);
        json_number(f, r->x);
        fputs(", \"column\": ", f);
        json_string(f, r->column);
        fputs(", \"metric\": ", f);
        json_string(f, r->metric);
        fputs(", \"unit\": ", f);
        json_string(f, r->unit);
        fputs(", \"profile\": ", f);
        json_string(f, r->profile);
        fputs(", \"value\": ", f);
        json_summary(f, r->s);
        fputs(", \"spread_pct\": ", f);
        json_number(f, zb_spread_pct(r->s));
        fprintf(f, ", \"unreliable\": %s}", r->s.n > 1 && zb_unreliable(r->s) ? "true" : "false");
    }
    fputs("\n  ],\n", f);
}

static void json_targets(FILE *f)
{
    fputs("  \"targets\": [", f);
    for (size_t i = 0; i < ntargets; i++) {
        target *t = &targets[i];
        settle_for_load(t);
        fputs(i ? ",\n    {\"scenario\": " : "\n    {\"scenario\": ", f);
        json_string(f, t->scenario);
        fputs(", \"profile\": ", f);
        json_string(f, t->profile);
        fputs(", \"target\": ", f);
        json_string(f, t->what);
        fputs(", \"goal\": ", f);
        json_number(f, t->goal);
        fputs(", \"goal_text\": ", f);
        json_string(f, t->goal_text);
        fputs(", \"ratio\": ", f);
        json_number(f, t->ratio);
        fputs(", \"ratio_best\": ", f);
        json_number(f, t->ratio_best);
        fputs(", \"verdict\": ", f);
        json_string(f, verdict_name(t->verdict));
        fputs(", \"noise_why\": ", f);
        if (t->noise_why[0])
            json_string(f, t->noise_why);
        else
            fputs("null", f);
        fputc('}', f);
    }
    fputs("\n  ],\n", f);
}

static void json_notes(FILE *f)
{
    fputs("  \"notes\": [", f);
    for (size_t i = 0; i < nnotes; i++) {
        fputs(i ? ",\n    {\"scenario\": " : "\n    {\"scenario\": ", f);
        json_string(f, notes[i].scenario);
        fputs(", \"profile\": ", f);
        json_string(f, notes[i].profile);
        fputs(", \"text\": ", f);
        json_string(f, notes[i].text);
        fputc('}', f);
    }
    fputs("\n  ]\n", f);
}

int zb_write_json(const char *path, const zb_options *opt, const char *command)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fputs("{\n  \"format\": \"zz-bench/1\",\n", f);
    json_options(f, opt, command);
    fputs("  \"machine\": ", f);
    zb_machine_json(f);
    size_t unreliable, total;
    zb_count_unreliable(&unreliable, &total);
    fputs(",\n  \"reliability\": ", f);
    zb_load_json(f, unreliable, total);
    fputs(",\n", f);
    json_columns(f);
    json_records(f);
    json_targets(f);
    json_notes(f);
    fputs("}\n", f);
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------- passing results on */

/* One line per entry of the current profile, fields separated by US (0x1f):
 * what a child process measured, for its parent to load (profile.c). */
#define SEP "\x1f"

static void dump_text(FILE *f, const char *text)
{
    for (; *text; text++)
        fputc(*text == '\n' || *text == '\x1f' ? ' ' : *text, f);
}

void zb_results_dump(FILE *f)
{
    for (size_t i = 0; i < nrecords; i++) {
        const record *r = &records[i];
        if (!current(r->profile))
            continue;
        fprintf(f, "R" SEP "%s" SEP "%s" SEP "%s" SEP "%.17g" SEP "%s" SEP "%s" SEP "%s" SEP
                   "%.17g" SEP "%.17g" SEP "%.17g" SEP "%.17g" SEP "%.17g" SEP "%d\n",
                r->scenario, r->table, r->row, r->x, r->column, r->metric, r->unit, r->s.median,
                r->s.min, r->s.max, r->s.q1, r->s.q3, r->s.n);
    }
    for (size_t i = 0; i < nnotes; i++) {
        if (!current(notes[i].profile))
            continue;
        fprintf(f, "N" SEP "%s" SEP, notes[i].scenario);
        dump_text(f, notes[i].text);
        fputc('\n', f);
    }
    for (size_t i = 0; i < ncolumns; i++)
        if (current(columns[i].profile))
            fprintf(f, "C" SEP "%s" SEP "%s" SEP "%s\n", columns[i].scenario, columns[i].column,
                    columns[i].description);
    for (size_t i = 0; i < ntargets; i++) {
        const target *t = &targets[i];
        if (current(t->profile))
            fprintf(f, "T" SEP "%s" SEP "%s" SEP "%s" SEP "%.17g" SEP "%.17g" SEP "%.17g" SEP "%d" SEP
                       "%s\n",
                    t->scenario, t->what, t->goal_text, t->ratio, t->ratio_best, t->goal,
                    (int)t->verdict, t->noise_why);
    }
    zb_load_dump(f);
}

/* Splits line at SEP into at most max fields; returns how many. */
static int split_fields(char *line, char **field, int max)
{
    int n = 0;
    for (char *p = line; n < max && p != NULL; n++) {
        field[n] = p;
        p = strchr(p, '\x1f');
        if (p != NULL)
            *p++ = '\0';
    }
    return n;
}

int zb_results_load(FILE *f)
{
    char line[1024];
    int entries = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *v[14];
        int n = split_fields(line, v, 14);
        if (n == 14 && strcmp(v[0], "R") == 0) {
            zb_summary sm = {.median = atof(v[8]), .min = atof(v[9]), .max = atof(v[10]),
                             .q1 = atof(v[11]), .q3 = atof(v[12]), .n = atoi(v[13])};
            zb_record(v[1], v[2], v[3], atof(v[4]), v[5], v[6], v[7], sm);
        } else if (n == 3 && strcmp(v[0], "N") == 0) {
            zb_note(v[1], "%s", v[2]);
        } else if (n == 3 && strcmp(v[0], "L") == 0) {
            zb_load_child_share(atof(v[1]), atof(v[2]));
        } else if (n == 4 && strcmp(v[0], "C") == 0) {
            zb_declare_column(v[1], v[2], v[3]);
        } else if (n == 9 && strcmp(v[0], "T") == 0) {
            if (ntargets == ZB_ARRAY_LEN(targets))
                continue; /* as zb_target does when full */
            target *t = &targets[ntargets++];
            copy_field(t->scenario, sizeof(t->scenario), v[1]);
            copy_field(t->what, sizeof(t->what), v[2]);
            copy_field(t->goal_text, sizeof(t->goal_text), v[3]);
            copy_field(t->profile, sizeof(t->profile), profile);
            t->ratio = atof(v[4]);
            t->ratio_best = atof(v[5]);
            t->goal = atof(v[6]);
            t->verdict = (zb_verdict)atoi(v[7]);
            copy_field(t->noise_why, sizeof(t->noise_why), v[8]);
        } else {
            return -1;
        }
        entries++;
    }
    return entries;
}

/* ------------------------------------------------------------------ plot */

/* Writes one gnuplot data block: "x median q1 q3 min max" of every record
 * matching (scenario, table, metric), one "index" per column, in column order. */
static int plot_block(FILE *g, const char *name, const char *scenario, const char *table,
                      const char *metric, char names[][48], int maxnames)
{
    int nnames = 0;
    for (size_t i = 0; i < nrecords; i++) {
        const record *r = &records[i];
        if (!current(r->profile) || strcmp(r->scenario, scenario) || strcmp(r->table, table) || strcmp(r->metric, metric))
            continue;
        int known = 0;
        for (int k = 0; k < nnames; k++)
            known |= strcmp(names[k], r->column) == 0;
        if (!known && nnames < maxnames)
            copy_field(names[nnames++], 48, r->column);
    }
    fprintf(g, "$%s << EOD\n", name);
    for (int k = 0; k < nnames; k++) {
        fprintf(g, "# %s\n", names[k]);
        for (size_t i = 0; i < nrecords; i++) {
            const record *r = &records[i];
            if (!current(r->profile) || strcmp(r->scenario, scenario) || strcmp(r->table, table) ||
                strcmp(r->metric, metric) || strcmp(r->column, names[k]))
                continue;
            if (r->x > 0 && r->s.median > 0)
                fprintf(g, "%.6g %.6g %.6g %.6g %.6g %.6g\n", r->x, r->s.median, r->s.q1, r->s.q3,
                        r->s.min, r->s.max);
        }
        fputs("\n\n", g);
    }
    fputs("EOD\n", g);
    return nnames;
}

/* A string for a single-quoted gnuplot literal ('' stands for '). */
static void gnuplot_quote(char *dst, size_t len, const char *src)
{
    size_t o = 0;
    for (; *src && o + 3 < len; src++) {
        if (*src == '\'')
            dst[o++] = '\'';
        dst[o++] = *src == '\n' ? ' ' : *src;
    }
    dst[o] = '\0';
}

/* The last point of a column's line, and the first x after it at which any
 * other column of the panel has a figure (0 when the line runs to the end). */
static int line_end(const char *scenario, const char *table, const char *metric, const char *column,
                    double *last_x, double *last_y, double *next_x)
{
    *last_x = *last_y = *next_x = 0;
    for (size_t i = 0; i < nrecords; i++) {
        const record *r = &records[i];
        if (!current(r->profile) || strcmp(r->scenario, scenario) || strcmp(r->table, table) || strcmp(r->metric, metric) ||
            strcmp(r->column, column) || !(r->x > 0 && r->s.median > 0))
            continue;
        if (r->x > *last_x)
            *last_x = r->x, *last_y = r->s.median;
    }
    for (size_t i = 0; i < nrecords; i++) {
        const record *r = &records[i];
        if (!current(r->profile) || strcmp(r->scenario, scenario) || strcmp(r->table, table) || strcmp(r->metric, metric) ||
            r->x <= *last_x)
            continue;
        if (*next_x == 0 || r->x < *next_x)
            *next_x = r->x;
    }
    return *last_x > 0;
}

/* Marks where each line stops short of the others, with the reason the
 * notes give (the note naming the column and the first size it lacks). */
static void plot_stop_labels(FILE *g, const char *scenario, const char *table, const char *metric,
                             char names[][48], int n)
{
    for (int k = 0; k < n; k++) {
        double x, y, next;
        if (!line_end(scenario, table, metric, names[k], &x, &y, &next) || next == 0)
            continue;
        char size[32], text[200], quoted[420];
        zb_format_size(size, sizeof(size), (size_t)next);
        const char *why = zb_find_note(names[k], size);
        /* the note reads "column, size: what failed: why"; quote from "what" */
        snprintf(text, sizeof(text), "%s stops before %s: %.100s", names[k], size,
                 why ? why + strcspn(why, ":") + (why[strcspn(why, ":")] ? 2 : 0) : "no figure (see the notes)");
        gnuplot_quote(quoted, sizeof(quoted), text);
        fprintf(g, "set label %d '%s' at %.6g,%.6g point pt 6 ps 3 lc rgb 'red' offset 1.5,-1 "
                   "font ',9' textcolor rgb 'red'\n",
                k + 1, quoted, x, y);
    }
}

/* Size ticks at the sizes we measure, labelled as people write them. */
static void plot_size_tics(FILE *g, double lo, double hi)
{
    fputs("set xtics (", g);
    int first = 1;
    for (double x = 16; x <= 512.0 * 1024 * 1024; x *= 4) {
        if (x < lo / 1.5 || x > hi * 1.5)
            continue;
        char label[32];
        zb_format_size(label, sizeof(label), (size_t)x);
        fprintf(g, "%s\"%s\" %.0f", first ? "" : ", ", label, x);
        first = 0;
    }
    fputs(")\n", g);
}

static void plot_range(const char *scenario, const char *table, double *lo, double *hi)
{
    *lo = 1e30;
    *hi = 0;
    for (size_t i = 0; i < nrecords; i++) {
        const record *r = &records[i];
        if (!current(r->profile) || strcmp(r->scenario, scenario) || strcmp(r->table, table) || r->x <= 0)
            continue;
        *lo = r->x < *lo ? r->x : *lo;
        *hi = r->x > *hi ? r->x : *hi;
    }
}

/* One panel: median lines, interquartile bars, and where lines stop. */
static void plot_panel(FILE *g, const char *block, const char *scenario, const char *table,
                       const char *metric, char names[][48], int n, const char *title,
                       const char *ylabel)
{
    for (int k = 0; k < n; k++) /* the previous panel's stop marks (label 99 stays) */
        fprintf(g, "unset label %d\n", k + 1);
    plot_stop_labels(g, scenario, table, metric, names, n);
    fprintf(g, "set title '%s'\nset ylabel '%s'\n", title, ylabel);
    fputs("plot ", g);
    for (int k = 0; k < n; k++)
        fprintf(g, "%s$%s index %d using 1:2:3:4 with yerrorlines lw 2 title '%s'", k ? ", " : "",
                block, k, names[k]);
    fputc('\n', g);
}

/* Which run and machine drew the plot, for its title and footnote. */
static void plot_provenance(FILE *g, const char *command, int quick, int panels)
{
    char date[64], title[400], quoted[820];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
    snprintf(title, sizeof(title), "zz-bench %s%s, commit %s, %s, %s", command, quick ? " --quick" : "",
             zb_build_commit(), date, zb_cpu_model());
    gnuplot_quote(quoted, sizeof(quoted), title);
    fprintf(g, "set multiplot layout %d,1 title '%s' font ',12'\n", panels, quoted);
    size_t unreliable, total;
    zb_count_unreliable(&unreliable, &total);
    /* the 1, 5 and 15 minute averages: the first three fields */
    const char *load = zb_loadavg_at_start();
    int load_len = 0;
    for (int spaces = 0; load[load_len] && (load[load_len] != ' ' || ++spaces < 3); load_len++)
        ;
    snprintf(title, sizeof(title),
             "Lines: medians. Bars: interquartile range (25th to 75th percentile) of the repetitions. "
             "Red circles: where a line stops, and why. %zu of %zu figures unreliable%s; load average "
             "at start (1, 5, 15 min) %.*s.",
             unreliable, total, zb_load_exceeded() ? " (load above the CPU count)" : "", load_len, load);
    gnuplot_quote(quoted, sizeof(quoted), title);
    fprintf(g, "set label 99 '%s' at screen 0.01,0.012 font ',9'\n", quoted);
}

int zb_write_plot(const char *path)
{
    return zb_write_plot_titled(path, "", 0);
}

/* Hands the script to gnuplot, and first to the file named by the
 * environment variable ZZ_BENCH_PLOT_SCRIPT if set (the tests read it). */
static int run_gnuplot(const char *script, size_t len, const char *path)
{
    const char *copy = getenv("ZZ_BENCH_PLOT_SCRIPT");
    if (copy && copy[0]) {
        FILE *f = fopen(copy, "w");
        if (!f || fwrite(script, 1, len, f) != len || fclose(f) != 0) {
            perror(copy);
            return -1;
        }
    }
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) {
        fprintf(stderr, "zz-bench: cannot run gnuplot for --plot\n");
        return -1;
    }
    fwrite(script, 1, len, g);
    int rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "zz-bench: gnuplot failed (status %d) while drawing %s\n", rc, path);
        return -1;
    }
    return 0;
}

int zb_write_plot_titled(const char *path, const char *command, int quick)
{
    char wipe_names[24][48], alloc_names[24][48];
    char *script = NULL;
    size_t script_len = 0;
    FILE *g = open_memstream(&script, &script_len);
    if (!g)
        return -1;
    int nw = plot_block(g, "wipe", "wipe", "aligned", "throughput", wipe_names, 24);
    int na = plot_block(g, "alloc", "alloc", "pair, 1 thread", "ns_per_pair", alloc_names, 24);
    int panels = (nw > 0) + (na > 0);
    if (panels == 0) {
        fclose(g);
        free(script);
        fprintf(stderr, "zz-bench: --plot: nothing to plot (run wipe or alloc)\n");
        return -1;
    }
    fprintf(g, "set terminal pngcairo size 1400,%d font 'sans,11' noenhanced\n", 160 + 560 * panels);
    fprintf(g, "set output '%s'\n", path);
    /* twelve distinct colours, so no two columns share one */
    static const char *const colours[] = {"#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442",
                                          "#0072b2", "#e51e10", "#000000", "#cc79a7", "#8b4513",
                                          "#808080", "#00ced1"};
    for (size_t k = 0; k < ZB_ARRAY_LEN(colours); k++)
        fprintf(g, "set linetype %zu lc rgb '%s' pt %zu\n", k + 1, colours[k], k % 7 + 1);
    fprintf(g, "set linetype cycle %zu\n", ZB_ARRAY_LEN(colours));
    fputs("set logscale xy\nset grid\nset key outside right top vertical\n"
          "set format y '%g'\nset lmargin 12\nset rmargin 24\nset bmargin 5\nset bars small\n",
          g);
    plot_provenance(g, command, quick, panels);
    double lo, hi;
    if (nw > 0) {
        plot_range("wipe", "aligned", &lo, &hi);
        plot_size_tics(g, lo, hi);
        fputs("set xlabel 'buffer size (page-aligned)'\n", g);
        plot_panel(g, "wipe", "wipe", "aligned", "throughput", wipe_names, nw,
                   "Wipe throughput (median), higher is better", "GB/s (1e9 bytes/s)");
    }
    if (na > 0) {
        plot_range("alloc", "pair, 1 thread", &lo, &hi);
        plot_size_tics(g, lo / 2, hi * 2);
        fputs("set xlabel 'block size'\n", g);
        plot_panel(g, "alloc", "alloc", "pair, 1 thread", "ns_per_pair", alloc_names, na,
                   "Allocation cost: alloc + touch + free, 1 thread (median), lower is better",
                   "ns per pair");
    }
    fputs("unset multiplot\n", g);
    if (fclose(g) != 0) {
        free(script);
        return -1;
    }
    int rc = run_gnuplot(script, script_len, path);
    free(script);
    return rc;
}

/* A timestamp for the report header. */
void zb_print_timestamp(FILE *out)
{
    time_t now = time(NULL);
    struct tm tm;
    char buf[64];
    gmtime_r(&now, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
    fprintf(out, "%s", buf);
}
