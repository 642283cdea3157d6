/*
 * _shielded.c - the Shielded type: a secret kept sealed (encrypted) in
 * memory by libzeroize-shield (include/zeroize_shield.h, compiled into this
 * extension with libsodium linked in statically, so the extension still
 * needs nothing but libc), opened into a read-only SecureBuffer only while
 * in use.
 *
 * Python-equivalent pseudocode:
 *
 *   class ShieldError(OSError): ...          # errno EBADMSG, ENOKEY, EBUSY
 *
 *   class Shielded:
 *       def __new__(cls, source, /, *, wipe_source=False):
 *           block = SecureBuffer(source)'s block (a size: zeros)
 *           self.s = zz_shield_seal_block(block)   # frees the block
 *           if wipe_source: zeroize1(source)
 *       def open(self) -> SecureBuffer:           # read-only, not packed
 *           if self.opened: raise ShieldError(EBUSY)
 *           return SecureBuffer over zz_shield_open(self.s)
 *                  # its close() calls zz_shield_close; readwrite() refused
 *       def destroy(self):                        # closes an open buffer
 *           if self.opened and exported: raise BufferError
 *           self.opened.close(); zz_shield_destroy(self.s)
 *       __len__, closed, __enter__/__exit__ (destroy), __repr__,
 *       rekey(), set_rekey_interval(ms), get_rekey_interval() (static)
 *
 * Python code can never reach a fatal misuse of the C API: a second open,
 * a destroy while open and a use after destroy are refused here first.
 */
#include "_zeroize.h"

#include <errno.h>

#ifdef ZPY_HAVE_SHIELD
#include "zeroize_shield.h"
#endif

typedef struct ShieldedObject {
    PyObject_HEAD
#ifdef ZPY_HAVE_SHIELD
    zz_shielded *s;           /* NULL once destroyed */
#endif
    Py_ssize_t size;
    SecureBufferObject *open; /* the buffer open() returned, while open (borrowed:
                                 it holds a reference to us) */
    int busy;                 /* an open() is under way without the GIL */
} ShieldedObject;

#define SH(o) ((ShieldedObject *)(o))

static PyObject *raise_errno(zpy_state *st, int err, const char *message)
{
    PyObject *args = Py_BuildValue("(is)", err, message);
    if (args != NULL) {
        PyErr_SetObject(st->ShieldError, args);
        Py_DECREF(args);
    }
    return NULL;
}

__attribute__((unused)) static PyObject *raise_shield_error(zpy_state *st, const char *what)
{
    int err = errno;
#ifdef ZPY_HAVE_SHIELD
    const char *why = zz_shield_last_error();
#else
    const char *why = "";
#endif
    if (err == ENOMEM || err == EAGAIN || err == EPERM)
        return zpy_raise_alloc_error(st, err);
    return raise_errno(st, err, why[0] != '\0' ? why : what);
}

#ifndef ZPY_HAVE_SHIELD

static PyObject *sh_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type, (void)args, (void)kwds;
    PyErr_SetString(PyExc_RuntimeError,
                    "zeroize.Shielded needs libsodium: this zeroize was built without it "
                    "(apt install libsodium-dev, then reinstall zeroize from source)");
    return NULL;
}

static PyObject *sh_unavailable(PyObject *cls, PyObject *args)
{
    (void)cls, (void)args;
    return sh_new(NULL, NULL, NULL);
}
#define sh_open sh_unavailable
#define sh_destroy sh_unavailable
#define sh_rekey sh_unavailable
#define sh_set_interval sh_unavailable
#define sh_get_interval sh_unavailable
#define sh_exit sh_unavailable
#define sh_open_doc NULL
#define sh_destroy_doc NULL
#define sh_rekey_doc NULL
#define sh_set_interval_doc NULL
static void release_block(SecureBufferObject *sb)
{
    (void)sb;
}

#else /* ZPY_HAVE_SHIELD */

/* Seals a new zz_alloc block of size bytes (zeros, or gathered from view). */
static PyObject *sh_seal(PyTypeObject *type, const Py_buffer *view, Py_ssize_t size)
{
    zpy_state *st = PyType_GetModuleState(type);
    unsigned char *block = zpy_secure_alloc(st, size);
    if (block == NULL)
        return NULL;
    if (view != NULL)
        zpy_gather_view(view, block);
    ShieldedObject *self = (ShieldedObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        zz_free(block);
        return NULL;
    }
    zz_shielded *s;
    Py_BEGIN_ALLOW_THREADS
    s = zz_shield_seal_block(block);
    Py_END_ALLOW_THREADS
    if (s == NULL) {
        int e = errno;
        zz_free(block);
        Py_DECREF(self);
        errno = e;
        return raise_shield_error(st, "zz_shield_seal_block failed");
    }
    self->s = s;
    self->size = size;
    return (PyObject *)self;
}

static PyObject *sh_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *arg;
    int wipe_source = 0;
    if (zpy_parse_obj_and_flag(args, kwds, "Shielded", "wipe_source", &arg, &wipe_source) < 0)
        return NULL;
    if (PyIndex_Check(arg) && !PyObject_CheckBuffer(arg)) {
        if (wipe_source) {
            PyErr_SetString(PyExc_TypeError,
                            "wipe_source=True needs a writable bytes-like source, not a size");
            return NULL;
        }
        Py_ssize_t size = zpy_size_arg(arg, "Shielded");
        if (size < 0)
            return NULL;
        return sh_seal(type, NULL, size);
    }
    if (!PyObject_CheckBuffer(arg)) {
        PyErr_Format(PyExc_TypeError,
                     "Shielded() takes a size (int) or a bytes-like object, not '%.100s'%s",
                     Py_TYPE(arg)->tp_name,
                     PyUnicode_Check(arg) ? " (a str cannot be wiped: read secrets with "
                                            "getpass() or SecureBuffer.from_file())" : "");
        return NULL;
    }
    zpy_state *st = PyType_GetModuleState(type);
    Py_buffer view;
    if (wipe_source) {
        if (zpy_get_wipeable_view(st, arg, &view, "Shielded", "wipe") < 0)
            return NULL;
    } else {
        if (zpy_get_view(arg, &view, PyBUF_RECORDS_RO, "Shielded") < 0)
            return NULL;
        if (zpy_format_has_objects(view.format)) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "Shielded() cannot copy an array of Python objects");
            return NULL;
        }
    }
    PyObject *self = sh_seal(type, &view, view.len);
    if (self != NULL && wipe_source)
        zpy_wipe_view(&view);
    PyBuffer_Release(&view);
    return self;
}

#define CHECK_NOT_DESTROYED(self, err)                                       \
    do {                                                                     \
        if ((self)->s == NULL) {                                             \
            PyErr_SetString(PyExc_ValueError,                                \
                            "operation on a destroyed Shielded");            \
            return err;                                                      \
        }                                                                    \
    } while (0)

PyDoc_STRVAR(sh_open_doc,
"open($self, /)\n--\n\n"
"Decrypt the secret into a new read-only SecureBuffer (guarded, locked,\n"
"excluded from core dumps) and return it; use it as a context manager:\n"
"`with shielded.open() as key: ...` wipes and closes it on exit.  While\n"
"it is open the plaintext exists in that buffer only.  One open at a\n"
"time: ShieldError (errno EBUSY) while a buffer from open() is still\n"
"open.  ShieldError with errno EBADMSG when the ciphertext or the\n"
"process's prekey was modified in memory, ENOKEY in a forked child (the\n"
"prekey is not inherited) or after zeroize.purge().");

static PyObject *sh_open(PyObject *op, PyObject *unused)
{
    (void)unused;
    ShieldedObject *self = SH(op);
    zpy_state *st = zpy_state_of(op);
    CHECK_NOT_DESTROYED(self, NULL);
    if (self->open != NULL || self->busy) {
        return raise_errno(st, EBUSY, "this Shielded is open already: close the SecureBuffer "
                                      "open() returned before opening it again");
    }
    SecureBufferObject *sb =
        (SecureBufferObject *)st->SecureBufferType->tp_alloc(st->SecureBufferType, 0);
    if (sb == NULL)
        return NULL;
    const void *data;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    data = zz_shield_open(self->s);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (data == NULL) {
        int e = errno;
        Py_DECREF(sb);
        errno = e;
        return raise_shield_error(st, "zz_shield_open failed");
    }
    sb->data = (unsigned char *)(uintptr_t)data;
    sb->size = self->size;
    sb->mode = ZZ_READONLY;
    sb->shielded = Py_NewRef(op);
    self->open = sb;
    return (PyObject *)sb;
}

/* Called by the SecureBuffer's close (or its finalizer): wipes and frees
 * the block through the shield.  pre: sb->shielded != NULL, no exports. */
static void release_block(SecureBufferObject *sb)
{
    ShieldedObject *owner = SH(sb->shielded);
    const void *data = sb->data;
    sb->data = NULL;
    sb->shielded = NULL;
    owner->open = NULL;
    zz_shield_close(owner->s, data);
    Py_DECREF(owner);
}

PyDoc_STRVAR(sh_destroy_doc,
"destroy($self, /)\n--\n\n"
"Wipe and free the ciphertext; the Shielded can no longer be opened.  A\n"
"buffer from open() that is still open is closed first (BufferError, and\n"
"nothing changes, while it is exported).  Idempotent.");

static PyObject *sh_destroy(PyObject *op, PyObject *unused)
{
    (void)unused;
    ShieldedObject *self = SH(op);
    if (self->s == NULL)
        Py_RETURN_NONE;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot destroy a Shielded while another thread "
                                            "is opening it");
        return NULL;
    }
    if (self->open != NULL) {
        if (self->open->exports > 0) {
            PyErr_Format(PyExc_BufferError,
                         "cannot destroy a Shielded while its open SecureBuffer has %zd "
                         "buffer export(s) (memoryview, ...) alive; release them first",
                         self->open->exports);
            return NULL;
        }
        release_block(self->open);
    }
    zz_shield_destroy(self->s);
    self->s = NULL;
    Py_RETURN_NONE;
}

static PyObject *sh_exit(PyObject *op, PyObject *args)
{
    (void)args;
    return sh_destroy(op, NULL);
}

PyDoc_STRVAR(sh_rekey_doc,
"rekey($cls, /)\n--\n\n"
"Draw a new 16 KiB prekey and re-seal every live Shielded under it (the\n"
"old prekey is wiped), so a prekey that leaks slowly goes stale.");

static PyObject *sh_rekey(PyObject *cls, PyObject *unused)
{
    (void)unused;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = zz_shield_rekey();
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return raise_shield_error(PyType_GetModuleState((PyTypeObject *)cls), "zz_shield_rekey failed");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sh_set_interval_doc,
"set_rekey_interval($cls, ms, /)\n--\n\n"
"Re-key automatically: the first open() or seal at least ms milliseconds\n"
"after the last re-key re-keys first.  0 (the default) turns it off.\n"
"ValueError above one day.");

static PyObject *sh_set_interval(PyObject *cls, PyObject *arg)
{
    (void)cls;
    unsigned long ms = PyLong_AsUnsignedLong(arg);
    if (ms == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (zz_shield_set_rekey_interval_ms(ms) != 0) {
        PyErr_SetString(PyExc_ValueError, "the re-key interval is at most one day (86400000 ms)");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *sh_get_interval(PyObject *cls, PyObject *unused)
{
    (void)cls, (void)unused;
    return PyLong_FromUnsignedLong(zz_shield_get_rekey_interval_ms());
}

#endif /* ZPY_HAVE_SHIELD */

void zpy_shielded_release(SecureBufferObject *sb)
{
    release_block(sb);
}

static void sh_dealloc(PyObject *op)
{
#ifdef ZPY_HAVE_SHIELD
    /* an open buffer holds a reference to us: none is open here */
    if (SH(op)->s != NULL)
        zz_shield_destroy(SH(op)->s);
#endif
    PyTypeObject *type = Py_TYPE(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static Py_ssize_t sh_length(PyObject *op)
{
    return SH(op)->size;
}

static PyObject *sh_repr(PyObject *op)
{
    ShieldedObject *self = SH(op);
#ifdef ZPY_HAVE_SHIELD
    const char *state = self->s == NULL ? "destroyed" : self->open != NULL ? "open" : "sealed";
#else
    const char *state = "unavailable";
#endif
    return PyUnicode_FromFormat("<zeroize.Shielded %zd bytes, %s>", self->size, state);
}

static PyObject *sh_get_closed(PyObject *op, void *closure)
{
    (void)closure;
#ifdef ZPY_HAVE_SHIELD
    return PyBool_FromLong(SH(op)->s == NULL);
#else
    (void)op;
    Py_RETURN_TRUE;
#endif
}

static PyObject *sh_get_is_open(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(SH(op)->open != NULL);
}

static PyObject *sh_enter(PyObject *op, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(op);
}

static PyObject *sh_refuse_pickle(PyObject *op, PyObject *args)
{
    (void)op, (void)args;
    PyErr_SetString(PyExc_TypeError, "a Shielded cannot be pickled or copied: its prekey "
                                     "exists in this process only");
    return NULL;
}

static PyMethodDef sh_methods[] = {
    {"open", sh_open, METH_NOARGS, sh_open_doc},
    {"destroy", sh_destroy, METH_NOARGS, sh_destroy_doc},
    {"close", sh_destroy, METH_NOARGS, "close($self, /)\n--\n\nThe same as destroy()."},
    {"rekey", sh_rekey, METH_NOARGS | METH_CLASS, sh_rekey_doc},
    {"set_rekey_interval", sh_set_interval, METH_O | METH_CLASS, sh_set_interval_doc},
    {"get_rekey_interval", sh_get_interval, METH_NOARGS | METH_CLASS,
     "get_rekey_interval($cls, /)\n--\n\nThe automatic re-key interval in milliseconds (0: off)."},
    {"__enter__", sh_enter, METH_NOARGS, NULL},
    {"__exit__", sh_exit, METH_VARARGS, NULL},
    {"__reduce__", sh_refuse_pickle, METH_NOARGS, NULL},
    {"__reduce_ex__", sh_refuse_pickle, METH_O, NULL},
    {"__copy__", sh_refuse_pickle, METH_NOARGS, NULL},
    {"__deepcopy__", sh_refuse_pickle, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sh_getset[] = {
    {"closed", sh_get_closed, NULL, "True once destroy() ran.", NULL},
    {"is_open", sh_get_is_open, NULL, "True while a buffer from open() is open.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(sh_doc,
"Shielded(source, /, *, wipe_source=False)\n--\n\n"
"A secret kept encrypted in memory (XChaCha20-Poly1305, libsodium) under\n"
"a key derived from a 16 KiB per-process prekey, and decrypted only while\n"
"in use: `with shielded.open() as key:` gives a read-only SecureBuffer\n"
"that is wiped when the block ends.  source is what SecureBuffer takes (a\n"
"size, for zeros, or a bytes-like object, copied without a temporary);\n"
"wipe_source=True wipes a writable source afterwards.  Sealed, the secret\n"
"costs no locked memory.  See zeroize_shield.h for the construction.");

static PyType_Slot sh_slots[] = {
    {Py_tp_new, sh_new},
    {Py_tp_dealloc, sh_dealloc},
    {Py_tp_repr, sh_repr},
    {Py_tp_methods, sh_methods},
    {Py_tp_getset, sh_getset},
    {Py_sq_length, sh_length},
    {Py_tp_doc, ZPY_DOC_SLOT(sh_doc)},
    {0, NULL},
};

static PyType_Spec sh_spec = {
    .name = "zeroize.Shielded",
    .basicsize = sizeof(ShieldedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = sh_slots,
};

int zpy_shielded_add(PyObject *m, zpy_state *st)
{
    PyObject *bases = PyTuple_Pack(1, PyExc_OSError);
    if (bases == NULL)
        return -1;
    st->ShieldError = PyErr_NewExceptionWithDoc(
        "zeroize.ShieldError",
        "A Shielded could not be opened: errno EBADMSG (its ciphertext or the\n"
        "process's prekey was modified in memory), ENOKEY (sealed in a parent\n"
        "process, or its prekey wiped by purge()), EBUSY (open already).",
        bases, NULL);
    Py_DECREF(bases);
    if (st->ShieldError == NULL || PyModule_AddObjectRef(m, "ShieldError", st->ShieldError) < 0)
        return -1;
    PyObject *type = PyType_FromModuleAndSpec(m, &sh_spec, NULL);
    if (type == NULL)
        return -1;
    st->ShieldedType = (PyTypeObject *)type;
    if (PyModule_AddObjectRef(m, "Shielded", type) < 0)
        return -1;
#ifdef ZPY_HAVE_SHIELD
    return PyModule_AddIntConstant(m, "HAVE_SHIELD", 1);
#else
    return PyModule_AddIntConstant(m, "HAVE_SHIELD", 0);
#endif
}
