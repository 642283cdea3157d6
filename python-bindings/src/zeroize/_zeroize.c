/*
 * _zeroize.c - the CPython extension behind the `zeroize` package: a thin
 * layer over libzeroize (include/zeroize.h), compiled together with the
 * library's own sources by setup.py.  This file holds the module: its
 * multi-phase initialisation (PEP 489: the Py_mod_exec slot makes the
 * heap types and the LockError class of each module object and keeps them
 * in the module's state), and the functions that wipe and lock caller-owned
 * memory and set the library's policies.  _zeroize.h lists where the rest
 * lives (errors, views, SecureBuffer, Arena, getpass, benchmark helpers).
 *
 * Python-equivalent pseudocode of the API (what each entry point does; the
 * real work happens in C so no secret is ever copied into a bytes or str):
 *
 *   class LockError(OSError, TypeError): ...     # errno set; message from
 *                                                # zz_last_error(), .zz_error
 *                                                # zz_last_error_code()
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
 *   def trim(): zz_trim()                        # cached memory back now
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
 *       (zz_equal; ordering raises TypeError), __array_ufunc__ = None
 *       (numpy defers to it), __buffer__ (export counted, also in the
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

/* ------------------------------------------------------------------------ */
/* Module functions: wiping and locking caller-owned memory                 */
/* ------------------------------------------------------------------------ */

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
    Py_buffer view;
    if (zpy_get_wipeable_view(PyModule_GetState(module), buf, &view, "zeroize1", "wipe") < 0)
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
    Py_buffer view;
    if (zpy_get_wipeable_view(PyModule_GetState(module), arr, &view, "zeroize_np", "wipe") < 0)
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
static int is_securebuffer(const zpy_state *st, PyObject *obj)
{
    return Py_IS_TYPE(obj, st->SecureBufferType);
}

static PyObject *py_mlock(PyObject *module, PyObject *buf)
{
    zpy_state *st = PyModule_GetState(module);
    Py_buffer view;
    if (zpy_get_wipeable_view(st, buf, &view, "mlock", "lock") < 0)
        return NULL;
    if (is_securebuffer(st, buf)) {
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
        return zpy_raise_library_error(st, st->LockError, err, "mlock failed");
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
    zpy_state *st = PyModule_GetState(module);
    PyObject *buf;
    int wipe = 1;
    if (zpy_parse_obj_and_flag(args, kwds, "munlock", "wipe", &buf, &wipe) < 0)
        return NULL;
    Py_buffer view;
    if (zpy_get_wipeable_view(st, buf, &view, "munlock", "unlock") < 0)
        return NULL;
    if (is_securebuffer(st, buf)) { /* see is_securebuffer() */
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
        return zpy_raise_library_error(st, st->LockError, err, "munlock failed");
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

PyDoc_STRVAR(trim_doc,
"trim()\n--\n\n"
"Give the memory the library keeps cached for reuse (wiped free slots of\n"
"closed SecureBuffers, in every thread) back to the kernel now: its lock\n"
"goes with it, so other users of RLIMIT_MEMLOCK in the process can have\n"
"it.  Live buffers are not touched.");

static PyObject *trim(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    Py_BEGIN_ALLOW_THREADS /* it may unmap many slabs; it takes the library's lock */
    zz_trim();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
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
/* Module                                                                   */
/* ------------------------------------------------------------------------ */

static PyObject *register_protection_type(PyObject *module, PyObject *cls)
{
    zpy_state *st = PyModule_GetState(module);
    Py_XSETREF(st->protection_type, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"zeroize1", zeroize1, METH_O, zeroize1_doc},
    {"zeroize_np", zeroize_np, METH_O, zeroize_np_doc},
    {"mlock", py_mlock, METH_O, mlock_doc},
    {"munlock", (PyCFunction)(void (*)(void))py_munlock, METH_VARARGS | METH_KEYWORDS,
     munlock_doc},
    {"stats", stats, METH_NOARGS, stats_doc},
    {"trim", trim, METH_NOARGS, trim_doc},
    {"set_lock_policy", set_lock_policy, METH_O, set_lock_policy_doc},
    {"get_lock_policy", get_lock_policy, METH_NOARGS, get_lock_policy_doc},
    {"set_backend", set_backend, METH_O, set_backend_doc},
    {"get_backend", get_backend, METH_NOARGS, get_backend_doc},
    {"_read_secret_line", zpy_read_secret_line, METH_VARARGS, zpy_read_secret_line_doc},
    {"_volatile_loop_wipe", zpy_volatile_loop_wipe, METH_O, zpy_volatile_loop_wipe_doc},
    {"_wipe_c_loop", zpy_wipe_c_loop, METH_VARARGS, zpy_wipe_c_loop_doc},
    {"_register_protection_type", register_protection_type, METH_O,
     "Private: the class info() returns (zeroize.Protection)."},
    {NULL, NULL, 0, NULL},
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
        {"ERR_NOACCESS", ZZ_ERR_NOACCESS},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (add_int(m, codes[i].name, codes[i].value) < 0)
            return -1;
    return 0;
}

static int add_constants(PyObject *m)
{
    if (PyModule_AddStringConstant(m, "LIBRARY_VERSION", zz_version()) < 0 ||
        add_int(m, "INFO_LOCKED", ZZ_INFO_LOCKED) < 0 ||
        add_int(m, "INFO_DONTDUMP", ZZ_INFO_DONTDUMP) < 0 ||
        add_int(m, "INFO_WIPEONFORK", ZZ_INFO_WIPEONFORK) < 0 ||
        add_int(m, "INFO_GUARDED", ZZ_INFO_GUARDED) < 0 ||
        add_int(m, "INFO_SECRETMEM", ZZ_INFO_SECRETMEM) < 0 ||
        add_int(m, "INFO_CANARY", ZZ_INFO_CANARY) < 0 ||
        add_int(m, "INFO_PACKED", INFO_PACKED) < 0 ||
        add_int(m, "RELEASE_GIL_FROM", (long)RELEASE_GIL_FROM) < 0)
        return -1;
    return add_error_codes(m);
}

/* Makes one of the module's types and adds it under its short name. */
static PyTypeObject *add_type(PyObject *m, PyType_Spec *spec)
{
    PyObject *type = PyType_FromModuleAndSpec(m, spec, NULL);
    if (type == NULL)
        return NULL;
    if (PyModule_AddType(m, (PyTypeObject *)type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return (PyTypeObject *)type;
}

static PyObject *new_lock_error(void)
{
    PyObject *bases = PyTuple_Pack(2, PyExc_OSError, PyExc_TypeError);
    if (bases == NULL)
        return NULL;
    PyObject *exc = PyErr_NewExceptionWithDoc(
        "zeroize.LockError",
        "Locking memory in RAM failed (mlock, munlock, or a SecureBuffer under\n"
        "the \"required\" lock policy).  An OSError (errno is set) and a\n"
        "TypeError.  The usual cause is RLIMIT_MEMLOCK: raise it with\n"
        "`ulimit -l`, or run with CAP_IPC_LOCK.  exc.zz_error holds the\n"
        "library's reason (zeroize.ErrorCode).",
        bases, NULL);
    Py_DECREF(bases);
    return exc;
}

/* The Py_mod_exec slot: fills a new module object and its state.  Runs
 * once per module object (per interpreter, and again after the module is
 * removed from sys.modules and imported anew). */
static int module_exec(PyObject *m)
{
    zpy_state *st = PyModule_GetState(m);
    PyObject *io = PyImport_ImportModule("io");
    if (io == NULL)
        return -1;
    st->UnsupportedOperation = PyObject_GetAttrString(io, "UnsupportedOperation");
    Py_DECREF(io);
    if (st->UnsupportedOperation == NULL)
        return -1;
    st->LockError = new_lock_error();
    if (st->LockError == NULL || PyModule_AddObjectRef(m, "LockError", st->LockError) < 0)
        return -1;
    st->SecureBufferType = add_type(m, &zpy_securebuffer_spec);
    if (st->SecureBufferType == NULL || zpy_securebuffer_ready(st->SecureBufferType) < 0)
        return -1;
    st->ArenaType = add_type(m, &zpy_arena_spec);
    if (st->ArenaType == NULL || zpy_register_after_fork() < 0)
        return -1;
    if (zpy_shielded_add(m, st) < 0)
        return -1;
    return add_constants(m);
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    zpy_state *st = PyModule_GetState(m);
    Py_VISIT(st->SecureBufferType);
    Py_VISIT(st->ArenaType);
    Py_VISIT(st->LockError);
    Py_VISIT(st->protection_type);
    Py_VISIT(st->UnsupportedOperation);
    Py_VISIT(st->ShieldedType);
    Py_VISIT(st->ShieldError);
    return 0;
}

static int module_clear(PyObject *m)
{
    zpy_state *st = PyModule_GetState(m);
    Py_CLEAR(st->SecureBufferType);
    Py_CLEAR(st->ArenaType);
    Py_CLEAR(st->LockError);
    Py_CLEAR(st->protection_type);
    Py_CLEAR(st->UnsupportedOperation);
    Py_CLEAR(st->ShieldedType);
    Py_CLEAR(st->ShieldError);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
#ifdef Py_mod_multiple_interpreters
    /* The library's state is process-wide and guarded by its own locks,
     * but the types' per-object counts rely on a GIL shared with them. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"Low-level half of the zeroize package (a C extension over libzeroize).\n"
"Import `zeroize` instead.");

static struct PyModuleDef zeroize_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zeroize._zeroize",
    .m_doc = module_doc,
    .m_size = sizeof(zpy_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__zeroize(void); /* the one symbol Python looks up */

PyMODINIT_FUNC PyInit__zeroize(void)
{
    return PyModuleDef_Init(&zeroize_module);
}
