"""The public surface: names, types, documentation, stubs."""
import inspect
import io
import os
import pydoc
import subprocess
import sys

import zeroize
from zeroize import _zeroize

PUBLIC_FUNCTIONS = ["zeroize1", "zeroize_np", "mlock", "munlock", "stats", "trim", "set_lock_policy",
                    "get_lock_policy", "set_backend", "get_backend", "getpass", "info"]
SB_METHODS = ["close", "copy", "readonly", "noaccess", "readwrite", "info", "random",
              "from_file", "__enter__", "__exit__"]


def test_names_exist_and_are_exported():
    for name in PUBLIC_FUNCTIONS + ["SecureBuffer", "Arena", "LockError", "Protection",
                                    "GetPassWarning", "ErrorCode"]:
        assert hasattr(zeroize, name), name
        assert name in zeroize.__all__, name
    assert zeroize._zeroize is _zeroize
    assert _zeroize.__name__ == "zeroize._zeroize"
    assert zeroize.SecureBuffer.__module__ == "zeroize"
    assert zeroize.Arena.__module__ == "zeroize"
    assert zeroize.LockError.__module__ == "zeroize"
    assert callable(_zeroize._volatile_loop_wipe) and callable(_zeroize._wipe_c_loop)


def test_protection_flag_members():
    P = zeroize.Protection
    assert issubclass(P, __import__("enum").Flag)
    assert [m.name for m in (P.LOCKED, P.DONTDUMP, P.WIPEONFORK, P.GUARDED, P.SECRETMEM,
                             P.CANARY)] == ["LOCKED", "DONTDUMP", "WIPEONFORK", "GUARDED",
                                            "SECRETMEM", "CANARY"]
    assert P.LOCKED.value == _zeroize.INFO_LOCKED == 1
    assert P.CANARY.value == 0x20
    assert P.PACKED.value == _zeroize.INFO_PACKED and not P.PACKED & (P.LOCKED | P.DONTDUMP |
                                                                       P.WIPEONFORK | P.GUARDED |
                                                                       P.SECRETMEM | P.CANARY)


def test_docstrings_everywhere():
    assert zeroize.__doc__ and len(zeroize.__doc__) > 200
    for name in PUBLIC_FUNCTIONS:
        doc = getattr(zeroize, name).__doc__
        assert doc and len(doc) > 40, name
    for name in SB_METHODS:
        assert getattr(zeroize.SecureBuffer, name).__doc__, name
    assert zeroize.SecureBuffer.__doc__ and "wipe_source" in zeroize.SecureBuffer.__doc__
    assert zeroize.SecureBuffer.closed.__doc__
    for name in ["buffer", "random", "close", "stats", "__enter__", "__exit__"]:
        assert getattr(zeroize.Arena, name).__doc__, name
    assert zeroize.Arena.__doc__ and "capacity" in zeroize.Arena.__doc__
    assert zeroize.LockError.__doc__ and "ulimit -l" in zeroize.LockError.__doc__


def test_signatures_are_introspectable():
    assert str(inspect.signature(zeroize.zeroize1)) == "(buf, /)"
    assert str(inspect.signature(zeroize.munlock)) == "(buf, /, *, wipe=True)"
    assert "wipe_source" in str(inspect.signature(zeroize.SecureBuffer))


def test_help_reads_well():
    text = pydoc.render_doc(zeroize, renderer=pydoc.plaintext)
    for needle in ["SecureBuffer", "zeroize1", "mlock", "getpass", "Protection", "LockError",
                   "constant time"]:
        assert needle in text, needle


def test_typing_files_installed():
    pkg = os.path.dirname(zeroize.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    stub = os.path.join(pkg, "__init__.pyi")
    assert os.path.exists(stub)
    with open(stub) as f:
        text = f.read()
    for name in PUBLIC_FUNCTIONS + ["class SecureBuffer", "class Arena", "class LockError",
                                    "class Protection", "class ErrorCode", "zz_error: int"]:
        assert name in text, name
    compile(text, stub, "exec")                      # the stub is valid Python


def test_stats_keys_and_types():
    s = zeroize.stats()
    assert sorted(s) == ["live_blocks", "live_bytes", "locked_bytes", "mapped_bytes"]
    assert all(isinstance(v, int) and v >= 0 for v in s.values())


def test_library_version():
    assert _zeroize.LIBRARY_VERSION == "0.1.0"
    assert zeroize.__version__ == "0.1.0"
