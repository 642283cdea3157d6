"""zeroize1 / zeroize_np: every writable buffer, only the covered bytes."""
import array
import ctypes
import mmap
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import zeroize
from zeroize import SecureBuffer, zeroize1, zeroize_np

WIPERS = [zeroize1, zeroize_np]


@pytest.mark.parametrize("wipe", WIPERS)
def test_bytearray(wipe):
    b = bytearray(b"secret key material")
    wipe(b)
    assert b == bytearray(len(b))


def test_empty_buffers():
    zeroize1(bytearray())
    zeroize1(np.zeros(0, dtype=np.float64))
    zeroize1(np.zeros((3, 0), dtype=np.int32))
    zeroize1(memoryview(bytearray(4))[2:2])


def test_memoryview_slice_changes_only_its_bytes():
    b = bytearray(range(1, 33))
    zeroize1(memoryview(b)[8:16])
    assert b[:8] == bytearray(range(1, 9))
    assert b[8:16] == bytearray(8)
    assert b[16:] == bytearray(range(17, 33))


def test_memoryview_strided_and_reversed():
    b = bytearray(range(1, 21))
    zeroize1(memoryview(b)[::3])
    assert all(b[i] == 0 for i in range(0, 20, 3))
    assert all(b[i] == i + 1 for i in range(20) if i % 3)
    c = bytearray(range(1, 21))
    zeroize1(memoryview(c)[15:2:-4])          # 15, 11, 7, 3
    assert [i for i in range(20) if c[i] == 0] == [3, 7, 11, 15]


def test_memoryview_cast_multidimensional():
    b = bytearray(range(1, 25))
    m = memoryview(b).cast("B", (4, 6))
    zeroize1(m)
    assert b == bytearray(24)


@pytest.mark.parametrize("code", ["b", "B", "h", "i", "l", "q", "f", "d"])
def test_array_array(code):
    a = array.array(code, [1, 2, 3, 4, 5])
    zeroize1(a)
    assert list(a) == [0] * 5


def test_mmap_anonymous_and_file(tmp_path):
    m = mmap.mmap(-1, 8192)
    m.write(b"x" * 8192)
    zeroize1(m)
    assert m[:] == bytes(8192)
    m.close()
    p = tmp_path / "f"
    p.write_bytes(b"secret!!" * 512)
    with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as mf:
        zeroize1(memoryview(mf)[8:16])
        mf.flush()
        del_view = None  # noqa: F841 (the memoryview above is gone)
    assert p.read_bytes()[:8] == b"secret!!"
    assert p.read_bytes()[8:16] == bytes(8)
    assert p.read_bytes()[16:] == b"secret!!" * 510


def test_ctypes_array():
    c = (ctypes.c_uint32 * 8)(*range(1, 9))
    zeroize1(c)
    assert list(c) == [0] * 8


@pytest.mark.parametrize("dtype", ["u1", "i2", "<i4", ">i8", "f2", "f4", "f8", "c8", "c16",
                                   "?", "S5", "U3", "V7", "M8[s]", "m8[ns]", "f16"])
@pytest.mark.parametrize("wipe", WIPERS)
def test_numpy_dtypes(dtype, wipe):
    raw = np.arange(1, 1 + 6 * 7 * np.dtype(dtype).itemsize, dtype=np.uint64).astype(np.uint8)
    a = raw.view(dtype).reshape(6, 7)
    view = a[::-2, 1::3]                       # non-contiguous, negative strides
    mask = np.zeros(a.shape, bool)
    mask[::-2, 1::3] = True
    before = a.view(np.uint8).reshape(6, 7, -1).copy()
    wipe(view)
    after = a.view(np.uint8).reshape(6, 7, -1)
    assert (after[mask] == 0).all()
    assert (after[~mask] == before[~mask]).all()


def test_numpy_structured_dtype():
    a = np.ones(5, dtype=[("a", "i4"), ("b", "f8")])
    zeroize1(a[::2])
    assert a["a"].tolist() == [0, 1, 0, 1, 0]


def test_numpy_fortran_and_transposed():
    a = np.asfortranarray(np.arange(1, 13, dtype=np.int16).reshape(3, 4))
    zeroize1(a)
    assert not a.any()
    b = np.arange(1, 13, dtype=np.int16).reshape(3, 4)
    zeroize1(b.T[1:])
    assert b[:, 0].tolist() == [1, 5, 9] and not b[:, 1:].any()


def test_numpy_zero_stride_view():
    base = np.arange(1, 11, dtype=np.int64)
    rep = np.lib.stride_tricks.as_strided(base[3:], shape=(4, 2), strides=(0, 8))
    zeroize1(rep)                               # covers elements 3 and 4 only
    assert base.tolist() == [1, 2, 3, 0, 0, 6, 7, 8, 9, 10]


def test_numpy_zero_d():
    a = np.array(12345, dtype=np.int64)
    zeroize1(a)
    assert int(a) == 0


def test_securebuffer_is_wiped():
    with SecureBuffer(b"top secret") as sb:
        zeroize1(sb)
        assert sb == bytes(10)


@pytest.mark.parametrize("bad", [b"bytes", "str", memoryview(b"ro"), 42, None, 1.5,
                                 bytes(100)])
@pytest.mark.parametrize("wipe", WIPERS)
def test_refuses_immutable_and_non_buffers(bad, wipe):
    with pytest.raises(TypeError):
        wipe(bad)


def test_refuses_readonly_numpy_and_object_arrays():
    a = np.ones(4)
    a.flags.writeable = False
    with pytest.raises(TypeError):
        zeroize1(a)
    assert (a == 1).all()
    obj = np.array([object(), "x", 3], dtype=object)
    with pytest.raises(TypeError, match="object"):
        zeroize1(obj)
    with pytest.raises(TypeError):
        zeroize_np(obj)
    assert obj[1] == "x"
    rec = np.zeros(2, dtype=[("o", "O"), ("i", "i4")])
    rec["o"] = ["a", "b"]
    with pytest.raises(TypeError):
        zeroize1(rec)
    assert rec["o"].tolist() == ["a", "b"]


def test_readonly_securebuffer_refused():
    sb = SecureBuffer(b"abc")
    sb.readonly()
    with pytest.raises(TypeError):
        zeroize1(sb)
    assert sb == b"abc"
    sb.close()
    with pytest.raises(ValueError):
        zeroize1(sb)


def test_large_buffer_and_threads():
    """>= 64 KiB releases the GIL: several threads wiping at once all finish."""
    bufs = [bytearray(os.urandom(1 << 20)) for _ in range(4)]
    threads = [threading.Thread(target=zeroize1, args=(b,)) for b in bufs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(b == bytearray(1 << 20) for b in bufs)
    assert zeroize._zeroize.RELEASE_GIL_FROM == 64 * 1024


# ---- property tests --------------------------------------------------------

DTYPES = st.sampled_from(["u1", "i2", "u4", "i8", "f4", "f8", "c16", "S3", "V5", "<u2", ">f8"])


@st.composite
def arrays_and_slices(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.frombuffer(bytearray(draw(st.binary(min_size=nbytes, max_size=nbytes))),
                        dtype=np.uint8).copy()
    base = raw.view(dtype).reshape(shape)
    index = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=False,
                                   allow_ellipsis=True))
    transpose = draw(st.booleans())
    return base, index, transpose


@settings(max_examples=300, deadline=None)
@given(arrays_and_slices())
def test_property_only_covered_bytes_become_zero(case):
    base, index, transpose = case
    view = base[index]
    if not isinstance(view, np.ndarray):      # an integer index gave a scalar
        return
    if transpose:
        view = view.T
    mask = np.zeros(base.shape, bool)
    mask[index] = True
    item = base.dtype.itemsize
    before = base.view(np.uint8).reshape(base.shape + (item,)).copy() if base.size else None
    zeroize1(view)
    if base.size == 0:
        return
    after = base.view(np.uint8).reshape(base.shape + (item,))
    assert (after[mask] == 0).all()
    assert (after[~mask] == before[~mask]).all()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.integers(0, 300), st.integers(0, 300),
       st.integers(-7, 7).filter(lambda s: s != 0))
def test_property_memoryview_slices(data, start, stop, step):
    b = bytearray(data)
    expected = bytearray(data)
    idx = range(len(b))[start:stop:step]
    for i in idx:
        expected[i] = 0
    zeroize1(memoryview(b)[start:stop:step])
    assert b == expected
