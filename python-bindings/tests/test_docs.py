"""The documentation's code blocks are tests: every fenced block of
python-bindings/README.md and RECIPES.md, and the Python blocks of the
top-level README.md, runs exactly as written, and the Python ones
type-check with mypy against the installed stubs (which must also report
misuse).  A shell block may opt out only with a first line
`# [not run by the doc tests: <reason>]`, reported as a skip.

How blocks run: Python blocks with this interpreter, in a fresh empty
directory, in a new session (no controlling terminal, so getpass() reads
standard input), with `correct horse battery staple` on standard input;
shell blocks with bash from the top of the repository, this interpreter's
bin directory first on PATH.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = os.path.dirname(HERE)
TOP = os.path.dirname(BINDINGS)
DOCS = {
    "python-bindings/README.md": ("python", "sh"),
    "python-bindings/RECIPES.md": ("python", "sh"),
    "README.md": ("python",),
}
SKIP_MARK = re.compile(r"#\s*\[not run by the doc tests: (?P<reason>[^\]]+)\]")
STDIN = b"correct horse battery staple\n"
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def blocks():
    """(doc, line, lang, text) for every fenced block of the languages run."""
    found = []
    for doc, langs in DOCS.items():
        with open(os.path.join(TOP, doc), encoding="utf-8") as f:
            text = f.read()
        for m in FENCE.finditer(text):
            lang = m.group("lang")
            line = text.count("\n", 0, m.start()) + 1
            if lang in langs:
                found.append((doc, line, lang, m.group("body")))
            elif lang not in ("c", "", "text") and doc != "README.md":
                raise AssertionError(f"{doc}:{line}: a ```{lang} block the doc tests "
                                     "do not know how to run")
    return found


BLOCKS = blocks()
PYTHON = [b for b in BLOCKS if b[2] == "python"]


def block_id(block):
    return f"{block[0]}:{block[1]}"


def test_every_document_has_blocks():
    for doc in DOCS:
        assert any(b[0] == doc and b[2] == "python" for b in BLOCKS), doc
    assert len(PYTHON) >= 15


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_block_runs_as_written(block, tmp_path):
    doc, line, lang, text = block
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    mark = SKIP_MARK.match(first)
    if mark:
        assert lang == "sh", f"{doc}:{line}: only shell blocks may opt out"
        pytest.skip(f"{doc}:{line}: {mark.group('reason')}")
    env = dict(os.environ)
    env.pop("ZEROIZE_LOCK", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if lang == "python":
        cmd, cwd = [sys.executable, "-c", text], tmp_path
    else:
        cmd, cwd = ["bash", "-euo", "pipefail", "-c", text], TOP
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=STDIN, capture_output=True,
                          timeout=300, start_new_session=True)
    assert proc.returncode == 0, (f"{doc}:{line} ({lang}) failed with {proc.returncode}:\n"
                                  f"{proc.stderr.decode(errors='replace')}")


def mypy_command():
    """Debian's mypy (python3-mypy) runs on Debian's interpreter, and looks
    at this interpreter's site-packages for the installed stubs."""
    for python in ("/usr/bin/python3", sys.executable):
        probe = subprocess.run([python, "-c", "import mypy"], capture_output=True)
        if probe.returncode == 0:
            return [python, "-m", "mypy", "--python-executable", sys.executable,
                    "--no-error-summary", "--show-error-codes"]
    pytest.fail("mypy is not installed: apt-get install python3-mypy (the stubs are checked "
                "by this test)")


def run_mypy(files, cache):
    proc = subprocess.run(mypy_command() + ["--cache-dir", str(cache)] + [str(f) for f in files],
                          capture_output=True, text=True, timeout=600)
    return proc


def test_doc_python_blocks_type_check(tmp_path):
    files = []
    for i, (doc, line, _lang, text) in enumerate(PYTHON):
        name = re.sub(r"\W", "_", doc) + f"_line{line}.py"
        path = tmp_path / name
        path.write_text(text)
        files.append(path)
    proc = run_mypy(files, tmp_path / "cache")
    assert proc.returncode == 0, f"mypy reports errors in the docs' examples:\n{proc.stdout}{proc.stderr}"


def test_stubs_report_misuse(tmp_path):
    misuse = tmp_path / "misuse.py"
    misuse.write_text("import zeroize\n"
                      "from zeroize import Arena, SecureBuffer\n"
                      "zeroize.zeroize1('a str')\n"
                      "SecureBuffer(1.5)\n"
                      "Arena().buffer('32')\n")
    proc = run_mypy([misuse], tmp_path / "cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for line in (3, 4, 5):
        assert f"misuse.py:{line}: error" in proc.stdout, proc.stdout


def test_skip_marks_are_visible_and_only_on_shell_blocks():
    for doc, line, lang, text in BLOCKS:
        if SKIP_MARK.search(text):
            assert lang == "sh" and SKIP_MARK.match(text.lstrip().splitlines()[0]), \
                f"{doc}:{line}: the opt-out mark must be the first line of a shell block"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_fence_parser_sees_what_markdown_sees():
    sample = "text\n```python\nprint(1)\n```\n\n```sh\n# [not run by the doc tests: x]\nfalse\n```\n"
    found = [(m.group("lang"), m.group("body")) for m in FENCE.finditer(sample)]
    assert found == [("python", "print(1)\n"), ("sh", "# [not run by the doc tests: x]\nfalse\n")]
