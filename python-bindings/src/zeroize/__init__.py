"""Wipe secrets from memory, and keep them where they cannot leak.

A drop-in replacement for the ``zeroize`` package (``zeroize1`` and
``zeroize_np`` keep their names and behaviour), built on libzeroize:

* ``zeroize1(buf)`` / ``zeroize_np(arr)`` overwrite any writable buffer
  (bytearray, memoryview, array.array, mmap, numpy arrays of any dtype and
  layout, SecureBuffer) with zeros in a way no optimiser can remove.
* ``mlock(buf)`` / ``munlock(buf, wipe=True)`` lock caller-owned memory in
  RAM and out of core dumps, with per-page reference counts.
* ``SecureBuffer`` keeps a secret in its own guarded, locked, dump-excluded,
  wipe-on-fork pages, behaves like a fixed-size bytearray, exports its
  memory to memoryview/numpy/hashlib/cryptography without copies, compares
  in constant time and is wiped by ``close()``.
* ``Arena()`` packs many small secrets together (a 32-byte secret costs 48
  bytes of locked memory instead of a page): ``arena.buffer(n)`` and
  ``arena.random(n)`` return SecureBuffers separated by canaries rather
  than guard pages.
* ``getpass()`` reads a password from the terminal straight into a
  SecureBuffer; ``SecureBuffer.from_file()`` and ``SecureBuffer.random()``
  fill one from a key file or the OS CSPRNG without an intermediate bytes.

Python itself copies freely: any ``bytes`` or ``str`` you make from a
secret (``bytes(sb)``, ``sb[a:b]``, ``.decode()``, f-strings) is a copy
this package cannot wipe.  RECIPES.md, installed with this package at
{recipes}
shows the copy-free way to use hashlib, hmac, sockets, files, numpy and
python3-cryptography.
"""

import enum as _enum
import operator as _operator
import os as _os
import sys as _sys
import warnings as _warnings

from . import _zeroize
from ._zeroize import (
    HAVE_SHIELD,
    Arena,
    LockError,
    SecureBuffer,
    ShieldError,
    Shielded,
    get_backend,
    get_lock_policy,
    mlock,
    munlock,
    set_backend,
    set_lock_policy,
    stats,
    trim,
    zeroize1,
    zeroize_np,
)

#: Where RECIPES.md is installed (copy-free use of common libraries).
RECIPES = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "RECIPES.md")
__doc__ = __doc__.replace("{recipes}", RECIPES)

__all__ = [
    "Arena",
    "ErrorCode",
    "LockError",
    "Protection",
    "SecureBuffer",
    "ShieldError",
    "Shielded",
    "get_backend",
    "get_lock_policy",
    "GetPassWarning",
    "getpass",
    "info",
    "mlock",
    "munlock",
    "set_backend",
    "set_lock_policy",
    "stats",
    "trim",
    "zeroize1",
    "zeroize_np",
]

__version__ = "0.1.0"


class Protection(_enum.Flag):
    """What protects a SecureBuffer, as granted by the kernel (``sb.info()``)."""

    NONE = 0
    #: pages locked in RAM (mlock): never written to swap
    LOCKED = _zeroize.INFO_LOCKED
    #: excluded from core dumps (MADV_DONTDUMP)
    DONTDUMP = _zeroize.INFO_DONTDUMP
    #: a forked child sees zeros (MADV_WIPEONFORK)
    WIPEONFORK = _zeroize.INFO_WIPEONFORK
    #: guard pages before and after: overflows fault at once
    GUARDED = _zeroize.INFO_GUARDED
    #: memfd_secret: removed from the kernel's direct map
    SECRETMEM = _zeroize.INFO_SECRETMEM
    #: canaries around the block, checked when it is freed
    CANARY = _zeroize.INFO_CANARY
    #: packed in an Arena: canaries, not guard pages, between it and its
    #: neighbours (never reported together with GUARDED)
    PACKED = _zeroize.INFO_PACKED


_zeroize._register_protection_type(Protection)


class ErrorCode(_enum.IntEnum):
    """Why libzeroize refused (``zz_last_error_code()``), as ``err.zz_error``.

    Every LockError, and every MemoryError or OSError this package raises
    for a failure of the library, carries the library's code in its
    ``zz_error`` attribute (an int equal to one of these members).
    """

    #: the library gave no cause (the error came from elsewhere)
    NONE = _zeroize.ERR_NONE
    #: mlock refused: RLIMIT_MEMLOCK reached without CAP_IPC_LOCK (``ulimit -l``)
    MEMLOCK = _zeroize.ERR_MEMLOCK
    #: the kernel refused a mapping: out of memory or vm.max_map_count
    MAPCOUNT = _zeroize.ERR_MAPCOUNT
    #: the requested size itself is too large
    NOMEM = _zeroize.ERR_NOMEM
    #: the kernel lacks MADV_DONTDUMP or MADV_WIPEONFORK
    ADVICE = _zeroize.ERR_ADVICE
    #: an invalid argument
    ARGUMENT = _zeroize.ERR_ARGUMENT
    #: a fixed-capacity Arena has no room
    ARENA_FULL = _zeroize.ERR_ARENA_FULL
    #: memfd_secret is refused or missing (set_backend("secretmem"))
    SECRETMEM = _zeroize.ERR_SECRETMEM
    #: getrandom failed: no canary key
    RANDOM = _zeroize.ERR_RANDOM
    #: larger than a fixed Arena's blocks may be
    ARENA_BLOCK = _zeroize.ERR_ARENA_BLOCK
    #: mlock() of memory that is not mapped
    UNMAPPED = _zeroize.ERR_UNMAPPED
    #: memfd_secret refused for RLIMIT_MEMLOCK (``ulimit -l``)
    SECRETMEM_LIMIT = _zeroize.ERR_SECRETMEM_LIMIT
    #: a fixed Arena's memory no longer meets its promises: make a new one
    ARENA_UNFIT = _zeroize.ERR_ARENA_UNFIT
    #: a block in no-access mode cannot be copied (zz_realloc; EACCES)
    NOACCESS = _zeroize.ERR_NOACCESS


def info(buf: SecureBuffer) -> Protection:
    """The protections in force for a SecureBuffer; the same as ``buf.info()``."""
    if not isinstance(buf, SecureBuffer):
        raise TypeError(f"info() expects a SecureBuffer, not {type(buf).__name__!r}")
    return buf.info()


class GetPassWarning(UserWarning):
    """getpass() could not turn echo off: the input may be visible."""


def _open_terminal():
    """The file descriptor getpass() talks to, and whether to close it.

    The controlling terminal (/dev/tty) when there is one, like the
    standard library's getpass; else standard input.
    """
    try:
        return _os.open("/dev/tty", _os.O_RDWR | _os.O_NOCTTY | _os.O_CLOEXEC), True
    except OSError:
        return 0, False


def getpass(prompt: str = "Password: ", *, max_length: int = 4096) -> SecureBuffer:
    """Read a password from the terminal into a SecureBuffer, with echo off.

    The prompt is written to the controlling terminal (/dev/tty) and the
    line is read from it with one read(2) per byte straight into secure
    memory: no str or bytes ever holds the password.  The trailing newline
    is removed and the result has exactly the line's length (which may be
    0).  Echo is restored even when the read is interrupted (Ctrl-C raises
    KeyboardInterrupt as usual).

    Without a controlling terminal, standard input (file descriptor 0) is
    read the same way; echo is turned off when it is a terminal, otherwise
    a GetPassWarning is issued and the prompt goes to standard error.  Input
    already buffered by ``sys.stdin`` is not seen.

    Raises EOFError when the input ends before any byte, ValueError (after
    wiping what was read) for a line longer than ``max_length`` bytes.  The
    kernel's terminal driver keeps its own copy of typed input, which no
    process can wipe.
    """
    import termios

    if not isinstance(prompt, str):
        raise TypeError(f"getpass() prompt must be a str, not {type(prompt).__name__!r}")
    max_length = _max_length(max_length)
    fd, close_fd = _open_terminal()
    try:
        if not _os.isatty(fd):
            _warnings.warn("can not control echo on the terminal: input may be echoed",
                           GetPassWarning, stacklevel=2)
            _write_all(2, prompt.encode())
            return _zeroize._read_secret_line(fd, max_length)
        old = termios.tcgetattr(fd)
        quiet = list(old)
        quiet[3] &= ~termios.ECHO
        # Echo goes off before the prompt appears, so nothing typed after
        # the prompt is echoed or discarded by TCSAFLUSH.
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            _write_all(fd, prompt.encode())
            return _zeroize._read_secret_line(fd, max_length)
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, old)
            _write_all(fd, b"\n")
    finally:
        if close_fd:
            _os.close(fd)


def _max_length(value):
    """getpass()'s max_length as an int in [0, sys.maxsize], checked before
    anything is shown or read."""
    try:
        n = _operator.index(value)
    except TypeError as e:
        raise TypeError(f"getpass() max_length must be an int, not "
                        f"{type(value).__name__!r} ({e})") from None
    if n < 0:
        raise ValueError(f"getpass() max_length must be >= 0, not {n}")
    if n > _sys.maxsize:
        raise OverflowError(f"getpass() max_length must be at most sys.maxsize "
                            f"({_sys.maxsize}), not {n}")
    return n


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[_os.write(fd, data):]
