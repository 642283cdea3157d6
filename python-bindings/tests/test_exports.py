"""Buffer-export counting, in the spirit of CPython's test_xxlimited
test_buffer: every consumer that holds the memory keeps the buffer alive."""
import ctypes
import gc

import numpy as np
import pytest

from zeroize import SecureBuffer


def closable(sb):
    try:
        sb.close()
    except BufferError:
        return False
    return True


def test_memoryview_export_and_release():
    sb = SecureBuffer(b"abcd")
    m = memoryview(sb)
    assert m.obj is sb
    assert m.nbytes == 4 and m.format == "B" and m.itemsize == 1 and not m.readonly
    assert m.tobytes() == b"abcd"
    m.release()
    assert closable(sb)


def test_nested_and_repeated_exports():
    sb = SecureBuffer(16)
    views = [memoryview(sb) for _ in range(3)]
    sliced = views[0][2:5]          # a slice of a memoryview: no new export
    cast = views[1].cast("I")
    for v in views:
        v.release()
    assert not closable(sb)         # sliced and cast still hold the base's export
    sliced.release()
    cast.release()
    assert closable(sb)


def test_numpy_frombuffer_holds_export_until_collected():
    sb = SecureBuffer(b"\x01\x00\x00\x00\x02\x00\x00\x00")
    a = np.frombuffer(sb, dtype="<u4")
    b = a[1:]
    assert a.tolist() == [1, 2]
    del a
    gc.collect()
    assert not closable(sb)         # b's base is still the export
    del b
    gc.collect()
    assert closable(sb)


def test_ctypes_from_buffer_holds_export():
    sb = SecureBuffer(b"ctypes!!")
    c = (ctypes.c_char * 8).from_buffer(sb)
    assert c.raw == b"ctypes!!"
    assert not closable(sb)
    del c
    gc.collect()
    assert closable(sb)


def test_context_manager_on_memoryview():
    sb = SecureBuffer(b"xyz")
    with memoryview(sb) as m:
        m[0] = ord("X")
    assert sb == b"Xyz"
    assert closable(sb)


def test_export_refused_when_unusable():
    sb = SecureBuffer(4)
    sb.noaccess()
    with pytest.raises(ValueError):
        memoryview(sb)
    sb.readwrite()
    m = memoryview(sb)              # a failed export did not leak a count
    m.release()
    sb.close()
    with pytest.raises(ValueError):
        memoryview(sb)


def test_writable_request_on_readonly_buffer():
    sb = SecureBuffer(b"ro")
    sb.readonly()
    with pytest.raises(TypeError):
        (ctypes.c_char * 2).from_buffer(sb)   # needs a writable export
    m = memoryview(sb)              # read-only export works
    assert m.readonly
    m.release()
    sb.readwrite()
    assert closable(sb)


def test_export_counts_balance_after_many_consumers():
    sb = SecureBuffer(64)
    for _ in range(1000):
        memoryview(sb).release()
        np.frombuffer(sb, dtype=np.uint8)
        bytes(sb)
        sb == b"x" * 64
    gc.collect()
    assert closable(sb)
