/*
 * _arena.c - the Arena type: many small secrets packed into one zz_arena and
 * handed out as SecureBuffer objects.  An arena keeps the list of its open
 * buffers (closing it closes them) and the count of their exports (it
 * refuses to close while one is alive); each open buffer holds a reference
 * to its arena.  Every call into the arena runs with the GIL held, except
 * getrandom in random(), during which `busy` makes close() refuse.
 */
#include "_zeroize.h"

#include <errno.h>
#include <sys/random.h>

static int arena_closed(const ArenaObject *self)
{
    if (self->arena != NULL)
        return 0;
    PyErr_SetString(PyExc_ValueError, "I/O operation on a closed Arena");
    return 1;
}

static void link_buffer(ArenaObject *a, SecureBufferObject *sb)
{
    sb->prev = NULL;
    sb->next = a->buffers;
    if (a->buffers != NULL)
        a->buffers->prev = sb;
    a->buffers = sb;
    a->live++;
    a->live_bytes += sb->size;
    a->used += zpy_arena_cell(sb->size);
}

static void unlink_buffer(ArenaObject *a, SecureBufferObject *sb)
{
    if (sb->prev != NULL)
        sb->prev->next = sb->next;
    else
        a->buffers = sb->next;
    if (sb->next != NULL)
        sb->next->prev = sb->prev;
    sb->prev = sb->next = NULL;
    a->live--;
    a->live_bytes -= sb->size;
    a->used -= zpy_arena_cell(sb->size);
}

Py_ssize_t zpy_arena_cell(Py_ssize_t n)
{
    if (n > PY_SSIZE_T_MAX - 32) /* no arena holds it: larger than any capacity */
        return PY_SSIZE_T_MAX;
    return (n <= 16 ? 16 : (n + 15) & ~(Py_ssize_t)15) + 16;
}

/* A fixed arena hands out at most its capacity, counted in cells: the
 * library's arena reserves more than that (for its runs' canaries and a mix
 * of sizes) and would serve blocks from the reserve.  Returns 0, or -1 with
 * MemoryError (.zz_error ARENA_FULL). */
static int check_capacity(ArenaObject *a, Py_ssize_t n)
{
    Py_ssize_t need = zpy_arena_cell(n);
    if (a->capacity == 0 || need <= a->capacity - a->used)
        return 0;
    PyObject *msg = PyUnicode_FromFormat(
        "Arena is full: %zd of its capacity of %zd bytes are taken, and a block of %zd "
        "bytes needs %zd (round_up(n, 16) + 16); close buffers, or make the Arena "
        "with a larger capacity", a->used, a->capacity, n, need);
    if (msg != NULL) {
        zpy_raise_memory_error(ZZ_ERR_ARENA_FULL, msg);
        Py_DECREF(msg);
    }
    return -1;
}


SecureBufferObject *zpy_arena_new_buffer(ArenaObject *a, Py_ssize_t n)
{
    if (arena_closed(a) || check_capacity(a, n) < 0)
        return NULL;
    zpy_state *st = zpy_state_of((PyObject *)a);
    unsigned char *p = zz_arena_alloc(a->arena, (size_t)n);
    if (p == NULL) {
        zpy_raise_alloc_error(st, errno);
        return NULL;
    }
    PyTypeObject *type = st->SecureBufferType;
    SecureBufferObject *sb = (SecureBufferObject *)type->tp_alloc(type, 0);
    if (sb == NULL) {
        zz_arena_free(a->arena, p);
        return NULL;
    }
    sb->data = p;
    sb->size = n;
    sb->mode = ZZ_READWRITE;
    /* packed between canaries, or a large block on guarded pages of its own */
    sb->packed = (zz_info(p) & ZZ_INFO_PACKED) != 0;
    sb->arena = (ArenaObject *)Py_NewRef(a);
    link_buffer(a, sb);
    return sb;
}

void zpy_arena_free_buffer(SecureBufferObject *sb)
{
    ArenaObject *a = sb->arena;
    unsigned char *p = sb->data;
    sb->data = NULL;
    sb->arena = NULL;
    sb->packed = 0;
    unlink_buffer(a, sb);
    zz_arena_free(a->arena, p); /* wipes; checks the canaries */
    Py_DECREF(a);               /* last: may finalize the arena */
}

/* Closes every open buffer and destroys the arena (which wipes every block).
 * pre: open, no exports, not busy; the caller holds a reference to self. */
static void close_arena(ArenaObject *self)
{
    zz_arena *z = self->arena;
    self->arena = NULL;
    SecureBufferObject *sb;
    while ((sb = self->buffers) != NULL) {
        self->buffers = sb->next;
        sb->data = NULL;
        sb->arena = NULL;
        sb->packed = 0;
        sb->prev = sb->next = NULL;
        Py_DECREF(self); /* the buffer's reference; never the last one */
    }
    self->live = 0;
    self->live_bytes = 0;
    self->used = 0;
    zz_arena_destroy(z);
}

static PyObject *arena_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *arg = NULL;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "Arena() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 1)
        arg = PyTuple_GET_ITEM(args, 0);
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyObject *kw = PyDict_GetItemString(kwds, "capacity");
        if (kw == NULL || PyDict_GET_SIZE(kwds) != 1 || arg != NULL) {
            PyErr_SetString(PyExc_TypeError,
                            "Arena() takes one argument, capacity (by position or keyword)");
            return NULL;
        }
        arg = kw;
    }
    Py_ssize_t capacity = arg == NULL ? 0 : zpy_size_arg(arg, "Arena");
    if (capacity < 0)
        return NULL;
    ArenaObject *self = (ArenaObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->arena = zz_arena_create((size_t)capacity);
    if (self->arena == NULL) {
        int err = errno;
        Py_DECREF(self); /* no arena: no finalizer work */
        return zpy_raise_alloc_error(PyType_GetModuleState(type), err);
    }
    self->capacity = capacity;
    return (PyObject *)self;
}

static void arena_finalize(PyObject *op)
{
    ArenaObject *self = ARENA(op);
    if (self->arena == NULL)
        return;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    if (PyErr_ResourceWarning(op, 1, "unclosed Arena (wiped and freed by the garbage "
                              "collector)") < 0) {
        if (PyErr_ExceptionMatches(PyExc_Warning))
            PyErr_WriteUnraisable(op);
        PyErr_Clear();
    }
    /* Open buffers hold references to their arena, so none is left when it
     * is collected; a warning handler may have resurrected it, though. */
    if (self->arena != NULL && self->buffers == NULL && self->busy == 0) {
        zz_arena *z = self->arena;
        self->arena = NULL;
        zz_arena_destroy(z);
    }
    PyErr_Restore(et, ev, tb);
}

/* Not a GC type: an Arena holds only borrowed pointers to its buffers
 * (which hold it), so it is in no cycle; besides the arena it drops the
 * reference each instance of a heap type holds to its type. */
static void arena_dealloc(PyObject *op)
{
    if (ARENA(op)->arena != NULL) {
        if (PyObject_CallFinalizerFromDealloc(op) < 0)
            return; /* resurrected by a warning handler */
    }
    PyTypeObject *type = Py_TYPE(op);
    type->tp_free(op);
    Py_DECREF(type);
}

/* The bytes the arena maps (guard pages included) and locks. */
static void arena_memory(zz_arena *z, size_t *mapped, size_t *locked)
{
    zz_stats s;
    if (zz_arena_stats(z, &s) == 0) {
        *mapped += s.mapped_bytes;
        *locked += s.locked_bytes;
    }
}

static PyObject *arena_repr(PyObject *op)
{
    ArenaObject *self = ARENA(op);
    if (self->arena == NULL)
        return PyUnicode_FromString("<Arena closed>");
    size_t mapped = 0, locked = 0;
    arena_memory(self->arena, &mapped, &locked);
    if (self->capacity > 0)
        return PyUnicode_FromFormat("<Arena size=%zu live=%zd capacity=%zd>", mapped, self->live,
                                    self->capacity);
    return PyUnicode_FromFormat("<Arena size=%zu live=%zd growable>", mapped, self->live);
}

PyDoc_STRVAR(arena_buffer_doc,
"buffer($self, n, /)\n--\n\n"
"A new SecureBuffer of n zero bytes from this arena: locked,\n"
"dump-excluded, wipe-on-fork memory like any SecureBuffer, packed with\n"
"canaries (checked when it is freed) rather than guard pages between it\n"
"and its neighbours.  (A growable arena puts blocks above 16,336 bytes on\n"
"guarded pages of their own: those are not packed.)  It keeps the arena\n"
"alive; closing the arena closes it.  MemoryError when a fixed arena's\n"
"capacity has no room for round_up(max(n, 1), 16) + 16 more bytes,\n"
"LockError when the memory cannot be locked, ValueError once the arena is\n"
"closed.");

static PyObject *arena_buffer(PyObject *op, PyObject *arg)
{
    Py_ssize_t n = zpy_size_arg(arg, "Arena.buffer");
    if (n < 0)
        return NULL;
    return (PyObject *)zpy_arena_new_buffer(ARENA(op), n);
}

PyDoc_STRVAR(arena_random_doc,
"random($self, n, /)\n--\n\n"
"Like buffer(n), filled with n bytes from the operating system's CSPRNG\n"
"(getrandom(2)) written straight into the arena.");

static PyObject *arena_random(PyObject *op, PyObject *arg)
{
    ArenaObject *self = ARENA(op);
    Py_ssize_t n = zpy_size_arg(arg, "Arena.random");
    if (n < 0)
        return NULL;
    SecureBufferObject *sb = zpy_arena_new_buffer(self, n);
    if (sb == NULL)
        return NULL;
    Py_ssize_t got = 0;
    self->busy++; /* the GIL is let go below: close() must wait for us */
    zpy_inflight rec; /* and a child forked meanwhile must not */
    zpy_inflight_begin(&rec, NULL, self);
    while (got < n) {
        ssize_t r;
        Py_BEGIN_ALLOW_THREADS
        r = getrandom(sb->data + got, (size_t)(n - got), 0);
        Py_END_ALLOW_THREADS
        if (r < 0) {
            int err = errno;
            if (err == EINTR && PyErr_CheckSignals() == 0)
                continue;
            zpy_inflight_end(&rec);
            self->busy--;
            zpy_arena_free_buffer(sb);
            Py_DECREF(sb);
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            return NULL;
        }
        got += r;
    }
    zpy_inflight_end(&rec);
    self->busy--;
    return (PyObject *)sb;
}

PyDoc_STRVAR(arena_close_doc,
"close($self, /)\n--\n\n"
"Wipe every block and free the arena; its open buffers become closed (any\n"
"use raises ValueError).  Idempotent.  Raises BufferError, and changes\n"
"nothing, while a memoryview, numpy array or other export of one of its\n"
"buffers is alive, or while another thread is filling one (random()).");

static PyObject *arena_close(PyObject *op, PyObject *unused)
{
    (void)unused;
    ArenaObject *self = ARENA(op);
    if (self->arena == NULL)
        Py_RETURN_NONE;
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot close an Arena while %zd export(s) of its buffers (memoryview, "
                     "numpy array, ...) are alive; release them first", self->exports);
        return NULL;
    }
    if (self->busy > 0) {
        PyErr_SetString(PyExc_BufferError,
                        "cannot close an Arena while another thread is filling one of its "
                        "buffers (Arena.random()); try again when it returns");
        return NULL;
    }
    close_arena(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(arena_stats_doc,
"stats($self, /)\n--\n\n"
"This arena's counters, as a dict like zeroize.stats(): live_blocks and\n"
"live_bytes (its open buffers and their sizes), locked_bytes (counted\n"
"against RLIMIT_MEMLOCK) and mapped_bytes of its memory (large blocks on\n"
"pages of their own included).  All 0 once closed.");

static PyObject *arena_stats(PyObject *op, PyObject *unused)
{
    (void)unused;
    ArenaObject *self = ARENA(op);
    size_t mapped = 0, locked = 0;
    if (self->arena != NULL)
        arena_memory(self->arena, &mapped, &locked);
    return Py_BuildValue("{s:n,s:n,s:n,s:n}",
                         "live_blocks", self->live,
                         "live_bytes", self->live_bytes,
                         "locked_bytes", (Py_ssize_t)locked,
                         "mapped_bytes", (Py_ssize_t)mapped);
}

static PyObject *arena_enter(PyObject *op, PyObject *unused)
{
    (void)unused;
    if (arena_closed(ARENA(op)))
        return NULL;
    return Py_NewRef(op);
}

static PyObject *arena_exit(PyObject *op, PyObject *args)
{
    (void)args;
    return arena_close(op, NULL);
}

static PyObject *arena_refuse_copy(PyObject *op, PyObject *args)
{
    (void)op;
    (void)args;
    PyErr_SetString(PyExc_TypeError, "cannot pickle or copy an Arena");
    return NULL;
}

static PyObject *arena_get_closed(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(ARENA(op)->arena == NULL);
}

static PyObject *arena_get_capacity(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(ARENA(op)->capacity);
}

static PyMethodDef arena_methods[] = {
    {"buffer", arena_buffer, METH_O, arena_buffer_doc},
    {"random", arena_random, METH_O, arena_random_doc},
    {"close", arena_close, METH_NOARGS, arena_close_doc},
    {"stats", arena_stats, METH_NOARGS, arena_stats_doc},
    {"__enter__", arena_enter, METH_NOARGS, "Return self (ValueError if closed)."},
    {"__exit__", arena_exit, METH_VARARGS, "Close the arena (see close())."},
    {"__reduce__", arena_refuse_copy, METH_NOARGS, "Refused: raises TypeError."},
    {"__reduce_ex__", arena_refuse_copy, METH_O, "Refused: raises TypeError."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef arena_getset[] = {
    {"closed", arena_get_closed, NULL, "True once close() has run.", NULL},
    {"capacity", arena_get_capacity, NULL,
     "The capacity given to Arena(): 0 for a growable arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(arena_doc,
"Arena(capacity=0)\n--\n\n"
"Many small secrets packed together (zz_arena): a 32-byte secret costs 48\n"
"bytes of locked memory instead of a page, so a process without\n"
"CAP_IPC_LOCK can hold 100,000 of them under the usual 8 MiB lock limit.\n\n"
"capacity=0 makes a growable arena (guarded, locked chunks added on\n"
"demand).  capacity > 0 makes a fixed arena, mapped and locked up front,\n"
"that never grows and holds at most capacity bytes of blocks, a block of n\n"
"bytes counted as round_up(max(n, 1), 16) + 16 (so count * (round_up(n, 16)\n"
"+ 16) holds exactly count blocks of n bytes; a mix of many sizes may be\n"
"refused earlier); beyond that, MemoryError.  It maps round_up(capacity +\n"
"capacity // 8 + 32768, page) bytes plus two guard pages (see the README).\n"
"buffer(n) and random(n) return SecureBuffers that behave like\n"
"any other, except that they cannot be made read-only or no-access, and\n"
"info() reports Protection.PACKED instead of GUARDED: neighbours are\n"
"separated by canaries, not guard pages.\n\n"
"close() (or leaving a with block) wipes every block and closes the\n"
"arena's buffers; it raises BufferError while one of them is exported.\n"
"A buffer keeps its arena alive.  repr() shows the arena's size and live\n"
"count, never contents.");

static PyType_Slot arena_slots[] = {
    {Py_tp_new, arena_new},
    {Py_tp_dealloc, arena_dealloc},
    {Py_tp_finalize, arena_finalize},
    {Py_tp_repr, arena_repr},
    {Py_tp_methods, arena_methods},
    {Py_tp_getset, arena_getset},
    {Py_tp_doc, ZPY_DOC_SLOT(arena_doc)},
    {0, NULL},
};

/* A heap type, one per module object (_zeroize.c makes it): immutable and
 * not subclassable, like SecureBuffer. */
PyType_Spec zpy_arena_spec = {
    .name = "zeroize.Arena",
    .basicsize = sizeof(ArenaObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = arena_slots,
};
