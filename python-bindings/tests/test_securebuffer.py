"""SecureBuffer: construction, bytearray-like access, protection modes,
lifetime, and everything it refuses."""
import copy
import gc
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import zeroize
from zeroize import Protection, SecureBuffer


@pytest.fixture
def sb():
    b = SecureBuffer(b"0123456789")
    yield b
    if not b.closed:
        b.readwrite()
        b.close()


# ---- construction ------------------------------------------------------------

def test_size_gives_zeros():
    with SecureBuffer(32) as b:
        assert len(b) == 32
        assert b == bytes(32)
        assert bytes(b) == bytes(32)


def test_size_zero():
    with SecureBuffer(0) as b:
        assert len(b) == 0
        assert b == b""
        assert bytes(b) == b""
        assert b[:] == b""
        with pytest.raises(IndexError):
            b[0]


@pytest.mark.parametrize("src", [b"abc", bytearray(b"abc"), memoryview(b"xabcx")[1:4],
                                 np.frombuffer(b"abc", dtype=np.uint8)])
def test_copy_from_bytes_like(src):
    with SecureBuffer(src) as b:
        assert bytes(b) == b"abc"


def test_objects_with_index_are_sizes_as_in_bytearray():
    """numpy.int64(32) has __index__ and also exports its 8 bytes: like
    bytearray, SecureBuffer takes it as a size (the first version copied
    the 8 bytes of the integer)."""
    for size in (np.int64(32), np.uint8(3), np.array(5, dtype=np.int64), np.int32(0)):
        assert hasattr(size, "__index__")
        with SecureBuffer(size) as b:
            assert len(b) == len(bytearray(size)) == int(size)
            assert b == bytes(int(size))
    with pytest.raises(ValueError):
        SecureBuffer(np.int64(-1))
    with pytest.raises(TypeError):
        SecureBuffer(np.int64(4), wipe_source=True)      # a size has no source to wipe


def test_arrays_whose_index_refuses_are_copied_as_in_bytearray():
    """numpy arrays of several items (and float arrays) have an __index__
    slot that raises TypeError: then, as in bytearray, the buffer is copied."""
    a = np.arange(3, dtype=np.int64)
    with SecureBuffer(a) as b:
        assert b == bytearray(a) == a.tobytes()
    f = np.array(1.5)                                     # 0-d float: a buffer
    with SecureBuffer(f) as b:
        assert b == bytearray(f) == f.tobytes()
    m = np.arange(6, dtype=np.uint16).reshape(2, 3)[:, ::-1]   # strided source
    with SecureBuffer(m) as b:
        assert b == np.ascontiguousarray(m).tobytes()


def test_index_like_ints():
    class Five:
        def __index__(self):
            return 5
    with SecureBuffer(Five()) as b:
        assert len(b) == 5
    with SecureBuffer(True) as b:
        assert len(b) == 1


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        SecureBuffer(-1)
    for bad in ["str", 1.5, None, [1, 2], object()]:
        with pytest.raises(TypeError):
            SecureBuffer(bad)
    with pytest.raises(TypeError):
        SecureBuffer(np.array([None], dtype=object))
    with pytest.raises(TypeError):
        SecureBuffer(4, unknown=True)
    with pytest.raises(TypeError):
        SecureBuffer()
    with pytest.raises((OverflowError, MemoryError, OSError)):
        SecureBuffer(1 << 62)


def test_wipe_source():
    src = bytearray(b"password")
    with SecureBuffer(src, wipe_source=True) as b:
        assert b == b"password"
    assert src == bytearray(8)
    arr = np.arange(1, 11, dtype=np.int32)
    with SecureBuffer(arr[::2], wipe_source=True) as b:
        assert b == np.arange(1, 11, 2, dtype=np.int32).tobytes()
    assert arr.tolist() == [0, 2, 0, 4, 0, 6, 0, 8, 0, 10]


def test_wipe_source_readonly_refused_before_allocating():
    before = zeroize.stats()
    with pytest.raises(TypeError):
        SecureBuffer(b"readonly", wipe_source=True)
    with pytest.raises(TypeError):
        SecureBuffer(memoryview(bytearray(b"x")).toreadonly(), wipe_source=True)
    with pytest.raises(TypeError):
        SecureBuffer(8, wipe_source=True)
    assert zeroize.stats()["live_blocks"] == before["live_blocks"]


def test_random():
    with SecureBuffer.random(64) as a, SecureBuffer.random(64) as b:
        assert len(a) == 64
        assert a != b                   # 2**-512 chance of a false failure
        assert a != bytes(64)
    with SecureBuffer.random(0) as z:
        assert len(z) == 0
    with pytest.raises(ValueError):
        SecureBuffer.random(-1)
    with pytest.raises(TypeError):
        SecureBuffer.random("8")


def test_from_file_path_and_fd(tmp_path):
    p = tmp_path / "key"
    p.write_bytes(b"k" * 100 + b"\x00\xff")
    with SecureBuffer.from_file(p) as b:
        assert b == b"k" * 100 + b"\x00\xff"
    with SecureBuffer.from_file(str(p)) as b, SecureBuffer.from_file(os.fsencode(p)) as c:
        assert b == c
    fd = os.open(p, os.O_RDONLY)
    try:
        os.lseek(fd, 100, os.SEEK_SET)
        with SecureBuffer.from_file(fd) as b:
            assert b == b"\x00\xff"
        os.fstat(fd)                     # still open
    finally:
        os.close(fd)
    (tmp_path / "empty").write_bytes(b"")
    with SecureBuffer.from_file(tmp_path / "empty") as b:
        assert len(b) == 0


def test_from_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        SecureBuffer.from_file(tmp_path / "missing")
    with pytest.raises(ValueError):
        SecureBuffer.from_file(tmp_path)        # a directory
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError):
            SecureBuffer.from_file(r)           # not a regular file
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(OSError):
        SecureBuffer.from_file(9999)
    with pytest.raises(TypeError):
        SecureBuffer.from_file(1.5)


def test_from_file_reads_with_read2_only(tmp_path):
    """strace-free check: the key is read with read(2) into secure memory,
    so a large key file arrives intact."""
    data = os.urandom(300_000)
    (tmp_path / "big").write_bytes(data)
    with SecureBuffer.from_file(tmp_path / "big") as b:
        assert b == data


# ---- access ----------------------------------------------------------------------

def test_index_get_set(sb):
    assert sb[0] == ord("0")
    assert sb[-1] == ord("9")
    sb[0] = 255
    sb[-2] = 0
    assert sb[0] == 255 and sb[8] == 0
    assert list(sb)[:2] == [255, ord("1")]
    for bad in (10, -11, 1 << 70):
        with pytest.raises(IndexError):
            sb[bad]
        with pytest.raises(IndexError):
            sb[bad] = 1
    for bad in (256, -1, 1 << 70):
        with pytest.raises(ValueError):
            sb[1] = bad
    for bad in ("a", b"a", 1.0, None):
        with pytest.raises(TypeError):
            sb[1] = bad
    with pytest.raises(TypeError):
        sb["x"]
    assert sb[1] == ord("1")              # refused writes changed nothing


def test_slices(sb):
    assert sb[2:5] == b"234"
    assert isinstance(sb[2:5], bytes)     # a copy, documented
    assert sb[::-3] == b"9630"
    assert sb[100:] == b""
    sb[2:5] = b"abc"
    assert sb == b"01abc56789"
    sb[::3] = bytearray(b"WXYZ")
    assert sb == b"W1aXc5Y78Z"
    sb[0:4] = memoryview(b"..rstu..")[2:6]
    assert sb == b"rstuc5Y78Z"
    sb[:] = np.frombuffer(b"9876543210", dtype=np.uint8)[::1]
    assert sb == b"9876543210"


def test_slice_from_self_overlapping(sb):
    sb[2:6] = memoryview(sb)[0:4]
    assert sb == b"0101236789"
    sb[::-1] = sb
    assert sb == b"9876321010"


def test_slice_wrong_length_and_types(sb):
    for key, val in [(slice(0, 3), b"ab"), (slice(0, 3), b"abcd"), (slice(None, None, 2), b"ab")]:
        with pytest.raises(ValueError):
            sb[key] = val
    with pytest.raises(TypeError):
        sb[0:2] = "ab"
    with pytest.raises(TypeError):
        sb[0:2] = [1, 2]
    assert sb == b"0123456789"


def test_no_resizing(sb):
    with pytest.raises(TypeError):
        del sb[0]
    with pytest.raises(TypeError):
        del sb[0:2]
    for call in (lambda: sb.append(1), lambda: sb.extend(b"ab"), lambda: sb.pop(),
                 lambda: sb.pop(0), lambda: sb.insert(0, 1), lambda: sb.remove(ord("0")),
                 lambda: sb.clear()):
        with pytest.raises(TypeError, match="fixed size"):
            call()
    with pytest.raises(TypeError):
        sb += b"x"
    with pytest.raises(TypeError):
        sb *= 2
    assert sb == b"0123456789"


def test_equality_constant_time_api(sb):
    assert sb == b"0123456789"
    assert b"0123456789" == sb
    assert sb == bytearray(b"0123456789")
    assert sb == memoryview(b"0123456789")
    assert sb == np.frombuffer(b"0123456789", dtype=np.uint8)
    assert sb != b"0123456788"
    assert sb != b"012345678"            # length differs: False, no exception
    assert not (sb == b"0123456789x")
    with SecureBuffer(b"0123456789") as other:
        assert sb == other
    strided = np.frombuffer(b"0x1x2x3x4x5x6x7x8x9x", dtype=np.uint8)[::2]
    assert sb == strided                 # non-contiguous: compared in secure memory
    assert sb == np.frombuffer(b"9876543210", dtype=np.uint8)[::-1]
    assert sb != np.frombuffer(b"0x1x2x3x4x5x6x7x8x9x", dtype=np.uint8)[1::2]
    assert sb != "0123456789"            # str is not bytes-like
    assert sb != 5
    with pytest.raises(TypeError):
        sb < b"1"


def test_unhashable_and_repr(sb):
    with pytest.raises(TypeError):
        hash(sb)
    assert SecureBuffer.__hash__ is None
    for text in (repr(sb), str(sb), format(sb)):
        assert "0123" not in text
        assert "size=10" in text
    sb.close()
    assert "closed" in repr(sb)


def test_pickle_and_copy_refused(sb):
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(sb, protocol=proto)
    with pytest.raises(TypeError):
        copy.copy(sb)
    with pytest.raises(TypeError):
        copy.deepcopy(sb)
    with pytest.raises(TypeError):
        copy.deepcopy([sb])


def test_copy_method(sb):
    with sb.copy() as c:
        assert isinstance(c, SecureBuffer)
        assert c == sb
        c[0] = 0
        assert sb[0] == ord("0")
    sb.readonly()
    with sb.copy() as c:
        assert c.mode == "readwrite"
        c[0] = 1


def test_bytes_and_memoryview_share(sb):
    assert bytes(sb) == b"0123456789"
    m = memoryview(sb)
    m[0] = ord("X")
    assert sb[0] == ord("X")
    a = np.frombuffer(sb, dtype=np.uint8)
    a[1] = ord("Y")
    assert sb[:2] == b"XY"
    del m, a


# ---- lifetime ----------------------------------------------------------------------

def test_close_idempotent_and_closed_state(sb):
    assert not sb.closed
    sb.close()
    sb.close()
    assert sb.closed
    assert sb.mode == "closed"
    assert len(sb) == 10                  # documented: len keeps working
    for op in (lambda: sb[0], lambda: sb[0:1], lambda: bytes(sb), lambda: memoryview(sb),
               lambda: np.frombuffer(sb, dtype=np.uint8), lambda: sb == b"x" * 10,
               lambda: sb.copy(), lambda: sb.info(), lambda: sb.readonly(),
               lambda: sb.noaccess(), lambda: sb.readwrite(), lambda: zeroize.zeroize1(sb),
               lambda: sb.__enter__(), lambda: list(sb)):
        with pytest.raises(ValueError):
            op()
    with pytest.raises(ValueError):
        sb[0] = 1
    with pytest.raises(ValueError):
        sb[0:1] = b"x"


def test_context_manager_closes():
    with SecureBuffer(32) as b:
        assert not b.closed
    assert b.closed
    with pytest.raises(RuntimeError):
        with SecureBuffer(8) as c:
            raise RuntimeError
    assert c.closed


def test_close_while_exported_keeps_everything(sb):
    m = memoryview(sb)
    with pytest.raises(BufferError):
        sb.close()
    assert not sb.closed and m[3] == ord("3") and sb == b"0123456789"
    a = np.frombuffer(sb, dtype=np.uint8)
    m.release()
    with pytest.raises(BufferError):
        sb.close()
    del a
    sb.close()
    assert sb.closed


def test_with_block_exit_while_exported_raises_buffererror():
    b = SecureBuffer(4)
    with pytest.raises(BufferError):
        with b:
            m = memoryview(b)
    assert not b.closed
    m.release()
    b.close()


def test_gc_without_close_wipes_frees_and_warns_like_files():
    gc.collect()
    before = zeroize.stats()["live_blocks"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        b = SecureBuffer(b"forgotten")
        del b
        gc.collect()
    assert zeroize.stats()["live_blocks"] == before
    assert any(issubclass(w.category, ResourceWarning) and "SecureBuffer" in str(w.message)
               for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with SecureBuffer(b"closed properly"):
            pass
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_resource_warning_default_silent_and_dev_mode_loud(py):
    code = "import zeroize; b = zeroize.SecureBuffer(b'x'); del b; print('ok')"
    quiet = py(code)
    assert quiet.returncode == 0 and "ResourceWarning" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True,
                          text=True)
    assert loud.returncode == 0 and "ResourceWarning: unclosed SecureBuffer" in loud.stderr
    err = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", code],
                         capture_output=True, text=True)
    assert err.returncode == 0 and "ok" in err.stdout    # never kills the process


# ---- protection modes ---------------------------------------------------------------

def test_readonly_mode(sb):
    sb.readonly()
    assert sb.mode == "readonly"
    assert sb[0] == ord("0") and sb == b"0123456789"
    with pytest.raises(TypeError):
        sb[0] = 1
    with pytest.raises(TypeError):
        sb[0:1] = b"x"
    m = memoryview(sb)
    assert m.readonly
    with pytest.raises(TypeError):
        m[0] = 1
    a = np.frombuffer(sb, dtype=np.uint8)
    assert not a.flags.writeable
    with pytest.raises(BufferError):
        sb.readwrite()
    del m, a
    sb.readwrite()
    sb[0] = ord("!")
    assert sb[0] == ord("!")


def test_noaccess_mode(sb):
    sb.noaccess()
    assert sb.mode == "noaccess"
    assert len(sb) == 10
    assert "noaccess" in repr(sb)
    for op in (lambda: sb[0], lambda: sb[1:2], lambda: bytes(sb), lambda: memoryview(sb),
               lambda: np.frombuffer(sb, dtype=np.uint8), lambda: sb == b"0123456789",
               lambda: sb.copy(), lambda: zeroize.zeroize1(sb), lambda: list(sb)):
        with pytest.raises(ValueError):
            op()
    with pytest.raises(ValueError):
        sb[0] = 1
    assert Protection.GUARDED in sb.info()          # metadata still readable
    sb.readonly()
    assert sb == b"0123456789"
    sb.noaccess()
    sb.close()                                       # closing works in any mode
    assert sb.closed


def test_protect_while_exported_refused(sb):
    m = memoryview(sb)
    for op in (sb.readonly, sb.noaccess, sb.readwrite):
        with pytest.raises(BufferError):
            op()
    assert sb.mode == "readwrite"
    m.release()


def test_info_flags():
    with SecureBuffer(16) as b:
        info = b.info()
        assert isinstance(info, Protection)
        assert zeroize.info(b) == info
        assert Protection.GUARDED in info and Protection.CANARY in info
        assert Protection.DONTDUMP in info and Protection.WIPEONFORK in info
        if zeroize.get_lock_policy() == "required":
            assert Protection.LOCKED in info
    with pytest.raises(TypeError):
        zeroize.info(bytearray(1))


def test_fork_child_sees_zeros_and_can_close():
    b = SecureBuffer(b"secret before fork")
    plain = bytearray(b"plain bytearray")
    pid = os.fork()
    if pid == 0:                                    # child: report through exit code
        code = 0
        try:
            if b != bytes(len(b)):
                code |= 1
            if plain != bytearray(b"plain bytearray"):
                code |= 2
            b.close()
            if not b.closed:
                code |= 4
            with SecureBuffer(b"new in child") as c:
                if c != b"new in child":
                    code |= 8
        except BaseException:
            code |= 16
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), status
    assert os.WEXITSTATUS(status) == 0, os.WEXITSTATUS(status)
    assert b == b"secret before fork"                # parent untouched
    b.close()


def test_stats_track_blocks():
    before = zeroize.stats()
    assert set(before) == {"live_blocks", "live_bytes", "locked_bytes", "mapped_bytes"}
    bufs = [SecureBuffer(100) for _ in range(5)]
    mid = zeroize.stats()
    assert mid["live_blocks"] == before["live_blocks"] + 5
    assert mid["live_bytes"] == before["live_bytes"] + 500
    for x in bufs:
        x.close()
    after = zeroize.stats()
    assert after["live_blocks"] == before["live_blocks"]
    assert after["live_bytes"] == before["live_bytes"]


def test_forked_child_exiting_with_unclosed_buffers(py):
    """A child that just exits, leaving inherited buffers in every mode to the
    garbage collector, exits cleanly (no canary report, no crash)."""
    proc = py('''
import os, sys, zeroize
bufs = [zeroize.SecureBuffer(b"parent secret %d" % i) for i in range(5)]
bufs[1].readonly(); bufs[2].noaccess()
pid = os.fork()
if pid == 0:
    ok = bufs[0] == bytes(len(bufs[0])) and bufs[1] == bytes(len(bufs[1]))
    sys.exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print("child", os.WIFEXITED(status) and os.WEXITSTATUS(status))
for b in bufs:
    b.readwrite(); b.close()
''')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["child", "0"]
    assert "zeroize:" not in proc.stderr
