#!/usr/bin/env python3
"""Runs `zz-bench COMMAND --quick --json FILE` and checks the JSON it wrote.

Asserts that every expected column of each scenario is present with positive,
finite numbers (median, min, max and quartiles, min <= median <= max), that
the machine description is filled in (with the load average at the start and
at the end of the run), that each figure's "unreliable" flag follows the rule
(spread over the threshold, or the load above the CPU count), that a NOISE
target says why, and, with --plot, that a PNG was drawn.  In the Markdown
report it checks that each scenario prints a legend naming its expected
columns, that every "failed" cell points to a footnote giving its reason,
that a table with a marked (unreliable) cell explains the mark, and that the
report ends with its Reliability section.
Exit status 0 on success; 1 with one line per problem otherwise.

--self-test feeds the checker broken results and fails unless it rejects
every one of them (so a checker that accepts anything cannot pass).
"""
import argparse
import copy
import json
import math
import os
import re
import subprocess
import sys

MARK = "\u2020"  # the unreliable mark of a cell

# Metrics that each scenario must report for each of its columns.
REQUIRED_METRICS = {
    "wipe": [("aligned", "throughput"), ("aligned", "ns_per_call"),
             ("misaligned", "throughput"), ("misaligned", "ns_per_call")],
    "alloc": [("pair, 1 thread", "ns_per_pair"), ("pair, 2 threads", "ns_per_pair"),
              ("pair, 4 threads", "ns_per_pair"), ("pair, 4 threads", "aggregate_ns_per_pair"),
              ("live batch", "ns_per_block"), ("memory", "vmas_per_block"),
              ("first burst", "ns_per_block"), ("first burst", "kernel_ns_per_block")],
}
# The alloc columns the unprivileged profile must have (zz-bench alloc
# --unprivileged, and all): the ones its targets rest on.  The secure heaps
# may fail there (their pools do not fit in 8 MiB of locked memory).
UNPRIVILEGED_ALLOC = ["zz_alloc", "zz_arena", "malloc_bzero", "malloc"]
# Issue 18's scaling target, graded in the unprivileged profile only.
UNPRIVILEGED_TARGET = "wall time / all pairs relative to the 1-thread pair"
PROFILES = ("privileged", "unprivileged")
# Scale figures that must be positive (others, e.g. VMAs per block, may be 0).
SCALE_POSITIVE = {
    "zz_alloc": ["live_blocks", "ns_per_alloc"],
    "zz_alloc_mprotect_guards": ["live_blocks", "ns_per_alloc"],
    "sodium_malloc": ["live_blocks", "ns_per_alloc", "vmas_per_block"],
    "zz_arena": ["live_secrets", "ns_per_alloc", "locked_bytes_per_secret"],
    "zz_purge": ["ms"],
    "zz_wipe_loop": ["ms"],
}
# Figures that are legitimately zero (e.g. a VMA count per block that does
# not grow); for these only "finite and >= 0" is required.
MAY_BE_ZERO = {"vmas_per_block", "vmlck_bytes_per_block", "rss_bytes_per_block",
               "syscalls_per_pair", "syscalls_per_batch_block", "mapped_bytes_per_block",
               "vmas_used", "vmlck_bytes_per_secret", "rss_bytes_per_secret"}


def check_summary(where, metric, value, problems):
    keys = ("median", "min", "max", "q1", "q3")
    for k in keys:
        v = value.get(k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            problems.append(f"{where}: {k} is not a finite number: {v!r}")
            return
        if metric in MAY_BE_ZERO:
            if v < 0 and metric not in ("vmas_per_block", "vmas_used"):
                problems.append(f"{where}: {k} is negative: {v}")
        elif v <= 0:
            problems.append(f"{where}: {k} is not positive: {v}")
    if not value["min"] <= value["median"] <= value["max"]:
        problems.append(f"{where}: median outside [min, max]")
    if not isinstance(value.get("reps"), int) or value["reps"] < 1:
        problems.append(f"{where}: reps missing or < 1")


def spread_pct(value):
    if value.get("reps", 1) <= 1 or not value.get("median"):
        return 0.0
    med = value["median"]
    return max(value["max"] - med, med - value["min"]) / abs(med) * 100.0


def check_reliability(results, problems):
    """The load at start and end, and the unreliable flags, follow the rule."""
    rel = results.get("reliability")
    if not isinstance(rel, dict):
        problems.append("missing reliability object")
        return
    for when in ("at_start", "at_end"):
        sample = rel.get(when)
        if not isinstance(sample, dict) or not sample.get("loadavg") \
                or not isinstance(sample.get("load1"), (int, float)):
            problems.append(f"reliability.{when}: load average missing")
    threshold = rel.get("spread_threshold_pct")
    if not isinstance(threshold, (int, float)) or threshold <= 0:
        problems.append("reliability.spread_threshold_pct missing")
        return
    loaded = rel.get("load_exceeded_cpus")
    if not isinstance(loaded, bool):
        problems.append("reliability.load_exceeded_cpus missing")
        return
    flagged = 0
    for f in results["figures"]:
        value = f.get("value", {})
        if "unreliable" not in f:
            problems.append(f"{f.get('scenario')}/{f.get('column')}: no unreliable flag")
            continue
        try:
            want = value.get("reps", 1) > 1 and (spread_pct(value) > threshold or loaded)
        except (TypeError, KeyError):
            continue  # check_summary reports the bad numbers
        if f["unreliable"] != want:
            problems.append(f"{f.get('scenario')}/{f.get('table')}/{f.get('row')}/{f.get('column')}/"
                            f"{f.get('metric')}: unreliable is {f['unreliable']}, the rule says {want}")
        flagged += bool(f["unreliable"])
    if rel.get("unreliable_figures") != flagged:
        problems.append(f"reliability.unreliable_figures is {rel.get('unreliable_figures')}, "
                        f"{flagged} figures are flagged")
    for t in results["targets"]:
        if t.get("verdict") == "NOISE" and not t.get("noise_why"):
            problems.append(f"target {t.get('target')!r} says NOISE without saying why")
        if loaded and t.get("verdict") in ("PASS", "FAIL"):
            problems.append(f"target {t.get('target')!r} says {t['verdict']} under a load above the CPUs")


def table_blocks(markdown):
    """Yields (table lines, the text after the table up to the next heading)."""
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        end = i
        while end < len(lines) and not lines[end].startswith(("#", "|")):
            end += 1
        yield lines[start:i], "\n".join(lines[i:end])


def check_markdown(markdown, expect, problems):
    """Legend per scenario, reasons for failed cells, the mark explained."""
    for scenario, columns in expect.items():
        m = re.search(rf"^## {scenario}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
        if not m:
            problems.append(f"markdown: no section for {scenario}")
            continue
        section = m.group(1)
        legend = re.search(r"^Legend.*?\n\n((?:- .*\n)+)", section, re.M)
        if not legend:
            problems.append(f"markdown: {scenario} has no legend")
            continue
        for column in columns:
            if not re.search(rf"^- `{re.escape(column)}`: \S", legend.group(1), re.M):
                problems.append(f"markdown: {scenario} legend lacks {column!r}")
    for rows, after in table_blocks(markdown):
        cells = [c.strip() for r in rows[2:] for c in r.strip("|").split("|")]
        for cell in cells:
            if cell == "failed":
                problems.append("markdown: a failed cell gives no reason")
            m = re.fullmatch(r"failed \[(\d+)\]", cell)
            if m and not re.search(rf"^\[{m.group(1)}\] \S", after, re.M):
                problems.append(f"markdown: footnote [{m.group(1)}] of a failed cell is missing")
        if any(MARK in c for c in cells) and f"{MARK} unreliable:" not in after:
            problems.append("markdown: a table marks cells unreliable without the footnote")
    if not re.search(r"^## Reliability\n\n- load average at start.*\n- load average at end", markdown, re.M):
        problems.append("markdown: no Reliability section with the load at start and at end")


def check_profiles(results, profiles, problems):
    """Every entry names a profile that was run; the unprivileged alloc run
    has its columns and its scaling target."""
    for key in ("figures", "targets", "notes", "columns"):
        for entry in results[key]:
            if entry.get("profile") not in profiles:
                problems.append(f"{key}: an entry has profile {entry.get('profile')!r}, "
                                f"not one of {', '.join(profiles)}")
                break
    if "unprivileged" not in profiles:
        return
    mine = [f for f in results["figures"] if f.get("profile") == "unprivileged" and f["scenario"] == "alloc"]
    for column in UNPRIVILEGED_ALLOC:
        have = {(f["table"], f["metric"]) for f in mine if f["column"] == column}
        for need in REQUIRED_METRICS["alloc"]:
            if need not in have:
                problems.append(f"unprivileged alloc: column {column!r} lacks {need}")
    if not any(t.get("profile") == "unprivileged" and UNPRIVILEGED_TARGET in t.get("target", "")
               for t in results["targets"]):
        problems.append("unprivileged alloc: no 2-thread wall time scaling target")


def check(results, expect, problems, markdown=None, profiles=("privileged",)):
    for key in ("machine", "figures", "columns", "targets", "notes"):
        if key not in results:
            problems.append(f"missing top-level key {key!r}")
            return
    check_profiles(results, profiles, problems)
    if "privileged" not in profiles:
        expect = {k: v for k, v in expect.items() if k != "alloc"}
    # the expected columns below are the privileged profile's (as started)
    scoped = [f for f in results["figures"] if f.get("profile") == "privileged"]
    scoped_columns = [c for c in results["columns"] if c.get("profile") == "privileged"]
    machine = results["machine"]
    for key in ("cpu", "kernel", "libc", "zeroize", "rlimit_memlock", "vm_max_map_count", "cores",
                "loadavg_at_start", "loadavg_at_end", "commit"):
        if not machine.get(key):
            problems.append(f"machine.{key} is empty")
    figures = results["figures"]
    for f in figures:
        check_summary(f"{f.get('scenario')}/{f.get('table')}/{f.get('row')}/{f.get('column')}/"
                      f"{f.get('metric')}", f.get("metric"), f.get("value", {}), problems)
    check_reliability(results, problems)
    if markdown is not None:
        check_markdown(markdown, expect, problems)
    declared = {(c["scenario"], c["column"]) for c in scoped_columns}
    for scenario, columns in expect.items():
        for column in columns:
            if (scenario, column) not in declared:
                problems.append(f"{scenario}: column {column!r} not declared")
            mine = [f for f in scoped if f["scenario"] == scenario and f["column"] == column]
            if not mine:
                problems.append(f"{scenario}: no figures for column {column!r}")
                continue
            if scenario in REQUIRED_METRICS:
                have = {(f["table"], f["metric"]) for f in mine}
                for need in REQUIRED_METRICS[scenario]:
                    if need not in have:
                        problems.append(f"{scenario}: column {column!r} lacks {need}")
            if scenario == "scale":
                for metric in SCALE_POSITIVE.get(column, []):
                    vals = [f["value"]["median"] for f in mine if f["metric"] == metric]
                    if not vals or not all(v > 0 for v in vals):
                        problems.append(f"scale: {column!r} {metric} missing or not positive")
    for t in results["targets"]:
        if t.get("verdict") not in ("PASS", "FAIL", "NOISE", "n/a"):
            problems.append(f"target {t.get('target')!r} has verdict {t.get('verdict')!r}")


def check_plot_script(script, problems, stops=None):
    """The plot says which run made it, shows the spread, and marks stops."""
    if "with yerrorlines" not in script:
        problems.append("plot: no error bars (yerrorlines)")
    title = re.search(r"^set multiplot .*title '([^']*)'", script, re.M)
    if not title or not re.search(r"commit \S+, \d{4}-\d\d-\d\d \d\d:\d\d UTC, \S", title.group(1)):
        problems.append("plot: the title does not name the commit, the date and the CPU")
    if "interquartile range" not in script:
        problems.append("plot: the footnote does not say what the bars are")
    labels = re.findall(r"^set label \d+ '([^']*stops before[^']*)'", script, re.M)
    if stops is None:  # a real run: whatever stopped is marked, if anything
        return
    for want in stops:
        if not any(want in label for label in labels):
            problems.append(f"plot: no mark saying {want!r}")
    if len(labels) != len(stops):
        problems.append(f"plot: {len(labels)} stop marks, expected {len(stops)}: {labels}")


def plot_test(bench, out_dir):
    """zz-bench _selftest plot draws made-up figures where one line stops early."""
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "plot-test.png")
    script = os.path.join(out_dir, "plot-test.gp")
    for stale in (png, script):
        if os.path.exists(stale):
            os.remove(stale)
    env = dict(os.environ, ZZ_BENCH_PLOT_SCRIPT=script)
    run = subprocess.run([bench, "_selftest", "plot", png], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    problems = []
    if run.returncode != 0:
        problems.append(f"_selftest plot exited with {run.returncode}: {run.stderr.strip()}")
    else:
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                problems.append(f"{png} is not a PNG file")
        with open(script) as f:
            check_plot_script(f.read(), problems,
                              stops=["short_line stops before 4 KiB: alloc+free pair failed: "
                                     "made-up reason for the test"])
    for p in problems:
        print("FAIL:", p)
    if not problems:
        print(f"OK: {png}: stop marked with its reason, error bars, commit/date/CPU in the title")
    return 1 if problems else 0


def parse_expect(args):
    expect = {}
    for scenario in ("wipe", "alloc", "scale", "shield"):
        value = getattr(args, f"expect_{scenario}")
        if value:
            expect[scenario] = [c for c in value.split(",") if c]
    return expect


def self_test():
    """The checker must reject each of these corruptions of a valid result."""
    good_value = {"median": 2.0, "min": 1.0, "max": 3.0, "q1": 1.5, "q3": 2.5, "reps": 3}
    good = {
        "machine": {"cpu": "x", "kernel": "k", "libc": "glibc", "zeroize": "0.1.0",
                    "rlimit_memlock": "8", "vm_max_map_count": 65530, "cores": 2,
                    "loadavg_at_start": "0.5 0.4 0.3 1/100 7", "loadavg_at_end": "0.6 0.4 0.3 1/100 9",
                    "commit": "abc123"},
        "reliability": {"at_start": {"loadavg": "0.5 0.4 0.3 1/100 7", "load1": 0.5},
                        "at_end": {"loadavg": "0.6 0.4 0.3 1/100 9", "load1": 0.6},
                        "load_exceeded_cpus": False, "spread_threshold_pct": 50,
                        "unreliable_figures": 0},
        "columns": [{"scenario": "wipe", "column": "zz_wipe", "description": "", "profile": "privileged"}],
        "figures": [{"scenario": "wipe", "table": t, "row": "16 B", "x": 16, "column": "zz_wipe",
                     "metric": m, "unit": "", "value": dict(good_value), "unreliable": False,
                     "profile": "privileged"}
                    for t, m in REQUIRED_METRICS["wipe"]],
        "targets": [{"target": "t", "verdict": "NOISE", "noise_why": "IQR allows goal",
                     "profile": "privileged"}],
        "notes": [],
    }
    good_md = ("## wipe\n\n| size | zz_wipe |\n| :--- | ---: |\n| 16 B | failed [1] |\n"
               "| 32 B | 2.0 ±60% \u2020 |\n\n[1] zz_wipe, 16 B: the library is not installed\n\n"
               "\u2020 unreliable: the spread is over 50%.\n\n"
               "Legend (the names in the tables' headers and first columns):\n\n"
               "- `zz_wipe`: zz_wipe() from this library\n\n"
               "## Reliability\n\n- load average at start: 0.5\n- load average at end: 0.6\n")
    expect = {"wipe": ["zz_wipe"]}
    problems = []
    check(good, expect, problems, good_md)
    if problems:
        print("self-test: a valid result was rejected:", problems)
        return 1
    corruptions = {
        "missing column": lambda r: r["figures"].clear(),
        "zero median": lambda r: r["figures"][0]["value"].update(median=0.0),
        "negative min": lambda r: r["figures"][0]["value"].update(min=-1.0),
        "null max": lambda r: r["figures"][0]["value"].update(max=None),
        "median above max": lambda r: r["figures"][0]["value"].update(median=9.0),
        "missing metric": lambda r: r["figures"].pop(),
        "undeclared column": lambda r: r["columns"].clear(),
        "empty machine": lambda r: r["machine"].update(cpu=""),
        "no figures key": lambda r: r.pop("figures"),
        "no load at start": lambda r: r["machine"].update(loadavg_at_start=""),
        "no load sample at start": lambda r: r["reliability"].pop("at_start"),
        "no reliability": lambda r: r.pop("reliability"),
        "wide spread not flagged": lambda r: r["figures"][0]["value"].update(min=0.5, q1=0.6),
        "narrow spread flagged": lambda r: (r["figures"][0].update(unreliable=True),
                                            r["reliability"].update(unreliable_figures=1)),
        "load above CPUs, figures not flagged": lambda r: r["reliability"].update(load_exceeded_cpus=True),
        "NOISE without a reason": lambda r: r["targets"][0].update(noise_why=None),
        "figure without a profile": lambda r: r["figures"][0].pop("profile"),
        "target of a profile not run": lambda r: r["targets"][0].update(profile="unprivileged"),
    }
    md_corruptions = {
        "no legend": lambda m: m.replace("Legend", "Remarks"),
        "legend lacks a column": lambda m: m.replace("- `zz_wipe`", "- `memset`"),
        "failed cell without reason": lambda m: m.replace("failed [1]", "failed"),
        "footnote of a failed cell missing": lambda m: m.replace("[1] zz_wipe", "zz_wipe"),
        "mark without footnote": lambda m: m.replace("\u2020 unreliable:", "unreliable:"),
        "no load at end": lambda m: m.replace("- load average at end: 0.6\n", ""),
    }
    failed = 0
    for name, corrupt in corruptions.items():
        bad = copy.deepcopy(good)
        corrupt(bad)
        problems = []
        check(bad, expect, problems, good_md)
        if not problems:
            print(f"self-test: corruption {name!r} was accepted")
            failed = 1
    for name, corrupt in md_corruptions.items():
        problems = []
        check(copy.deepcopy(good), expect, problems, corrupt(good_md))
        if not problems:
            print(f"self-test: markdown corruption {name!r} was accepted")
            failed = 1
    # a run that asked for the unprivileged profile must hold its alloc figures
    problems = []
    check(copy.deepcopy(good), expect, problems, good_md, profiles=PROFILES)
    if not any("unprivileged alloc" in p for p in problems):
        print("self-test: a run without its unprivileged alloc figures was accepted")
        failed = 1
    total = len(corruptions) + len(md_corruptions) + 1
    print("self-test:", "FAILED" if failed else f"all {total} corruptions rejected")
    return failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench")
    ap.add_argument("--command", default="all")
    ap.add_argument("--out-dir", default=".")
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("--json", help="check this file instead of running zz-bench")
    ap.add_argument("--expect-wipe")
    ap.add_argument("--expect-alloc")
    ap.add_argument("--expect-scale")
    ap.add_argument("--unprivileged", action="store_true",
                    help="run COMMAND --unprivileged (alloc: the unprivileged profile only)")
    ap.add_argument("--expect-shield")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--plot-test", action="store_true",
                    help="check the plot's marks on made-up figures (zz-bench _selftest plot)")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.plot_test:
        return plot_test(args.bench, args.out_dir)
    expect = parse_expect(args)
    json_path = args.json
    png = None
    markdown = None
    if not json_path:
        os.makedirs(args.out_dir, exist_ok=True)
        stem = args.command + ("-unprivileged" if args.unprivileged else "")
        json_path = os.path.join(args.out_dir, f"{stem}.json")
        cmd = [args.bench, args.command, "--quick", "--json", json_path]
        if args.unprivileged:
            cmd.append("--unprivileged")
        if args.plot:
            png = os.path.join(args.out_dir, f"{stem}.png")
            cmd += ["--plot", png]
        script = png + ".gp" if png else None
        for stale in (json_path, png, script):
            if stale and os.path.exists(stale):
                os.remove(stale)
        env = dict(os.environ, ZZ_BENCH_PLOT_SCRIPT=script) if script else None
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        markdown = run.stdout
        sys.stdout.write(run.stdout)
        sys.stderr.write(run.stderr)
        if run.returncode != 0:
            print(f"FAIL: {' '.join(cmd)} exited with {run.returncode}")
            return 1
        if "FATAL" in run.stderr:
            print("FAIL: zz-bench reported a FATAL check")
            return 1
    with open(json_path) as f:
        results = json.load(f)
    if args.unprivileged:
        profiles = ("unprivileged",)
    elif args.command in ("all",):
        profiles = PROFILES
    else:
        profiles = ("privileged",)
    problems = []
    check(results, expect, problems, markdown, profiles)
    if png is not None:
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                problems.append(f"{png} is not a PNG file")
        with open(png + ".gp") as f:
            script_text = f.read()
        check_plot_script(script_text, problems)
    for p in problems:
        print("FAIL:", p)
    if not problems:
        n = len(results["figures"])
        print(f"OK: {json_path}: {n} figures, all expected columns present and positive")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
