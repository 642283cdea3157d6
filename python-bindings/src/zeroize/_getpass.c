/*
 * _getpass.c - the C half of zeroize.getpass() (the Python half in
 * __init__.py prompts and turns echo off): _read_secret_line(fd,
 * max_length) reads one line with one read(2) per byte straight into a
 * zz_alloc block, so no bytes or str ever holds the password, and returns
 * it as a SecureBuffer of exactly the line's length.
 */
#include "_zeroize.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

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

const char zpy_read_secret_line_doc[] = PyDoc_STR(
"_read_secret_line(fd, max_length, /)\n--\n\n"
"Private helper of getpass(): read one line from fd with one read(2) per\n"
"byte into secure memory, drop the newline and return a SecureBuffer of\n"
"exactly the line's length.  EOFError if the input ends before any byte,\n"
"ValueError (after wiping) if the line exceeds max_length bytes.  Signals\n"
"(Ctrl-C) interrupt the read and raise as usual.");

PyObject *zpy_read_secret_line(PyObject *module, PyObject *args)
{
    zpy_state *st = PyModule_GetState(module);
    int fd;
    Py_ssize_t max_length;
    if (!PyArg_ParseTuple(args, "in:_read_secret_line", &fd, &max_length))
        return NULL;
    if (max_length < 0) {
        PyErr_SetString(PyExc_ValueError, "max_length must be >= 0");
        return NULL;
    }
    Py_ssize_t cap = 64, len = 0;
    unsigned char *data = zpy_secure_alloc(st, cap);
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
                zpy_raise_alloc_error(st, errno);
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
        zpy_raise_alloc_error(st, errno);
        goto fail;
    }
    return zpy_sb_wrap(st->SecureBufferType, exact, len);
fail:
    zz_free(data);
    return NULL;
}
