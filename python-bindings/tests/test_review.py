"""Defects a review found by using the package as a new user would (issue
12), one test each; every one of them failed on the first version.  (The
core-dump check of copies is tests/test_coredump.py, the documents run as
written and type-checked are tests/test_docs.py, numpy sizes are in
test_securebuffer.py.)"""
import os
import pydoc
import re
import subprocess
import sys

import numpy as np
import pytest

import zeroize
from zeroize import SecureBuffer

_testbuffer = pytest.importorskip("_testbuffer")
ndarray, ND_PIL, ND_WRITABLE = _testbuffer.ndarray, _testbuffer.ND_PIL, _testbuffer.ND_WRITABLE

ROWS = list(range(1, 13))


def pil(writable=False):
    """A PIL-style exporter: a 3x4 array whose rows are reached through a
    table of pointers (suboffsets)."""
    return ndarray(ROWS, shape=[3, 4], format="B", flags=ND_PIL | (ND_WRITABLE if writable else 0))


# ---- suboffsets: refused with TypeError everywhere, never wrong bytes ----

def test_suboffsets_refused_by_constructor():
    src = pil()
    assert src.suboffsets != () and bytes(memoryview(src).tobytes()) == bytes(ROWS)
    for obj in (src, memoryview(src)):
        with pytest.raises(TypeError, match="suboffsets"):
            SecureBuffer(obj)
    w = pil(writable=True)
    with pytest.raises(TypeError, match="suboffsets"):
        SecureBuffer(w, wipe_source=True)
    assert w.tolist() == [ROWS[0:4], ROWS[4:8], ROWS[8:12]]     # not wiped either


def test_suboffsets_refused_by_slice_assignment_and_nothing_changes():
    with SecureBuffer(b"k" * 12) as sb:
        for obj in (pil(), memoryview(pil())):
            with pytest.raises(TypeError, match="suboffsets"):
                sb[:] = obj
            with pytest.raises(TypeError, match="suboffsets"):
                sb[::1] = obj
        assert sb == b"k" * 12


def test_suboffsets_refused_by_comparison():
    with SecureBuffer(bytes(ROWS)) as sb:
        for obj in (pil(), memoryview(pil())):
            with pytest.raises(TypeError, match="suboffsets"):
                sb == obj
        with pytest.raises(TypeError, match="suboffsets"):
            pil() != sb                          # reflected: SecureBuffer's own ==
        # memoryview compares itself (shape included) and follows suboffsets
        with memoryview(sb) as flat, flat.cast("B", [3, 4]) as grid:
            assert memoryview(pil()) == grid


@pytest.mark.parametrize("fn", [zeroize.zeroize1, zeroize.zeroize_np, zeroize.mlock,
                                zeroize.munlock])
def test_suboffsets_refused_by_wipe_and_lock(fn):
    w = pil(writable=True)
    with pytest.raises(TypeError, match="suboffsets"):
        fn(w)
    with pytest.raises(TypeError, match="suboffsets"):
        fn(memoryview(w))
    assert w.tolist() == [ROWS[0:4], ROWS[4:8], ROWS[8:12]]


def test_suboffsets_refused_for_arena_buffers_too():
    with zeroize.Arena() as arena:
        b = arena.buffer(12)
        with pytest.raises(TypeError, match="suboffsets"):
            b[:] = pil()
        assert b == bytes(12)


# ---- no SystemError: every path that returns NULL sets an exception ----

def test_zeroize1_on_released_memoryview_raises_valueerror():
    m = memoryview(bytearray(8))
    m.release()
    for fn in (zeroize.zeroize1, zeroize.zeroize_np, zeroize.mlock, zeroize.munlock):
        with pytest.raises(ValueError, match="released"):
            fn(m)


AUDIT = r'''
import array, mmap, sys, warnings
import numpy as np
import zeroize
from zeroize import Arena, SecureBuffer
import _testbuffer

released = memoryview(bytearray(8)); released.release()
class BadIndex:
    def __index__(self): raise RuntimeError("index")
class BadBuffer:
    def __buffer__(self, flags): raise RuntimeError("buffer")
closed_sb = SecureBuffer(4); closed_sb.close()
closed_arena = Arena(); closed_arena.close()
noaccess = SecureBuffer(4); noaccess.noaccess()
readonly = SecureBuffer(4); readonly.readonly()
arena = Arena()
packed = arena.buffer(4)
args = [released, BadIndex(), BadBuffer(), closed_sb, noaccess, readonly, packed, None, 1.5,
        "str", b"bytes", -1, 2**70, np.int64(3), np.array([1, 2]),
        np.zeros(3, dtype="datetime64[s]"), np.zeros(2, dtype=object),
        np.zeros(4)[::2], np.zeros(4).view(np.uint8)[::-1],
        _testbuffer.ndarray([1, 2, 3, 4], shape=[2, 2], format="B", flags=_testbuffer.ND_PIL),
        array.array("d", [1.0]), memoryview(b"ro"), mmap.mmap(-1, 16), bytearray(3)]
fns = [zeroize.zeroize1, zeroize.zeroize_np, zeroize.mlock, zeroize.munlock, SecureBuffer,
       SecureBuffer.random, SecureBuffer.from_file, Arena, arena.buffer, arena.random,
       closed_arena.buffer, zeroize.set_lock_policy, zeroize.set_backend, zeroize.info,
       lambda a: SecureBuffer(4) == a, lambda a: a == SecureBuffer(4),
       lambda a: SecureBuffer(2).__setitem__(slice(None), a),
       lambda a: packed.__setitem__(slice(None), a), lambda a: packed[a],
       lambda a: SecureBuffer(4).__setitem__(a, 1), lambda a: SecureBuffer(4)[a],
       lambda a: SecureBuffer(a, wipe_source=True), lambda a: zeroize.munlock(a, wipe=False),
       lambda a: Arena(capacity=a)]
system_errors = []
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for fn in fns:
        for a in args:
            try:
                fn(a)
            except SystemError as e:
                system_errors.append(f"{fn!r}({a!r}): {e}")
            except Exception:
                pass
            except BaseException as e:          # getpass(EOF) etc. are fine too
                pass
print(len(fns) * len(args), "calls")
for line in system_errors:
    print("SYSTEMERROR", line)
'''


def test_no_call_returns_null_without_an_exception(py):
    """Every public entry point, called with a battery of awkward arguments
    (released memoryviews, raising __index__/__buffer__, closed/no-access/
    read-only/packed buffers, PIL arrays, datetime and object arrays...),
    raises an ordinary exception or succeeds: never SystemError."""
    proc = py(AUDIT, input="")
    assert proc.returncode == 0, proc.stderr
    assert "SYSTEMERROR" not in proc.stdout, proc.stdout
    assert int(proc.stdout.split()[0]) > 500


# ---- help(zeroize) points to a file that exists ----

def test_help_names_an_installed_recipes_file():
    text = pydoc.render_doc(zeroize, renderer=pydoc.plaintext)
    paths = re.findall(r"(/\S+RECIPES\.md)", text)
    assert paths, "help(zeroize) should name RECIPES.md by its installed path"
    for path in paths:
        assert os.path.exists(path), path
    assert paths[0] == zeroize.RECIPES
    with open(zeroize.RECIPES) as f:
        assert "# Using a SecureBuffer without copying it" in f.read()


# ---- messages that say what went wrong ----

def test_mlock_of_read_only_buffer_talks_about_locking():
    for obj in (b"abc", memoryview(b"abc"), np.frombuffer(b"abcd", dtype=np.uint8)):
        with pytest.raises(TypeError) as info:
            zeroize.mlock(obj)
        msg = str(info.value)
        assert "lock" in msg and "read-only" in msg and "wipe" not in msg, msg
    with pytest.raises(TypeError, match="cannot wipe a read-only"):
        zeroize.zeroize1(b"abc")


@pytest.mark.parametrize("prompt", [5, b"Password: ", None])
def test_getpass_with_a_non_str_prompt_raises_typeerror(prompt):
    with pytest.raises(TypeError, match="prompt must be a str"):
        zeroize.getpass(prompt)


def test_getpass_bad_max_length():
    with pytest.raises(TypeError, match="max_length"):
        zeroize.getpass("p", max_length=1.5)
    with pytest.raises(ValueError, match="max_length"):
        zeroize.getpass("p", max_length=-1)


def test_no_ordering_in_help_and_ordering_raises():
    text = pydoc.render_doc(SecureBuffer, renderer=pydoc.plaintext)
    for name in ("__lt__", "__le__", "__gt__", "__ge__"):
        assert name not in text, name
        assert name not in SecureBuffer.__dict__, name
    assert "__eq__" in text and "__ne__" in text
    with SecureBuffer(b"abc") as sb:
        for op in ("<", "<=", ">", ">="):
            with pytest.raises(TypeError, match="not supported"):
                eval(f"sb {op} b'abd'")
        assert sb == b"abc" and not (sb != b"abc")


# ---- Ed25519 in RECIPES.md ----

def test_recipes_tell_about_ed25519_copies():
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "RECIPES.md")) as f:
        text = f.read()
    section = text[text.index("### Ed25519"):]
    for needle in ("from_private_bytes(seed)", "private_bytes", "| 2 |", "| 5 |", "| 3 |",
                   "| 0 |", "/proc/PID/mem"):
        assert needle in section, needle
