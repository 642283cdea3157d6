"""zeroize.Shielded (issue 21): a secret sealed in memory, opened into a
read-only SecureBuffer only while in use.  The same checks as the C suite
(tests/shield/test_shield.c) where Python can make them: a /proc/self/mem
scan while sealed, open and closed; fork and purge give ENOKEY; threads;
every refused operation leaves the object as it was; the interop the
recipes document; and the extension still needs nothing but libc."""
import ctypes
import errno
import hashlib
import hmac
import io
import mmap
import os
import subprocess
import threading

import pytest

import zeroize
from conftest import address_of

pytestmark = pytest.mark.skipif(not zeroize.HAVE_SHIELD,
                                reason="built without libsodium (no zeroize.Shielded)")


def library():
    """The extension itself: it exports libzeroize's zz_* functions."""
    return ctypes.CDLL(zeroize._zeroize.__file__)


# ---- scanning /proc/self/mem for a needle held in a SecureBuffer ---------------

def _mappings():
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if hi - lo <= 64 << 30 and hi < 1 << 63:
                yield lo, hi


def count_in_memory(needle):
    """How many times the bytes of needle (a writable SecureBuffer, whose
    own page is skipped) occur in this process's memory.  Reads go into one
    mmap window (skipped too, wiped after), so the scan makes no copy."""
    page = mmap.PAGESIZE
    skip = []
    win = mmap.mmap(-1, 1 << 20)
    try:
        skip.append((address_of(win), address_of(win) + len(win)))
        a = address_of(needle) & ~(page - 1)
        skip.append((a, a + page))
        n = len(needle)
        hits = 0
        fd = os.open("/proc/self/mem", os.O_RDONLY)
        try:
            for lo, hi in list(_mappings()):
                segments = [(lo, hi)]
                for s_lo, s_hi in skip:
                    nxt = []
                    for a, b in segments:
                        if s_lo >= a and s_hi <= b:
                            nxt += [(a, s_lo), (s_hi, b)]
                        else:
                            nxt.append((a, b))
                    segments = nxt
                for a, b in segments:
                    at = a
                    while at < b:
                        want = min(b - at, len(win))
                        try:
                            got = os.preadv(fd, [memoryview(win)[:want]], at)
                        except OSError:
                            got = 0
                        if got <= 0:
                            at = (at & ~(page - 1)) + page
                            continue
                        i = 0
                        while True:
                            i = win.find(needle, i, got)
                            if i < 0:
                                break
                            hits += 1
                            i += 1
                        at += got - (n - 1) if got > n else got
        finally:
            os.close(fd)
            win[:] = bytes(len(win))
        return hits
    finally:
        win.close()


def seal_random(n=32):
    """A Shielded holding n random bytes, and a writable copy of them to
    look for (the only other copy)."""
    src = zeroize.SecureBuffer.random(n)
    needle = src.copy()
    s = zeroize.Shielded(src, wipe_source=True)
    assert bytes(src) == bytes(n)
    src.close()
    return s, needle


def test_memory_scan_sealed_open_closed():
    s, needle = seal_random(48)
    try:
        assert count_in_memory(needle) == 0          # sealed: nowhere
        with s.open() as key:
            assert key == needle
            assert count_in_memory(needle) == 1      # open: in the block only
        assert key.closed
        assert count_in_memory(needle) == 0          # closed: gone again
    finally:
        s.destroy()
        needle.close()


# ---- the basics -------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: b"0123456789abcdef0123456789abcdef",
    lambda: bytearray(b"0123456789abcdef0123456789abcdef"),
    lambda: memoryview(b"0123456789abcdef0123456789abcdef"),
    lambda: zeroize.SecureBuffer(b"0123456789abcdef0123456789abcdef"),
])
def test_sources(make):
    with zeroize.Shielded(make()) as s:
        assert len(s) == 32
        with s.open() as key:
            assert bytes(key) == b"0123456789abcdef0123456789abcdef"


def test_size_source_is_zeros_and_empty_works():
    with zeroize.Shielded(16) as s, s.open() as key:
        assert bytes(key) == bytes(16)
    with zeroize.Shielded(b"") as s, s.open() as key:
        assert len(key) == 0


def test_wipe_source():
    src = bytearray(b"secret-secret-secret")
    with zeroize.Shielded(src, wipe_source=True) as s, s.open() as key:
        assert bytes(key) == b"secret-secret-secret"
    assert src == bytearray(len(src))
    with pytest.raises(TypeError):
        zeroize.Shielded(b"read-only source", wipe_source=True)
    with pytest.raises(TypeError):
        zeroize.Shielded(5, wipe_source=True)
    with pytest.raises(TypeError):
        zeroize.Shielded("a str")
    with pytest.raises(ValueError):
        zeroize.Shielded(-1)


def test_open_is_read_only_and_guarded():
    with zeroize.Shielded(b"k" * 32) as s:
        with s.open() as key:
            assert key.mode == "readonly"
            assert not key.packed
            flags = key.info()
            assert zeroize.Protection.GUARDED in flags
            assert zeroize.Protection.DONTDUMP in flags
            assert zeroize.Protection.WIPEONFORK in flags
            with pytest.raises(TypeError):
                key[0] = 1
            with pytest.raises(io.UnsupportedOperation):
                key.readwrite()
            with pytest.raises(io.UnsupportedOperation):
                key.noaccess()
            assert memoryview(key).readonly
            copy = key.copy()                        # a writable copy, if asked for
            copy[0] = 0
            copy.close()
        assert s.is_open is False


def test_second_open_is_refused_and_changes_nothing():
    with zeroize.Shielded(b"x" * 32) as s:
        key = s.open()
        with pytest.raises(zeroize.ShieldError) as e:
            s.open()
        assert e.value.errno == errno.EBUSY
        assert "open already" in str(e.value)
        assert bytes(key) == b"x" * 32 and s.is_open
        key.close()
        with s.open() as again:
            assert bytes(again) == b"x" * 32


def test_destroy_closes_the_open_buffer_unless_exported():
    s = zeroize.Shielded(b"y" * 32)
    key = s.open()
    view = memoryview(key)
    with pytest.raises(BufferError):
        s.destroy()
    assert not s.closed and not key.closed and bytes(view) == b"y" * 32
    view.release()
    s.destroy()
    assert s.closed and key.closed
    s.destroy()                                      # idempotent
    with pytest.raises(ValueError):
        s.open()
    with pytest.raises(ValueError):
        key[0]


def test_an_unclosed_open_buffer_keeps_the_object_alive():
    s = zeroize.Shielded(b"z" * 32)
    key = s.open()
    del s                                            # the buffer holds a reference
    assert bytes(key) == b"z" * 32
    key.close()


def test_not_picklable_nor_copyable():
    import copy
    import pickle
    with zeroize.Shielded(b"p" * 8) as s:
        for f in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError):
                f(s)
        assert "8 bytes, sealed" in repr(s) and "p" * 8 not in repr(s)


def test_rekey_and_interval():
    with zeroize.Shielded(b"r" * 32) as s:
        held = s.open()
        zeroize.Shielded.rekey()
        assert bytes(held) == b"r" * 32
        held.close()
        with s.open() as key:
            assert bytes(key) == b"r" * 32
        zeroize.Shielded.set_rekey_interval(1)
        assert zeroize.Shielded.get_rekey_interval() == 1
        with s.open() as key:
            assert bytes(key) == b"r" * 32
        zeroize.Shielded.set_rekey_interval(0)
        with pytest.raises(ValueError):
            zeroize.Shielded.set_rekey_interval(86_400_001)


# ---- fork and purge ------------------------------------------------------------------

def test_fork_child_cannot_open_but_seals_anew():
    s = zeroize.Shielded(b"f" * 32)
    key = s.open()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert bytes(key) == bytes(32)           # the open block reads zeros
            key.close()
            try:
                s.open()
            except zeroize.ShieldError as e:
                assert e.errno == errno.ENOKEY and "parent process" in str(e), e
            else:
                raise AssertionError("opened in the child")
            with zeroize.Shielded(b"c" * 16) as mine, mine.open() as k:
                assert bytes(k) == b"c" * 16
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert bytes(key) == b"f" * 32
    key.close()
    s.destroy()


def test_purge_wipes_prekey_and_open_buffers(py):
    # its own process: the purge makes every Shielded sealed before it unopenable
    r = py("""
        import ctypes, errno, zeroize
        s = zeroize.Shielded(b"q" * 32)
        other = zeroize.Shielded(b"w" * 32)
        key = other.open()
        ctypes.CDLL(zeroize._zeroize.__file__).zz_purge()
        assert bytes(key) == bytes(32), "an open buffer is wiped"
        key.close()
        for obj in (s, other):
            try:
                obj.open()
            except zeroize.ShieldError as e:
                assert e.errno == errno.ENOKEY and "zz_purge" in str(e), e
            else:
                raise AssertionError("opened after a purge")
        with zeroize.Shielded(b"n" * 8) as fresh, fresh.open() as k:
            assert bytes(k) == b"n" * 8
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


# ---- threads ------------------------------------------------------------------------------

def test_threads_open_their_own_while_rekeying():
    objs = [zeroize.Shielded(bytes([i]) * 32) for i in range(4)]
    stop = threading.Event()
    errors = []

    def worker(i):
        try:
            for _ in range(50):
                with objs[i].open() as key:
                    assert bytes(key) == bytes([i]) * 32
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def rekeyer():
        while not stop.is_set():
            zeroize.Shielded.rekey()

    r = threading.Thread(target=rekeyer)
    r.start()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    r.join()
    assert errors == []
    for o in objs:
        o.destroy()


def test_threads_sharing_one_object_get_ebusy():
    s = zeroize.Shielded(b"s" * 32)
    opened, busy, errors = [], [], []

    def worker():
        for _ in range(50):
            try:
                key = s.open()
            except zeroize.ShieldError as e:
                (busy if e.errno == errno.EBUSY else errors).append(e)
                continue
            opened.append(bytes(key) == b"s" * 32)
            key.close()

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == [] and all(opened) and len(opened) + len(busy) == 200
    s.destroy()


# ---- interop (RECIPES.md) -----------------------------------------------------------------

def test_interop_hmac_hashlib_aesgcm():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    raw = bytes(range(32))
    with zeroize.Shielded(raw) as s, s.open() as key:
        assert hmac.digest(key, b"msg", "sha256") == hmac.digest(raw, b"msg", "sha256")
        assert hashlib.sha256(key).digest() == hashlib.sha256(raw).digest()
        assert hashlib.blake2b(b"m", key=key).digest() == hashlib.blake2b(b"m", key=raw).digest()
        nonce = bytes(12)
        ct = AESGCM(key).encrypt(nonce, b"plaintext", None)
        assert AESGCM(raw).decrypt(nonce, ct, None) == b"plaintext"


# ---- linkage (issue 20): libsodium is inside, the extension needs only libc ----------------

def test_extension_needs_only_libc():
    out = subprocess.run(["readelf", "-d", zeroize._zeroize.__file__], capture_output=True,
                         text=True, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line}
    # ld-linux is glibc's dynamic loader (the extension needed it before the
    # shield too: libzeroize's thread-local variables)
    assert needed <= {"libc.so.6", "ld-linux-x86-64.so.2"}, needed
    syms = subprocess.run(["nm", "-D", "--defined-only", zeroize._zeroize.__file__],
                          capture_output=True, text=True, check=True).stdout
    assert "sodium" not in syms and "crypto_aead" not in syms    # hidden, no clash
