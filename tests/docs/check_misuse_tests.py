#!/usr/bin/python3
"""The misuse table (docs/MISUSE.md, its only copy) names, in its "Proven by"
column, the tests that prove each row.  This checks that every one of them
exists, so that a renamed or deleted test cannot leave a row claiming a proof
that is gone:

  - a file (`test_misuse.c`, `tests/reliability/test_faults.c`,
    `test_misuse.py`, `check_elide.sh`) exists, under the top of the
    repository, tests/ or python-bindings/tests/;
  - a test named after `file ::` is defined in that file and referenced once
    more (a C test must also be in the file's list of tests that run; a Python
    name is a `def` or a `class`); `..._suffix` is a test of that file whose
    name ends so; `prefix_*` matches at least one test of that file;
  - a ctest name (`(ctest `name`)`) is registered by a CMakeLists.txt or
    *.cmake file under tests/ or bench/ (add_test, zz_add_test, or
    zz_add_test_group(program group), which registers program_group);
  - a fuzz operation (`(op `name`)`) is named in the fuzz program.

  check_misuse_tests.py [MISUSE.md]    check (default: docs/MISUSE.md)
  check_misuse_tests.py --self-test    prove the check fails: feed it copies of
                                       the table with one name broken each

Exits 1, naming each missing test, if any is missing."""
import fnmatch
import functools
import glob
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEARCH_DIRS = ("", "tests", "python-bindings/tests")
TOKEN = re.compile(r"`([^`]+)`")
FILE_TOKEN = re.compile(r"^[\w./-]+\.(?:c|py|sh)$")
NAME_TOKEN = re.compile(r"^(?:\.\.\.)?[A-Za-z_]\w*\*?$")


def proof_cells(text):
    """(line number, cell) for the "Proven by" cell of every table row."""
    column = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = cells.index("Proven by") if "Proven by" in cells else -1
        elif column >= 0 and not set(line) <= set("|-: ") and len(cells) > column:
            yield number, cells[column]


@functools.lru_cache(maxsize=None)
def find_file(name):
    for d in SEARCH_DIRS:
        path = os.path.join(TOP, d, name)
        if os.path.isfile(path):
            return path
    hits = glob.glob(os.path.join(TOP, "tests", "**", os.path.basename(name)), recursive=True)
    return hits[0] if len(hits) == 1 else None


@functools.lru_cache(maxsize=None)
def defined_names(path):
    """Names of the tests defined in a file and referenced once more."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if path.endswith(".py"):
        pattern = r"^\s*(?:def|class)\s+(\w+)"
    else:
        pattern = r"^\s*(?:static\s+)?(?:void|int)\s+(\w+)\s*\("
    names = set(re.findall(pattern, text, re.M))
    if not path.endswith(".py"):
        names = {n for n in names if len(re.findall(r"\b%s\b" % re.escape(n), text)) >= 2}
    return names, text


@functools.lru_cache(maxsize=None)
def registered_ctests():
    names = set()
    files = glob.glob(os.path.join(TOP, "tests", "**", "CMakeLists.txt"), recursive=True)
    files += glob.glob(os.path.join(TOP, "tests", "**", "*.cmake"), recursive=True)
    files += glob.glob(os.path.join(TOP, "bench", "CMakeLists.txt"))
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        names.update(re.findall(r"add_test\(\s*NAME\s+(\w+)", text))
        names.update(re.findall(r"zz_add_test\(\s*(\w+)", text))
        names.update(a + "_" + b for a, b in re.findall(r"zz_add_test_group\(\s*(\w+)\s+(\w+)", text))
    return names


def check_name(name, current, problems, where):
    if current is None:
        problems.append(f"{where}: `{name}` follows no file")
        return
    names = current[0]
    if name.startswith("..."):
        ok = any(n.endswith(name[3:]) for n in names)
    elif name.endswith("*"):
        ok = bool(fnmatch.filter(names, name))
    else:
        ok = name in names
    if not ok:
        problems.append(f"{where}: no test `{name}` in {current[2]}")


def check(text):
    """Returns (number of names checked, list of problems)."""
    problems, checked = [], 0
    ctests = registered_ctests()
    for number, cell in proof_cells(text):
        where = f"MISUSE.md:{number}"
        current, mode, last = None, "test", 0
        for m in TOKEN.finditer(cell):
            gap, token = cell[last:m.start()], m.group(1)
            last = m.end()
            if any(c in gap for c in ");") or "::" in gap:
                mode = "test"
            if "ctest" in gap:
                mode = "ctest"
            elif re.search(r"\bops?\s", gap):
                mode = "op"
            checked += 1
            if FILE_TOKEN.match(token):
                path = find_file(token)
                if path is None:
                    problems.append(f"{where}: no file `{token}`")
                    current = None
                else:
                    names, body = defined_names(path)
                    current = (names, body, os.path.relpath(path, TOP))
                mode = "test"
            elif mode == "ctest":
                if token not in ctests:
                    problems.append(f"{where}: no ctest `{token}` registered")
            elif mode == "op":
                if current is None or not re.search(r"\b%s\b" % re.escape(token), current[1]):
                    problems.append(f"{where}: no operation `{token}` in the fuzz program")
            elif NAME_TOKEN.match(token):
                check_name(token, current, problems, where)
            else:
                checked -= 1  # not a name (prose in backquotes)
    return checked, problems


def self_test(text):
    """Each broken copy must fail, and the table as it is must pass."""
    breakages = [
        ("`test_free_double_free_aborts`", "`test_free_double_free_abortz`"),      # a renamed C test
        ("`test_misuse.c` :: `test_free_malloc", "`test_misusse.c` :: `test_free_malloc"),  # a file
        ("`..._eperm`", "`..._epern`"),                                           # an abbreviation
        ("`test_faults_arena_create_*`", "`test_faults_arena_kreate_*`"),          # a wildcard
        ("(ctest `elide_wipe`)", "(ctest `elide_wip`)"),                           # a ctest
        ("`SecureBufferMachine`", "`SecureBufferMachina`"),                        # a Python class
        ("`test_misuse_batch_raises_and_exits_normally`", "`test_misuse_batch`"),  # a Python test
        ("(op `edge`)", "(op `edgy`)"),                                            # a fuzz op
    ]
    failures = 0
    checked, problems = check(text)
    if problems or checked < 100:
        print(f"self-test: the table as it is should pass ({checked} names): {problems}")
        failures += 1
    for old, new in breakages:
        if old not in text:
            print(f"self-test: {old} is no longer in the table; pick another name to break")
            failures += 1
            continue
        _, problems = check(text.replace(old, new, 1))
        if not problems:
            print(f"self-test: breaking {old} -> {new} went unnoticed")
            failures += 1
        else:
            print(f"self-test: {new} caught: {problems[0]}")
    print(f"self-test: {len(breakages)} breakages, {failures} failures")
    return 1 if failures else 0


def main(argv):
    doc = os.path.join(TOP, "docs", "MISUSE.md")
    if len(argv) > 1 and argv[1] != "--self-test":
        doc = argv[1]
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    if "--self-test" in argv:
        return self_test(text)
    checked, problems = check(text)
    for p in problems:
        print(p)
    print(f"{checked} names in the misuse table checked, {len(problems)} missing")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
