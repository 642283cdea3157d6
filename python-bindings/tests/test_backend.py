"""The memfd_secret backend (set_backend / ZEROIZE_BACKEND): secrets that
not even /proc/PID/mem can read, and that still work with the usual
consumers."""
import json
import os
import subprocess
import sys

import pytest

import zeroize

from test_memory import scan_process


def test_backend_roundtrip_and_errors():
    old = zeroize.get_backend()
    try:
        for name in ("anon", "auto", "secretmem", "anon"):
            zeroize.set_backend(name)
            assert zeroize.get_backend() == name
        with pytest.raises(ValueError):
            zeroize.set_backend("swap")
        with pytest.raises(TypeError):
            zeroize.set_backend(1)
        assert zeroize.get_backend() == "anon"
    finally:
        zeroize.set_backend(old)


SECRETMEM_CHILD = r'''
import json, os, socket, tempfile
import numpy as np
import zeroize
from zeroize import Protection, SecureBuffer
out = {}
zeroize.set_backend("secretmem")
try:
    sb = SecureBuffer(b"in secretmem")
except OSError as e:
    print(json.dumps({"unavailable": str(e)}))
    raise SystemExit(0)
out["info_secretmem"] = Protection.SECRETMEM in sb.info()
out["equal"] = sb == b"in secretmem"
arr = np.frombuffer(sb, dtype=np.uint8)
arr[:2] = (ord("I"), ord("N"))
del arr
out["numpy_write"] = sb[:2] == b"IN"
a, b = socket.socketpair()
a.sendall(b"from a socket")
dest = SecureBuffer(13)
out["recv_into"] = b.recv_into(dest) == 13 and dest == b"from a socket"
with tempfile.TemporaryFile() as f:
    f.write(memoryview(sb))                 # write(2) out of secretmem works
    f.seek(0)
    back = SecureBuffer(len(sb))
    out["readinto"] = f.readinto(back) == len(sb) and back == sb
    back.close()
pid = os.fork()
if pid == 0:
    ok = sb == bytes(len(sb))
    sb.close()
    os._exit(0 if ok and sb.closed else 1)
out["child_zeros"] = os.waitpid(pid, 0)[1] == 0
out["parent_keeps"] = sb == b"IN secretmem"
zeroize.zeroize1(sb)
out["wiped"] = sb == bytes(len(sb))
for x in (sb, dest):
    x.close()
print(json.dumps(out))
'''


def test_secretmem_buffers_work():
    proc = subprocess.run([sys.executable, "-c", SECRETMEM_CHILD], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    if "unavailable" in out:
        pytest.skip("memfd_secret unavailable: " + out["unavailable"])
    assert out == {k: True for k in out}, out
    assert len(out) == 8


def test_secretmem_is_invisible_to_proc_pid_mem():
    """Even the live secret cannot be found by reading /proc/PID/mem."""
    from test_memory import TARGET
    env = dict(os.environ, ZEROIZE_BACKEND="secretmem")
    proc = subprocess.Popen([sys.executable, "-c", TARGET, "securebuffer"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        needle = b""
        while len(needle) < 48:
            chunk = os.read(proc.stdout.fileno(), 48 - len(needle))
            if not chunk:
                pytest.skip("memfd_secret unavailable")
            needle += chunk
        assert needle != bytes(48)          # the process itself could read it
        assert scan_process(proc.pid, needle) == 0
        proc.stdin.write(b"exit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
