/*
 * _zeroize.c - the CPython extension behind the `zeroize` package: a thin
 * layer over libzeroize (include/zeroize.h), compiled together with the
 * library's own sources by setup.py.
 *
 * Python-equivalent pseudocode of the API (what each entry point does; the
 * real work happens in C so no secret is ever copied into a bytes or str):
 *
 *   class LockError(OSError, TypeError): ...     # errno set; message from
 *                                                # zz_last_error()
 *
 *   def zeroize1(buf):                           # also zeroize_np(arr)
 *       view = memoryview(buf)                   # PyBUF_RECORDS: strided,
 *       if view.readonly or view.format == "O":  #   writable, with format
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
 *   class SecureBuffer:                          # one zz_alloc block
 *       def __new__(cls, size_or_bytes_like, *, wipe_source=False):
 *           if has_buffer(arg): block = zz_alloc(len); copy; maybe wipe arg
 *           else: block = zz_alloc(operator.index(arg))
 *       @classmethod random(cls, n)      # getrandom(2) into the block
 *       @classmethod from_file(cls, path_or_fd)   # read(2) into the block
 *       __len__, __getitem__, __setitem__ (same length), __eq__ (zz_equal),
 *       __buffer__ (export counted), close(), closed, mode, copy(), info(),
 *       readonly(), noaccess(), readwrite() (zz_protect),
 *       __enter__/__exit__, __repr__ (never the contents),
 *       __hash__ = None, pickling and copy.copy refused.
 *
 * Every refused operation leaves the object exactly as it was.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "zeroize.h"

/* Wipes at least this large release the GIL: below it the GIL round trip
 * costs more than it gives back to other threads. */
#define RELEASE_GIL_FROM ((Py_ssize_t)64 * 1024)

static PyObject *LockError;       /* zeroize.LockError(OSError, TypeError) */
static PyObject *protection_type; /* zeroize.Protection, set by __init__.py */

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static int is_lock_errno(int err)
{
    return err == EAGAIN || err == EPERM || err == ENOMEM;
}

/* Raises exc_type(errno, message) where message is what the library says
 * about the failure; a LockError gets the RLIMIT_MEMLOCK hint when the
 * library did not already give it. */
static PyObject *raise_library_error(PyObject *exc_type, int err, const char *what)
{
    const char *detail = zz_last_error();
    const char *hint = "";
    if (exc_type == LockError && is_lock_errno(err) && strstr(detail, "ulimit -l") == NULL)
        hint = " (locked memory is limited by RLIMIT_MEMLOCK: raise it with "
               "`ulimit -l`, or grant CAP_IPC_LOCK)";
    PyObject *msg = PyUnicode_FromFormat("%s: %s%s", what,
                                         detail[0] ? detail : strerror(err), hint);
    if (msg == NULL)
        return NULL;
    if (!PyObject_IsSubclass(exc_type, PyExc_OSError)) { /* MemoryError */
        PyErr_SetObject(exc_type, msg);
        Py_DECREF(msg);
        return NULL;
    }
    PyObject *exc = PyObject_CallFunction(exc_type, "iO", err, msg); /* sets .errno */
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* zz_alloc failed: a lock refusal is a LockError, anything else OSError or
 * MemoryError (for sizes nobody can have). */
static PyObject *raise_alloc_error(int err)
{
    const char *detail = zz_last_error();
    if (err == EAGAIN || err == EPERM || strstr(detail, "MEMLOCK") != NULL ||
        strstr(detail, "ulimit -l") != NULL)
        return raise_library_error(LockError, err, "cannot allocate locked memory");
    if (err == ENOMEM)
        return raise_library_error(PyExc_MemoryError, err, "cannot allocate secure memory");
    return raise_library_error(PyExc_OSError, err, "cannot allocate secure memory");
}

/* ------------------------------------------------------------------------ */
/* Walking a strided buffer                                                 */
/* ------------------------------------------------------------------------ */

/* Dimensions of a view, reordered so that the smallest stride comes first,
 * with negative strides flipped and repeated (stride 0) axes dropped: the
 * same set of bytes, walked in address order of the innermost runs. */
typedef struct {
    char *base;                 /* lowest address the view covers */
    int ndim;
    Py_ssize_t run;             /* bytes in one contiguous run */
    Py_ssize_t shape[PyBUF_MAX_NDIM];
    Py_ssize_t stride[PyBUF_MAX_NDIM];
} byte_runs;

/* Returns 0 when the view covers no byte, else 1 with *r filled. */
static int plan_runs(const Py_buffer *v, byte_runs *r)
{
    r->base = v->buf;
    r->ndim = 0;
    r->run = v->itemsize;
    if (v->len == 0 || v->itemsize == 0)
        return 0;
    if (v->strides == NULL || v->ndim == 0) {
        r->run = v->len;
        return 1;
    }
    for (int i = 0; i < v->ndim; i++) {
        Py_ssize_t n = v->shape[i], s = v->strides[i];
        if (n == 0)
            return 0;
        if (n == 1 || s == 0)
            continue;
        if (s < 0) {
            r->base += (n - 1) * s;
            s = -s;
        }
        /* insertion sort by stride */
        int j = r->ndim++;
        while (j > 0 && r->stride[j - 1] > s) {
            r->stride[j] = r->stride[j - 1];
            r->shape[j] = r->shape[j - 1];
            j--;
        }
        r->stride[j] = s;
        r->shape[j] = n;
    }
    /* merge the innermost axes that continue one another into one run */
    int k = 0;
    while (k < r->ndim && r->stride[k] == r->run) {
        r->run *= r->shape[k];
        k++;
    }
    memmove(r->shape, r->shape + k, (size_t)(r->ndim - k) * sizeof r->shape[0]);
    memmove(r->stride, r->stride + k, (size_t)(r->ndim - k) * sizeof r->stride[0]);
    r->ndim -= k;
    return 1;
}

typedef void (*run_fn)(char *p, size_t n);

static void for_each_run(const byte_runs *r, run_fn fn)
{
    Py_ssize_t idx[PyBUF_MAX_NDIM] = {0};
    char *p = r->base;
    for (;;) {
        fn(p, (size_t)r->run);
        int d = 0;
        for (; d < r->ndim; d++) {
            p += r->stride[d];
            if (++idx[d] < r->shape[d])
                break;
            p -= r->shape[d] * r->stride[d];
            idx[d] = 0;
        }
        if (d == r->ndim)
            return;
    }
}

static void wipe_run(char *p, size_t n)
{
    zz_wipe(p, n);
}

/* Wipes exactly the bytes the view covers, releasing the GIL for big ones. */
static void wipe_view(const Py_buffer *v)
{
    byte_runs r;
    if (!plan_runs(v, &r))
        return;
    if (v->len >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        for_each_run(&r, wipe_run);
        Py_END_ALLOW_THREADS
    } else {
        for_each_run(&r, wipe_run);
    }
}

/* The address range [*lo, *lo + *extent) spanning every byte of the view. */
static void view_extent(const Py_buffer *v, char **lo, size_t *extent)
{
    char *low = v->buf, *high = (char *)v->buf + v->itemsize;
    if (v->len == 0) {
        *lo = v->buf;
        *extent = 0;
        return;
    }
    if (v->strides == NULL) {
        *lo = v->buf;
        *extent = (size_t)v->len;
        return;
    }
    for (int i = 0; i < v->ndim; i++) {
        Py_ssize_t span = (v->shape[i] - 1) * v->strides[i];
        if (span < 0)
            low += span;
        else
            high += span;
    }
    *lo = low;
    *extent = (size_t)(high - low);
}

/* Copies the view's items in logical C order to dst (len bytes), without
 * any temporary buffer (PyBuffer_ToContiguous may stage rows in the heap). */
static void gather_view(const Py_buffer *v, unsigned char *dst)
{
    if (v->len == 0)
        return;
    if (v->strides == NULL || PyBuffer_IsContiguous(v, 'C')) {
        memcpy(dst, v->buf, (size_t)v->len);
        return;
    }
    Py_ssize_t idx[PyBUF_MAX_NDIM] = {0};
    int last = v->ndim - 1;
    Py_ssize_t run = v->itemsize;
    int outer = v->ndim;
    if (v->strides[last] == v->itemsize) {
        run = v->itemsize * v->shape[last];
        outer = last;
    }
    const char *p = v->buf;
    for (;;) {
        memcpy(dst, p, (size_t)run);
        dst += run;
        int d = outer - 1;
        for (; d >= 0; d--) {
            p += v->strides[d];
            if (++idx[d] < v->shape[d])
                break;
            p -= v->shape[d] * v->strides[d];
            idx[d] = 0;
        }
        if (d < 0)
            return;
    }
}

/* 1 if a struct-module format string describes Python object pointers
 * ('O'), which must never be wiped: they are references, not data. */
static int format_has_objects(const char *fmt)
{
    if (fmt == NULL)
        return 0;
    for (const char *p = fmt; *p; p++) {
        if (*p == ':') { /* skip a field name in T{...} */
            const char *end = strchr(p + 1, ':');
            if (end == NULL)
                return 0;
            p = end;
            continue;
        }
        if (*p == 'O')
            return 1;
    }
    return 0;
}

static PyTypeObject SecureBufferType;

/* Gets a writable strided view of obj for wiping, or raises TypeError for
 * anything that cannot be wiped (bytes, str, read-only buffers, object
 * arrays).  numpy arrays whose dtype has no buffer format (datetime64...)
 * are viewed as opaque bytes of the same item size. */
static int get_wipeable_view(PyObject *obj, Py_buffer *view, const char *who)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_RECORDS) == 0) {
        if (format_has_objects(view->format)) {
            PyBuffer_Release(view);
            PyErr_Format(PyExc_TypeError,
                         "%s() refuses arrays of Python objects (dtype=object): "
                         "they hold references, not data", who);
            return -1;
        }
        return 0;
    }
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "%s() needs a writable bytes-like object "
                     "(bytearray, memoryview, array, mmap, numpy array, "
                     "SecureBuffer), not '%.100s'", who, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (Py_IS_TYPE(obj, &SecureBufferType)) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s(): this SecureBuffer is read-only", who);
        }
        return -1; /* closed / noaccess: keep the ValueError */
    }
    /* Was it refused only because it is read-only?  (CPython's types say
     * so with BufferError, numpy with ValueError.) */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_buffer ro;
    if (PyObject_GetBuffer(obj, &ro, PyBUF_RECORDS_RO) == 0) {
        int readonly = ro.readonly;
        PyBuffer_Release(&ro);
        if (readonly) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
            PyErr_Format(PyExc_TypeError,
                         "%s() cannot wipe a read-only buffer ('%.100s'); "
                         "keep secrets in a bytearray or SecureBuffer",
                         who, Py_TYPE(obj)->tp_name);
            return -1;
        }
    } else {
        PyErr_Clear();
    }
    PyErr_Restore(et, ev, tb);
    if (PyErr_ExceptionMatches(PyExc_ValueError) &&
        PyObject_HasAttrString(obj, "__array_interface__")) {
        /* numpy refuses a format for datetime64/timedelta64: wipe the same
         * memory through a view with an opaque ('V') dtype of equal size. */
        PyErr_Clear();
        PyObject *itemsize = PyObject_GetAttrString(obj, "itemsize");
        if (itemsize == NULL)
            return -1;
        PyObject *opaque = PyObject_CallMethod(obj, "view", "((sO))", "V", itemsize);
        Py_DECREF(itemsize);
        if (opaque == NULL)
            return -1;
        int rc = -1;
        if (PyObject_GetBuffer(opaque, view, PyBUF_RECORDS) == 0)
            rc = 0;
        else if (!PyErr_ExceptionMatches(PyExc_ValueError))
            ; /* keep the error */
        else {
            PyErr_Clear(); /* read-only: "writeable" is False */
            PyErr_Format(PyExc_TypeError,
                         "%s() cannot wipe a read-only buffer ('%.100s')", who,
                         Py_TYPE(obj)->tp_name);
        }
        Py_DECREF(opaque); /* the view keeps its own reference */
        return rc;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Module functions: wiping and locking caller-owned memory                 */
/* ------------------------------------------------------------------------ */

/* Parses (obj, /, *, <flag>=False) by hand: PyArg_ParseTupleAndKeywords
 * wants a char ** keyword list, which string literals cannot be in C. */
static int parse_obj_and_flag(PyObject *args, PyObject *kwds, const char *fname,
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
    if (get_wipeable_view(buf, &view, "zeroize1") < 0)
        return NULL;
    wipe_view(&view);
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
    if (get_wipeable_view(arr, &view, "zeroize_np") < 0)
        return NULL;
    wipe_view(&view);
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
    return Py_IS_TYPE(obj, &SecureBufferType);
}

static PyObject *py_mlock(PyObject *module, PyObject *buf)
{
    (void)module;
    Py_buffer view;
    if (get_wipeable_view(buf, &view, "mlock") < 0)
        return NULL;
    if (is_securebuffer(buf)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    char *lo;
    size_t extent;
    view_extent(&view, &lo, &extent);
    int rc = zz_lock(lo, extent);
    int err = errno;
    PyBuffer_Release(&view);
    if (rc != 0)
        return raise_library_error(LockError, err, "mlock failed");
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
    if (parse_obj_and_flag(args, kwds, "munlock", "wipe", &buf, &wipe) < 0)
        return NULL;
    Py_buffer view;
    if (get_wipeable_view(buf, &view, "munlock") < 0)
        return NULL;
    if (is_securebuffer(buf)) { /* see is_securebuffer() */
        if (wipe)
            wipe_view(&view);
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    char *lo;
    size_t extent;
    view_extent(&view, &lo, &extent);
    int rc;
    if (wipe && (size_t)view.len == extent && PyBuffer_IsContiguous(&view, 'A')) {
        rc = zz_unlock(lo, extent);
    } else {
        /* a strided view: wipe only its own bytes, then unlock the span */
        if (wipe)
            wipe_view(&view);
        rc = zz_unlock_keep(lo, extent);
    }
    int err = errno;
    PyBuffer_Release(&view);
    if (rc != 0)
        return raise_library_error(LockError, err, "munlock failed");
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
/* SecureBuffer                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    unsigned char *data; /* the zz_alloc block; NULL once closed */
    Py_ssize_t size;     /* bytes in the block (kept after close for len/repr) */
    Py_ssize_t exports;  /* live buffer exports (memoryview, numpy, ...) */
    int mode;            /* ZZ_READWRITE, ZZ_READONLY or ZZ_NOACCESS */
} SecureBufferObject;

#define SB(o) ((SecureBufferObject *)(o))

static int sb_unusable(const SecureBufferObject *self)
{
    if (self->data == NULL) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed SecureBuffer");
        return 1;
    }
    if (self->mode == ZZ_NOACCESS) {
        PyErr_SetString(PyExc_ValueError,
                        "SecureBuffer is in no-access mode: call readonly() or "
                        "readwrite() before using it");
        return 1;
    }
    return 0;
}

/* The one gate for reading or writing the contents: ValueError when the
 * buffer is closed or in no-access mode. */
#define CHECK_USABLE(self, err)                                              \
    do {                                                                     \
        if (sb_unusable(self))                                               \
            return err;                                                      \
    } while (0)

/* CHECK_USABLE, then TypeError when the buffer is read-only. */
#define CHECK_WRITABLE(self, err)                                            \
    do {                                                                     \
        CHECK_USABLE(self, err);                                             \
        if ((self)->mode == ZZ_READONLY) {                                   \
            PyErr_SetString(PyExc_TypeError,                                 \
                            "SecureBuffer is read-only: call readwrite() "   \
                            "to modify it");                                 \
            return err;                                                      \
        }                                                                    \
    } while (0)

#define CHECK_OPEN(self, err)                                                \
    do {                                                                     \
        if ((self)->data == NULL) {                                          \
            PyErr_SetString(PyExc_ValueError,                                \
                            "I/O operation on a closed SecureBuffer");       \
            return err;                                                      \
        }                                                                    \
    } while (0)

#define CHECK_NOT_EXPORTED(self, what, err)                                  \
    do {                                                                     \
        if ((self)->exports > 0) {                                           \
            PyErr_Format(PyExc_BufferError,                                  \
                         "cannot %s a SecureBuffer while %zd buffer "        \
                         "export(s) (memoryview, numpy array, ...) are "     \
                         "alive; release them first", what,                 \
                         (self)->exports);                                   \
            return err;                                                      \
        }                                                                    \
    } while (0)

/* A new SecureBuffer object that owns data (size bytes from zz_alloc).
 * On failure the block is freed. */
static PyObject *sb_wrap(PyTypeObject *type, unsigned char *data, Py_ssize_t size)
{
    SecureBufferObject *self = (SecureBufferObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        zz_free(data);
        return NULL;
    }
    self->data = data;
    self->size = size;
    self->exports = 0;
    self->mode = ZZ_READWRITE;
    return (PyObject *)self;
}

static unsigned char *secure_alloc(Py_ssize_t size)
{
    unsigned char *p = zz_alloc((size_t)size);
    if (p == NULL)
        raise_alloc_error(errno);
    return p;
}

static PyObject *sb_from_buffer(PyTypeObject *type, PyObject *src, int wipe_source)
{
    Py_buffer view;
    if (wipe_source) {
        /* refuse a read-only source before anything is allocated */
        if (get_wipeable_view(src, &view, "SecureBuffer") < 0)
            return NULL;
    } else {
        if (PyObject_GetBuffer(src, &view, PyBUF_FULL_RO) < 0)
            return NULL;
        if (format_has_objects(view.format)) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError,
                            "SecureBuffer() cannot copy an array of Python objects");
            return NULL;
        }
    }
    unsigned char *data = secure_alloc(view.len);
    if (data == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    gather_view(&view, data);
    if (wipe_source)
        wipe_view(&view);
    Py_ssize_t n = view.len;
    PyBuffer_Release(&view);
    return sb_wrap(type, data, n);
}

static PyObject *sb_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *arg;
    int wipe_source = 0;
    if (parse_obj_and_flag(args, kwds, "SecureBuffer", "wipe_source", &arg, &wipe_source) < 0)
        return NULL;
    if (PyObject_CheckBuffer(arg))
        return sb_from_buffer(type, arg, wipe_source);
    if (!PyIndex_Check(arg)) {
        PyErr_Format(PyExc_TypeError,
                     "SecureBuffer() takes a size (int) or a bytes-like object, "
                     "not '%.100s'%s", Py_TYPE(arg)->tp_name,
                     PyUnicode_Check(arg) ? " (a str cannot be wiped: read secrets "
                                            "with getpass() or from_file())" : "");
        return NULL;
    }
    if (wipe_source) {
        PyErr_SetString(PyExc_TypeError, "wipe_source=True needs a writable bytes-like source");
        return NULL;
    }
    Py_ssize_t size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "SecureBuffer size must be >= 0");
        return NULL;
    }
    unsigned char *data = secure_alloc(size);
    if (data == NULL)
        return NULL;
    return sb_wrap(type, data, size);
}

static void sb_free_block(SecureBufferObject *self)
{
    unsigned char *p = self->data;
    self->data = NULL;
    zz_free(p); /* wipes, whatever the protection mode */
}

/* Runs for a SecureBuffer that was never closed: warn like an unclosed file
 * (visible with -X dev or -W default::ResourceWarning), then wipe and free. */
static void sb_finalize(PyObject *op)
{
    SecureBufferObject *self = SB(op);
    if (self->data == NULL)
        return;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    if (PyErr_ResourceWarning(op, 1, "unclosed SecureBuffer of %zd bytes "
                              "(wiped and freed by the garbage collector)", self->size) < 0) {
        if (PyErr_ExceptionMatches(PyExc_Warning))
            PyErr_WriteUnraisable(op);
        PyErr_Clear();
    }
    if (self->data != NULL && self->exports == 0)
        sb_free_block(self);
    PyErr_Restore(et, ev, tb);
}

static void sb_dealloc(PyObject *op)
{
    if (SB(op)->data != NULL) {
        if (PyObject_CallFinalizerFromDealloc(op) < 0)
            return; /* resurrected by a warning handler */
    }
    Py_TYPE(op)->tp_free(op);
}

static PyObject *sb_repr(PyObject *op)
{
    SecureBufferObject *self = SB(op);
    const char *state = self->data == NULL          ? " closed"
                        : self->mode == ZZ_READONLY ? " readonly"
                        : self->mode == ZZ_NOACCESS ? " noaccess"
                                                    : "";
    return PyUnicode_FromFormat("<SecureBuffer size=%zd%s>", self->size, state);
}

/* ---- sequence / mapping ---- */

static Py_ssize_t sb_length(PyObject *op)
{
    return SB(op)->size; /* the size is not secret: works in every state */
}

static int sb_index(SecureBufferObject *self, Py_ssize_t *i)
{
    if (*i < 0)
        *i += self->size;
    if (*i < 0 || *i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "SecureBuffer index out of range");
        return -1;
    }
    return 0;
}

static PyObject *sb_item(PyObject *op, Py_ssize_t i)
{
    SecureBufferObject *self = SB(op);
    CHECK_USABLE(self, NULL);
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "SecureBuffer index out of range");
        return NULL;
    }
    return PyLong_FromLong(self->data[i]);
}

/* Converting an index or a slice may run Python code (__index__), which may
 * close the buffer or change its mode: every function below converts its
 * arguments first and checks the buffer's state last, right before it
 * touches the memory. */

static PyObject *sb_subscript(PyObject *op, PyObject *key)
{
    SecureBufferObject *self = SB(op);
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        CHECK_USABLE(self, NULL);
        if (sb_index(self, &i) < 0)
            return NULL;
        return PyLong_FromLong(self->data[i]);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0)
            return NULL;
        CHECK_USABLE(self, NULL);
        Py_ssize_t n = PySlice_AdjustIndices(self->size, &start, &stop, step);
        if (step == 1)
            return PyBytes_FromStringAndSize((const char *)self->data + start, n);
        PyObject *out = PyBytes_FromStringAndSize(NULL, n);
        if (out == NULL)
            return NULL;
        char *dst = PyBytes_AS_STRING(out);
        for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
            dst[k] = (char)self->data[i];
        return out;
    }
    CHECK_USABLE(self, NULL);
    PyErr_Format(PyExc_TypeError, "SecureBuffer indices must be integers or slices, not %.100s",
                 Py_TYPE(key)->tp_name);
    return NULL;
}

static int refuse_resize(void)
{
    PyErr_SetString(PyExc_TypeError,
                    "SecureBuffer has a fixed size: items cannot be deleted");
    return -1;
}

/* Converts value to a byte: 0..255 in *byte, or -1 there when it is an int
 * outside that range (reported later, after the state checks). */
static int byte_value(PyObject *value, long *byte)
{
    if (!PyIndex_Check(value)) {
        PyErr_Format(PyExc_TypeError, "an integer is required, not '%.100s'",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    PyObject *num = PyNumber_Index(value);
    if (num == NULL)
        return -1;
    int overflow;
    long v = PyLong_AsLongAndOverflow(num, &overflow);
    Py_DECREF(num);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *byte = (overflow || v < 0 || v > 255) ? -1 : v;
    return 0;
}

static int sb_store_byte(SecureBufferObject *self, Py_ssize_t i, long byte)
{
    CHECK_WRITABLE(self, -1);
    if (sb_index(self, &i) < 0)
        return -1;
    if (byte < 0) {
        PyErr_SetString(PyExc_ValueError, "byte must be in range(0, 256)");
        return -1;
    }
    self->data[i] = (unsigned char)byte;
    return 0;
}

static int sb_set_index(SecureBufferObject *self, PyObject *key, PyObject *value)
{
    Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred())
        return -1;
    long byte;
    if (byte_value(value, &byte) < 0)
        return -1;
    return sb_store_byte(self, i, byte);
}

static int overlaps(const Py_buffer *v, const SecureBufferObject *self)
{
    char *lo;
    size_t extent;
    view_extent(v, &lo, &extent);
    const char *a = (const char *)self->data;
    return extent > 0 && lo < a + self->size && a < lo + extent;
}

static int sb_set_slice(SecureBufferObject *self, PyObject *key, PyObject *value)
{
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return -1;
    if (!PyObject_CheckBuffer(value)) {
        CHECK_WRITABLE(self, -1);
        PyErr_Format(PyExc_TypeError,
                     "can assign only a bytes-like object to a SecureBuffer slice, "
                     "not '%.100s'", Py_TYPE(value)->tp_name);
        return -1;
    }
    Py_buffer src;
    if (PyObject_GetBuffer(value, &src, PyBUF_FULL_RO) < 0)
        return -1;
    if (sb_unusable(self)) {
        PyBuffer_Release(&src);
        return -1;
    }
    if (self->mode == ZZ_READONLY) {
        PyBuffer_Release(&src);
        CHECK_WRITABLE(self, -1); /* raises the TypeError */
    }
    Py_ssize_t n = PySlice_AdjustIndices(self->size, &start, &stop, step);
    if (src.len != n) {
        PyErr_Format(PyExc_ValueError,
                     "SecureBuffer has a fixed size: slice assignment needs exactly "
                     "%zd bytes, got %zd", n, src.len);
        PyBuffer_Release(&src);
        return -1;
    }
    int contiguous = src.strides == NULL || PyBuffer_IsContiguous(&src, 'C');
    if (step == 1 && contiguous) {
        memmove(self->data + start, src.buf, (size_t)n); /* overlap-safe */
        PyBuffer_Release(&src);
        return 0;
    }
    /* Gather first when the source is strided or may overlap the target;
     * the staging area is secure memory, wiped when freed. */
    unsigned char *stage = NULL;
    const unsigned char *from = src.buf;
    if (!contiguous || overlaps(&src, self)) {
        stage = secure_alloc(n);
        if (stage == NULL) {
            PyBuffer_Release(&src);
            return -1;
        }
        gather_view(&src, stage);
        from = stage;
    }
    if (step == 1)
        memcpy(self->data + start, from, (size_t)n);
    else
        for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
            self->data[i] = from[k];
    zz_free(stage);
    PyBuffer_Release(&src);
    return 0;
}

static int sb_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    SecureBufferObject *self = SB(op);
    if (value == NULL) {
        CHECK_WRITABLE(self, -1);
        return refuse_resize();
    }
    if (PyIndex_Check(key))
        return sb_set_index(self, key, value);
    if (PySlice_Check(key))
        return sb_set_slice(self, key, value);
    CHECK_WRITABLE(self, -1);
    PyErr_Format(PyExc_TypeError, "SecureBuffer indices must be integers or slices, not %.100s",
                 Py_TYPE(key)->tp_name);
    return -1;
}

static int sb_ass_item(PyObject *op, Py_ssize_t i, PyObject *value)
{
    SecureBufferObject *self = SB(op);
    if (value == NULL) {
        CHECK_WRITABLE(self, -1);
        return refuse_resize();
    }
    long byte;
    if (byte_value(value, &byte) < 0)
        return -1;
    if (i < 0)
        i -= self->size; /* sq_ass_item got i + len; sb_index adds it back */
    return sb_store_byte(self, i, byte);
}

/* ---- buffer protocol ---- */

static int sb_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    SecureBufferObject *self = SB(op);
    if (sb_unusable(self)) {
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, op, self->data, self->size, self->mode == ZZ_READONLY,
                          flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void sb_releasebuffer(PyObject *op, Py_buffer *view)
{
    (void)view;
    SB(op)->exports--;
}

/* ---- comparison ---- */

static PyObject *sb_richcompare(PyObject *a, PyObject *b, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    if (!Py_IS_TYPE(a, &SecureBufferType)) { /* reflected: other == sb */
        PyObject *t = a;
        a = b;
        b = t;
    }
    SecureBufferObject *self = SB(a);
    if (!PyObject_CheckBuffer(b))
        Py_RETURN_NOTIMPLEMENTED;
    Py_buffer other;
    if (PyObject_GetBuffer(b, &other, PyBUF_FULL_RO) < 0)
        return NULL;
    if (sb_unusable(self)) { /* checked after anything that may run code */
        PyBuffer_Release(&other);
        return NULL;
    }
    if (format_has_objects(other.format)) {
        PyBuffer_Release(&other);
        Py_RETURN_NOTIMPLEMENTED;
    }
    int equal = 0;
    if (other.len == self->size) { /* only the length may leak */
        if (other.strides == NULL || PyBuffer_IsContiguous(&other, 'C')) {
            equal = zz_equal(self->data, other.buf, (size_t)self->size);
        } else {
            /* a strided array: line its bytes up in secure memory first */
            unsigned char *flat = secure_alloc(other.len);
            if (flat == NULL) {
                PyBuffer_Release(&other);
                return NULL;
            }
            gather_view(&other, flat);
            equal = zz_equal(self->data, flat, (size_t)self->size);
            zz_free(flat);
        }
    }
    PyBuffer_Release(&other);
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

/* ---- methods ---- */

PyDoc_STRVAR(sb_close_doc,
"close()\n--\n\n"
"Wipe the bytes and free the secure block.  Idempotent.  Raises\n"
"BufferError (and keeps everything) while a memoryview or numpy array\n"
"made from this buffer is alive.  Afterwards every access raises\n"
"ValueError; len() still reports the original size.");

static PyObject *sb_close(PyObject *op, PyObject *unused)
{
    (void)unused;
    SecureBufferObject *self = SB(op);
    if (self->data == NULL)
        Py_RETURN_NONE;
    CHECK_NOT_EXPORTED(self, "close", NULL);
    sb_free_block(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sb_copy_doc,
"copy()\n--\n\n"
"A new, independent SecureBuffer (read-write) with the same bytes.");

static PyObject *sb_copy(PyObject *op, PyObject *unused)
{
    (void)unused;
    SecureBufferObject *self = SB(op);
    CHECK_USABLE(self, NULL);
    unsigned char *data = secure_alloc(self->size);
    if (data == NULL)
        return NULL;
    if (self->size > 0)
        memcpy(data, self->data, (size_t)self->size);
    return sb_wrap(Py_TYPE(op), data, self->size);
}

static PyObject *sb_protect(SecureBufferObject *self, int mode, const char *what)
{
    CHECK_OPEN(self, NULL);
    CHECK_NOT_EXPORTED(self, what, NULL);
    if (self->mode == mode)
        Py_RETURN_NONE;
    if (zz_protect(self->data, mode) != 0)
        return raise_library_error(PyExc_OSError, errno, "zz_protect failed");
    self->mode = mode;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sb_readonly_doc,
"readonly()\n--\n\n"
"Make the pages read-only (zz_protect): writes through Python raise\n"
"TypeError, writes from C fault.  BufferError while exported.");

static PyObject *sb_readonly(PyObject *op, PyObject *unused)
{
    (void)unused;
    return sb_protect(SB(op), ZZ_READONLY, "change the protection of");
}

PyDoc_STRVAR(sb_noaccess_doc,
"noaccess()\n--\n\n"
"Make the pages inaccessible (zz_protect) until readonly() or\n"
"readwrite(): every access from Python raises ValueError, from C faults.\n"
"BufferError while exported.");

static PyObject *sb_noaccess(PyObject *op, PyObject *unused)
{
    (void)unused;
    return sb_protect(SB(op), ZZ_NOACCESS, "change the protection of");
}

PyDoc_STRVAR(sb_readwrite_doc,
"readwrite()\n--\n\n"
"Make the pages readable and writable again (zz_protect).  BufferError\n"
"while exported.");

static PyObject *sb_readwrite(PyObject *op, PyObject *unused)
{
    (void)unused;
    return sb_protect(SB(op), ZZ_READWRITE, "change the protection of");
}

PyDoc_STRVAR(sb_info_doc,
"info()\n--\n\n"
"The protections the kernel actually granted this buffer (zz_info), as a\n"
"zeroize.Protection flag: LOCKED, DONTDUMP, WIPEONFORK, GUARDED,\n"
"SECRETMEM, CANARY.  Works in no-access mode; ValueError once closed.");

static PyObject *sb_info(PyObject *op, PyObject *unused)
{
    (void)unused;
    SecureBufferObject *self = SB(op);
    CHECK_OPEN(self, NULL);
    unsigned bits = zz_info(self->data);
    if (protection_type == NULL)
        return PyLong_FromUnsignedLong(bits);
    return PyObject_CallFunction(protection_type, "I", bits);
}

static PyObject *sb_enter(PyObject *op, PyObject *unused)
{
    (void)unused;
    CHECK_OPEN(SB(op), NULL);
    return Py_NewRef(op);
}

static PyObject *sb_exit(PyObject *op, PyObject *args)
{
    (void)args;
    return sb_close(op, NULL);
}

static PyObject *sb_refuse_copy(PyObject *op, PyObject *args)
{
    (void)op;
    (void)args;
    PyErr_SetString(PyExc_TypeError,
                    "cannot pickle or copy.copy a SecureBuffer: its bytes would leave "
                    "secure memory (use sb.copy() for a new SecureBuffer)");
    return NULL;
}

PyDoc_STRVAR(sb_random_doc,
"random(n, /)\n--\n\n"
"A new SecureBuffer of n bytes from the operating system's CSPRNG\n"
"(getrandom(2)), written straight into secure memory.");

static PyObject *sb_random(PyObject *cls, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "SecureBuffer.random() size must be >= 0");
        return NULL;
    }
    unsigned char *data = secure_alloc(n);
    if (data == NULL)
        return NULL;
    Py_ssize_t got = 0;
    while (got < n) {
        ssize_t r;
        Py_BEGIN_ALLOW_THREADS
        r = getrandom(data + got, (size_t)(n - got), 0);
        Py_END_ALLOW_THREADS
        if (r < 0) {
            int err = errno;
            if (err == EINTR && PyErr_CheckSignals() == 0)
                continue;
            zz_free(data);
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            return NULL;
        }
        got += r;
    }
    return sb_wrap((PyTypeObject *)cls, data, n);
}

/* Reads exactly n bytes (fewer at end of file) from fd into data.  Returns
 * the count, or -1 with a Python exception set. */
static Py_ssize_t read_fully(int fd, unsigned char *data, Py_ssize_t n)
{
    Py_ssize_t got = 0;
    while (got < n) {
        ssize_t r;
        Py_BEGIN_ALLOW_THREADS
        r = read(fd, data + got, (size_t)(n - got));
        Py_END_ALLOW_THREADS
        if (r < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (r == 0)
            break;
        got += r;
    }
    return got;
}

static PyObject *sb_read_fd(PyTypeObject *cls, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (!S_ISREG(st.st_mode)) {
        PyErr_SetString(PyExc_ValueError,
                        "SecureBuffer.from_file() reads regular files only "
                        "(the size must be known before reading)");
        return NULL;
    }
    off_t pos = lseek(fd, 0, SEEK_CUR);
    if (pos < 0)
        pos = 0;
    Py_ssize_t want = st.st_size > pos ? (Py_ssize_t)(st.st_size - pos) : 0;
    unsigned char *data = secure_alloc(want);
    if (data == NULL)
        return NULL;
    Py_ssize_t got = read_fully(fd, data, want);
    if (got < 0) {
        zz_free(data);
        return NULL;
    }
    if (got < want) { /* the file shrank since fstat: keep what was read */
        unsigned char *smaller = zz_realloc(data, (size_t)got);
        if (smaller == NULL) {
            int err = errno;
            zz_free(data);
            return raise_alloc_error(err);
        }
        data = smaller;
    }
    return sb_wrap(cls, data, got);
}

PyDoc_STRVAR(sb_from_file_doc,
"from_file(path_or_fd, /)\n--\n\n"
"A new SecureBuffer holding a regular file's contents, read with\n"
"unbuffered read(2) calls straight into secure memory: the key never\n"
"passes through a bytes object or a stdio buffer.  The size comes from\n"
"fstat(2).  Given a file descriptor, reads from its current offset to the\n"
"end of the file and leaves it open.  Short reads and EINTR are retried;\n"
"if the file shrinks meanwhile, the buffer holds what was there.  Raises\n"
"ValueError for anything but a regular file, OSError if it cannot be read.");

static PyObject *sb_from_file(PyObject *cls, PyObject *arg)
{
    if (PyLong_Check(arg)) {
        long fd = PyLong_AsLong(arg);
        if (fd == -1 && PyErr_Occurred())
            return NULL;
        if (fd < 0 || fd > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "invalid file descriptor");
            return NULL;
        }
        return sb_read_fd((PyTypeObject *)cls, (int)fd);
    }
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    int fd;
    Py_BEGIN_ALLOW_THREADS
    /* O_NONBLOCK: a FIFO must not hang the open; regular files ignore it */
    fd = open(PyBytes_AS_STRING(path), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    Py_END_ALLOW_THREADS
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        Py_DECREF(path);
        return NULL;
    }
    Py_DECREF(path);
    PyObject *result = sb_read_fd((PyTypeObject *)cls, fd);
    close(fd);
    return result;
}

static PyObject *sb_get_closed(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(SB(op)->data == NULL);
}

static PyObject *sb_get_mode(PyObject *op, void *closure)
{
    (void)closure;
    SecureBufferObject *self = SB(op);
    return PyUnicode_FromString(self->data == NULL          ? "closed"
                                : self->mode == ZZ_READONLY ? "readonly"
                                : self->mode == ZZ_NOACCESS ? "noaccess"
                                                            : "readwrite");
}

static PyObject *sb_refuse_resize(PyObject *op, PyObject *args)
{
    (void)op;
    (void)args;
    PyErr_SetString(PyExc_TypeError,
                    "SecureBuffer has a fixed size: it cannot grow or shrink "
                    "(make a new SecureBuffer of the size you need)");
    return NULL;
}

#define REFUSED_RESIZE(name)                                                 \
    {name, sb_refuse_resize, METH_VARARGS,                                   \
     "Not supported: a SecureBuffer has a fixed size (raises TypeError)."}

static PyMethodDef sb_methods[] = {
    {"close", sb_close, METH_NOARGS, sb_close_doc},
    {"copy", sb_copy, METH_NOARGS, sb_copy_doc},
    {"readonly", sb_readonly, METH_NOARGS, sb_readonly_doc},
    {"noaccess", sb_noaccess, METH_NOARGS, sb_noaccess_doc},
    {"readwrite", sb_readwrite, METH_NOARGS, sb_readwrite_doc},
    {"info", sb_info, METH_NOARGS, sb_info_doc},
    {"random", sb_random, METH_O | METH_CLASS, sb_random_doc},
    {"from_file", sb_from_file, METH_O | METH_CLASS, sb_from_file_doc},
    {"__enter__", sb_enter, METH_NOARGS, "Return self (ValueError if closed)."},
    {"__exit__", sb_exit, METH_VARARGS, "Close the buffer (see close())."},
    {"__reduce__", sb_refuse_copy, METH_NOARGS, "Refused: raises TypeError."},
    {"__reduce_ex__", sb_refuse_copy, METH_O, "Refused: raises TypeError."},
    {"__copy__", sb_refuse_copy, METH_NOARGS, "Refused: raises TypeError; use copy()."},
    {"__deepcopy__", sb_refuse_copy, METH_O, "Refused: raises TypeError; use copy()."},
    REFUSED_RESIZE("append"),
    REFUSED_RESIZE("extend"),
    REFUSED_RESIZE("insert"),
    REFUSED_RESIZE("pop"),
    REFUSED_RESIZE("remove"),
    REFUSED_RESIZE("clear"),
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sb_getset[] = {
    {"closed", sb_get_closed, NULL, "True once close() has run.", NULL},
    {"mode", sb_get_mode, NULL,
     "\"readwrite\", \"readonly\", \"noaccess\" or \"closed\".", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods sb_as_sequence = {
    .sq_length = sb_length,
    .sq_item = sb_item,
    .sq_ass_item = sb_ass_item,
};

static PyMappingMethods sb_as_mapping = {
    .mp_length = sb_length,
    .mp_subscript = sb_subscript,
    .mp_ass_subscript = sb_ass_subscript,
};

static PyBufferProcs sb_as_buffer = {
    .bf_getbuffer = sb_getbuffer,
    .bf_releasebuffer = sb_releasebuffer,
};

PyDoc_STRVAR(sb_doc,
"SecureBuffer(size_or_bytes_like, /, *, wipe_source=False)\n--\n\n"
"A fixed-size, bytearray-like buffer whose bytes live in one guarded,\n"
"locked, dump-excluded, wipe-on-fork block (zz_alloc).\n\n"
"SecureBuffer(32) holds 32 zero bytes; SecureBuffer(obj) copies any object\n"
"with the buffer protocol (bytes, bytearray, memoryview, numpy arrays...)\n"
"and, with wipe_source=True, wipes a writable source afterwards (a\n"
"read-only source then raises TypeError before anything is allocated).\n\n"
"Indexing works like bytearray; a slice reads as a bytes *copy* (which\n"
"this package cannot wipe: prefer memoryview(sb)[a:b]).  Slice assignment\n"
"must keep the length.  memoryview(sb) and numpy.frombuffer(sb) share its\n"
"memory.  == and != against any bytes-like object run in constant time\n"
"(zz_equal).  The object is unhashable, cannot be pickled or copied with\n"
"copy.copy (use .copy()), and its repr never shows the contents.\n\n"
"close() (or leaving a with block) wipes and frees it; an unclosed buffer\n"
"is wiped and freed when garbage-collected, with a ResourceWarning.");

static PyTypeObject SecureBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zeroize.SecureBuffer",
    .tp_basicsize = sizeof(SecureBufferObject),
    .tp_dealloc = sb_dealloc,
    .tp_finalize = sb_finalize,
    .tp_repr = sb_repr,
    .tp_as_sequence = &sb_as_sequence,
    .tp_as_mapping = &sb_as_mapping,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_as_buffer = &sb_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = sb_doc,
    .tp_richcompare = sb_richcompare,
    .tp_methods = sb_methods,
    .tp_getset = sb_getset,
    .tp_new = sb_new,
};

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
    unsigned char *data = secure_alloc(cap);
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
                raise_alloc_error(errno);
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
        raise_alloc_error(errno);
        goto fail;
    }
    return sb_wrap(&SecureBufferType, exact, len);
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
    Py_XSETREF(protection_type, Py_NewRef(cls));
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

PyMODINIT_FUNC PyInit__zeroize(void); /* the one symbol Python looks up */

PyMODINIT_FUNC PyInit__zeroize(void)
{
    if (PyType_Ready(&SecureBufferType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&zeroize_module);
    if (m == NULL)
        return NULL;
    if (LockError == NULL) {
        PyObject *bases = PyTuple_Pack(2, PyExc_OSError, PyExc_TypeError);
        if (bases == NULL)
            goto fail;
        LockError = PyErr_NewExceptionWithDoc(
            "zeroize.LockError",
            "Locking memory in RAM failed (mlock, munlock, or a SecureBuffer under\n"
            "the \"required\" lock policy).  An OSError (errno is set) and a\n"
            "TypeError.  The usual cause is RLIMIT_MEMLOCK: raise it with\n"
            "`ulimit -l`, or run with CAP_IPC_LOCK.",
            bases, NULL);
        Py_DECREF(bases);
        if (LockError == NULL)
            goto fail;
    }
    if (PyModule_AddObjectRef(m, "LockError", LockError) < 0 ||
        PyModule_AddObjectRef(m, "SecureBuffer", (PyObject *)&SecureBufferType) < 0 ||
        PyModule_AddStringConstant(m, "LIBRARY_VERSION", zz_version()) < 0 ||
        add_int(m, "INFO_LOCKED", ZZ_INFO_LOCKED) < 0 ||
        add_int(m, "INFO_DONTDUMP", ZZ_INFO_DONTDUMP) < 0 ||
        add_int(m, "INFO_WIPEONFORK", ZZ_INFO_WIPEONFORK) < 0 ||
        add_int(m, "INFO_GUARDED", ZZ_INFO_GUARDED) < 0 ||
        add_int(m, "INFO_SECRETMEM", ZZ_INFO_SECRETMEM) < 0 ||
        add_int(m, "INFO_CANARY", ZZ_INFO_CANARY) < 0 ||
        add_int(m, "RELEASE_GIL_FROM", (long)RELEASE_GIL_FROM) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
