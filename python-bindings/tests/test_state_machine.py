"""A hypothesis state machine drives a SecureBuffer and a bytearray model
through the same operations; every refused operation must leave both equal."""
import numpy as np
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import zeroize
from zeroize import SecureBuffer

SIZE = 24
indexes = st.integers(-SIZE - 3, SIZE + 2)
byte_values = st.integers(-2, 258)
slices = st.builds(slice, st.none() | st.integers(-30, 30), st.none() | st.integers(-30, 30),
                   st.none() | st.integers(-5, 5).filter(bool))


class SecureBufferMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.model = bytearray(range(SIZE))
        self.sb = SecureBuffer(bytes(self.model))
        self.mode = "readwrite"
        self.views = []
        self.closed = False

    def expect(self, exc, fn):
        with pytest.raises(exc):
            fn()

    @property
    def usable(self):
        return not self.closed and self.mode != "noaccess"

    @property
    def writable(self):
        return self.usable and self.mode == "readwrite"

    # ---- reads ----
    @rule(i=indexes)
    def get_item(self, i):
        if not self.usable:
            return self.expect(ValueError, lambda: self.sb[i])
        if -SIZE <= i < SIZE:
            assert self.sb[i] == self.model[i]
        else:
            self.expect(IndexError, lambda: self.sb[i])

    @rule(s=slices)
    def get_slice(self, s):
        if not self.usable:
            return self.expect(ValueError, lambda: self.sb[s])
        assert self.sb[s] == bytes(self.model[s])

    @rule(other=st.binary(max_size=SIZE + 1))
    def compare(self, other):
        if not self.usable:
            return self.expect(ValueError, lambda: self.sb == other)
        assert (self.sb == other) == (bytes(self.model) == other)
        assert (self.sb != other) == (bytes(self.model) != other)

    # ---- writes ----
    @rule(i=indexes, v=byte_values)
    def set_item(self, i, v):
        def do():
            self.sb[i] = v
        if not self.usable:
            return self.expect(ValueError, do)
        if not self.writable:
            return self.expect(TypeError, do)
        if not -SIZE <= i < SIZE:
            return self.expect(IndexError, do)
        if not 0 <= v <= 255:
            return self.expect(ValueError, do)
        do()
        self.model[i] = v

    @rule(s=slices, data=st.data())
    def set_slice(self, s, data):
        n = len(range(SIZE)[s])
        length = data.draw(st.sampled_from([n, n, max(n - 1, 0), n + 1]))
        value = data.draw(st.binary(min_size=length, max_size=length))

        def do():
            self.sb[s] = value
        if not self.usable:
            return self.expect(ValueError, do)
        if not self.writable:
            return self.expect(TypeError, do)
        if length != n:
            return self.expect(ValueError, do)
        do()
        self.model[s] = value

    @rule(i=indexes)
    def delete(self, i):
        def do():
            del self.sb[i]
        self.expect((TypeError, ValueError), do)

    @rule()
    def wipe(self):
        if not self.usable:
            return self.expect(ValueError, lambda: zeroize.zeroize1(self.sb))
        if not self.writable:
            return self.expect(TypeError, lambda: zeroize.zeroize1(self.sb))
        zeroize.zeroize1(self.sb)
        self.model[:] = bytes(SIZE)

    @rule(i=st.integers(0, SIZE - 1), v=st.integers(0, 255))
    @precondition(lambda self: self.views)
    def write_through_view(self, i, v):
        view = self.views[-1]
        if view.readonly:
            with pytest.raises(TypeError):
                view[i] = v
        else:
            view[i] = v
            self.model[i] = v

    # ---- exports ----
    @rule(kind=st.sampled_from(["memoryview", "numpy"]))
    def export(self, kind):
        make = (lambda: memoryview(self.sb)) if kind == "memoryview" else \
            (lambda: memoryview(np.frombuffer(self.sb, dtype=np.uint8)))
        if not self.usable:
            return self.expect(ValueError, make)
        self.views.append(make())

    @rule()
    @precondition(lambda self: self.views)
    def release(self):
        self.views.pop().release()

    # ---- modes and lifetime ----
    @rule(mode=st.sampled_from(["readonly", "noaccess", "readwrite"]))
    def protect(self, mode):
        op = getattr(self.sb, mode)
        if self.closed:
            return self.expect(ValueError, op)
        if self.views:
            return self.expect(BufferError, op)
        op()
        self.mode = mode

    @rule()
    def copy(self):
        if not self.usable:
            return self.expect(ValueError, self.sb.copy)
        with self.sb.copy() as c:
            assert c == bytes(self.model)

    @rule()
    def close(self):
        if self.views and not self.closed:
            return self.expect(BufferError, self.sb.close)
        self.sb.close()
        self.closed = True

    @invariant()
    def contents_match(self):
        assert len(self.sb) == SIZE
        assert self.sb.closed == self.closed
        assert self.sb.mode == ("closed" if self.closed else self.mode)
        if self.usable:
            assert bytes(self.sb) == bytes(self.model)

    def teardown(self):
        for v in self.views:
            v.release()
        if not self.closed:
            self.sb.close()


SecureBufferMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                                 deadline=None)
TestSecureBufferMachine = SecureBufferMachine.TestCase
