"""The extension keeps no C globals: its types are heap types made per
module object (PEP 489 multi-phase init, PyType_FromModuleAndSpec), and
everything it needs lives in the module's state.  So two module objects
(a re-import, or a subinterpreter) do not share types, exceptions or state,
and the module imports and works in a subinterpreter."""
import copy
import json
import pickle

import pytest

import zeroize
from zeroize import _zeroize

Py_TPFLAGS_HEAPTYPE = 1 << 9
Py_TPFLAGS_IMMUTABLETYPE = 1 << 8


@pytest.mark.parametrize("cls", [zeroize.SecureBuffer, zeroize.Arena, zeroize.LockError])
def test_types_are_heap_types(cls):
    assert cls.__flags__ & Py_TPFLAGS_HEAPTYPE, cls


@pytest.mark.parametrize("cls", [zeroize.SecureBuffer, zeroize.Arena])
def test_types_stay_immutable_and_final(cls):
    """As the static types were: no new attributes, no subclasses."""
    assert cls.__flags__ & Py_TPFLAGS_IMMUTABLETYPE
    with pytest.raises(TypeError):
        cls.extra = 1
    with pytest.raises(TypeError):
        type("Sub", (cls,), {})
    assert cls.__module__ == "zeroize" and cls.__qualname__ == cls.__name__


def test_heap_types_still_refuse_pickling_and_copying():
    with zeroize.SecureBuffer(b"k") as sb:
        for fn in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError):
                fn(sb)
    with zeroize.Arena() as arena:
        for fn in (pickle.dumps, copy.copy):
            with pytest.raises(TypeError):
                fn(arena)


def test_securebuffer_keeps_only_equality():
    names = set(vars(zeroize.SecureBuffer))
    assert {"__eq__", "__ne__"} <= names
    assert not names & {"__lt__", "__le__", "__gt__", "__ge__"}
    assert zeroize.SecureBuffer.__hash__ is None


TWO_MODULES = r'''
import importlib, json, sys
import zeroize
first = zeroize._zeroize
del sys.modules["zeroize._zeroize"]
second = importlib.import_module("zeroize._zeroize")
out = {"distinct_module": first is not second,
       "distinct_securebuffer": first.SecureBuffer is not second.SecureBuffer,
       "distinct_arena": first.Arena is not second.Arena,
       "distinct_lockerror": first.LockError is not second.LockError}
# zeroize/__init__.py registered Protection with the first module only
a, b = first.SecureBuffer(4), second.SecureBuffer(4)
out["first_info"] = type(a.info()).__name__
out["second_info"] = type(b.info()).__name__
with second.Arena() as arena:
    p = arena.buffer(8)
    out["arena_buffer_type_is_second"] = type(p) is second.SecureBuffer
    p.close()
a.close(); b.close()
print(json.dumps(out))
'''


def test_two_module_objects_share_no_state(py):
    proc = py(TWO_MODULES)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"distinct_module": True, "distinct_securebuffer": True,
                   "distinct_arena": True, "distinct_lockerror": True,
                   "first_info": "Protection", "second_info": "int",
                   "arena_buffer_type_is_second": True}


SUBINTERPRETER = r'''
import json, os
try:
    import _xxsubinterpreters as interpreters
except ImportError:
    print(json.dumps({"skip": "no _xxsubinterpreters in this Python"}))
    raise SystemExit(0)
import zeroize
r, w = os.pipe()
code = """
import json, os, zeroize
with zeroize.SecureBuffer(b"in a subinterpreter") as sb:
    equal = sb == b"in a subinterpreter"
    info = zeroize.Protection.LOCKED in sb.info()
with zeroize.Arena() as arena:
    packed = arena.buffer(16).packed
buf = bytearray(b"wipe me")
zeroize.zeroize1(buf)
os.write(%d, json.dumps(dict(equal=equal, locked=info, packed=packed, wiped=buf == bytearray(7),
                             securebuffer_id=id(zeroize.SecureBuffer),
                             lockerror_id=id(zeroize.LockError))).encode())
""" % w
interp = interpreters.create()
try:
    interpreters.run_string(interp, code)
finally:
    interpreters.destroy(interp)
os.close(w)
sub = json.loads(os.read(r, 65536))
sub["same_securebuffer"] = sub.pop("securebuffer_id") == id(zeroize.SecureBuffer)
sub["same_lockerror"] = sub.pop("lockerror_id") == id(zeroize.LockError)
with zeroize.SecureBuffer(b"main still works") as sb:
    sub["main_works"] = sb == b"main still works"
print(json.dumps(sub))
'''


def test_module_works_in_a_subinterpreter(py):
    proc = py(SUBINTERPRETER)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out == {"equal": True, "locked": True, "packed": True, "wiped": True,
                   "same_securebuffer": False, "same_lockerror": False,
                   "main_works": True}


def test_module_state_survives_module_collection(py):
    """A module object dropped and collected takes its types along, and
    buffers of it that are still alive keep working (each holds its type,
    which holds the module)."""
    proc = py(r'''
import gc, importlib, sys
import zeroize
del sys.modules["zeroize._zeroize"]
other = importlib.import_module("zeroize._zeroize")
sb = other.SecureBuffer(b"outlives its module's name")
del other, sys.modules["zeroize._zeroize"]
gc.collect()
assert sb == b"outlives its module's name"
sb.close()
gc.collect()
print("ok")
''')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
