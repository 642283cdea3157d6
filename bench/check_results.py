#!/usr/bin/env python3
"""Runs `zz-bench COMMAND --quick --json FILE` and checks the JSON it wrote.

Asserts that every expected column of each scenario is present with positive,
finite numbers (median, min, max and quartiles, min <= median <= max), that
the machine description is filled in, and, with --plot, that a PNG was drawn.
Exit status 0 on success; 1 with one line per problem otherwise.

--self-test feeds the checker broken results and fails unless it rejects
every one of them (so a checker that accepts anything cannot pass).
"""
import argparse
import copy
import json
import math
import os
import subprocess
import sys

# Metrics that each scenario must report for each of its columns.
REQUIRED_METRICS = {
    "wipe": [("aligned", "throughput"), ("aligned", "ns_per_call"),
             ("misaligned", "throughput"), ("misaligned", "ns_per_call")],
    "alloc": [("pair, 1 thread", "ns_per_pair"), ("pair, 2 threads", "ns_per_pair"),
              ("pair, 4 threads", "ns_per_pair"), ("pair, 4 threads", "aggregate_ns_per_pair"),
              ("live batch", "ns_per_block"), ("memory", "vmas_per_block"),
              ("first burst", "ns_per_block"), ("first burst", "kernel_ns_per_block")],
}
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


def check(results, expect, problems):
    for key in ("machine", "figures", "columns", "targets", "notes"):
        if key not in results:
            problems.append(f"missing top-level key {key!r}")
            return
    machine = results["machine"]
    for key in ("cpu", "kernel", "libc", "zeroize", "rlimit_memlock", "vm_max_map_count", "cores"):
        if not machine.get(key):
            problems.append(f"machine.{key} is empty")
    figures = results["figures"]
    for f in figures:
        check_summary(f"{f.get('scenario')}/{f.get('table')}/{f.get('row')}/{f.get('column')}/"
                      f"{f.get('metric')}", f.get("metric"), f.get("value", {}), problems)
    declared = {(c["scenario"], c["column"]) for c in results["columns"]}
    for scenario, columns in expect.items():
        for column in columns:
            if (scenario, column) not in declared:
                problems.append(f"{scenario}: column {column!r} not declared")
            mine = [f for f in figures if f["scenario"] == scenario and f["column"] == column]
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


def parse_expect(args):
    expect = {}
    for scenario in ("wipe", "alloc", "scale"):
        value = getattr(args, f"expect_{scenario}")
        if value:
            expect[scenario] = [c for c in value.split(",") if c]
    return expect


def self_test():
    """The checker must reject each of these corruptions of a valid result."""
    good_value = {"median": 2.0, "min": 1.0, "max": 3.0, "q1": 1.5, "q3": 2.5, "reps": 3}
    good = {
        "machine": {"cpu": "x", "kernel": "k", "libc": "glibc", "zeroize": "0.1.0",
                    "rlimit_memlock": "8", "vm_max_map_count": 65530, "cores": 2},
        "columns": [{"scenario": "wipe", "column": "zz_wipe", "description": ""}],
        "figures": [{"scenario": "wipe", "table": t, "row": "16 B", "x": 16, "column": "zz_wipe",
                     "metric": m, "unit": "", "value": dict(good_value)}
                    for t, m in REQUIRED_METRICS["wipe"]],
        "targets": [], "notes": [],
    }
    expect = {"wipe": ["zz_wipe"]}
    problems = []
    check(good, expect, problems)
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
    }
    failed = 0
    for name, corrupt in corruptions.items():
        bad = copy.deepcopy(good)
        corrupt(bad)
        problems = []
        check(bad, expect, problems)
        if not problems:
            print(f"self-test: corruption {name!r} was accepted")
            failed = 1
    print("self-test:", "FAILED" if failed else f"all {len(corruptions)} corruptions rejected")
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
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    expect = parse_expect(args)
    json_path = args.json
    png = None
    if not json_path:
        os.makedirs(args.out_dir, exist_ok=True)
        json_path = os.path.join(args.out_dir, f"{args.command}.json")
        cmd = [args.bench, args.command, "--quick", "--json", json_path]
        if args.plot:
            png = os.path.join(args.out_dir, f"{args.command}.png")
            cmd += ["--plot", png]
        for stale in (json_path, png):
            if stale and os.path.exists(stale):
                os.remove(stale)
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    problems = []
    check(results, expect, problems)
    if png is not None:
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                problems.append(f"{png} is not a PNG file")
    for p in problems:
        print("FAIL:", p)
    if not problems:
        n = len(results["figures"])
        print(f"OK: {json_path}: {n} figures, all expected columns present and positive")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
