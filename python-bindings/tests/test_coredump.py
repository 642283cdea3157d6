"""A process that dies right after copying a secret between secure buffers
must not write the secret to its core file: not from the buffers (their
pages are MADV_DONTDUMP), and not from the copy itself.  memcpy/memmove move
bytes through vector registers, which the kernel saves in the core's
register notes, and which glibc's lazy binding spills to the stack (XSAVE):
the first version's copy(), slice assignment and constructor left 2 to 4
copies of the key there.

The child makes a random secret straight in a SecureBuffer, sends it to us
through a pipe (os.write reads the buffer in place), copies it one way and
calls os.abort() at once.  We read the kernel's core file and count every
16-byte quarter of the secret (what one XMM register holds).  A control, a
different secret in a bytearray, must be found: it proves the dump is
complete and the scan works, so the test can fail.

Skipped when the kernel does not write core files into the working
directory (core_pattern piped to a program or naming another directory).
"""
import os
import subprocess
import sys

import pytest

SECRET_LEN = 64

CHILD = r'''
import os, resource, sys
import zeroize
from zeroize import SecureBuffer
how = sys.argv[1]
resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
control = bytearray(64)
os.readv(0, [control])                     # the control, from our parent
arena = zeroize.Arena()
secret = arena.random(64) if how.startswith("packed") else SecureBuffer.random(64)
os.write(1, secret)                        # in place: no copy in this process
dst = arena.buffer(64) if how.startswith("packed") else SecureBuffer(64)
view = memoryview(secret)
if how in ("copy", "packed copy"):
    out = secret.copy(); os.abort()
elif how in ("slice", "packed slice"):
    dst[:] = secret; os.abort()
elif how == "memoryview slice":
    dst[:] = view; os.abort()
elif how == "constructor":
    out = SecureBuffer(view); os.abort()
elif how == "extended slice":
    dst[::-1] = view[::-1]; os.abort()
elif how == "strided source":
    dst[:32] = view[::2]; dst[32:] = view[1::2]; os.abort()
raise SystemExit("unknown case " + how)
'''

CASES = ["copy", "slice", "memoryview slice", "constructor", "extended slice",
         "strided source", "packed copy", "packed slice"]


def core_files_land_here():
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|") or "/" in pattern:
        return None, f"core_pattern is {pattern!r}: cores do not land in the working directory"
    return pattern, None


def count_quarters(core, secret):
    return sum(core.count(secret[q:q + 16]) for q in range(0, len(secret), 16))


@pytest.mark.parametrize("how", CASES)
def test_copy_between_secure_buffers_leaves_no_copy_in_core_dump(how, tmp_path):
    pattern, why = core_files_land_here()
    if why:
        pytest.skip(why)
    control = os.urandom(SECRET_LEN)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, how], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(control)
    proc.stdin.close()
    secret = proc.stdout.read(SECRET_LEN)
    err = proc.stderr.read()
    rc = proc.wait(timeout=120)
    assert rc == -6, f"child should die of SIGABRT, got {rc}: {err.decode(errors='replace')}"
    assert len(secret) == SECRET_LEN and secret != bytes(SECRET_LEN)
    cores = [p for p in tmp_path.iterdir() if p.name.startswith(pattern.split("%")[0])]
    if not cores:
        pytest.skip(f"no core file written (core_pattern {pattern!r}, hard RLIMIT_CORE?)")
    core = cores[0].read_bytes()
    for p in cores:
        p.unlink()
    assert count_quarters(core, control) >= 4, "control secret (in a bytearray) not in the core"
    hits = count_quarters(core, secret)
    assert hits == 0, f"{how}: {hits} 16-byte pieces of the secret are in the core dump"
