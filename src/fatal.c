/*
 * fatal.c - the one way this library reports misuse and corruption: a single
 * line on stderr, then abort().  It must work after the heap is corrupted and
 * inside a signal handler, so it uses write(2) only: no stdio, no malloc.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Writes all n bytes: a signal (EINTR) or a nearly full pipe (a short write)
 * must not cut the one line that says why the process is about to die. */
static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* stderr is closed or broken: nothing better to do on the way to abort() */
        s += w;
        n -= (size_t)w;
    }
}

/* One write for the whole line where it fits: a pipe keeps writes of up to
 * PIPE_BUF bytes whole, so two threads dying at once do not mix their lines. */
_Noreturn void zzi_fatal(const char *msg)
{
    static const char prefix[] = "zeroize: ";
    char line[512];
    size_t plen = sizeof prefix - 1, mlen = strlen(msg);
    if (plen + mlen + 1 <= sizeof line) {
        memcpy(line, prefix, plen);
        memcpy(line + plen, msg, mlen);
        line[plen + mlen] = '\n';
        write_all(line, plen + mlen + 1);
    } else {
        write_all(prefix, plen);
        write_all(msg, mlen);
        write_all("\n", 1);
    }
    abort();
}
