/*
 * _securebuffer.c - the SecureBuffer type: a fixed-size bytearray-like
 * object over one secret block, either its own zz_alloc block or a packed
 * block of an Arena (_arena.c owns the arena side: lists, counts, frees).
 * Every refused operation leaves the object exactly as it was.
 */
#include "_zeroize.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

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
 * buffer is closed (by close(), or by closing its Arena) or in no-access
 * mode. */
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

PyObject *zpy_sb_wrap(PyTypeObject *type, unsigned char *data, Py_ssize_t size)
{
    SecureBufferObject *self = (SecureBufferObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        zz_free(data);
        return NULL;
    }
    self->data = data;
    self->size = size;
    self->mode = ZZ_READWRITE; /* tp_alloc zeroed the rest: not packed */
    return (PyObject *)self;
}

unsigned char *zpy_secure_alloc(zpy_state *st, Py_ssize_t size)
{
    unsigned char *p = zz_alloc((size_t)size);
    if (p == NULL)
        zpy_raise_alloc_error(st, errno);
    return p;
}

static PyObject *sb_from_buffer(PyTypeObject *type, PyObject *src, int wipe_source)
{
    zpy_state *st = PyType_GetModuleState(type);
    Py_buffer view;
    if (wipe_source) {
        /* refuse a read-only source before anything is allocated */
        if (zpy_get_wipeable_view(st, src, &view, "SecureBuffer", "wipe") < 0)
            return NULL;
    } else {
        if (zpy_get_readable_view(src, &view, "SecureBuffer") < 0)
            return NULL;
        if (zpy_format_has_objects(view.format)) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError,
                            "SecureBuffer() cannot copy an array of Python objects");
            return NULL;
        }
    }
    unsigned char *data = zpy_secure_alloc(st, view.len);
    if (data == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    zpy_gather_view(&view, data);
    if (wipe_source)
        zpy_wipe_view(&view);
    Py_ssize_t n = view.len;
    PyBuffer_Release(&view);
    return zpy_sb_wrap(type, data, n);
}

static PyObject *sb_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *arg;
    int wipe_source = 0;
    if (zpy_parse_obj_and_flag(args, kwds, "SecureBuffer", "wipe_source", &arg, &wipe_source) < 0)
        return NULL;
    /* As in bytearray: an object with __index__ is a size (numpy.int64(32)
     * too, although it also exports its 8 bytes), unless __index__ refuses
     * it with TypeError and it has a buffer (numpy arrays of several items). */
    if (PyIndex_Check(arg)) {
        Py_ssize_t size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
        if (size == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError) || !PyObject_CheckBuffer(arg))
                return NULL;
            PyErr_Clear();
        } else {
            if (wipe_source) {
                PyErr_SetString(PyExc_TypeError,
                                "wipe_source=True needs a writable bytes-like source, "
                                "not a size");
                return NULL;
            }
            if (size < 0) {
                PyErr_Format(PyExc_ValueError, "SecureBuffer size must be >= 0, not %zd", size);
                return NULL;
            }
            unsigned char *data = zpy_secure_alloc(PyType_GetModuleState(type), size);
            if (data == NULL)
                return NULL;
            return zpy_sb_wrap(type, data, size);
        }
    }
    if (PyObject_CheckBuffer(arg))
        return sb_from_buffer(type, arg, wipe_source);
    PyErr_Format(PyExc_TypeError,
                 "SecureBuffer() takes a size (int) or a bytes-like object, "
                 "not '%.100s'%s", Py_TYPE(arg)->tp_name,
                 PyUnicode_Check(arg) ? " (a str cannot be wiped: read secrets "
                                        "with getpass() or from_file())" : "");
    return NULL;
}

/* Wipes and frees the block.  pre: open, no exports. */
static void sb_free_block(SecureBufferObject *self)
{
    if (self->arena != NULL) {
        zpy_arena_free_buffer(self);
        return;
    }
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

/* Not a GC type (a SecureBuffer refers to nothing that could refer back
 * to it: its Arena lists it by a borrowed pointer), so the only reference
 * to drop besides the block is the one each instance of a heap type holds
 * to its type. */
static void sb_dealloc(PyObject *op)
{
    if (SB(op)->data != NULL) {
        if (PyObject_CallFinalizerFromDealloc(op) < 0)
            return; /* resurrected by a warning handler */
    }
    PyTypeObject *type = Py_TYPE(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *sb_repr(PyObject *op)
{
    SecureBufferObject *self = SB(op);
    const char *state = self->data == NULL          ? " closed"
                        : self->packed              ? " packed"
                        : self->arena != NULL       ? " arena"
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
 * close the buffer or its arena or change its mode: every function below
 * converts its arguments first and checks the buffer's state last, right
 * before it touches the memory. */

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
        PyObject *out = PyBytes_FromStringAndSize(NULL, n);
        if (out == NULL)
            return NULL;
        char *dst = PyBytes_AS_STRING(out);
        if (step == 1)
            zzi_copy_secret(dst, self->data + start, (size_t)n);
        else
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
    zpy_view_extent(v, &lo, &extent);
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
    if (zpy_get_readable_view(value, &src, "SecureBuffer slice assignment") < 0)
        return -1;
    if (sb_unusable(self) || self->mode == ZZ_READONLY) {
        PyBuffer_Release(&src);
        CHECK_WRITABLE(self, -1); /* raises */
    }
    if (zpy_format_has_objects(src.format)) {
        PyBuffer_Release(&src);
        PyErr_SetString(PyExc_TypeError,
                        "cannot assign an array of Python objects to a SecureBuffer slice");
        return -1;
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
    if (contiguous && step == 1) {
        zzi_copy_secret(self->data + start, src.buf, (size_t)n); /* overlap-safe */
        PyBuffer_Release(&src);
        return 0;
    }
    if (!overlaps(&src, self)) {
        if (step == 1) {
            zpy_gather_view(&src, self->data + start);
            PyBuffer_Release(&src);
            return 0;
        }
        if (contiguous) {
            const unsigned char *from = src.buf;
            for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
                self->data[i] = from[k];
            PyBuffer_Release(&src);
            return 0;
        }
    }
    /* A strided source into an extended slice, or a source that overlaps
     * the target: line the bytes up first, in secure memory (wiped when
     * freed). */
    unsigned char *stage = zpy_secure_alloc(zpy_state_of((PyObject *)self), n);
    if (stage == NULL) {
        PyBuffer_Release(&src);
        return -1;
    }
    zpy_gather_view(&src, stage);
    if (step == 1)
        zzi_copy_secret(self->data + start, stage, (size_t)n);
    else
        for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
            self->data[i] = stage[k];
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
    if (self->arena != NULL)
        self->arena->exports++; /* Arena.close() refuses while any is alive */
    return 0;
}

static void sb_releasebuffer(PyObject *op, Py_buffer *view)
{
    (void)view;
    SecureBufferObject *self = SB(op);
    self->exports--;
    if (self->arena != NULL)
        self->arena->exports--;
}

int zpy_is_securebuffer(PyObject *obj)
{
    PyBufferProcs *bp = obj == NULL ? NULL : Py_TYPE(obj)->tp_as_buffer;
    return bp != NULL && bp->bf_getbuffer == sb_getbuffer;
}

/* ---- comparison: == and != only ----
 *
 * Python asks the left operand's type first, and the right one's (with the
 * operator reflected) only when the left answers NotImplemented; either way
 * this function gets the SecureBuffer as `a`.  It runs for `sb OP x`
 * always, and for `x OP sb` when x's type defers: bytes, array.array, str,
 * int, memoryview for ordering, numpy (SecureBuffer.__array_ufunc__ is None,
 * so ndarray answers NotImplemented), another SecureBuffer, anything without
 * a comparison of its own.  bytearray on the left (any operator) and
 * memoryview on the left (== and !=) compare the exported bytes themselves,
 * with memcmp: the README says so and points to hmac.compare_digest(). */

static PyObject *refuse_ordering(PyObject *other)
{
    PyErr_Format(PyExc_TypeError,
                 "ordering is not supported: a SecureBuffer has no order (<, <=, > and >= "
                 "between it and '%.100s' would reveal the secret byte by byte); use == "
                 "(constant time) or hmac.compare_digest()", Py_TYPE(other)->tp_name);
    return NULL;
}

static PyObject *sb_richcompare(PyObject *a, PyObject *b, int op)
{
    /* Raise rather than answer NotImplemented: Python would then ask b's
     * type, and bytearray or numpy would order the secret's bytes. */
    if (op != Py_EQ && op != Py_NE)
        return refuse_ordering(b);
    SecureBufferObject *self = SB(a);
    if (!PyObject_CheckBuffer(b))
        Py_RETURN_NOTIMPLEMENTED;
    Py_buffer other;
    if (zpy_get_readable_view(b, &other, "SecureBuffer ==") < 0)
        return NULL;
    if (sb_unusable(self)) { /* checked after anything that may run code */
        PyBuffer_Release(&other);
        return NULL;
    }
    if (zpy_format_has_objects(other.format)) {
        PyBuffer_Release(&other);
        Py_RETURN_NOTIMPLEMENTED;
    }
    int equal = 0;
    if (other.len == self->size) { /* only the length may leak */
        if (other.strides == NULL || PyBuffer_IsContiguous(&other, 'C')) {
            equal = zz_equal(self->data, other.buf, (size_t)self->size);
        } else {
            /* a strided array: line its bytes up in secure memory first */
            unsigned char *flat = zpy_secure_alloc(zpy_state_of(a), other.len);
            if (flat == NULL) {
                PyBuffer_Release(&other);
                return NULL;
            }
            zpy_gather_view(&other, flat);
            equal = zz_equal(self->data, flat, (size_t)self->size);
            zz_free(flat);
        }
    }
    PyBuffer_Release(&other);
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

/* ---- + and *: refused (a SecureBuffer has a fixed size) ---- */

static PyObject *refuse_operator(PyObject *a, const char *what)
{
    if (!zpy_is_securebuffer(a))
        Py_RETURN_NOTIMPLEMENTED; /* x + sb, 3 * sb: x's type decides (bytes
                                     concatenates, making its own copy) */
    PyErr_Format(PyExc_TypeError,
                 "SecureBuffer has a fixed size: it cannot be %s (the result would "
                 "be a new object holding a copy of the secret); make a SecureBuffer of "
                 "the size you need and assign slices of it", what);
    return NULL;
}

static PyObject *sb_add(PyObject *a, PyObject *b)
{
    (void)b;
    return refuse_operator(a, "concatenated");
}

static PyObject *sb_inplace_add(PyObject *a, PyObject *b)
{
    (void)b;
    return refuse_operator(a, "extended with +=");
}

static PyObject *sb_multiply(PyObject *a, PyObject *b)
{
    (void)b;
    return refuse_operator(a, "repeated");
}

/* ---- methods ---- */

PyDoc_STRVAR(sb_close_doc,
"close($self, /)\n--\n\n"
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
"copy($self, /)\n--\n\n"
"A new, independent SecureBuffer (read-write) with the same bytes, copied\n"
"through general-purpose registers only (no copy is left in vector\n"
"registers).  A packed buffer's copy comes from the same Arena.");

static PyObject *sb_copy(PyObject *op, PyObject *unused)
{
    (void)unused;
    SecureBufferObject *self = SB(op);
    CHECK_USABLE(self, NULL);
    PyObject *copy;
    if (self->arena != NULL) {
        copy = (PyObject *)zpy_arena_new_buffer(self->arena, self->size);
    } else {
        unsigned char *data = zpy_secure_alloc(zpy_state_of(op), self->size);
        copy = data == NULL ? NULL : zpy_sb_wrap(Py_TYPE(op), data, self->size);
    }
    if (copy == NULL)
        return NULL;
    zzi_copy_secret(SB(copy)->data, self->data, (size_t)self->size);
    return copy;
}

static PyObject *sb_protect(SecureBufferObject *self, int mode, const char *what)
{
    CHECK_OPEN(self, NULL);
    if (self->arena != NULL && mode != ZZ_READWRITE) {
        PyErr_Format(zpy_state_of((PyObject *)self)->UnsupportedOperation,
                     "a %sSecureBuffer from an Arena cannot be made %s: %s; use "
                     "SecureBuffer(n) for a buffer with pages of its own",
                     self->packed ? "packed " : "",
                     mode == ZZ_READONLY ? "read-only" : "no-access",
                     self->packed ? "it shares its pages with other secrets"
                                  : "the arena keeps its blocks read-write");
        return NULL;
    }
    CHECK_NOT_EXPORTED(self, what, NULL);
    if (self->mode == mode)
        Py_RETURN_NONE;
    if (zz_protect(self->data, mode) != 0)
        return zpy_raise_library_error(zpy_state_of((PyObject *)self), PyExc_OSError, errno,
                                       "zz_protect failed");
    self->mode = mode;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sb_readonly_doc,
"readonly($self, /)\n--\n\n"
"Make the pages read-only (zz_protect): writes through Python raise\n"
"TypeError, writes from C fault.  BufferError while exported.  A packed\n"
"buffer (from an Arena) cannot: io.UnsupportedOperation.");

static PyObject *sb_readonly(PyObject *op, PyObject *unused)
{
    (void)unused;
    return sb_protect(SB(op), ZZ_READONLY, "change the protection of");
}

PyDoc_STRVAR(sb_noaccess_doc,
"noaccess($self, /)\n--\n\n"
"Make the pages inaccessible (zz_protect) until readonly() or\n"
"readwrite(): every access from Python raises ValueError, from C faults.\n"
"BufferError while exported.  A packed buffer (from an Arena) cannot:\n"
"io.UnsupportedOperation.");

static PyObject *sb_noaccess(PyObject *op, PyObject *unused)
{
    (void)unused;
    return sb_protect(SB(op), ZZ_NOACCESS, "change the protection of");
}

PyDoc_STRVAR(sb_readwrite_doc,
"readwrite($self, /)\n--\n\n"
"Make the pages readable and writable again (zz_protect).  BufferError\n"
"while exported.");

static PyObject *sb_readwrite(PyObject *op, PyObject *unused)
{
    (void)unused;
    return sb_protect(SB(op), ZZ_READWRITE, "change the protection of");
}

PyDoc_STRVAR(sb_info_doc,
"info($self, /)\n--\n\n"
"The protections the kernel actually granted this buffer (zz_info), as a\n"
"zeroize.Protection flag: LOCKED, DONTDUMP, WIPEONFORK, GUARDED,\n"
"SECRETMEM, CANARY, and PACKED for a buffer from an Arena (which has\n"
"canaries, not guard pages, between it and its neighbours, so it never\n"
"reports GUARDED).  Works in no-access mode; ValueError once closed.");

static PyObject *sb_info(PyObject *op, PyObject *unused)
{
    (void)unused;
    SecureBufferObject *self = SB(op);
    CHECK_OPEN(self, NULL);
    unsigned bits = zz_info(self->data);
    if (self->packed)
        bits = (bits & ~ZZ_INFO_GUARDED) | INFO_PACKED;
    PyObject *protection = zpy_state_of(op)->protection_type;
    if (protection == NULL)
        return PyLong_FromUnsignedLong(bits);
    return PyObject_CallFunction(protection, "I", bits);
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
"random($type, n, /)\n--\n\n"
"A new SecureBuffer of n bytes from the operating system's CSPRNG\n"
"(getrandom(2)), written straight into secure memory.");

static PyObject *sb_random(PyObject *cls, PyObject *arg)
{
    Py_ssize_t n = zpy_size_arg(arg, "SecureBuffer.random");
    if (n < 0)
        return NULL;
    unsigned char *data = zpy_secure_alloc(PyType_GetModuleState((PyTypeObject *)cls), n);
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
    return zpy_sb_wrap((PyTypeObject *)cls, data, n);
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

/* The most from_file() reads from a file whose size fstat(2) does not
 * tell (procfs and sysfs files say 0). */
#define UNSIZED_MAX ((Py_ssize_t)1 << 20)

/* Reads a file that reports size 0 until end of file into a growing block,
 * up to UNSIZED_MAX bytes (one more is read to see the end).  Sets *got and
 * returns the block, or NULL with an exception. */
static unsigned char *read_unsized(zpy_state *state, int fd, Py_ssize_t *got)
{
    Py_ssize_t cap = 4096;
    unsigned char *data = zpy_secure_alloc(state, cap);
    *got = 0;
    while (data != NULL) {
        Py_ssize_t r = read_fully(fd, data + *got, cap - *got);
        if (r < 0)
            break;
        *got += r;
        if (*got < cap) /* end of file */
            return data;
        if (cap > UNSIZED_MAX) {
            PyErr_Format(PyExc_ValueError,
                         "SecureBuffer.from_file(): the file reports size 0 (as procfs and "
                         "sysfs files do) and holds more than %zd bytes, the most read "
                         "from such a file", UNSIZED_MAX);
            break;
        }
        Py_ssize_t bigger = cap < UNSIZED_MAX ? cap * 2 : UNSIZED_MAX + 1;
        unsigned char *grown = zz_realloc(data, (size_t)bigger); /* wipes the old block */
        if (grown == NULL) {
            zpy_raise_alloc_error(state, errno);
            break;
        }
        data = grown;
        cap = bigger;
    }
    zz_free(data);
    return NULL;
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
    zpy_state *state = PyType_GetModuleState(cls);
    unsigned char *data;
    Py_ssize_t got;
    if (st.st_size == 0) {
        data = read_unsized(state, fd, &got);
        if (data == NULL)
            return NULL;
        want = got;
    } else {
        data = zpy_secure_alloc(state, want);
        if (data == NULL)
            return NULL;
        got = read_fully(fd, data, want);
        if (got < 0) {
            zz_free(data);
            return NULL;
        }
    }
    if (got < want || st.st_size == 0) { /* it shrank since fstat, or had no size */
        unsigned char *smaller = zz_realloc(data, (size_t)got);
        if (smaller == NULL) {
            int err = errno;
            zz_free(data);
            return zpy_raise_alloc_error(state, err);
        }
        data = smaller;
    }
    return zpy_sb_wrap(cls, data, got);
}

PyDoc_STRVAR(sb_from_file_doc,
"from_file($type, path_or_fd, /)\n--\n\n"
"A new SecureBuffer holding a regular file's contents, read with\n"
"unbuffered read(2) calls straight into secure memory: the key never\n"
"passes through a bytes object or a stdio buffer.  The size comes from\n"
"fstat(2); a file that reports size 0 (procfs, sysfs) is read until end of\n"
"file, up to 1 MiB (ValueError beyond).  Given a file descriptor, reads\n"
"from its current offset to the end of the file and leaves it open.  Short\n"
"reads and EINTR are retried; if the file shrinks meanwhile, the buffer\n"
"holds what was there.  Raises ValueError for anything but a regular file,\n"
"OSError if it cannot be read.");

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

static PyObject *sb_get_packed(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(SB(op)->packed);
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
    {"closed", sb_get_closed, NULL,
     "True once close() has run, or the buffer's Arena was closed.", NULL},
    {"mode", sb_get_mode, NULL,
     "\"readwrite\", \"readonly\", \"noaccess\" or \"closed\".", NULL},
    {"packed", sb_get_packed, NULL,
     "True for an open buffer packed in an Arena, next to other secrets.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(sb_doc,
"SecureBuffer(size_or_bytes_like, /, *, wipe_source=False)\n--\n\n"
"A fixed-size, bytearray-like buffer whose bytes live in one guarded,\n"
"locked, dump-excluded, wipe-on-fork block (zz_alloc).\n\n"
"SecureBuffer(32) holds 32 zero bytes (any object with __index__ is a size,\n"
"as in bytearray); SecureBuffer(obj) copies any other object with the\n"
"buffer protocol (bytes, bytearray, memoryview, numpy arrays...) and, with\n"
"wipe_source=True, wipes a writable source afterwards (a read-only source\n"
"then raises TypeError before anything is allocated).\n\n"
"Indexing works like bytearray; a slice reads as a bytes *copy* (which\n"
"this package cannot wipe: prefer memoryview(sb)[a:b]).  Slice assignment\n"
"must keep the length.  memoryview(sb) and numpy.frombuffer(sb) share its\n"
"memory.  == and != against any bytes-like object run in constant time\n"
"(zz_equal) when the SecureBuffer decides: on the left always, on the\n"
"right unless a bytearray (any operator) or a memoryview (==, !=) is on\n"
"the left, which compare with memcmp (use hmac.compare_digest there).\n"
"Ordering (<, <=, >, >=) raises TypeError.  The object is unhashable, cannot\n"
"be pickled or copied with copy.copy (use .copy()), and its repr never\n"
"shows the contents.\n\n"
"close() (or leaving a with block) wipes and frees it; an unclosed buffer\n"
"is wiped and freed when garbage-collected, with a ResourceWarning.\n"
"Arena.buffer(n) makes packed SecureBuffers: see zeroize.Arena.");

static PyType_Slot sb_slots[] = {
    {Py_tp_new, sb_new},
    {Py_tp_dealloc, sb_dealloc},
    {Py_tp_finalize, sb_finalize},
    {Py_tp_repr, sb_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_richcompare, sb_richcompare},
    {Py_nb_add, sb_add},
    {Py_nb_inplace_add, sb_inplace_add},
    {Py_nb_multiply, sb_multiply},
    {Py_tp_methods, sb_methods},
    {Py_tp_getset, sb_getset},
    {Py_tp_doc, ZPY_DOC_SLOT(sb_doc)},
    {Py_sq_length, sb_length},
    {Py_sq_item, sb_item},
    {Py_sq_ass_item, sb_ass_item},
    {Py_mp_length, sb_length},
    {Py_mp_subscript, sb_subscript},
    {Py_mp_ass_subscript, sb_ass_subscript},
    {Py_bf_getbuffer, sb_getbuffer},
    {Py_bf_releasebuffer, sb_releasebuffer},
    {0, NULL},
};

/* A heap type, one per module object (_zeroize.c makes it): immutable like
 * a static type, and not subclassable (so zpy_state_of() can take an
 * instance's type for its module's). */
PyType_Spec zpy_securebuffer_spec = {
    .name = "zeroize.SecureBuffer",
    .basicsize = sizeof(SecureBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = sb_slots,
};

/* tp_richcompare gives every ordering slot a wrapper (__lt__ ...) that
 * help() lists although it can only raise: a SecureBuffer has == and !=
 * only.  The slot itself stays (it raises TypeError for ordering). */
int zpy_securebuffer_ready(PyTypeObject *type)
{
    /* and __radd__/__rmul__, which nb_add/nb_multiply add, though they only
     * answer NotImplemented */
    static const char *const names[] = {"__lt__", "__le__", "__gt__", "__ge__",
                                        "__radd__", "__rmul__"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (PyDict_DelItemString(type->tp_dict, names[i]) < 0)
            return -1;
    /* numpy's opt-out (NEP 13): an ndarray on the left of ==, <, +, ^ ...
     * answers NotImplemented instead of comparing or combining the exported
     * bytes itself, and ufuncs refuse a SecureBuffer operand (their result
     * would be an ndarray nobody wipes). */
    if (PyDict_SetItemString(type->tp_dict, "__array_ufunc__", Py_None) < 0)
        return -1;
    PyType_Modified(type);
    return 0;
}
