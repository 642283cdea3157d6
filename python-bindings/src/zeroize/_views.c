/*
 * _views.c - reading, writing and wiping other objects' buffers: getting a
 * view (never one with suboffsets), the strided buffer walk (a view's
 * bytes as runs of contiguous memory: wiped run by run, or gathered into
 * secure memory with libzeroize's copy, which leaves nothing in vector
 * registers), and a view's address extent for mlock.  Owns no object
 * type; SecureBuffer and Arena live in their own files.
 */
#include "_zeroize.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Getting a view                                                           */
/* ------------------------------------------------------------------------ */

static int has_suboffsets(const Py_buffer *v)
{
    if (v->suboffsets == NULL)
        return 0;
    for (int i = 0; i < v->ndim; i++)
        if (v->suboffsets[i] >= 0)
            return 1;
    return 0;
}

static int refuse_suboffsets(PyObject *obj, const char *who)
{
    PyErr_Format(PyExc_TypeError,
                 "%s: cannot use a buffer with suboffsets ('%.100s' exports a PIL-style "
                 "array of pointers to its rows): pass a contiguous or strided buffer "
                 "(bytes, bytearray, memoryview, numpy array, SecureBuffer)",
                 who, Py_TYPE(obj)->tp_name);
    return -1;
}

int zpy_get_view(PyObject *obj, Py_buffer *view, int flags, const char *who)
{
    if (PyObject_GetBuffer(obj, view, flags) == 0) {
        if (!has_suboffsets(view)) /* an exporter that ignored the flags */
            return 0;
        PyBuffer_Release(view);
        return refuse_suboffsets(obj, who);
    }
    if (!PyErr_ExceptionMatches(PyExc_BufferError))
        return -1;
    /* A well-behaved PIL-style exporter refuses a request without
     * PyBUF_INDIRECT with a BufferError: say why it cannot be used. */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_buffer full;
    int indirect = 0;
    if (PyObject_GetBuffer(obj, &full, PyBUF_FULL_RO) == 0) {
        indirect = has_suboffsets(&full);
        PyBuffer_Release(&full);
    } else {
        PyErr_Clear();
    }
    if (indirect) {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        return refuse_suboffsets(obj, who);
    }
    PyErr_Restore(et, ev, tb);
    return -1;
}

int zpy_format_has_objects(const char *fmt)
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

/* numpy refuses a buffer format for datetime64/timedelta64: get the same
 * memory through a view with an opaque ('V') dtype of equal size.  flags:
 * PyBUF_RECORDS to write, PyBUF_RECORDS_RO to read. */
static int get_numpy_opaque_view(PyObject *obj, Py_buffer *view, int flags, const char *who,
                                 const char *verb)
{
    PyObject *itemsize = PyObject_GetAttrString(obj, "itemsize");
    if (itemsize == NULL)
        return -1;
    PyObject *opaque = PyObject_CallMethod(obj, "view", "((sO))", "V", itemsize);
    Py_DECREF(itemsize);
    if (opaque == NULL)
        return -1;
    int rc = zpy_get_view(opaque, view, flags, who);
    if (rc < 0 && PyErr_ExceptionMatches(PyExc_ValueError)) { /* "writeable" is False */
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s() cannot %s a read-only buffer ('%.100s')", who,
                     verb, Py_TYPE(obj)->tp_name);
    }
    Py_DECREF(opaque); /* the view keeps its own reference */
    return rc;
}

int zpy_get_wipeable_view(zpy_state *st, PyObject *obj, Py_buffer *view, const char *who,
                          const char *verb)
{
    if (zpy_get_view(obj, view, PyBUF_RECORDS, who) == 0) {
        if (zpy_format_has_objects(view->format)) {
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
    if (PyErr_ExceptionMatches(PyExc_TypeError)) /* suboffsets, or the exporter's own */
        return -1;
    if (Py_IS_TYPE(obj, st->SecureBufferType)) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "%s() cannot %s a read-only SecureBuffer: call readwrite() first",
                         who, verb);
        }
        return -1; /* closed / noaccess: keep the ValueError */
    }
    /* Was it refused only because it is read-only?  (CPython's types say
     * so with BufferError, numpy with ValueError.) */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_buffer ro;
    int readonly = 0;
    if (PyObject_GetBuffer(obj, &ro, PyBUF_RECORDS_RO) == 0) {
        readonly = ro.readonly;
        PyBuffer_Release(&ro);
    } else {
        PyErr_Clear();
    }
    if (readonly) {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        PyErr_Format(PyExc_TypeError,
                     "%s() needs a writable buffer and cannot %s a read-only one "
                     "('%.100s'); keep secrets in a bytearray or SecureBuffer",
                     who, verb, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (!PyErr_GivenExceptionMatches(et, PyExc_ValueError)) {
        PyErr_Restore(et, ev, tb);
        return -1;
    }
    /* PyObject_HasAttrString would swallow the pending exception: look with
     * it put aside (a released memoryview must keep its ValueError). */
    int is_numpy = PyObject_HasAttrString(obj, "__array_interface__");
    if (!is_numpy) {
        PyErr_Restore(et, ev, tb);
        return -1;
    }
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    return get_numpy_opaque_view(obj, view, PyBUF_RECORDS, who, verb);
}

int zpy_get_readable_view(PyObject *obj, Py_buffer *view, const char *who)
{
    if (zpy_get_view(obj, view, PyBUF_RECORDS_RO, who) == 0)
        return 0;
    if (!PyErr_ExceptionMatches(PyExc_ValueError))
        return -1;
    /* numpy's datetime64/timedelta64 (ValueError: "cannot include dtype 'M'
     * in a buffer"); a released memoryview keeps its ValueError. */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    int is_numpy = PyObject_HasAttrString(obj, "__array_interface__");
    if (!is_numpy) {
        PyErr_Restore(et, ev, tb);
        return -1;
    }
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    return get_numpy_opaque_view(obj, view, PyBUF_RECORDS_RO, who, "read");
}

/* ------------------------------------------------------------------------ */
/* Walking a strided view                                                   */
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

void zpy_wipe_view(const Py_buffer *v)
{
    byte_runs r;
    if (!plan_runs(v, &r))
        return;
    if (v->len >= RELEASE_GIL_FROM) {
        zpy_inflight rec; /* the export of a SecureBuffer, for a fork meanwhile */
        zpy_inflight_begin(&rec, zpy_is_securebuffer(v->obj) ? SB(v->obj) : NULL, NULL);
        Py_BEGIN_ALLOW_THREADS
        for_each_run(&r, wipe_run);
        Py_END_ALLOW_THREADS
        zpy_inflight_end(&rec);
    } else {
        for_each_run(&r, wipe_run);
    }
}

void zpy_view_extent(const Py_buffer *v, char **lo, size_t *extent)
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

void zpy_gather_view(const Py_buffer *v, unsigned char *dst)
{
    if (v->len == 0)
        return;
    if (v->strides == NULL || PyBuffer_IsContiguous(v, 'C')) {
        zzi_copy_secret(dst, v->buf, (size_t)v->len);
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
        zzi_copy_secret(dst, p, (size_t)run);
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
