/*
 * _fork.c - what a fork() leaves behind: the counts that threads inside a
 * GIL-released call hold on the objects they work on.
 *
 * A thread that wipes a SecureBuffer without the GIL (zeroize1 of 64 KiB
 * or more) holds an export of it; a thread inside Arena.random()'s
 * getrandom keeps the arena busy.  Another thread may fork meanwhile (it
 * has the GIL), and the child has only that one thread: the counts of the
 * others would stay forever, and close() would raise BufferError there for
 * good.  So each such call registers itself, on its own stack, for as long
 * as it runs without the GIL, and the child's after-fork hook
 * (os.register_at_fork, run by os.fork() in the child with the GIL) takes
 * back exactly the counts the registered calls held.  Exports held any
 * other way (a memoryview, a numpy array, hashlib or a socket of another
 * thread) are not touched: nothing here can tell whether the child still
 * uses them, and a count kept too long only refuses close(), while one
 * dropped too early would free memory still in use.
 *
 * The list is process-wide (fork is), reached only with the GIL held, which
 * every interpreter importing this module shares (it does not declare
 * Py_MOD_PER_INTERPRETER_GIL_SUPPORTED).  In the child the records still
 * lie in the dead threads' stacks, which fork() copied; the hook reads
 * them once and unlinks them.
 */
#include "_zeroize.h"

static zpy_inflight *inflight; /* GIL-protected */

void zpy_inflight_begin(zpy_inflight *rec, SecureBufferObject *sb, ArenaObject *busy)
{
    rec->sb = sb;
    rec->busy = busy;
    rec->thread = PyThread_get_thread_ident();
    rec->prev = NULL;
    rec->next = inflight;
    if (inflight != NULL)
        inflight->prev = rec;
    inflight = rec;
}

void zpy_inflight_end(zpy_inflight *rec)
{
    if (rec->prev != NULL)
        rec->prev->next = rec->next;
    else
        inflight = rec->next;
    if (rec->next != NULL)
        rec->next->prev = rec->prev;
    rec->prev = rec->next = NULL;
}

/* The records of other threads: the forking thread's own, if any (a
 * Python signal handler run by Arena.random() between two getrandom calls
 * may fork), stay, since that thread goes on in the child. */
static PyObject *after_fork_child(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    unsigned long me = PyThread_get_thread_ident();
    zpy_inflight *rec = inflight;
    while (rec != NULL) {
        zpy_inflight *next = rec->next;
        if (rec->thread != me) {
            if (rec->sb != NULL) {
                rec->sb->exports--;
                if (rec->sb->arena != NULL)
                    rec->sb->arena->exports--;
            }
            if (rec->busy != NULL)
                rec->busy->busy--;
            zpy_inflight_end(rec);
        }
        rec = next;
    }
    Py_RETURN_NONE;
}

/* No module (self is NULL): the hook cannot be unregistered, and must not
 * keep a module object alive. */
static PyMethodDef after_fork_child_def = {
    "_after_fork_child", after_fork_child, METH_NOARGS,
    "Private: drops the counts held by the GIL-released calls of threads a "
    "forked child does not have."};

int zpy_register_after_fork(void)
{
    PyObject *hook = PyCFunction_New(&after_fork_child_def, NULL);
    if (hook == NULL)
        return -1;
    PyObject *os = PyImport_ImportModule("os");
    PyObject *reg = os == NULL ? NULL : PyObject_GetAttrString(os, "register_at_fork");
    Py_XDECREF(os);
    PyObject *kwargs = reg == NULL ? NULL : Py_BuildValue("{s:O}", "after_in_child", hook);
    PyObject *args = kwargs == NULL ? NULL : PyTuple_New(0);
    PyObject *res = args == NULL ? NULL : PyObject_Call(reg, args, kwargs);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(reg);
    Py_DECREF(hook);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}
