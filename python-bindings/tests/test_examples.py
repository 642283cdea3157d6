"""The original zeroize package's README examples run unchanged against
this package (they lock memory with libc mlock through ctypes)."""
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name):
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], capture_output=True,
                          text=True, timeout=120, cwd=EXAMPLES)


def test_lock_and_zeroize():
    proc = run_example("lock_and_zeroize.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "allocate memory", "locking memory", "zeroize'ing...: ", "checking if is zeroized",
        "all good, bye!", "unlocking memory"]


def test_zeroize_before_fork():
    proc = run_example("zeroize_before_fork.py")
    assert proc.returncode == 0, proc.stderr
    zeros = "bytearray(b'" + "\\x00" * len("Sensitive Information") + "')"
    out = proc.stdout.splitlines()
    assert "Before zeroization: bytearray(b'Sensitive Information')" in out
    assert f"After zeroization: {zeros}" in out
    assert f"Child process memory after fork: {zeros}" in out
    assert out.count("unlocking memory") == 2          # parent and child both finish
