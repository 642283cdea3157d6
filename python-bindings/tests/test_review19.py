"""Defects a reviewer found in 5c03a46 (issue 19, items 9-13), one test or
a few each; every one of them failed on 5c03a46.

Item 9, comparisons: the operand order decides who compares.  Python asks
the left operand first, and the right one (reflected) only when the left
one answers NotImplemented.  A SecureBuffer on the left always decides; on
the right it decides for bytes, array.array, memoryview's ordering, numpy
(SecureBuffer.__array_ufunc__ is None) and anything without a comparison
of its own.  bytearray on the left, and memoryview on the left for ==/!=,
compare the SecureBuffer's exported bytes themselves (memcmp): the README
says so, and these tests pin that down too, so that a change in CPython
shows up here.
"""
import array
import datetime
import operator
import os

import numpy as np
import pytest

import zeroize
from zeroize import SecureBuffer

SECRET = bytes(range(16, 48))
ORDERINGS = [operator.lt, operator.le, operator.gt, operator.ge]


def make(kind):
    """A 32-byte object of one kind a secret is compared with, equal to
    SECRET.  The caller closes a SecureBuffer."""
    return {
        "bytes": lambda: SECRET,
        "bytearray": lambda: bytearray(SECRET),
        "memoryview": lambda: memoryview(SECRET),
        "numpy": lambda: np.frombuffer(SECRET, dtype=np.uint8).copy(),
        "array": lambda: array.array("B", SECRET),
        "SecureBuffer": lambda: SecureBuffer(SECRET),
    }[kind]()


def close_if_secure(obj):
    if isinstance(obj, SecureBuffer):
        obj.close()


# ---- item 9: ordering is refused in every order the protocol lets us decide ----

@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "array",
                                  "SecureBuffer"])
@pytest.mark.parametrize("op", ORDERINGS, ids=lambda f: f.__name__)
def test_ordering_with_securebuffer_on_the_left_raises(kind, op):
    # 5c03a46: NotImplemented, then bytearray's and ndarray's reflected
    # comparisons answered (sb < bytearray(...) was True or False)
    with SecureBuffer(SECRET) as sb:
        other = make(kind)
        with pytest.raises(TypeError, match="a SecureBuffer has no order"):
            op(sb, other)
        close_if_secure(other)


@pytest.mark.parametrize("kind", ["bytes", "memoryview", "numpy", "array", "SecureBuffer"])
@pytest.mark.parametrize("op", ORDERINGS, ids=lambda f: f.__name__)
def test_ordering_with_securebuffer_on_the_right_raises(kind, op):
    # these types give the SecureBuffer the choice (numpy since
    # SecureBuffer.__array_ufunc__ = None: 5c03a46 got a per-byte array)
    with SecureBuffer(SECRET) as sb:
        other = make(kind)
        with pytest.raises(TypeError, match="a SecureBuffer has no order"):
            op(other, sb)
        close_if_secure(other)


def test_ordering_with_bytearray_on_the_left_is_decided_by_bytearray():
    """CPython's bytearray compares any buffer itself (memcmp) and never asks
    the right operand: the README documents it.  If a future CPython asks
    SecureBuffer, this test fails and the README must change."""
    with SecureBuffer(SECRET) as sb:
        assert (bytearray(SECRET) <= sb) is True
        assert (bytearray(b"\xff") < sb) is False


def test_numpy_scalar_and_strided_array_defer_to_securebuffer():
    with SecureBuffer(b"\x07") as sb:
        assert (np.uint8(7) == sb) is True
        with pytest.raises(TypeError, match="a SecureBuffer has no order"):
            np.uint8(7) < sb
    strided = np.frombuffer(SECRET * 2, dtype=np.uint8)[::2]
    with SecureBuffer(strided) as sb:
        assert (strided == sb) is True
        assert (strided != sb) is False


# ---- item 9: == and != answer one bool, through zz_equal, in either order ----

@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "array",
                                  "SecureBuffer"])
def test_equality_is_one_bool_in_both_orders(kind):
    with SecureBuffer(SECRET) as sb:
        other = make(kind)
        for a, b in ((sb, other), (other, sb)):
            assert (a == b) is True     # numpy on the left: a bool, not an array
            assert (a != b) is False
        close_if_secure(other)
        flipped = bytearray(SECRET)
        flipped[-1] ^= 1
        assert (sb == flipped) is False and (sb != flipped) is True


def test_numpy_on_the_left_asks_securebuffer():
    # 5c03a46: numpy compared byte by byte and returned a match array
    with SecureBuffer(SECRET) as sb:
        arr = np.frombuffer(SECRET, dtype=np.uint8).copy()
        arr[3] ^= 1
        assert (arr == sb) is False
        assert (arr != sb) is True
        assert SecureBuffer.__array_ufunc__ is None


def test_numpy_ufuncs_refuse_a_securebuffer_operand():
    """__array_ufunc__ = None: numpy would put the result of arr ^ sb in an
    ndarray nobody wipes; np.frombuffer(sb) is the explicit way."""
    with SecureBuffer(SECRET) as sb:
        arr = np.zeros(32, dtype=np.uint8)
        with pytest.raises(TypeError):
            np.bitwise_xor(arr, sb)
        with pytest.raises(TypeError):
            arr ^ sb
        view = np.frombuffer(sb, dtype=np.uint8)
        assert (view ^ arr).tobytes() == SECRET
        del view


def test_closed_securebuffer_compares_as_valueerror_in_both_orders():
    sb = SecureBuffer(SECRET)
    sb.close()
    for other in (SECRET, np.frombuffer(SECRET, dtype=np.uint8)):
        with pytest.raises(ValueError, match="closed"):
            sb == other
        with pytest.raises(ValueError, match="closed"):
            other == sb


# ---- item 13: numpy datetime64/timedelta64 arrays are plain bytes to read ----

def datetime_array():
    return np.array([datetime.datetime(2024, 1, 2), datetime.datetime(1999, 12, 31)],
                    dtype="datetime64[s]")


def test_securebuffer_copies_a_datetime64_array():
    # 5c03a46: numpy's "cannot include dtype 'M' in a buffer" ValueError
    arr = datetime_array()
    with SecureBuffer(arr) as sb:
        assert bytes(sb) == arr.tobytes()
    td = np.array([5, -7], dtype="timedelta64[ms]")[::-1]
    with SecureBuffer(td) as sb:
        assert bytes(sb) == td.tobytes()


def test_slice_assignment_from_a_datetime64_array():
    arr = datetime_array()
    with SecureBuffer(len(arr.tobytes())) as sb:
        sb[:] = arr
        assert bytes(sb) == arr.tobytes()


def test_equality_with_a_datetime64_array():
    arr = datetime_array()
    with SecureBuffer(arr.tobytes()) as sb:
        assert (sb == arr) is True
        assert (arr == sb) is True
        assert (sb == arr[::-1]) is False


# ---- item 10: a fork while another thread is inside a GIL-released call ----

FORK_DURING_CALL = r'''
import os, sys, threading, zeroize
N = 64 << 20        # large enough that the worker is inside the call nearly all the time
kind = sys.argv[1]
arena = zeroize.Arena()
sb = zeroize.SecureBuffer(N) if kind == "zeroize1" else arena.buffer(N)
held = zeroize.SecureBuffer(b"held by the forking thread")
view = memoryview(held)          # a real export: must still count in the child
started, stop = threading.Event(), threading.Event()

def work():
    started.set()
    while not stop.is_set():
        if kind == "random":
            arena.random(N).close()     # getrandom into the arena, GIL released
        else:
            zeroize.zeroize1(sb)        # zz_wipe of 64 MiB, GIL released

t = threading.Thread(target=work)
t.start()
started.wait()
for _ in range(3):                       # let the worker get into the call
    zeroize.zeroize1(bytearray(16))
pid = os.fork()
if pid == 0:
    status = 0
    try:
        sb[0] = 7
        assert sb[0] == 7 and sb[1] == 0
        try:
            held.close()
            status |= 1                  # the forking thread's export was dropped
        except BufferError:
            pass
        view.release()
        held.close()
        sb.close()                       # 5c03a46: BufferError forever
        assert arena.random(32) is not None
        arena.close()                    # 5c03a46: BufferError forever (busy / exports)
        assert sb.closed and held.closed and arena.closed
    except BaseException as e:
        print("child:", type(e).__name__, e, file=sys.stderr, flush=True)
        status |= 2
    os._exit(status)
_, st = os.waitpid(pid, 0)
stop.set()
t.join()
view.release()
held.close()
sb.close()
arena.close()
print(os.waitstatus_to_exitcode(st))
'''


@pytest.mark.parametrize("kind", ["zeroize1", "arena_zeroize1", "random"])
def test_fork_during_a_gil_released_call_leaves_closable_objects(py, kind):
    """A thread inside zeroize1(sb) (sb standalone or from an Arena) or
    Arena.random() holds an export or keeps the arena busy; the child of a
    fork made meanwhile by another thread has no such thread, so the
    after-fork hook drops exactly those counts (and no others)."""
    code = FORK_DURING_CALL.replace('sys.argv[1]', repr(kind))
    proc = py(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0", proc.stderr


# ---- item 11: Arena(capacity) holds capacity usable bytes, no more ----

def cell(n):
    """What a block of n bytes takes from a fixed Arena's capacity."""
    return max(16, -(-n // 16) * 16) + 16


def test_fixed_arena_refuses_beyond_its_capacity():
    # 5c03a46: Arena(64) held 1,022 16-byte blocks and one of 1,000 bytes
    with zeroize.Arena(64) as arena:
        with pytest.raises(MemoryError, match="capacity") as info:
            arena.buffer(1000)
        assert info.value.zz_error == zeroize.ErrorCode.ARENA_FULL
        a, b = arena.buffer(16), arena.buffer(1)     # 32 bytes each
        with pytest.raises(MemoryError) as info:
            arena.buffer(0)
        assert info.value.zz_error == zeroize.ErrorCode.ARENA_FULL
        with pytest.raises(MemoryError):
            arena.random(16)
        with pytest.raises(MemoryError):
            a.copy()                                 # a copy comes from the arena too
        assert arena.stats()["live_blocks"] == 2
        a.close()
        c = arena.buffer(16)                         # a freed block's room comes back
        b.close()
        c.close()
    with zeroize.Arena(1) as arena:
        with pytest.raises(MemoryError):
            arena.buffer(0)


@pytest.mark.parametrize("n", [0, 1, 16, 17, 32, 100, 1000, 8160, 8161, 20000])
def test_fixed_arena_holds_exactly_count_blocks_of_one_size(n):
    count = 7
    with zeroize.Arena(count * cell(n)) as arena:
        bufs = [arena.buffer(n) for _ in range(count)]
        with pytest.raises(MemoryError):
            arena.buffer(n)
        with pytest.raises(MemoryError):
            arena.buffer(0)
        for b in bufs:
            b.close()


def test_fixed_arena_capacity_is_shared_by_two_sizes():
    sizes = [32, 100, 20, 100, 100, 17]             # cells of 48 and 128 bytes
    with zeroize.Arena(sum(cell(n) for n in sizes)) as arena:
        bufs = [arena.buffer(n) for n in sizes]
        with pytest.raises(MemoryError, match="capacity"):
            arena.buffer(0)
        bufs.pop(1).close()                          # a 100-byte block: 128 bytes back
        bufs += [arena.buffer(32), arena.buffer(32)]  # 48 + 48 of them
        with pytest.raises(MemoryError, match="capacity"):
            arena.buffer(17)                         # 32 left, a 17-byte block needs 48
        for b in bufs:
            b.close()


def test_large_fixed_arena_fills_to_capacity_with_a_mix_of_sizes():
    """Each size (in steps of 16) takes runs of 16 KiB; the reserve of
    capacity / 8 + 32 KiB covers one partly used run per size for a mix of
    up to (capacity / 8 + 32 KiB) / 16 KiB sizes: ten at 1 MiB."""
    capacity = 1 << 20
    sizes = [16, 32, 48, 100, 200, 1000, 3000, 7, 64, 20000]
    with zeroize.Arena(capacity) as arena:
        bufs, used, i = [], 0, 0
        while used + cell(sizes[i % len(sizes)]) <= capacity:
            bufs.append(arena.buffer(sizes[i % len(sizes)]))
            used += cell(sizes[i % len(sizes)])
            i += 1
        while used + 32 <= capacity:                 # the last bytes, in the smallest cells
            bufs.append(arena.buffer(16))
            used += 32
        assert used > capacity - 32
        with pytest.raises(MemoryError) as info:
            arena.buffer(0)
        assert info.value.zz_error == zeroize.ErrorCode.ARENA_FULL
        for b in bufs:
            b.close()


@pytest.mark.parametrize("capacity", [1, 64, 4096, 100_000, 1 << 20])
def test_fixed_arena_maps_what_the_readme_formula_says(capacity):
    page = os.sysconf("SC_PAGESIZE")
    reserve = -(-(capacity + capacity // 8 + 32768) // page) * page
    with zeroize.Arena(capacity) as arena:
        s = arena.stats()
        assert s["mapped_bytes"] == reserve + 2 * page
        assert s["locked_bytes"] in (reserve, reserve + 2 * page)


# ---- item 13: getpass checks max_length before it prompts ----

GETPASS_BAD_MAX_LENGTH = r'''
import sys, zeroize
class StrIndex:
    def __index__(self):
        return "4096"
cases = {"huge": 2**70, "str_index": StrIndex(), "negative": -1, "float": 1.5}
try:
    zeroize.getpass("PROMPT-SHOWN: ", max_length=cases[sys.argv[1]])
except Exception as e:
    print(type(e).__name__, e)
'''


@pytest.mark.parametrize("case, exc, words", [
    ("huge", "OverflowError", "sys.maxsize"),
    ("str_index", "TypeError", "max_length must be an int, not 'StrIndex' (__index__ returned non-int"),
    ("negative", "ValueError", "must be >= 0"),
    ("float", "TypeError", "max_length must be an int, not 'float'"),
])
def test_getpass_refuses_max_length_before_prompting(case, exc, words):
    # 5c03a46: 2**70 printed the prompt, then OverflowError from the C half;
    # a str from __index__ gave "'<' not supported between 'str' and 'int'"
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", GETPASS_BAD_MAX_LENGTH, case], input=b"pw\n",
                          capture_output=True, start_new_session=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith(exc + " "), proc.stdout
    assert words in proc.stdout.decode()
    assert b"PROMPT-SHOWN" not in proc.stderr and b"PROMPT-SHOWN" not in proc.stdout


# ---- item 13: from_file() of a file that reports size 0 (procfs, sysfs) ----

@pytest.mark.parametrize("path", ["/proc/sys/kernel/random/boot_id", "/proc/self/status",
                                  "/proc/self/maps"])
def test_from_file_reads_procfs_files_to_the_end(path):
    # 5c03a46: an empty buffer and no error (fstat says 0 bytes)
    assert os.stat(path).st_size == 0
    with SecureBuffer.from_file(path) as sb:
        with open(path, "rb") as f:
            expected = f.read()
        assert len(sb) > 0
        if "status" in path or "maps" in path:     # they change as the process runs
            assert bytes(sb[:5]) == expected[:5]
        else:
            assert bytes(sb) == expected


def test_from_file_reads_an_unsized_file_from_the_descriptor_offset():
    fd = os.open("/proc/sys/kernel/random/boot_id", os.O_RDONLY)
    try:
        os.lseek(fd, 9, os.SEEK_SET)
        with SecureBuffer.from_file(fd) as sb:
            assert len(sb) == 37 - 9 and sb[-1] == ord("\n")
    finally:
        os.close(fd)


def test_from_file_refuses_an_unsized_file_above_1_mib():
    if not os.path.exists("/proc/kallsyms"):
        pytest.skip("no /proc/kallsyms")
    before = zeroize.stats()["live_blocks"]
    with pytest.raises(ValueError, match="reports size 0.*more than 1048576 bytes"):
        SecureBuffer.from_file("/proc/kallsyms")   # megabytes of kernel symbols
    assert zeroize.stats()["live_blocks"] == before


# ---- item 13: RECIPES' advice on hashlib, checked in a core dump ----

HASH_CHILD = r'''
import hashlib, hmac, os, resource, sys
from zeroize import SecureBuffer
how = sys.argv[1]
resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
control = bytearray(64)
os.readv(0, [control])
key = SecureBuffer.random(32)
os.write(1, key)
if how == "sha256 one-shot":
    d = hashlib.sha256(key).digest(); os.abort()
elif how == "hmac.digest":
    t = hmac.digest(key, b"attack at dawn", "sha256"); os.abort()
elif how == "blake2b keyed one-shot":
    t = hashlib.blake2b(b"attack at dawn", key=key).digest(); os.abort()
elif how == "sha256 update":
    h = hashlib.sha256(); h.update(key); os.abort()
raise SystemExit("unknown case " + how)
'''


@pytest.mark.parametrize("how, leaves_copies", [("sha256 one-shot", False), ("hmac.digest", False),
                                                ("sha256 update", True)])
def test_recipes_hashlib_advice_holds_in_a_core_dump(how, leaves_copies, tmp_path):
    """RECIPES recommends the one-shot forms: a hash object fed the key
    (h.update(key)) keeps a partial block of it in OpenSSL's state, which a
    core dump then holds; the one-shot forms free (and OpenSSL wipes) their
    state before they return."""
    import subprocess
    import sys
    from test_coredump import core_files_land_here, count_quarters
    pattern, why = core_files_land_here()
    if why:
        pytest.skip(why)
    control = os.urandom(64)
    with subprocess.Popen([sys.executable, "-c", HASH_CHILD, how], cwd=tmp_path,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        proc.stdin.write(control)
        proc.stdin.close()
        key = proc.stdout.read(32)
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == -6, err.decode(errors="replace")
    cores = [p for p in tmp_path.iterdir() if p.name.startswith(pattern.split("%")[0])]
    if not cores:
        pytest.skip("no core file written")
    core = cores[0].read_bytes()
    for p in cores:
        p.unlink()
    assert count_quarters(core, control) >= 4, "control (in a bytearray) not in the core"
    hits = count_quarters(core, key)
    assert (hits > 0) == leaves_copies, f"{how}: {hits} 16-byte pieces of the key in the core"


# ---- item 13: `ba[a:b] = sb` copies the secret to a temporary bytearray ----

def test_bytearray_slice_assignment_copies_and_memoryview_does_not():
    """The README's "What Python copies anyway" names it: CPython turns any
    value that is not a bytearray into a temporary bytearray first (heap,
    freed without wiping); memoryview(ba)[a:b] = sb copies in place."""
    import tracemalloc
    n = 1 << 20
    ba = bytearray(n)
    with SecureBuffer.random(n) as sb:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            memoryview(ba)[:] = sb
            in_place = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            ba[:] = sb
            copied = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert ba == sb
    assert in_place < 4096
    assert copied >= n


# ---- item 12: the stubs agree with the runtime ----

def test_star_import_type_checks_strictly(tmp_path):
    # 5c03a46: the stub's __all__ had no value: mypy --strict refused the import
    from test_docs import run_mypy
    f = tmp_path / "star.py"
    f.write_text("from zeroize import *\n"
                 "with SecureBuffer(b'k') as sb:\n"
                 "    zeroize1(sb)\n"
                 "print(Arena, Protection.LOCKED, ErrorCode.NONE, getpass, info)\n")
    proc = run_mypy(["--strict", f], tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stubs_refuse_what_the_runtime_refuses(tmp_path):
    from test_docs import run_mypy
    f = tmp_path / "misuse.py"
    f.write_text("import sys\n"
                 "import zeroize\n"
                 "class Sub(zeroize.SecureBuffer): ...\n"           # final at run time
                 "class SubArena(zeroize.Arena): ...\n"
                 "class OnlyInterface:\n"
                 "    @property\n"
                 "    def __array_interface__(self) -> dict[str, object]: return {}\n"
                 "zeroize.zeroize1(OnlyInterface())\n"               # refused at run time
                 "SecureBuffer = zeroize.SecureBuffer\n"
                 "if sys.version_info < (3, 12):\n"
                 "    SecureBuffer(1).__buffer__(0)\n")              # absent before 3.12
    proc = run_mypy(["--python-version", "3.11", f], tmp_path / "cache")
    for line in (3, 4, 8, 11):
        assert f"misuse.py:{line}: error" in proc.stdout, proc.stdout
    with pytest.raises(TypeError):
        type("Sub", (SecureBuffer,), {})
    with pytest.raises(TypeError):
        type("SubArena", (zeroize.Arena,), {})

    class OnlyInterface:
        __array_interface__ = np.zeros(4, np.uint8).__array_interface__
    with pytest.raises(TypeError):
        zeroize.zeroize1(OnlyInterface())


def test_stubs_accept_numpy_arrays(tmp_path):
    from test_docs import run_mypy
    f = tmp_path / "ok.py"
    f.write_text("import numpy as np\n"
                 "import zeroize\n"
                 "a = np.zeros(8, dtype=np.uint8)\n"
                 "zeroize.zeroize1(a)\n"
                 "zeroize.zeroize_np(a)\n"
                 "with zeroize.SecureBuffer(a) as sb:\n"
                 "    sb[:] = a\n"
                 "    assert sb == a\n")
    proc = run_mypy(["--strict", f], tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("method, expected", [
    (SecureBuffer.close, "(self, /)"), (SecureBuffer.copy, "(self, /)"),
    (SecureBuffer.readonly, "(self, /)"), (SecureBuffer.info, "(self, /)"),
    (SecureBuffer.random, "(n, /)"), (SecureBuffer.from_file, "(path_or_fd, /)"),
    (zeroize.Arena.buffer, "(self, n, /)"), (zeroize.Arena.random, "(self, n, /)"),
    (zeroize.Arena.close, "(self, /)"), (zeroize.Arena.stats, "(self, /)"),
])
def test_text_signatures_name_self(method, expected):
    import inspect
    # 5c03a46: inspect.signature(SecureBuffer.close) was "()"
    assert str(inspect.signature(method)) == expected


def test_plus_and_times_exist_to_refuse_as_the_stubs_say():
    # 5c03a46: the stubs declared __add__, __iadd__, __mul__, absent at run time
    with SecureBuffer(b"key") as sb:
        for name in ("__add__", "__iadd__", "__mul__"):
            assert name in vars(SecureBuffer)
        assert not {"__radd__", "__rmul__"} & set(vars(SecureBuffer))
        with pytest.raises(TypeError, match="fixed size: it cannot be concatenated"):
            sb + b"x"
        with pytest.raises(TypeError, match="fixed size: it cannot be repeated"):
            sb * 2
        with pytest.raises(TypeError, match="unsupported operand"):
            2 * sb
        alias = sb
        with pytest.raises(TypeError, match="fixed size: it cannot be extended"):
            alias += b"x"
        assert alias is sb and sb == b"key"
        assert b"x" + sb == b"xkey"          # bytes' own concatenation: a bytes copy
