/*
 * _zeroize.h - what the extension's C files share: the module state, the
 * two object types, the error and argument helpers, and the buffer helpers
 * of _views.c.  The files are compiled into one module (zeroize._zeroize)
 * together with libzeroize; names shared between them start with zpy_ (the
 * library's are zz_/zzi_).
 *
 *   _zeroize.c      the module: multi-phase init (PEP 489), its state, and
 *                   the functions zeroize1, zeroize_np, mlock, munlock,
 *                   stats, lock policy and backend
 *   _errors.c       exceptions from library failures, argument parsing
 *   _views.c        other objects' buffers: views, the strided walk, wipes
 *   _securebuffer.c the SecureBuffer type
 *   _arena.c        the Arena type
 *   _getpass.c      getpass()'s C half: a line from a fd into secure memory
 *   _fork.c         the after-fork hook: counts held by GIL-released calls
 *   _bench.c        private baselines for benchmarks/bench_python.py
 *
 * Nothing is global: the types and exceptions live in the module's state
 * (zpy_state), reached from a module function's module or, in a method,
 * from the object's type (both types are heap types made from that
 * module), so each module object, in each (sub)interpreter, has its own.
 */
#ifndef ZEROIZE_PY_H
#define ZEROIZE_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "zeroize.h"

/* Wipes at least this large release the GIL: below it the GIL round trip
 * costs more than it gives back to other threads. */
#define RELEASE_GIL_FROM ((Py_ssize_t)64 * 1024)

/* A Protection bit of the Python layer only (not a ZZ_INFO_* flag, and far
 * above them so the library can add flags): the buffer is packed in an
 * Arena, with canaries rather than guard pages between it and its
 * neighbours. */
#define INFO_PACKED (1u << 16)

typedef struct ArenaObject ArenaObject;

typedef struct SecureBufferObject {
    PyObject_HEAD
    unsigned char *data; /* the block; NULL once closed (or its arena closed) */
    Py_ssize_t size;     /* bytes in the block (kept after close for len/repr) */
    Py_ssize_t exports;  /* live buffer exports (memoryview, numpy, ...) */
    int mode;            /* ZZ_READWRITE, ZZ_READONLY or ZZ_NOACCESS */
    int packed;          /* in an arena's memory, next to other blocks (not a
                            large arena block on pages of its own) */
    /* Packed buffers only (NULL/unused for zz_alloc blocks): the Arena the
     * block belongs to (a strong reference, held while the block is open),
     * and the links of that arena's list of its open buffers. */
    ArenaObject *arena;
    struct SecureBufferObject *prev, *next;
} SecureBufferObject;

struct ArenaObject {
    PyObject_HEAD
    zz_arena *arena;          /* NULL once closed */
    Py_ssize_t capacity;      /* as given: 0 for a growable arena */
    Py_ssize_t live;          /* open buffers in `buffers` */
    Py_ssize_t live_bytes;    /* and the sum of their sizes */
    Py_ssize_t used;          /* and of their cells (zpy_arena_cell): at most
                                 capacity in a fixed arena */
    Py_ssize_t exports;       /* live exports of all those buffers together */
    Py_ssize_t busy;          /* calls writing into a block without the GIL */
    SecureBufferObject *buffers; /* open buffers (borrowed: each owns itself) */
};

/* The module's state (PyModule_GetState): every object the C code needs
 * that is not an argument.  All strong references. */
typedef struct {
    PyTypeObject *SecureBufferType;
    PyTypeObject *ArenaType;
    PyObject *LockError;            /* zeroize.LockError(OSError, TypeError) */
    PyObject *protection_type;      /* zeroize.Protection, set by __init__.py */
    PyObject *UnsupportedOperation; /* io.UnsupportedOperation */
} zpy_state;

#define SB(o) ((SecureBufferObject *)(o))
#define ARENA(o) ((ArenaObject *)(o))

/* The state of the module that made obj's type (a SecureBuffer or an
 * Arena: neither type can be subclassed, so the type is the module's). */
static inline zpy_state *zpy_state_of(PyObject *obj)
{
    return (zpy_state *)PyType_GetModuleState(Py_TYPE(obj));
}

/* ---- the types (_securebuffer.c, _arena.c) ------------------------------- */
/* A PyType_Slot's pfunc for a const docstring (the slot table is not
 * const-correct; CPython copies the text). */
#define ZPY_DOC_SLOT(doc) ((void *)(uintptr_t)(doc))
/* Made in the module's exec slot with PyType_FromModuleAndSpec. */
extern PyType_Spec zpy_securebuffer_spec;
extern PyType_Spec zpy_arena_spec;
/* Finishes the SecureBuffer type after it is made: drops the ordering and
 * reflected wrappers tp_richcompare and the number slots add, and sets
 * __array_ufunc__ = None.  Returns 0, or -1 with an exception. */
int zpy_securebuffer_ready(PyTypeObject *type);

/* ---- errors (_errors.c) ---------------------------------------------------- */
/* Raises exc_type(errno, "<what>: <zz_last_error()>") with .zz_error set to
 * zz_last_error_code(), adding the RLIMIT_MEMLOCK hint to a LockError
 * (st->LockError) the library gave no cause for.  Returns NULL. */
PyObject *zpy_raise_library_error(zpy_state *st, PyObject *exc_type, int err, const char *what);
/* An allocation failed with err: LockError, MemoryError or OSError, as
 * zz_last_error_code() says.  Returns NULL. */
PyObject *zpy_raise_alloc_error(zpy_state *st, int err);
/* Raises MemoryError(msg) with .zz_error = code (a ZZ_ERR_* value) for a
 * refusal of the Python layer itself.  Returns NULL. */
PyObject *zpy_raise_memory_error(int code, PyObject *msg);

/* ---- arguments (_errors.c) ------------------------------------------------ */
/* Parses (obj, /, *, <flag>=False).  Returns 0, or -1 with an exception. */
int zpy_parse_obj_and_flag(PyObject *args, PyObject *kwds, const char *fname,
                           const char *flag_name, PyObject **obj, int *flag);
/* A size: an int or any object with __index__, >= 0.  Returns it, or -1 with
 * TypeError / ValueError / OverflowError set ("<who>() ..."). */
Py_ssize_t zpy_size_arg(PyObject *arg, const char *who);

/* ---- buffers (_views.c) ----------------------------------------------------- */
/* PyObject_GetBuffer for reading or writing, never with suboffsets: flags
 * must not include PyBUF_INDIRECT.  A PIL-style exporter (one that needs
 * suboffsets) is refused with TypeError, whether it refuses the request or
 * ignores it.  who names the operation in messages ("SecureBuffer").
 * Returns 0, or -1 with an exception. */
int zpy_get_view(PyObject *obj, Py_buffer *view, int flags, const char *who);
/* A writable strided view of obj for wiping or locking, or TypeError for
 * anything that cannot be written (bytes, str, read-only buffers, object
 * arrays, suboffsets).  who is the function ("zeroize1"), verb what it
 * does ("wipe"), for messages. */
int zpy_get_wipeable_view(zpy_state *st, PyObject *obj, Py_buffer *view, const char *who,
                          const char *verb);
/* A read-only strided view of obj (zpy_get_view with PyBUF_RECORDS_RO),
 * numpy's datetime64/timedelta64 arrays included (read through an opaque
 * 'V' view of the same memory, as zeroize1 wipes them).  Returns 0, or -1
 * with an exception. */
int zpy_get_readable_view(PyObject *obj, Py_buffer *view, const char *who);
/* 1 if a struct-module format describes Python objects ('O'). */
int zpy_format_has_objects(const char *fmt);
/* Wipes exactly the bytes the view covers, releasing the GIL for big ones.
 * pre: the view is held (an export), so its memory cannot go away. */
void zpy_wipe_view(const Py_buffer *v);
/* The address range [*lo, *lo + *extent) spanning every byte of the view. */
void zpy_view_extent(const Py_buffer *v, char **lo, size_t *extent);
/* Copies the view's items in logical C order to dst (v->len bytes) with
 * zzi_copy_secret, without any temporary buffer. */
void zpy_gather_view(const Py_buffer *v, unsigned char *dst);
/* libzeroize's memmove through general-purpose registers only (src/wipe.c,
 * declared in its internal.h): nothing of the bytes is left in vector
 * registers, which memcpy would use and which a core dump's register notes,
 * or the XSAVE area lazy binding puts on the stack, would then hold. */
void zzi_copy_secret(void *dst, const void *src, size_t n);

/* ---- SecureBuffer (_securebuffer.c) ------------------------------------------ */
/* A new zz_alloc block of size bytes, or NULL with the exception set. */
unsigned char *zpy_secure_alloc(zpy_state *st, Py_ssize_t size);
/* A new SecureBuffer that owns data (size bytes from zz_alloc); on failure
 * the block is freed. */
PyObject *zpy_sb_wrap(PyTypeObject *type, unsigned char *data, Py_ssize_t size);

/* ---- Arena (_arena.c) -------------------------------------------------------- */
/* A new packed SecureBuffer of n zero bytes from a (ValueError when a is
 * closed).  Returns NULL with an exception on failure. */
SecureBufferObject *zpy_arena_new_buffer(ArenaObject *a, Py_ssize_t n);
/* The bytes a block of n bytes takes from a fixed arena's capacity:
 * round_up(max(n, 1), 16) + 16 (its canary), as zz_arena_create counts. */
Py_ssize_t zpy_arena_cell(Py_ssize_t n);
/* Wipes and frees a packed buffer's block and forgets the buffer.
 * pre: sb->data != NULL, sb->arena != NULL, no exports. */
void zpy_arena_free_buffer(SecureBufferObject *sb);

/* 1 if obj is a SecureBuffer (of any module object). */
int zpy_is_securebuffer(PyObject *obj);

/* ---- fork (_fork.c) ------------------------------------------------------------ */
/* A call that runs without the GIL while it holds an export of a
 * SecureBuffer (sb) or keeps an Arena busy (busy): registered, on the
 * caller's stack, from just before it releases the GIL until just after it
 * takes it back, so that a forked child, which lacks the thread, can take
 * those counts back (see _fork.c).  Either pointer may be NULL. */
typedef struct zpy_inflight {
    SecureBufferObject *sb;
    ArenaObject *busy;
    unsigned long thread; /* PyThread_get_thread_ident() of the caller */
    struct zpy_inflight *prev, *next;
} zpy_inflight;
/* Both with the GIL held. */
void zpy_inflight_begin(zpy_inflight *rec, SecureBufferObject *sb, ArenaObject *busy);
void zpy_inflight_end(zpy_inflight *rec);
/* os.register_at_fork(after_in_child=<the hook>).  0, or -1 with an
 * exception. */
int zpy_register_after_fork(void);

/* ---- module functions defined outside _zeroize.c --------------------------- */
/* _getpass.c: _read_secret_line(fd, max_length) */
extern const char zpy_read_secret_line_doc[];
PyObject *zpy_read_secret_line(PyObject *module, PyObject *args);
/* _bench.c: _volatile_loop_wipe(buf), _wipe_c_loop(nbytes, reps) */
extern const char zpy_volatile_loop_wipe_doc[];
PyObject *zpy_volatile_loop_wipe(PyObject *module, PyObject *buf);
extern const char zpy_wipe_c_loop_doc[];
PyObject *zpy_wipe_c_loop(PyObject *module, PyObject *args);

#endif /* ZEROIZE_PY_H */
