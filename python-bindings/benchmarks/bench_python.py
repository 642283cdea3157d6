#!/usr/bin/python3
"""Benchmark the zeroize Python bindings against their baselines.

Run after installing the package, with Debian's interpreter:

    /usr/bin/python3 python-bindings/benchmarks/bench_python.py [--rounds N] [--json FILE]

(or the venv's python).  Cases run round-robin (one batch of each per
round, so drifting machine load hits them all alike); each figure is the
median over the rounds of the per-call time, and each ratio the median over
the rounds of that round's ratio (two cases measured moments apart).

Compared:
  * zeroize1 on 1 MiB (bytearray, numpy uint8) vs a per-byte volatile loop
    written in C inside the same extension (_volatile_loop_wipe): the same
    call path, only the loop differs.            target: >= 10x faster
  * zeroize1 on 1 MiB vs zz_wipe called from C in a tight loop
    (_wipe_c_loop): the cost of the Python layer.  target: <= 1.2x
  * SecureBuffer(32) + close() vs bytearray(32) + zeroize1().
                                                  target: <= 1.2x (issue 18)
  * Arena.buffer(32) + close() vs SecureBuffer(32) + close(), side by side
    in the same process (one growable Arena holding 1,000 other live
    buffers, as a service with many keys would).   target: <= 1.5x

Two profiles (--profile, default both): "privileged", the process as it
was started, and "unprivileged", the same cases in a child process that runs
as a normal user would: RLIMIT_MEMLOCK 8 MiB, and, when started as root, uid
and gid 65534 (which drops CAP_IPC_LOCK with every other capability).  A
non-root start that holds CAP_IPC_LOCK cannot drop it from Python: the child
then refuses to run (run it under `setpriv --inh-caps=-ipc_lock ...`).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def _import_zeroize():
    """Import the installed package; with /usr/bin/python3, also look in
    the virtual environment run_tests.sh builds ($ZZ_VENV, else
    python-bindings/.venv)."""
    try:
        import zeroize
        return zeroize
    except ImportError:
        default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               ".venv")
        venv = os.environ.get("ZZ_VENV", default)
        ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        sys.path.insert(0, os.path.join(venv, "lib", ver, "site-packages"))
        import zeroize
        return zeroize


zeroize = _import_zeroize()
from zeroize import Arena, SecureBuffer, _zeroize, zeroize1  # noqa: E402

MIB = 1 << 20


def per_call(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def make_cases():
    ba = bytearray(MIB)
    arr = np.ones(MIB, dtype=np.uint8)
    ba_loop = bytearray(MIB)
    arr_loop = np.ones(MIB, dtype=np.uint8)
    small = bytearray(32)

    def secure_cycle():
        SecureBuffer(32).close()

    arena = Arena()
    neighbours = [arena.buffer(32) for _ in range(1000)]   # noqa: F841 (kept alive)

    def arena_cycle():
        arena.buffer(32).close()

    def bytearray_cycle():
        zeroize1(bytearray(32))

    # name -> (callable returning seconds per call, calls per batch)
    return {
        "zeroize1 bytearray 1 MiB": (lambda n: per_call(lambda: zeroize1(ba), n), 200),
        "zeroize1 numpy 1 MiB": (lambda n: per_call(lambda: zeroize1(arr), n), 200),
        "volatile loop bytearray 1 MiB": (
            lambda n: per_call(lambda: _zeroize._volatile_loop_wipe(ba_loop), n), 5),
        "volatile loop numpy 1 MiB": (
            lambda n: per_call(lambda: _zeroize._volatile_loop_wipe(arr_loop), n), 5),
        "zz_wipe from C 1 MiB": (lambda n: _zeroize._wipe_c_loop(MIB, n) / n, 200),
        "SecureBuffer(32)+close()": (lambda n: per_call(secure_cycle, n), 20000),
        "Arena.buffer(32)+close()": (lambda n: per_call(arena_cycle, n), 20000),
        "bytearray(32)+zeroize1()": (lambda n: per_call(bytearray_cycle, n), 20000),
        "zeroize1 bytearray 32 B": (lambda n: per_call(lambda: zeroize1(small), n), 20000),
    }


def run(rounds):
    cases = make_cases()
    samples = {name: [] for name in cases}
    for name, (fn, number) in cases.items():        # warm-up round
        fn(max(1, number // 10))
    for _ in range(rounds):
        for name, (fn, number) in cases.items():
            samples[name].append(fn(number))
    return ({name: statistics.median(v) for name, v in samples.items()},
            {name: min(v) for name, v in samples.items()}, samples)


def fmt_time(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e9:.0f} ns"


UNPRIVILEGED_MEMLOCK = 8 << 20
NOBODY = 65534
CAP_IPC_LOCK = 14


def has_ipc_lock():
    """CAP_IPC_LOCK in this process's effective set (/proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << CAP_IPC_LOCK))
    return False


def become_unprivileged():
    """In the child, before exec: the lock limit of a normal login, then no
    root (setuid from root clears every capability set)."""
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (UNPRIVILEGED_MEMLOCK, UNPRIVILEGED_MEMLOCK))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def describe_profile(name):
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft >> 20} MiB"
    return (f"{name}: uid {os.geteuid()}, "
            f"{'with' if has_ipc_lock() else 'without'} CAP_IPC_LOCK, RLIMIT_MEMLOCK {limit}")


def measure(rounds, profile):
    med, best, samples = run(rounds)
    def ratio(a, b, d=None):
        if d is not None:                      # bests: fastest round of each
            return d[a] / d[b]
        return statistics.median(x / y for x, y in zip(samples[a], samples[b]))

    spec = [
        ("volatile loop / zeroize1 (bytearray)",
         "volatile loop bytearray 1 MiB", "zeroize1 bytearray 1 MiB", ">= 10", 10, True),
        ("volatile loop / zeroize1 (numpy)",
         "volatile loop numpy 1 MiB", "zeroize1 numpy 1 MiB", ">= 10", 10, True),
        ("zeroize1 (bytearray) / zz_wipe from C",
         "zeroize1 bytearray 1 MiB", "zz_wipe from C 1 MiB", "<= 1.2", 1.2, False),
        ("zeroize1 (numpy) / zz_wipe from C",
         "zeroize1 numpy 1 MiB", "zz_wipe from C 1 MiB", "<= 1.2", 1.2, False),
        ("SecureBuffer(32)+close / bytearray(32)+zeroize1",
         "SecureBuffer(32)+close()", "bytearray(32)+zeroize1()", "<= 1.2", 1.2, False),
        ("Arena.buffer(32)+close / SecureBuffer(32)+close",
         "Arena.buffer(32)+close()", "SecureBuffer(32)+close()", "<= 1.5", 1.5, False),
    ]
    results = []
    for name, a, b, target, bound, at_least in spec:
        value = ratio(a, b)
        results.append(dict(ratio=name, value=value, value_best=ratio(a, b, best), target=target,
                            met=value >= bound if at_least else value <= bound))
    return dict(profile=profile, description=describe_profile(profile), median_seconds=med,
                best_seconds=best, samples_seconds=samples, ratios=results)


def run_unprivileged_child(rounds):
    """This script again, measuring in a child process that gave up the
    privileges; its results come back as JSON on its stdout."""
    if os.geteuid() != 0 and has_ipc_lock():
        raise SystemExit("bench_python: this non-root process holds CAP_IPC_LOCK, which Python "
                         "cannot drop: run it under setpriv --inh-caps=-ipc_lock "
                         "--ambient-caps=-ipc_lock --bounding-set=-ipc_lock")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rounds", str(rounds),
                          "--profile", "_child"], stdout=subprocess.PIPE, check=True,
                         preexec_fn=become_unprivileged, cwd="/")
    return json.loads(out.stdout)


def print_profile(result, rounds):
    gib = MIB / (1 << 30)
    med, best = result["median_seconds"], result["best_seconds"]
    print(f"### {result['description']}\n")
    print("| case | median per call | best per call | throughput (median) |")
    print("|---|---:|---:|---:|")
    for name, t in med.items():
        thr = f"{gib / t:.1f} GiB/s" if "1 MiB" in name else ""
        print(f"| {name} | {fmt_time(t)} | {fmt_time(best[name])} | {thr} |")
    print("\n| ratio | profile | median of per-round ratios | bests | target | met (median) |")
    print("|---|---|---:|---:|---:|:---:|")
    for r in result["ratios"]:
        print(f"| {r['ratio']} | {result['profile']} | {r['value']:.2f}x | {r['value_best']:.2f}x | "
              f"{r['target']} | {'yes' if r['met'] else 'NO'} |")
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="round-robin rounds (default 9)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--profile", choices=("both", "privileged", "unprivileged", "_child"),
                    default="both", help="privileged (as started), unprivileged (a child with "
                    "an 8 MiB lock limit, as uid 65534 when started as root), or both (default)")
    args = ap.parse_args(argv)

    if args.profile == "_child":     # the unprivileged child: JSON on stdout
        if has_ipc_lock() or resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] != UNPRIVILEGED_MEMLOCK:
            raise SystemExit("bench_python: the unprivileged child still holds CAP_IPC_LOCK "
                             "or another lock limit")
        json.dump(measure(args.rounds, "unprivileged"), sys.stdout)
        return 0

    profiles = []
    if args.profile in ("both", "privileged"):
        profiles.append(measure(args.rounds, "privileged"))
    if args.profile in ("both", "unprivileged"):
        profiles.append(run_unprivileged_child(args.rounds))

    print(f"zeroize {zeroize.__version__} (libzeroize {_zeroize.LIBRARY_VERSION}), "
          f"Python {platform.python_version()}, {platform.machine()}, "
          f"median of {args.rounds} round-robin rounds\n")
    for result in profiles:
        print_profile(result, args.rounds)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(python=platform.python_version(), rounds=args.rounds,
                           profiles=profiles), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
