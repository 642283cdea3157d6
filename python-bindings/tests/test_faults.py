"""What the guard pages, canaries and protection modes do to code that
bypasses Python's checks (ctypes pointers): each case runs in a child
interpreter and must die of the expected signal, with the library's one-line
message where it has one."""
import signal
import subprocess
import sys

import pytest

PRELUDE = r'''
import ctypes, sys
import zeroize
from zeroize import SecureBuffer
def address(sb):
    c = (ctypes.c_char * 1).from_buffer(sb)
    a = ctypes.addressof(c)
    del c
    return a
'''


def run_child(body):
    return subprocess.run([sys.executable, "-c", PRELUDE + body], capture_output=True,
                          text=True, timeout=120)


def test_write_past_the_end_hits_the_guard_page():
    proc = run_child('''
sb = SecureBuffer(64)                  # a multiple of 16: the guard page follows at once
ctypes.memset(address(sb) + 64, 0x41, 1)
print("survived")
''')
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr)
    assert "survived" not in proc.stdout


def test_write_before_the_start_hits_the_guard_or_the_canary():
    proc = run_child('''
sb = SecureBuffer(4096)                # a whole page: the guard page precedes it
ctypes.memset(address(sb) - 1, 0x41, 1)
sb.close()
print("survived")
''')
    assert proc.returncode in (-signal.SIGSEGV, -signal.SIGABRT), (proc.returncode, proc.stderr)
    if proc.returncode == -signal.SIGABRT:
        assert "zeroize: canary corrupted (before block)" in proc.stderr
    assert "survived" not in proc.stdout


def test_overflow_into_the_tail_canary_aborts_on_close():
    proc = run_child('''
sb = SecureBuffer(20)                  # 12 bytes of canary after the block
at = ctypes.c_ubyte.from_address(address(sb) + 20)
at.value ^= 0x41                       # never the byte already there (the canary is random)
print("written", flush=True)
sb.close()
print("survived")
''')
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "written" in proc.stdout and "survived" not in proc.stdout
    assert "zeroize: canary corrupted (after block)" in proc.stderr


@pytest.mark.parametrize("mode,access", [("noaccess", "read"), ("noaccess", "write"),
                                         ("readonly", "write")])
def test_protection_modes_fault_raw_access(mode, access):
    op = "ctypes.string_at(a, 1)" if access == "read" else "ctypes.memset(a, 0x41, 1)"
    proc = run_child(f'''
sb = SecureBuffer(b"protected")
a = address(sb)
sb.{mode}()
{op}
print("survived")
''')
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr)
    assert "survived" not in proc.stdout


def test_readonly_mode_still_reads_raw():
    proc = run_child('''
sb = SecureBuffer(b"protected")
a = address(sb)
sb.readonly()
assert ctypes.string_at(a, 9) == b"protected"
print("ok")
''')
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_stale_pointer_after_close_reads_zeros_or_faults():
    proc = run_child('''
sb = SecureBuffer(b"gone after close")
a = address(sb)
sb.close()
data = ctypes.string_at(a, 16)
print("read", data == bytes(16))
''')
    if proc.returncode == 0:
        assert "read True" in proc.stdout
    else:
        assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr)
