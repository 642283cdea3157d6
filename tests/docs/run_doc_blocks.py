#!/usr/bin/python3
"""Runs the C and shell code blocks of the given Markdown files exactly as
written, so that the documentation cannot drift from what works.

  run_doc_blocks.py --cc CC --include DIR --lib LIBZEROIZE_A --work DIR DOC.md...

A ```c block is a whole program: compiled against the library and run; it
must exit 0.  A ```sh block runs with `bash -euo pipefail` from the top of
the repository.  A shell block may opt out only with a first line
`# [not run by the doc tests: <reason>]` (the convention of
python-bindings/tests/test_docs.py, which runs the ```python blocks of the
documents in its DOCS table).  A ```text block is not code.  Any other block
(no language, ```bash, a ```python block in a document test_docs.py does not
run, an opt-out mark on a C block) fails: nothing escapes the tests unseen.
Exits 1 if any block fails, printing what it ran and what it printed.
"""
import argparse
import os
import re
import subprocess
import sys

FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SKIP_MARK = re.compile(r"#\s*\[not run by the doc tests: (?P<reason>[^\]]+)\]")
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY_DOC_TEST = os.path.join(TOP, "python-bindings", "tests", "test_docs.py")


def python_run_elsewhere():
    """The documents whose ```python blocks test_docs.py runs (its DOCS keys)."""
    try:
        with open(PY_DOC_TEST, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return set()
    table = re.search(r"^DOCS = \{(.*?)^\}", text, re.M | re.S)
    return set(re.findall(r'"([^"]+\.md)"\s*:', table.group(1))) if table else set()


def blocks(doc):
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    for m in FENCE.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, m.group("lang"), m.group("body")


def run(cmd, cwd, timeout=600):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


def run_c(args, name, body):
    src = os.path.join(args.work, name + ".c")
    exe = os.path.join(args.work, name)
    with open(src, "w", encoding="utf-8") as f:
        f.write(body)
    rc, out = run([args.cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", args.include, src,
                   args.lib, "-lpthread", "-o", exe], args.work)
    if rc != 0:
        return rc, "compile failed:\n" + out
    return run([exe], args.work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", required=True)
    ap.add_argument("--include", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("docs", nargs="+")
    args = ap.parse_args()
    args.work = os.path.abspath(args.work)  # C blocks compile from inside it
    args.lib = os.path.abspath(args.lib)
    args.include = os.path.abspath(args.include)
    os.makedirs(args.work, exist_ok=True)
    failed = ran = 0
    python_docs = python_run_elsewhere()
    for doc in args.docs:
        rel = os.path.relpath(doc, TOP)
        for line, lang, body in blocks(doc):
            where = f"{rel}:{line}"
            first = body.lstrip().splitlines()[0] if body.strip() else ""
            mark = SKIP_MARK.match(first)
            if lang == "sh" and mark:
                print(f"skip {where}: {mark.group('reason')}")
                continue
            if lang == "text" or (lang == "python" and rel in python_docs):
                continue  # text: nothing to run; python: python-bindings/tests/test_docs.py
            if lang == "c" and not mark:
                rc, out = run_c(args, re.sub(r"\W", "_", where), body)
            elif lang == "sh":
                rc, out = run(["bash", "-euo", "pipefail", "-c", body], TOP)
            else:
                rc, out = 1, (f"a ```{lang or '(no language)'} block that no test runs: use c, sh "
                              "or text; python only in the documents of test_docs.py's DOCS; the "
                              "opt-out mark only on sh blocks")
            ran += 1
            print(f"{'ok  ' if rc == 0 else 'FAIL'} {where} ({lang}, exit {rc})")
            if rc != 0:
                failed += 1
                print(body)
                print("--- output ---")
                print(out[-4000:])
    print(f"{ran} blocks run, {failed} failed")
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
