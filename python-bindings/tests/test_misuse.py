"""Every misuse from Python raises an exception and never takes the
interpreter down: the whole batch runs in a child interpreter, which must
exit normally after reporting each case."""
import subprocess
import sys

MISUSE_BATCH = r'''
import gc, mmap, os, sys, warnings
import numpy as np
import zeroize
from zeroize import SecureBuffer, zeroize1

results = []
def expect(exc, fn, name):
    try:
        fn()
    except exc:
        results.append(name)
        return
    except BaseException as e:
        print(f"FAIL {name}: raised {type(e).__name__}: {e}")
        sys.exit(3)
    print(f"FAIL {name}: no exception")
    sys.exit(2)

closed = SecureBuffer(b"gone"); closed.close()
noacc = SecureBuffer(b"hidden"); noacc.noaccess()
ro = SecureBuffer(b"readonly"); ro.readonly()
exported = SecureBuffer(8); held = memoryview(exported)
arena = zeroize.Arena(); packed = arena.buffer(8); held_packed = memoryview(packed)
dead_arena = zeroize.Arena(); orphan = dead_arena.random(8); dead_arena.close()
full = zeroize.Arena(capacity=4800)
def assign(obj, key, value): obj[key] = value
def delete(obj, key): del obj[key]

cases = [
    (ValueError, lambda: closed[0], "read closed"),
    (ValueError, lambda: assign(closed, 0, 1), "write closed"),
    (ValueError, lambda: bytes(closed), "bytes closed"),
    (ValueError, lambda: memoryview(closed), "memoryview closed"),
    (ValueError, lambda: np.frombuffer(closed, dtype=np.uint8), "numpy closed"),
    (ValueError, lambda: closed.copy(), "copy closed"),
    (ValueError, lambda: closed.readwrite(), "readwrite closed"),
    (ValueError, lambda: closed == b"gone", "compare closed"),
    (ValueError, lambda: zeroize1(closed), "zeroize1 closed"),
    (ValueError, lambda: zeroize.mlock(closed), "mlock closed"),
    (ValueError, lambda: closed.__enter__(), "enter closed"),
    (ValueError, lambda: noacc[0], "read noaccess"),
    (ValueError, lambda: noacc[:], "slice noaccess"),
    (ValueError, lambda: bytes(noacc), "bytes noaccess"),
    (ValueError, lambda: memoryview(noacc), "memoryview noaccess"),
    (ValueError, lambda: np.frombuffer(noacc, dtype=np.uint8), "numpy noaccess"),
    (ValueError, lambda: noacc == b"hidden", "compare noaccess"),
    (ValueError, lambda: assign(noacc, 0, 0), "write noaccess"),
    (ValueError, lambda: zeroize1(noacc), "zeroize1 noaccess"),
    (ValueError, lambda: SecureBuffer(noacc), "copy-construct noaccess"),
    (ValueError, lambda: list(noacc), "iterate noaccess"),
    (TypeError, lambda: assign(ro, 0, 0), "write readonly"),
    (TypeError, lambda: assign(ro, slice(0, 2), b"xx"), "slice write readonly"),
    (TypeError, lambda: assign(memoryview(ro), 0, 0), "memoryview write readonly"),
    (TypeError, lambda: zeroize1(ro), "zeroize1 readonly"),
    (TypeError, lambda: SecureBuffer(ro, wipe_source=True), "wipe_source readonly sb"),
    (BufferError, lambda: exported.close(), "close exported"),
    (BufferError, lambda: exported.noaccess(), "noaccess exported"),
    (BufferError, lambda: exported.readonly(), "readonly exported"),
    (TypeError, lambda: delete(exported, 0), "delete item"),
    (TypeError, lambda: delete(exported, slice(0, 3)), "delete slice"),
    (ValueError, lambda: assign(exported, slice(0, 3), b"x"), "short slice"),
    (ValueError, lambda: assign(exported, slice(0, 8, 2), b"x" * 5), "long extended slice"),
    (IndexError, lambda: exported[8], "index past end"),
    (IndexError, lambda: exported[-9], "index before start"),
    (IndexError, lambda: exported[1 << 100], "huge index"),
    (ValueError, lambda: assign(exported, 0, 256), "byte too large"),
    (ValueError, lambda: assign(exported, 0, -1), "byte negative"),
    (TypeError, lambda: assign(exported, 0, "a"), "byte as str"),
    (TypeError, lambda: exported[1.0], "float index"),
    (TypeError, lambda: hash(exported), "hash"),
    (TypeError, lambda: exported < b"a", "ordering"),
    (TypeError, lambda: exported + b"a", "concatenation"),
    (TypeError, lambda: exported * 2, "repetition"),
    (TypeError, lambda: __import__("pickle").dumps(exported), "pickle"),
    (TypeError, lambda: __import__("copy").copy(exported), "copy.copy"),
    (TypeError, lambda: __import__("copy").deepcopy(exported), "copy.deepcopy"),
    (TypeError, lambda: exported.__reduce__(), "reduce"),
    (TypeError, lambda: exported.append(1), "append"),
    (TypeError, lambda: exported.extend(b"x"), "extend"),
    (TypeError, lambda: exported.pop(), "pop"),
    (AttributeError, lambda: setattr(exported, "closed", True), "set closed"),
    (TypeError, lambda: type("Sub", (SecureBuffer,), {}), "subclass"),
    (ValueError, lambda: SecureBuffer(-5), "negative size"),
    (TypeError, lambda: SecureBuffer("text"), "str source"),
    (TypeError, lambda: SecureBuffer(None), "None source"),
    (TypeError, lambda: SecureBuffer(np.array([1, "a"], dtype=object)), "object array source"),
    (TypeError, lambda: SecureBuffer(b"x", wipe_source=True), "readonly wipe_source"),
    (TypeError, lambda: SecureBuffer(b"x", 3), "two positionals"),
    ((MemoryError, OverflowError, OSError), lambda: SecureBuffer(1 << 62), "absurd size"),
    ((MemoryError, OverflowError, OSError), lambda: SecureBuffer(1 << 80), "overflowing size"),
    ((MemoryError, OverflowError, OSError), lambda: SecureBuffer.random(1 << 62), "absurd random"),
    (ValueError, lambda: SecureBuffer.random(-1), "negative random"),
    (ValueError, lambda: SecureBuffer.from_file("/dev/zero"), "from_file char device"),
    (ValueError, lambda: SecureBuffer.from_file(-1), "from_file negative fd"),
    (OSError, lambda: SecureBuffer.from_file(12345), "from_file bad fd"),
    (OSError, lambda: SecureBuffer.from_file("/nonexistent/key"), "from_file missing"),
    (TypeError, lambda: SecureBuffer.from_file(None), "from_file None"),
    (TypeError, lambda: zeroize1(b"immutable"), "zeroize1 bytes"),
    (TypeError, lambda: zeroize1("immutable"), "zeroize1 str"),
    (TypeError, lambda: zeroize1(memoryview(b"ro")), "zeroize1 readonly view"),
    (TypeError, lambda: zeroize1(np.array([object()])), "zeroize1 object array"),
    (TypeError, lambda: zeroize1(1), "zeroize1 int"),
    (TypeError, lambda: zeroize1(), "zeroize1 no args"),
    (TypeError, lambda: zeroize.zeroize_np([1, 2]), "zeroize_np list"),
    (TypeError, lambda: zeroize.mlock(b"immutable"), "mlock bytes"),
    (TypeError, lambda: zeroize.munlock(b"immutable"), "munlock bytes"),
    (TypeError, lambda: zeroize.munlock(bytearray(1), wipe=True, extra=1), "munlock kw"),
    (TypeError, lambda: zeroize.munlock(), "munlock no args"),
    (ValueError, lambda: zeroize.set_lock_policy("sometimes"), "bad policy"),
    (TypeError, lambda: zeroize.set_lock_policy(1), "policy int"),
    (TypeError, lambda: zeroize.info(b"x"), "info bytes"),
    (OSError, lambda: zeroize._zeroize._read_secret_line(999, 10), "read bad fd"),
    (ValueError, lambda: zeroize._zeroize._read_secret_line(0, -1), "read negative max"),
    (ValueError, lambda: zeroize._zeroize._wipe_c_loop(-1, 1), "bench negative"),
    (BufferError, lambda: zeroize._zeroize._volatile_loop_wipe(b"ro"), "bench readonly"),
    # arenas
    (ValueError, lambda: zeroize.Arena(-1), "arena negative capacity"),
    (TypeError, lambda: zeroize.Arena(1.5), "arena float capacity"),
    (TypeError, lambda: zeroize.Arena(1, 2), "arena two args"),
    (ValueError, lambda: arena.buffer(-1), "arena negative size"),
    (TypeError, lambda: arena.buffer("32"), "arena str size"),
    (OverflowError, lambda: arena.random(2**80), "arena huge size"),
    (ValueError, lambda: packed.readonly(), "packed readonly"),
    (ValueError, lambda: packed.noaccess(), "packed noaccess"),
    (BufferError, lambda: arena.close(), "arena close exported"),
    (ValueError, lambda: dead_arena.buffer(1), "buffer of closed arena"),
    (ValueError, lambda: dead_arena.random(1), "random of closed arena"),
    (ValueError, lambda: dead_arena.__enter__(), "enter closed arena"),
    (ValueError, lambda: orphan[0], "read buffer of closed arena"),
    (ValueError, lambda: memoryview(orphan), "export buffer of closed arena"),
    (ValueError, lambda: orphan == b"x", "compare buffer of closed arena"),
    (ValueError, lambda: orphan.copy(), "copy buffer of closed arena"),
    (ValueError, lambda: orphan.info(), "info buffer of closed arena"),
    (ValueError, lambda: zeroize1(orphan), "zeroize1 buffer of closed arena"),
    (TypeError, lambda: __import__("pickle").dumps(arena), "pickle arena"),
    (MemoryError, lambda: [full.buffer(32) for _ in range(10_000)], "fixed arena full"),
]
for exc, fn, name in cases:
    expect(exc, fn, name)

# An index whose __index__ closes the buffer or changes its mode must not
# make the access that follows touch freed or protected memory.
class Sneaky:
    def __init__(self, action):
        self.action = action
    def __index__(self):
        target = victims[-1]
        if self.action == "close":
            target.close()
        else:
            getattr(target, self.action)()
        return 1
victims = []
def victim():
    victims.append(SecureBuffer(b"victim!!"))
    return victims[-1]
sneaky_cases = [
    (ValueError, lambda: victim()[Sneaky("close")], "get, index closes"),
    (ValueError, lambda: victim()[Sneaky("noaccess")], "get, index makes noaccess"),
    (ValueError, lambda: victim()[Sneaky("close"):4], "slice get, start closes"),
    (ValueError, lambda: victim()[:Sneaky("noaccess")], "slice get, stop makes noaccess"),
    (ValueError, lambda: assign(victim(), Sneaky("close"), 1), "set, index closes"),
    (ValueError, lambda: assign(victim(), 0, Sneaky("close")), "set, value closes"),
    (ValueError, lambda: assign(victim(), 0, Sneaky("noaccess")), "set, value makes noaccess"),
    (TypeError, lambda: assign(victim(), Sneaky("readonly"), 1), "set, index makes readonly"),
    (ValueError, lambda: assign(victim(), slice(Sneaky("close"), 3), b"xx"), "slice set closes"),
    (TypeError, lambda: assign(victim(), slice(0, Sneaky("readonly")), b"x"), "slice set readonly"),
]
for exc, fn, name in sneaky_cases:
    expect(exc, fn, name)
for v in victims:
    v.readwrite() if not v.closed else None
    v.close()

# Objects that die in odd states are cleaned up without complaint.
a = SecureBuffer(b"dies in noaccess"); a.noaccess(); del a
b = SecureBuffer(b"dies readonly"); b.readonly(); del b
with warnings.catch_warnings():
    warnings.simplefilter("error", ResourceWarning)
    c = SecureBuffer(b"warning is an error"); del c
gc.collect()

held.release()
exported.close(); ro.close(); noacc.close(); noacc.close()
held_packed.release(); arena.close(); full.close(); orphan.close()
assert zeroize.stats()["live_blocks"] == 0, zeroize.stats()
print("ALL", len(results), "MISUSES RAISED")
'''


def test_misuse_batch_raises_and_exits_normally():
    for flags in ([], ["-X", "dev"]):
        proc = subprocess.run([sys.executable, *flags, "-c", MISUSE_BATCH],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "FAIL" not in proc.stdout
        assert "MISUSES RAISED" in proc.stdout
        assert "zeroize:" not in proc.stderr        # no library fatal error
