#!/usr/bin/python3
"""Checks the generated manual pages (tools/gen_man.py) against the header.

  check_man.py --man DIR --header zeroize.h [--header zeroize_shield.h]
               [--tools zz-bench,zz-ct]
  check_man.py --self-test --work DIR --header zeroize.h

- Every ZZ_EXPORT function of the headers (found by a plain regular
  expression over each whole file, not by the generator's reading of its
  sections) is in the SYNOPSIS of exactly one family page of man3, under
  its own header's #include, and has a page of its own name (the family
  page, or one that sources it), and the family pages list no function the
  headers lack.
- zeroize(7) and each named tool's page exist.
- `man --warnings -l` renders every page (not the one-line .so pages) with
  no warning.
--self-test puts an exported function before the header's first section
banner (where the generator does not look) in a copy of the header, and
requires the check to name it.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tools"))
import zz_header  # noqa: E402


def synopsis_functions(page_text):
    m = re.search(r"^\.SH SYNOPSIS\n(.*?)^\.SH ", page_text, re.M | re.S)
    if not m:
        return []
    return re.findall(r"\b(zz_[a-z0-9_]+)\(", m.group(1))


def synopsis_include(page_text):
    m = re.search(r"^\.B #include <([^>]+)>", page_text, re.M)
    return m.group(1) if m else None


def check(man, headers, tools):
    problems = []
    declared, header_of = [], {}
    for header in headers:
        with open(header, encoding="utf-8") as f:
            for fn in zz_header.exported_functions(f.read()):
                declared.append(fn)
                header_of[fn] = header
    header = " and ".join(headers)
    man3 = os.path.join(man, "man3")
    pages = {}
    for name in sorted(os.listdir(man3)) if os.path.isdir(man3) else []:
        with open(os.path.join(man3, name), encoding="utf-8") as f:
            pages[name] = f.read()
    family = {n: t for n, t in pages.items() if not re.search(r"^\.so ", t, re.M)}
    where = {}
    for name, text in family.items():
        for fn in synopsis_functions(text):
            where.setdefault(fn, []).append(name)
    for fn in declared:
        if fn not in where:
            problems.append(f"{fn}: declared ZZ_EXPORT in {header_of[fn]} but in no manual page's "
                            "SYNOPSIS")
        elif len(where[fn]) > 1:
            problems.append(f"{fn}: in the SYNOPSIS of several pages: {where[fn]}")
        elif synopsis_include(family[where[fn][0]]) != os.path.basename(header_of[fn]):
            problems.append(f"{fn}: {where[fn][0]} says #include "
                            f"<{synopsis_include(family[where[fn][0]])}>, but it is declared in "
                            f"{header_of[fn]}")
        if fn + ".3" not in pages:
            problems.append(f"{fn}: no page man3/{fn}.3 (man {fn} would find nothing)")
    for fn in where:
        if fn not in declared:
            problems.append(f"{fn}: in {where[fn]} but not declared ZZ_EXPORT in {header}")
    if not family:
        problems.append(f"no manual pages in {man3}")
    others = [os.path.join(man, "man7", "zeroize.7")]
    others += [os.path.join(man, "man1", t + ".1") for t in tools]
    for path in others:
        if not os.path.exists(path):
            problems.append(f"missing {path}")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for path in [os.path.join(man3, n) for n in family] + [p for p in others if os.path.exists(p)]:
        p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", path], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if p.returncode != 0 or p.stderr.strip():
            problems.append(f"{path}: man --warnings (exit {p.returncode}): "
                            f"{p.stderr.decode(errors='replace').strip()[:2000]}")
        elif len(p.stdout) < 200:
            problems.append(f"{path}: renders to almost nothing ({len(p.stdout)} bytes)")
    return declared, family, problems


def self_test(work, header):
    os.makedirs(work, exist_ok=True)
    with open(header, encoding="utf-8") as f:
        text = f.read()
    orphan = "ZZ_EXPORT int zz_selftest_orphan(void);\n"
    text, n = re.subn(r"^(#define ZEROIZE_H\n)", r"\1" + orphan, text, count=1, flags=re.M)
    assert n == 1, "no '#define ZEROIZE_H' line to put the orphan after"
    copy = os.path.join(work, "zeroize.h")
    with open(copy, "w", encoding="utf-8") as f:
        f.write(text)
    out = os.path.join(work, "man")
    subprocess.run([sys.executable, os.path.join(TOP, "tools", "gen_man.py"), "--header", copy,
                    "--readme", os.path.join(TOP, "README.md"), "--version", "0", "--out", out],
                   check=True)
    _, _, problems = check(out, [copy], [])
    named = [p for p in problems if p.startswith("zz_selftest_orphan:")]
    if not named:
        print("self-test FAILED: a function outside every section went unnoticed:", problems)
        return 1
    print("self-test ok: the check names the function no page has:", named[0])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--man")
    ap.add_argument("--header", action="append", required=True)
    ap.add_argument("--tools", default="")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.work, args.header[0])
    tools = [t for t in args.tools.split(",") if t]
    declared, family, problems = check(args.man, args.header, tools)
    for p in problems:
        print("FAIL", p)
    if problems:
        return 1
    print(f"ok: {len(declared)} functions of {' and '.join(args.header)} in {len(family)} "
          "family pages, "
          f"each with a page of its name; zeroize(7){''.join(', ' + t + '(1)' for t in tools)}; "
          "man --warnings renders every page cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
