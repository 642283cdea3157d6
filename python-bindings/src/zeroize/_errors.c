/*
 * _errors.c - turning libzeroize's failures into Python exceptions (the
 * class from zz_last_error_code(), the message from zz_last_error(), the
 * code itself as exc.zz_error), and the argument parsing the types and the
 * module functions share.
 */
#include "_zeroize.h"

#include <errno.h>
#include <string.h>

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
    int is_oserror = PyObject_IsSubclass(exc_type, PyExc_OSError);
    if (is_oserror < 0)
        return;
    PyObject *exc = is_oserror ? PyObject_CallFunction(exc_type, "iO", err, msg) /* .errno */
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
PyObject *zpy_raise_library_error(zpy_state *st, PyObject *exc_type, int err, const char *what)
{
    int code = zz_last_error_code();
    const char *detail = code == ZZ_ERR_NONE ? "" : zz_last_error();
    const char *hint = "";
    if (exc_type == st->LockError && code == ZZ_ERR_NONE && is_lock_errno(err))
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
PyObject *zpy_raise_alloc_error(zpy_state *st, int err)
{
    int code = zz_last_error_code();
    if (is_lock_code(code) || (code == ZZ_ERR_NONE && (err == EAGAIN || err == EPERM)))
        return zpy_raise_library_error(st, st->LockError, err, "cannot allocate locked memory");
    if (is_memory_code(code) || (code == ZZ_ERR_NONE && err == ENOMEM))
        return zpy_raise_library_error(st, PyExc_MemoryError, err, "cannot allocate secure memory");
    return zpy_raise_library_error(st, PyExc_OSError, err, "cannot allocate secure memory");
}

PyObject *zpy_raise_memory_error(int code, PyObject *msg)
{
    raise_with_code(PyExc_MemoryError, 0, msg, code);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
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
