/*
 * _bench.c - private baselines for benchmarks/bench_python.py, not for use:
 * a per-byte volatile wipe loop (what zeroize1 is compared with) and
 * zz_wipe called from C in a loop (what zeroize1's overhead is measured
 * against).  Module functions _volatile_loop_wipe and _wipe_c_loop.
 */
#include "_zeroize.h"

#include <string.h>
#include <time.h>

const char zpy_volatile_loop_wipe_doc[] = PyDoc_STR(
"_volatile_loop_wipe(buf, /)\n--\n\n"
"Benchmark baseline, not for use: zero a C-contiguous writable buffer one\n"
"byte at a time through a volatile pointer, the way naive wipers do.");

PyObject *zpy_volatile_loop_wipe(PyObject *module, PyObject *buf)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    volatile unsigned char *p = view.buf;
    Py_ssize_t n = view.len;
    if (n >= RELEASE_GIL_FROM) {
        zpy_inflight rec; /* the export, for a fork meanwhile (_fork.c) */
        zpy_inflight_begin(&rec, zpy_is_securebuffer(buf) ? SB(buf) : NULL, NULL);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            p[i] = 0;
        Py_END_ALLOW_THREADS
        zpy_inflight_end(&rec);
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            p[i] = 0;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

const char zpy_wipe_c_loop_doc[] = PyDoc_STR(
"_wipe_c_loop(nbytes, reps, /)\n--\n\n"
"Benchmark baseline, not for use: call zz_wipe on an nbytes heap buffer\n"
"reps times in C and return the total seconds (CLOCK_MONOTONIC).");

PyObject *zpy_wipe_c_loop(PyObject *module, PyObject *args)
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
