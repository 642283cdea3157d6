/*
 * _zeroize.c - the CPython extension behind the `zeroize` package: a thin
 * layer over libzeroize (include/zeroize.h), compiled together with the
 * library's own sources by setup.py.  This file holds the module and its
 * functions; _securebuffer.c the SecureBuffer type, _arena.c the Arena type,
 * _views.c the helpers that read, write and wipe other objects' buffers.
 *
 * Python-equivalent pseudocode of the API (what each entry point does; the
 * real work happens in C so no secret is ever copied into a bytes or str):
 *
 *   class LockError(OSError, TypeError): ...     # errno set; message from
 *                                                # zz_last_error()
 *
 *   def zeroize1(buf):                           # also zeroize_np(arr)
 *       view = memoryview(buf)                   # PyBUF_RECORDS: strided,
 *       if view.readonly or view.format == "O"   #   writable, with format;
 *               or view.suboffsets:              #   never PIL-style
 *           raise TypeError
 *       for run in contiguous_runs(view):        # walks shape/strides;
 *           zz_wipe(run.address, run.nbytes)     # one run if contiguous
 *                                                # GIL released >= 64 KiB
 *   def mlock(buf):
 *       zz_lock(lowest_address(buf), extent(buf)) or raise LockError
 *   def munlock(buf, *, wipe=True):
 *       if wipe: zeroize1(buf)
 *       zz_unlock_keep(lowest_address(buf), extent(buf)) or raise LockError
 *   def stats(): return dict(live_blocks=..., live_bytes=...,
 *                            locked_bytes=..., mapped_bytes=...)
 *   def set_lock_policy(name): zz_set_lock_policy({"required": 0,
 *                                                  "best-effort": 1}[name])
 *   def get_lock_policy(): return "required" | "best-effort"
 *   def set_backend(name): zz_set_backend({"anon": 0, "secretmem": 1,
 *                                          "auto": 2}[name])
 *   def get_backend(): return "anon" | "secretmem" | "auto"
 *   def _read_secret_line(fd, max_length):      # getpass() helper
 *       block = zz_alloc(...)
 *       while (c := os.read(fd, 1)) not in (b"", b"\n"): block += c
 *       return SecureBuffer(exactly the line)   # never a bytes object
 *   def _volatile_loop_wipe(buf): for i in range(len(buf)): buf[i] = 0
 *   def _wipe_c_loop(nbytes, reps): return seconds spent in reps zz_wipe()s
 *
 *   class SecureBuffer:                          # one zz_alloc block, or a
 *                                                # packed block of an Arena
 *       def __new__(cls, size_or_bytes_like, *, wipe_source=False):
 *           if has_index(arg): block = zz_alloc(operator.index(arg))
 *           else: block = zz_alloc(len); copy_secret; maybe wipe arg
 *       @classmethod random(cls, n)      # getrandom(2) into the block
 *       @classmethod from_file(cls, path_or_fd)   # read(2) into the block
 *       __len__, __getitem__, __setitem__ (same length), __eq__/__ne__
 *       (zz_equal; no ordering), __buffer__ (export counted, also in the
 *       arena), close(), closed, mode, packed, info(), readonly(),
 *       noaccess(), readwrite() (zz_protect; packed: UnsupportedOperation),
 *       copy() (same arena if packed), __enter__/__exit__, __repr__ (never
 *       the contents), __hash__ = None, pickling and copy.copy refused.
 *       Every copy between secure blocks is copy_secret(): volatile 8-byte
 *       words through general-purpose registers, never memcpy.
 *
 *   class Arena:                                 # one zz_arena
 *       def __init__(self, capacity=0): zz_arena_create(capacity)
 *       def buffer(self, n): return SecureBuffer(zz_arena_alloc(n))  # linked
 *       def random(self, n): buffer(n) filled by getrandom(2)
 *       def close(self):                         # BufferError if exported
 *           for sb in self.open_buffers: sb.closed = True
 *           zz_arena_destroy()                   # wipes every block
 *       stats(), closed, capacity, __enter__/__exit__, __repr__
 *
 * Every refused operation leaves the objects exactly as they were.
 */
#include "_zeroize.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

PyObject *zpy_LockError;
PyObject *zpy_protection_type;
PyObject *zpy_UnsupportedOperation;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* A refusal to lock memory: the library says so (RLIMIT_MEMLOCK reached,
 * for mlock or for memfd_secret's always-locked pages). */
static int is_lock_code(int code)
{
    return code == ZZ_ERR_MEMLOCK || code == ZZ_ERR_SECRETMEM_LIMIT;
}

/* The allocation could not get memory: too large, out of mappings or
 * memory, or no room (or no fitting room) in a fixed arena. */
static int is_memory_code(int code)
{
    return code == ZZ_ERR_NOMEM || code == ZZ_ERR_MAPCOUNT || code == ZZ_ERR_ARENA_FULL ||
           code == ZZ_ERR_ARENA_BLOCK || code == ZZ_ERR_ARENA_UNFIT;
}

/* Only for a failure the library gave no cause for (ZZ_ERR_NONE: none of
 * its calls has failed in this thread, so the errno came from elsewhere):
 * the errnos mlock(2) reports a refusal with. */
static int is_lock_errno(int err)
{
    return err == EAGAIN || err == EPERM || err == ENOMEM;
}

/* Builds exc_type(errno, message) (exc_type(message) for a type that is
 * not an OSError), sets exc.zz_error = code, and raises it. */
static void raise_with_code(PyObject *exc_type, int err, PyObject *msg, int code)
{
    PyObject *exc = PyObject_IsSubclass(exc_type, PyExc_OSError)
                        ? PyObject_CallFunction(exc_type, "iO", err, msg) /* sets .errno */
                        : PyObject_CallOneArg(exc_type, msg);
    if (exc == NULL)
        return;
    PyObject *value = PyLong_FromLong(code);
    if (value == NULL || PyObject_SetAttrString(exc, "zz_error", value) < 0) {
        Py_XDECREF(value);
        Py_DECREF(exc);
        return;
    }
    Py_DECREF(value);
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

/* Raises exc_type(errno, message) where message is what the library says
 * about the failure, and exc.zz_error its zz_last_error_code().  The
 * library's lock messages name RLIMIT_MEMLOCK and `ulimit -l` themselves;
 * a LockError for a refusal it gave no cause for gets that hint here. */
PyObject *zpy_raise_library_error(PyObject *exc_type, int err, const char *what)
{
    int code = zz_last_error_code();
    const char *detail = code == ZZ_ERR_NONE ? "" : zz_last_error();
    const char *hint = "";
    if (exc_type == zpy_LockError && code == ZZ_ERR_NONE && is_lock_errno(err))
        hint = " (locked memory is limited by RLIMIT_MEMLOCK: raise it with "
               "`ulimit -l`, or grant CAP_IPC_LOCK)";
    PyObject *msg = PyUnicode_FromFormat("%s: %s%s", what,
                                         detail[0] ? detail : strerror(err), hint);
    if (msg == NULL)
        return NULL;
    raise_with_code(exc_type, err, msg, code);
    Py_DECREF(msg);
    return NULL;
}

/* zz_alloc, zz_realloc, zz_arena_create or zz_arena_alloc failed, and the
 * library's code says why: a lock refusal is a LockError, a lack of memory
 * a MemoryError, anything else (a kernel without memfd_secret or madvise
 * flags, getrandom failing) an OSError. */
PyObject *zpy_raise_alloc_error(int err)
{
    int code = zz_last_error_code();
    if (is_lock_code(code) || (code == ZZ_ERR_NONE && (err == EAGAIN || err == EPERM)))
        return zpy_raise_library_error(zpy_LockError, err, "cannot allocate locked memory");
    if (is_memory_code(code) || (code == ZZ_ERR_NONE && err == ENOMEM))
        return zpy_raise_library_error(PyExc_MemoryError, err, "cannot allocate secure memory");
    return zpy_raise_library_error(PyExc_OSError, err, "cannot allocate secure memory");
}

/* ------------------------------------------------------------------------ */
/* Module functions: wiping and locking caller-owned memory                 */
/* ------------------------------------------------------------------------ */

/* Parses (obj, /, *, <flag>=False) by hand: PyArg_ParseTupleAndKeywords
 * wants a char ** keyword list, which string literals cannot be in C. */
int zpy_parse_obj_and_flag(PyObject *args, PyObject *kwds, const char *fname,
                           const char *flag_name, PyObject **obj, int *flag)
{
    if (PyTuple_GET_SIZE(args) != 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly one positional argument (%zd given)",
                     fname, PyTuple_GET_SIZE(args));
        return -1;
    }
    *obj = PyTuple_GET_ITEM(args, 0);
    if (kwds == NULL || PyDict_GET_SIZE(kwds) == 0)
        return 0;
    PyObject *value = PyDict_GetItemString(kwds, flag_name);
    if (value == NULL || PyDict_GET_SIZE(kwds) != 1) {
        PyErr_Format(PyExc_TypeError, "%s() accepts only the keyword argument '%s'", fname,
                     flag_name);
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0)
        return -1;
    *flag = truth;
    return 0;
}

Py_ssize_t zpy_size_arg(PyObject *arg, const char *who)
{
    if (!PyIndex_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a size (an int), not '%.100s'", who,
                     Py_TYPE(arg)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "%s() size must be >= 0, not %zd", who, n);
        return -1;
    }
    return n;
}

PyDoc_STRVAR(zeroize1_doc,
"zeroize1(buf, /)\n--\n\n"
"Overwrite every byte of a writable buffer with zeros (zz_wipe).\n\n"
"Accepts bytearray, memoryview (and slices of it), array.array, mmap,\n"
"numpy arrays of any dtype and layout (non-contiguous and negative strides\n"
"included) and SecureBuffer.  Only the bytes the buffer covers change: for\n"
"a strided view the gaps between items are left alone.  The store cannot be\n"
"optimised away.  The GIL is released for buffers of 64 KiB and more.\n\n"
"Raises TypeError for bytes, str, read-only buffers and numpy arrays of\n"
"Python objects (dtype=object); ValueError for a closed or no-access\n"
"SecureBuffer.");

static PyObject *zeroize1(PyObject *module, PyObject *buf)
{
    (void)module;
    Py_buffer view;
    if (zpy_get_wipeable_view(buf, &view, "zeroize1", "wipe") < 0)
        return NULL;
    zpy_wipe_view(&view);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(zeroize_np_doc,
"zeroize_np(arr, /)\n--\n\n"
"Overwrite a numpy array's memory with zeros; the same as zeroize1(arr)\n"
"(kept under the name the original zeroize package used).  Any dtype and\n"
"layout works except dtype=object (TypeError).");

static PyObject *zeroize_np(PyObject *module, PyObject *arr)
{
    (void)module;
    Py_buffer view;
    if (zpy_get_wipeable_view(arr, &view, "zeroize_np", "wipe") < 0)
        return NULL;
    zpy_wipe_view(&view);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(mlock_doc,
"mlock(buf, /)\n--\n\n"
"Lock the pages under a writable buffer in RAM and leave them out of core\n"
"dumps (zz_lock).  Locks are counted per page, so two buffers sharing a\n"
"page can be locked and unlocked independently.  Pair every mlock() with a\n"
"munlock() before the buffer is freed or resized.  Other data sharing\n"
"those pages is locked too.  A SecureBuffer is locked already: mlock(sb)\n"
"only checks that it is usable.\n\n"
"Raises LockError (an OSError and a TypeError, with errno) when the kernel\n"
"refuses, e.g. because RLIMIT_MEMLOCK (`ulimit -l`) is too small.");

/* A SecureBuffer's block is locked by the allocator already, so mlock and
 * munlock on a SecureBuffer object only check it and, for munlock, wipe it.
 * (An extra zz_lock count on a block's pages is redundant, and early
 * libzeroize builds let the matching zz_unlock strip the block's own lock
 * and MADV_DONTDUMP.) */
static int is_securebuffer(PyObject *obj)
{
    return Py_IS_TYPE(obj, &zpy_SecureBufferType);
}

static PyObject *py_mlock(PyObject *module, PyObject *buf)
{
    (void)module;
    Py_buffer view;
    if (zpy_get_wipeable_view(buf, &view, "mlock", "lock") < 0)
        return NULL;
    if (is_securebuffer(buf)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    char *lo;
    size_t extent;
    zpy_view_extent(&view, &lo, &extent);
    int rc = zz_lock(lo, extent);
    int err = errno;
    PyBuffer_Release(&view);
    if (rc != 0)
        return zpy_raise_library_error(zpy_LockError, err, "mlock failed");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(munlock_doc,
"munlock(buf, /, *, wipe=True)\n--\n\n"
"Undo one mlock(buf).  With wipe=True (the default) the buffer is first\n"
"wiped as by zeroize1() (zz_unlock); wipe=False keeps the contents\n"
"(zz_unlock_keep).  A page becomes unlocked when every mlock() covering it\n"
"has been undone.  Raises LockError if the kernel refuses (the buffer is\n"
"wiped regardless when wipe=True).");

static PyObject *py_munlock(PyObject *module, PyObject *args, PyObject *kwds)
{
    (void)module;
    PyObject *buf;
    int wipe = 1;
    if (zpy_parse_obj_and_flag(args, kwds, "munlock", "wipe", &buf, &wipe) < 0)
        return NULL;
    Py_buffer view;
    if (zpy_get_wipeable_view(buf, &view, "munlock", "unlock") < 0)
        return NULL;
    if (is_securebuffer(buf)) { /* see is_securebuffer() */
        if (wipe)
            zpy_wipe_view(&view);
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    char *lo;
    size_t extent;
    zpy_view_extent(&view, &lo, &extent);
    int rc;
    if (wipe && (size_t)view.len == extent && PyBuffer_IsContiguous(&view, 'A')) {
        rc = zz_unlock(lo, extent);
    } else {
        /* a strided view: wipe only its own bytes, then unlock the span */
        if (wipe)
            zpy_wipe_view(&view);
        rc = zz_unlock_keep(lo, extent);
    }
    int err = errno;
    PyBuffer_Release(&view);
    if (rc != 0)
        return zpy_raise_library_error(zpy_LockError, err, "munlock failed");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stats_doc,
"stats()\n--\n\n"
"A snapshot of the library's process-wide counters as a dict:\n"
"live_blocks, live_bytes (secure blocks handed out and their sizes),\n"
"locked_bytes (counted against RLIMIT_MEMLOCK) and mapped_bytes.");

static PyObject *stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    zz_stats s;
    zz_get_stats(&s);
    return Py_BuildValue("{s:n,s:n,s:n,s:n}",
                         "live_blocks", (Py_ssize_t)s.live_blocks,
                         "live_bytes", (Py_ssize_t)s.live_bytes,
                         "locked_bytes", (Py_ssize_t)s.locked_bytes,
                         "mapped_bytes", (Py_ssize_t)s.mapped_bytes);
}

PyDoc_STRVAR(set_lock_policy_doc,
"set_lock_policy(policy, /)\n--\n\n"
"Choose what happens to SecureBuffers allocated from now on when their\n"
"pages cannot be locked in RAM: \"required\" (the default) raises\n"
"LockError, \"best-effort\" hands out an unlocked buffer (its info() then\n"
"lacks Protection.LOCKED).  Any other value raises ValueError.  The\n"
"environment variable ZEROIZE_LOCK sets the initial policy.");

static PyObject *set_lock_policy(PyObject *module, PyObject *arg)
{
    (void)module;
    int policy;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "set_lock_policy() expects a str, not '%.100s'",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (PyUnicode_CompareWithASCIIString(arg, "required") == 0)
        policy = ZZ_LOCK_REQUIRED;
    else if (PyUnicode_CompareWithASCIIString(arg, "best-effort") == 0)
        policy = ZZ_LOCK_BEST_EFFORT;
    else {
        PyErr_Format(PyExc_ValueError,
                     "unknown lock policy %R: expected \"required\" or \"best-effort\"", arg);
        return NULL;
    }
    if (zz_set_lock_policy(policy) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_lock_policy_doc,
"get_lock_policy()\n--\n\n"
"The current lock policy: \"required\" or \"best-effort\".");

static PyObject *get_lock_policy(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyUnicode_FromString(zz_get_lock_policy() == ZZ_LOCK_BEST_EFFORT ? "best-effort"
                                                                             : "required");
}

static const struct {
    const char *name;
    int value;
} backends[] = {
    {"anon", ZZ_BACKEND_ANON},
    {"secretmem", ZZ_BACKEND_SECRETMEM},
    {"auto", ZZ_BACKEND_AUTO},
};

PyDoc_STRVAR(set_backend_doc,
"set_backend(backend, /)\n--\n\n"
"Choose where SecureBuffers allocated from now on live: \"anon\" (the\n"
"default: private anonymous memory), \"secretmem\" (memfd_secret(2):\n"
"removed from the kernel's direct map, so /proc/PID/mem, process_vm_readv\n"
"and ptrace cannot read it; allocations fail where the kernel lacks it) or\n"
"\"auto\" (secretmem when available, else anon).  Existing buffers stay\n"
"where they are; info() reports Protection.SECRETMEM.  The environment\n"
"variable ZEROIZE_BACKEND sets the initial choice.  Other values raise\n"
"ValueError.");

static PyObject *set_backend(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "set_backend() expects a str, not '%.100s'",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (PyUnicode_CompareWithASCIIString(arg, backends[i].name) == 0) {
            if (zz_set_backend(backends[i].value) != 0)
                return PyErr_SetFromErrno(PyExc_OSError);
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError,
                 "unknown backend %R: expected \"anon\", \"secretmem\" or \"auto\"", arg);
    return NULL;
}

PyDoc_STRVAR(get_backend_doc,
"get_backend()\n--\n\n"
"The backend chosen by set_backend() or ZEROIZE_BACKEND: \"anon\",\n"
"\"secretmem\" or \"auto\".");

static PyObject *get_backend(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    int b = zz_get_backend();
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (backends[i].value == b)
            return PyUnicode_FromString(backends[i].name);
    return PyLong_FromLong(b);
}

/* ------------------------------------------------------------------------ */
/* Benchmark helpers (private)                                              */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(volatile_loop_wipe_doc,
"_volatile_loop_wipe(buf, /)\n--\n\n"
"Benchmark baseline, not for use: zero a C-contiguous writable buffer one\n"
"byte at a time through a volatile pointer, the way naive wipers do.");

static PyObject *volatile_loop_wipe(PyObject *module, PyObject *buf)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    volatile unsigned char *p = view.buf;
    Py_ssize_t n = view.len;
    if (n >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            p[i] = 0;
        Py_END_ALLOW_THREADS
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            p[i] = 0;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(wipe_c_loop_doc,
"_wipe_c_loop(nbytes, reps, /)\n--\n\n"
"Benchmark baseline, not for use: call zz_wipe on an nbytes heap buffer\n"
"reps times in C and return the total seconds (CLOCK_MONOTONIC).");

static PyObject *wipe_c_loop(PyObject *module, PyObject *args)
{
    (void)module;
    Py_ssize_t nbytes, reps;
    if (!PyArg_ParseTuple(args, "nn:_wipe_c_loop", &nbytes, &reps))
        return NULL;
    if (nbytes < 0 || reps < 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes and reps must be >= 0");
        return NULL;
    }
    unsigned char *buf = PyMem_RawMalloc(nbytes ? (size_t)nbytes : 1);
    if (buf == NULL)
        return PyErr_NoMemory();
    memset(buf, 0xA5, (size_t)nbytes); /* fault the pages in first */
    struct timespec t0, t1;
    Py_BEGIN_ALLOW_THREADS
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (Py_ssize_t i = 0; i < reps; i++)
        zz_wipe(buf, (size_t)nbytes);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(buf);
    return PyFloat_FromDouble((double)(t1.tv_sec - t0.tv_sec) +
                              (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
}

/* ------------------------------------------------------------------------ */
/* getpass() helper                                                         */
/* ------------------------------------------------------------------------ */

/* Waits up to 250 ms for fd to become readable, then reads one byte.
 * Returns 1 or 0 (end of input) from read(2), or -1 with *err set (EAGAIN
 * when nothing arrived in time).  Called without the GIL. */
static ssize_t read_byte_when_ready(int fd, unsigned char *c, int *err)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready = poll(&p, 1, 250);
    if (ready <= 0) {
        *err = ready == 0 ? EAGAIN : errno;
        return -1;
    }
    ssize_t r = read(fd, c, 1);
    *err = errno;
    return r;
}

PyDoc_STRVAR(read_secret_line_doc,
"_read_secret_line(fd, max_length, /)\n--\n\n"
"Private helper of getpass(): read one line from fd with one read(2) per\n"
"byte into secure memory, drop the newline and return a SecureBuffer of\n"
"exactly the line's length.  EOFError if the input ends before any byte,\n"
"ValueError (after wiping) if the line exceeds max_length bytes.  Signals\n"
"(Ctrl-C) interrupt the read and raise as usual.");

static PyObject *read_secret_line(PyObject *module, PyObject *args)
{
    (void)module;
    int fd;
    Py_ssize_t max_length;
    if (!PyArg_ParseTuple(args, "in:_read_secret_line", &fd, &max_length))
        return NULL;
    if (max_length < 0) {
        PyErr_SetString(PyExc_ValueError, "max_length must be >= 0");
        return NULL;
    }
    Py_ssize_t cap = 64, len = 0;
    unsigned char *data = zpy_secure_alloc(cap);
    if (data == NULL)
        return NULL;
    int seen_eof = 0;
    for (;;) {
        unsigned char c;
        ssize_t r;
        int err;
        /* A signal that arrived while we were not blocked in the kernel
         * would otherwise wait for the next keystroke: check before each
         * wait, and wait in slices so a late one is seen within 250 ms. */
        if (PyErr_CheckSignals() < 0)
            goto fail;
        Py_BEGIN_ALLOW_THREADS
        r = read_byte_when_ready(fd, &c, &err);
        Py_END_ALLOW_THREADS
        if (r < 0) {
            if (err == EINTR || err == EAGAIN)
                continue;
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        if (r == 0) {
            seen_eof = 1;
            break;
        }
        if (c == '\n')
            break;
        if (len == max_length) {
            zz_wipe(&c, 1);
            PyErr_Format(PyExc_ValueError, "input line longer than %zd bytes", max_length);
            goto fail;
        }
        if (len == cap) {
            unsigned char *bigger = zz_realloc(data, (size_t)cap * 2);
            if (bigger == NULL) {
                zz_wipe(&c, 1);
                zpy_raise_alloc_error(errno);
                goto fail;
            }
            data = bigger;
            cap *= 2;
        }
        data[len++] = c;
        zz_wipe(&c, 1);
    }
    if (seen_eof && len == 0) {
        PyErr_SetNone(PyExc_EOFError);
        goto fail;
    }
    if (len > 0 && data[len - 1] == '\r')
        data[--len] = 0;
    unsigned char *exact = zz_realloc(data, (size_t)len);
    if (exact == NULL) {
        zpy_raise_alloc_error(errno);
        goto fail;
    }
    return zpy_sb_wrap(&zpy_SecureBufferType, exact, len);
fail:
    zz_free(data);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                   */
/* ------------------------------------------------------------------------ */

static PyObject *register_protection_type(PyObject *module, PyObject *cls)
{
    (void)module;
    Py_XSETREF(zpy_protection_type, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"zeroize1", zeroize1, METH_O, zeroize1_doc},
    {"zeroize_np", zeroize_np, METH_O, zeroize_np_doc},
    {"mlock", py_mlock, METH_O, mlock_doc},
    {"munlock", (PyCFunction)(void (*)(void))py_munlock, METH_VARARGS | METH_KEYWORDS,
     munlock_doc},
    {"stats", stats, METH_NOARGS, stats_doc},
    {"set_lock_policy", set_lock_policy, METH_O, set_lock_policy_doc},
    {"get_lock_policy", get_lock_policy, METH_NOARGS, get_lock_policy_doc},
    {"set_backend", set_backend, METH_O, set_backend_doc},
    {"get_backend", get_backend, METH_NOARGS, get_backend_doc},
    {"_read_secret_line", read_secret_line, METH_VARARGS, read_secret_line_doc},
    {"_volatile_loop_wipe", volatile_loop_wipe, METH_O, volatile_loop_wipe_doc},
    {"_wipe_c_loop", wipe_c_loop, METH_VARARGS, wipe_c_loop_doc},
    {"_register_protection_type", register_protection_type, METH_O,
     "Private: the class info() returns (zeroize.Protection)."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"Low-level half of the zeroize package (a C extension over libzeroize).\n"
"Import `zeroize` instead.");

static struct PyModuleDef zeroize_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zeroize._zeroize",
    .m_doc = module_doc,
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_int(PyObject *m, const char *name, long value)
{
    return PyModule_AddIntConstant(m, name, value);
}

/* zz_last_error_code()'s values, as ERR_<name> (zeroize.ErrorCode). */
static int add_error_codes(PyObject *m)
{
    static const struct {
        const char *name;
        int value;
    } codes[] = {
        {"ERR_NONE", ZZ_ERR_NONE},
        {"ERR_MEMLOCK", ZZ_ERR_MEMLOCK},
        {"ERR_MAPCOUNT", ZZ_ERR_MAPCOUNT},
        {"ERR_NOMEM", ZZ_ERR_NOMEM},
        {"ERR_ADVICE", ZZ_ERR_ADVICE},
        {"ERR_ARGUMENT", ZZ_ERR_ARGUMENT},
        {"ERR_ARENA_FULL", ZZ_ERR_ARENA_FULL},
        {"ERR_SECRETMEM", ZZ_ERR_SECRETMEM},
        {"ERR_RANDOM", ZZ_ERR_RANDOM},
        {"ERR_ARENA_BLOCK", ZZ_ERR_ARENA_BLOCK},
        {"ERR_UNMAPPED", ZZ_ERR_UNMAPPED},
        {"ERR_SECRETMEM_LIMIT", ZZ_ERR_SECRETMEM_LIMIT},
        {"ERR_ARENA_UNFIT", ZZ_ERR_ARENA_UNFIT},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (add_int(m, codes[i].name, codes[i].value) < 0)
            return -1;
    return 0;
}

PyMODINIT_FUNC PyInit__zeroize(void); /* the one symbol Python looks up */

/* tp_richcompare gives every ordering slot a wrapper (__lt__ ...) that
 * help() lists although it can only raise: a SecureBuffer has == and !=
 * only.  The slot itself stays (it answers NotImplemented for ordering,
 * so `<` raises TypeError as for any unordered type). */
static int drop_ordering_wrappers(PyTypeObject *type)
{
    static const char *const names[] = {"__lt__", "__le__", "__gt__", "__ge__"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (PyDict_DelItemString(type->tp_dict, names[i]) < 0)
            return -1;
    PyType_Modified(type);
    return 0;
}

PyMODINIT_FUNC PyInit__zeroize(void)
{
    if (zpy_SecureBufferType.tp_dict == NULL) {
        if (PyType_Ready(&zpy_SecureBufferType) < 0 ||
            drop_ordering_wrappers(&zpy_SecureBufferType) < 0)
            return NULL;
    }
    if (PyType_Ready(&zpy_ArenaType) < 0)
        return NULL;
    if (zpy_UnsupportedOperation == NULL) {
        PyObject *io = PyImport_ImportModule("io");
        if (io == NULL)
            return NULL;
        zpy_UnsupportedOperation = PyObject_GetAttrString(io, "UnsupportedOperation");
        Py_DECREF(io);
        if (zpy_UnsupportedOperation == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&zeroize_module);
    if (m == NULL)
        return NULL;
    if (zpy_LockError == NULL) {
        PyObject *bases = PyTuple_Pack(2, PyExc_OSError, PyExc_TypeError);
        if (bases == NULL)
            goto fail;
        zpy_LockError = PyErr_NewExceptionWithDoc(
            "zeroize.LockError",
            "Locking memory in RAM failed (mlock, munlock, or a SecureBuffer under\n"
            "the \"required\" lock policy).  An OSError (errno is set) and a\n"
            "TypeError.  The usual cause is RLIMIT_MEMLOCK: raise it with\n"
            "`ulimit -l`, or run with CAP_IPC_LOCK.",
            bases, NULL);
        Py_DECREF(bases);
        if (zpy_LockError == NULL)
            goto fail;
    }
    if (PyModule_AddObjectRef(m, "LockError", zpy_LockError) < 0 ||
        PyModule_AddObjectRef(m, "SecureBuffer", (PyObject *)&zpy_SecureBufferType) < 0 ||
        PyModule_AddObjectRef(m, "Arena", (PyObject *)&zpy_ArenaType) < 0 ||
        PyModule_AddStringConstant(m, "LIBRARY_VERSION", zz_version()) < 0 ||
        add_int(m, "INFO_LOCKED", ZZ_INFO_LOCKED) < 0 ||
        add_int(m, "INFO_DONTDUMP", ZZ_INFO_DONTDUMP) < 0 ||
        add_int(m, "INFO_WIPEONFORK", ZZ_INFO_WIPEONFORK) < 0 ||
        add_int(m, "INFO_GUARDED", ZZ_INFO_GUARDED) < 0 ||
        add_int(m, "INFO_SECRETMEM", ZZ_INFO_SECRETMEM) < 0 ||
        add_int(m, "INFO_CANARY", ZZ_INFO_CANARY) < 0 ||
        add_int(m, "INFO_PACKED", INFO_PACKED) < 0 ||
        add_int(m, "RELEASE_GIL_FROM", (long)RELEASE_GIL_FROM) < 0 ||
        add_error_codes(m) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
