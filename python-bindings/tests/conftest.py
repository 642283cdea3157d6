"""Shared helpers for the zeroize test suite."""
import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = os.path.dirname(HERE)


def run_python(code, *, prefix=(), env=None, timeout=300, stdin=None, input=None):
    """Run code in a fresh interpreter (this one), return CompletedProcess.

    prefix: a command to put in front of the interpreter (prlimit, setpriv).
    """
    full_env = dict(os.environ)
    full_env.pop("ZEROIZE_LOCK", None)
    if env:
        full_env.update(env)
    cmd = list(prefix) + [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env,
                          timeout=timeout, stdin=stdin, input=input)


@pytest.fixture
def py():
    return run_python


def address_of(buf):
    """Start address of a writable buffer (via ctypes, no copy)."""
    import ctypes
    c = (ctypes.c_char * max(len(memoryview(buf).cast("B")), 1)).from_buffer(buf)
    try:
        return ctypes.addressof(c)
    finally:
        del c


def smaps_entry(addr):
    """The /proc/self/smaps block (dict of fields, plus 'VmFlags' as a set)
    of the mapping that contains addr."""
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    current = found = None
    for line in lines:
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            current = {"range": (lo, hi), "perms": head[1]} if lo <= addr < hi else None
            if current is not None:
                found = current
        elif current is not None:
            key, _, value = line.partition(":")
            if key == "VmFlags":
                current["VmFlags"] = set(value.split())
            else:
                current[key] = value.strip()
    return found
