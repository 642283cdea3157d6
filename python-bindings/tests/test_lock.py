"""mlock / munlock on caller-owned memory, the lock policy, and LockError
when the kernel refuses (run in a child without CAP_IPC_LOCK and with a
small RLIMIT_MEMLOCK)."""
import errno
import json
import os
import shutil

import numpy as np
import pytest

import zeroize
from zeroize import LockError, SecureBuffer

from conftest import address_of, smaps_entry

NO_LOCK_CAP = ["prlimit", "--memlock=65536:65536", "setpriv", "--inh-caps=-ipc_lock",
               "--bounding-set=-ipc_lock"]
needs_tools = pytest.mark.skipif(not (shutil.which("prlimit") and shutil.which("setpriv")),
                                 reason="needs util-linux prlimit and setpriv")


def test_lockerror_is_oserror_and_typeerror():
    assert issubclass(LockError, OSError) and issubclass(LockError, TypeError)
    e = LockError(errno.ENOMEM, "x")
    assert e.errno == errno.ENOMEM


def test_mlock_munlock_wipes_by_default():
    buf = bytearray(b"k" * 5000)
    zeroize.mlock(buf)
    before = zeroize.stats()["locked_bytes"]
    assert before > 0
    zeroize.munlock(buf)
    assert buf == bytearray(5000)


def test_munlock_wipe_false_keeps_data():
    buf = bytearray(b"keep me")
    zeroize.mlock(buf)
    zeroize.munlock(buf, wipe=False)
    assert buf == b"keep me"


def test_lock_counts_are_per_page():
    """Two buffers on one page: unlocking one keeps the page locked."""
    memory = np.zeros(4096 * 3, dtype=np.uint8)
    start = -address_of(memory) % 4096            # first page boundary inside
    page = memory[start:start + 4096]
    first, second = page[:100], page[200:300]
    zeroize.mlock(first)
    zeroize.mlock(second)
    zeroize.munlock(first)
    assert "lo" in smaps_entry(address_of(page))["VmFlags"]
    zeroize.munlock(second)
    assert "lo" not in smaps_entry(address_of(page))["VmFlags"]


def test_munlock_strided_wipes_only_covered_bytes():
    a = np.arange(1, 4097, dtype=np.int32)
    view = a[::2]
    zeroize.mlock(view)
    zeroize.munlock(view)
    assert not a[::2].any() and (a[1::2] == np.arange(2, 4097, 2)).all()


def test_mlock_numpy_mmap_securebuffer(tmp_path):
    import mmap
    for buf in (np.ones(10000), mmap.mmap(-1, 8192), SecureBuffer(64), memoryview(bytearray(9))):
        zeroize.mlock(buf)
        zeroize.munlock(buf)
        assert not any(memoryview(buf).cast("B"))
        if isinstance(buf, SecureBuffer):
            buf.close()


def test_mlock_refuses_readonly_and_non_buffers():
    for bad in (b"bytes", "str", 5, memoryview(b"x")):
        with pytest.raises(TypeError):
            zeroize.mlock(bad)
        with pytest.raises(TypeError):
            zeroize.munlock(bad)


def test_empty_buffers_are_noops():
    zeroize.mlock(bytearray())
    zeroize.munlock(bytearray())


def test_lock_policy_roundtrip():
    old = zeroize.get_lock_policy()
    try:
        zeroize.set_lock_policy("best-effort")
        assert zeroize.get_lock_policy() == "best-effort"
        zeroize.set_lock_policy("required")
        assert zeroize.get_lock_policy() == "required"
        with pytest.raises(ValueError):
            zeroize.set_lock_policy("maybe")
        with pytest.raises(ValueError):
            zeroize.set_lock_policy("")
        with pytest.raises(TypeError):
            zeroize.set_lock_policy(None)
        assert zeroize.get_lock_policy() == "required"
    finally:
        zeroize.set_lock_policy(old)


LIMITED_CHILD = r'''
import errno, json, zeroize
out = {}
def record(name, fn):
    try:
        fn()
        out[name] = None
    except zeroize.LockError as e:
        out[name] = dict(errno=e.errno, msg=str(e), oserror=isinstance(e, OSError),
                         typeerror=isinstance(e, TypeError), zz_error=e.zz_error)
big = bytearray(1 << 20)
record("mlock", lambda: zeroize.mlock(big))
record("fixed_arena", lambda: zeroize.Arena(1 << 20))
bufs = []
def many():
    for _ in range(10000):
        bufs.append(zeroize.SecureBuffer(32))
record("securebuffer", many)
stats_after_failure = zeroize.stats()
out["live_blocks_match"] = stats_after_failure["live_blocks"] == len(bufs)
for b in bufs:
    b.close()
out["live_after_close"] = zeroize.stats()["live_blocks"]
zeroize.set_lock_policy("best-effort")
sb = zeroize.SecureBuffer(1 << 20)
out["best_effort_locked"] = zeroize.Protection.LOCKED in sb.info()
out["best_effort_works"] = (sb[0] == 0)
sb.close()
print(json.dumps(out))
'''


@needs_tools
def test_lockerror_without_cap_ipc_lock(py):
    proc = py(LIMITED_CHILD, prefix=NO_LOCK_CAP)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name in ("mlock", "securebuffer", "fixed_arena"):
        err = out[name]
        assert err is not None, f"{name} did not fail under a 64 KiB RLIMIT_MEMLOCK"
        assert err["oserror"] and err["typeerror"]
        assert err["errno"] in (errno.ENOMEM, errno.EAGAIN, errno.EPERM)
        assert "ulimit -l" in err["msg"] and "RLIMIT_MEMLOCK" in err["msg"]
        assert err["zz_error"] == zeroize.ErrorCode.MEMLOCK, err
    assert out["live_blocks_match"]
    assert out["live_after_close"] == 0
    assert out["best_effort_locked"] is False
    assert out["best_effort_works"] is True


@needs_tools
def test_environment_selects_best_effort(py):
    proc = py("import zeroize; print(zeroize.get_lock_policy()); "
              "b = zeroize.SecureBuffer(1 << 20); print(zeroize.Protection.LOCKED in b.info())",
              prefix=NO_LOCK_CAP, env={"ZEROIZE_LOCK": "best-effort"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["best-effort", "False"]


def test_mlock_munlock_on_securebuffer_keeps_its_protection():
    sb = SecureBuffer(b"secure")
    zeroize.mlock(sb)
    zeroize.munlock(sb, wipe=False)
    assert sb == b"secure"
    flags = smaps_entry(address_of(sb))["VmFlags"]
    assert {"dd", "wf"} <= flags
    if zeroize.Protection.LOCKED in sb.info():
        assert "lo" in flags
    zeroize.munlock(sb)                      # wipe=True wipes
    assert sb == bytes(6)
    sb.close()


LIBRARY_UNLOCK_BUG = r'''
import zeroize, sys
sys.path.insert(0, sys.argv[1])
from conftest import address_of, smaps_entry
sb = zeroize.SecureBuffer(64)
sb[0] = 1
view = memoryview(sb)                        # not a SecureBuffer: goes to zz_lock
zeroize.mlock(view)
zeroize.munlock(view)
flags = smaps_entry(address_of(sb))["VmFlags"]
view.release()
print("lo" in flags, "dd" in flags, zeroize.Protection.LOCKED in sb.info())
'''


def test_library_unlock_keeps_block_protection():
    """zz_lock + zz_unlock on memory inside a zz_alloc block must leave the
    block locked and out of core dumps.  (libzeroize stripped both before
    the fix of 2026-11-28; run in a child so a stripped slot could not be
    handed to later tests' SecureBuffers.)"""
    import subprocess, sys
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", LIBRARY_UNLOCK_BUG, here], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True"]


SECRETMEM_LIMITED_CHILD = r"""
import json, zeroize
zeroize.set_backend("secretmem")
bufs, out = [], {}
try:
    for _ in range(1000):
        bufs.append(zeroize.SecureBuffer(4096))
except Exception as e:
    out = dict(type=type(e).__name__, lockerror=isinstance(e, zeroize.LockError),
               zz_error=getattr(e, "zz_error", None), msg=str(e))
print(json.dumps(out))
"""


@needs_tools
def test_secretmem_over_the_lock_limit_is_a_lockerror(py):
    """memfd_secret's pages count against RLIMIT_MEMLOCK: running out of
    it is a LockError with the library's code SECRETMEM_LIMIT and the
    `ulimit -l` hint; a kernel without memfd_secret gives OSError with
    code SECRETMEM (then this test has nothing to check)."""
    proc = py(SECRETMEM_LIMITED_CHILD, prefix=NO_LOCK_CAP)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out, "1000 secretmem pages fitted under a 64 KiB RLIMIT_MEMLOCK"
    if out["zz_error"] == zeroize.ErrorCode.SECRETMEM:
        assert out["type"] == "OSError" and not out["lockerror"], out
        pytest.skip(f"no memfd_secret here: {out['msg']}")
    assert out["lockerror"], out
    assert out["zz_error"] == zeroize.ErrorCode.SECRETMEM_LIMIT, out
    assert "ulimit -l" in out["msg"], out


def test_error_codes_match_the_library():
    from zeroize import ErrorCode, _zeroize
    names = [n for n in dir(_zeroize) if n.startswith("ERR_")]
    assert sorted(names) == sorted("ERR_" + m.name for m in ErrorCode)
    for m in ErrorCode:
        assert getattr(_zeroize, "ERR_" + m.name) == m.value
    assert ErrorCode.NONE == 0 and ErrorCode.MEMLOCK == 1


def test_memory_errors_carry_the_library_code():
    with zeroize.Arena(4096) as arena:
        keep = []
        with pytest.raises(MemoryError) as info:
            for _ in range(10000):
                keep.append(arena.buffer(64))
        assert info.value.zz_error == zeroize.ErrorCode.ARENA_FULL
        for b in keep:
            b.close()
    with pytest.raises(MemoryError) as info:
        SecureBuffer(1 << 62)
    assert info.value.zz_error == zeroize.ErrorCode.NOMEM
