"""What the kernel and the process's memory say: no copy of a secret
survives close(); the pages carry the promised flags; create/close cycles
leak nothing; threads can hammer the allocator."""
import os
import re
import subprocess
import sys
import threading

import pytest

import zeroize
from zeroize import Protection, SecureBuffer, zeroize1

from conftest import address_of, smaps_entry

# The target process makes a random secret without ever creating a bytes
# copy, sends it to us through a pipe (os.write reads straight from the
# buffer), then closes/wipes it on command.  We scan its memory from here,
# so the needle never lives in the target.
TARGET = r'''
import os, sys
import zeroize
kind = sys.argv[1]
if kind == "securebuffer":
    secret = zeroize.SecureBuffer.random(48)
    def forget(): secret.close()
else:
    secret = bytearray(48)
    with open("/dev/urandom", "rb", buffering=0) as f:
        f.readinto(secret)
    def forget(): zeroize.zeroize1(secret)
os.write(1, memoryview(secret))
for line in sys.stdin:
    if line.strip() == "forget":
        forget()
        os.write(1, b"F")
    elif line.strip() == "exit":
        break
'''


def scan_process(pid, needle):
    """Count occurrences of needle in every readable mapping of pid."""
    hits = 0
    overlap = len(needle) - 1
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else ""
            if not fields[1].startswith("r") or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            tail = b""
            pos = lo
            while pos < hi:
                size = min(1 << 20, hi - pos)
                try:
                    mem.seek(pos)
                    chunk = mem.read(size)
                except OSError:
                    chunk = b""
                if not chunk:           # guard region or unreadable: skip a page
                    pos += 4096
                    tail = b""
                    continue
                data = tail + chunk
                hits += data.count(needle)
                tail = data[-overlap:] if overlap else b""
                pos += len(chunk)
    return hits


@pytest.mark.parametrize("kind", ["securebuffer", "bytearray"])
def test_no_copy_of_secret_survives(kind):
    proc = subprocess.Popen([sys.executable, "-c", TARGET, kind], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        needle = b""
        while len(needle) < 48:
            needle += os.read(proc.stdout.fileno(), 48 - len(needle))
        assert needle != bytes(48)
        before = scan_process(proc.pid, needle)
        assert before >= 1, "positive control: the live secret must be found"
        proc.stdin.write(b"forget\n")
        proc.stdin.flush()
        assert os.read(proc.stdout.fileno(), 1) == b"F"
        after = scan_process(proc.pid, needle)
        assert after == 0, f"{after} copies of the secret left after wiping"
        proc.stdin.write(b"exit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_smaps_shows_locked_dontdump_wipeonfork():
    with SecureBuffer(32) as sb:
        sb[0] = 1                                   # fault the page in
        entry = smaps_entry(address_of(sb))
        flags = entry["VmFlags"]
        assert {"dd", "wf"} <= flags, flags         # MADV_DONTDUMP, MADV_WIPEONFORK
        if Protection.LOCKED in sb.info():
            assert "lo" in flags, flags             # mlock (mlock2 ONFAULT adds "lf")
            assert entry["Locked"] != "0 kB"
        info = sb.info()
        assert Protection.DONTDUMP in info and Protection.WIPEONFORK in info


def test_smaps_mlock_bytearray_then_munlock():
    buf = bytearray(os.urandom(3 * 4096))
    zeroize.mlock(buf)
    entry = smaps_entry(address_of(buf))
    assert "lo" in entry["VmFlags"] and "dd" in entry["VmFlags"]
    zeroize.munlock(buf)
    assert buf == bytearray(len(buf))
    entry = smaps_entry(address_of(buf))
    assert "lo" not in entry["VmFlags"]


def rss_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def test_100k_cycles_leave_stats_and_rss_flat():
    for _ in range(5000):                           # warm up caches and pools
        SecureBuffer(32).close()
    start_stats = zeroize.stats()
    start_rss = rss_kib()
    for i in range(100_000):
        sb = SecureBuffer(32 + (i & 63))
        sb[0] = i & 0xFF
        sb.close()
    assert zeroize.stats() == start_stats
    grown = rss_kib() - start_rss
    assert grown < 2048, f"RSS grew by {grown} KiB over 100,000 cycles"


def test_four_threads_create_wipe_close():
    start = zeroize.stats()
    errors = []
    shared = bytearray(1 << 17)

    def worker(seed):
        try:
            for i in range(3000):
                with SecureBuffer.random(16 + (i + seed) % 100) as sb:
                    copy = sb.copy()
                    assert copy == sb
                    zeroize1(sb)
                    assert sb == bytes(len(sb))
                    copy.close()
                if i % 200 == 0:
                    zeroize1(shared)                # big: releases the GIL
        except BaseException as e:                  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert zeroize.stats()["live_blocks"] == start["live_blocks"]
    assert zeroize.stats()["live_bytes"] == start["live_bytes"]


def test_error_paths_do_not_leak():
    """Refused operations release everything they took: repeat them and
    check that RSS and the library's counters stay put."""
    import numpy as np
    closed = SecureBuffer(8)
    closed.close()
    ro = SecureBuffer(b"readonly")
    ro.readonly()
    exported = SecureBuffer(16)
    held = memoryview(exported)
    strided = np.arange(64, dtype=np.uint8)[::4]

    def refused():
        for fn, exc in ((lambda: closed[0], ValueError), (lambda: ro.__setitem__(0, 1), TypeError),
                        (lambda: exported.close(), BufferError),
                        (lambda: exported.__setitem__(slice(0, 3), b"x"), ValueError),
                        (lambda: zeroize1(b"bytes"), TypeError),
                        (lambda: SecureBuffer(b"x", wipe_source=True), TypeError),
                        (lambda: SecureBuffer(-1), ValueError),
                        (lambda: zeroize.mlock(b"x"), TypeError)):
            try:
                fn()
            except exc:
                pass
        exported[:] = strided
        assert exported == strided
        SecureBuffer(strided).close()
        exported[::2] = strided[:8]

    for _ in range(2000):
        refused()
    stats = zeroize.stats()
    rss = rss_kib()
    for _ in range(20000):
        refused()
    assert zeroize.stats() == stats
    assert rss_kib() - rss < 1024
    held.release()
    exported.close()
    ro.close()
