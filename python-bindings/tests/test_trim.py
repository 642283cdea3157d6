"""zeroize.trim(): the library's cached memory goes back to the kernel, and
the rest of the process gets the whole RLIMIT_MEMLOCK (issue 18)."""
import json
import shutil

import pytest

import zeroize

needs_tools = pytest.mark.skipif(not (shutil.which("prlimit") and shutil.which("setpriv")),
                                 reason="needs util-linux prlimit and setpriv")
LIMIT = 8 << 20
UNPRIVILEGED = ["prlimit", f"--memlock={LIMIT}:{LIMIT}", "setpriv", "--inh-caps=-ipc_lock",
                "--bounding-set=-ipc_lock"]


def test_trim_keeps_live_buffers():
    live = zeroize.SecureBuffer(b"still here")
    for _ in range(3):
        bufs = [zeroize.SecureBuffer(32) for _ in range(500)]
        for b in bufs:
            b.close()
    before = zeroize.stats()
    assert zeroize.trim() is None
    after = zeroize.stats()
    assert after["live_blocks"] == before["live_blocks"]
    assert after["locked_bytes"] <= before["locked_bytes"]
    assert after["mapped_bytes"] <= before["mapped_bytes"]
    assert bytes(live) == b"still here"
    live.close()


CHILD = r'''
import ctypes, json, mmap, zeroize
libc = ctypes.CDLL(None, use_errno=True)
libc.mlock.argtypes = libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
LIMIT = %d
area = mmap.mmap(-1, LIMIT)
base = ctypes.addressof(ctypes.c_char.from_buffer(area))
def plain_mlock(n):
    ok = libc.mlock(base, n) == 0
    if ok:
        libc.munlock(base, n)
    return ok
def vmlck():
    for line in open("/proc/self/status"):
        if line.startswith("VmLck:"):
            return int(line.split()[1]) * 1024
out = {}
bufs = []
try:
    for _ in range(2000):
        bufs.append(zeroize.SecureBuffer(32))
except zeroize.LockError:
    pass
out["made"] = len(bufs)
for b in bufs:
    b.close()
del b, bufs
out["locked_closed"] = zeroize.stats()["locked_bytes"]
out["mlock_2mib_closed"] = plain_mlock(2 << 20)
zeroize.trim()
out["stats_trimmed"] = zeroize.stats()
out["mlock_rest_trimmed"] = plain_mlock(LIMIT - vmlck())
area.close()
print(json.dumps(out))
''' % LIMIT


@needs_tools
def test_trim_gives_the_lock_limit_back_unprivileged(py):
    proc = py(CHILD, prefix=UNPRIVILEGED)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["made"] >= 500
    # closed buffers keep at most half the limit locked (and a few slabs' guard pages) ...
    assert out["locked_closed"] <= LIMIT // 2 + (64 << 10)
    assert out["mlock_2mib_closed"]
    # ... and after trim() none: the program may lock all that is left
    assert out["stats_trimmed"]["locked_bytes"] == 0
    assert out["stats_trimmed"]["mapped_bytes"] == 0
    assert out["mlock_rest_trimmed"]
