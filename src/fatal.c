/*
 * fatal.c - the one way this library reports misuse and corruption: a single
 * line on stderr, then abort().  It must work after the heap is corrupted and
 * inside a signal handler, so it uses write(2) only: no stdio, no malloc.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return; /* nothing better to do on the way to abort() */
        s += w;
        n -= (size_t)w;
    }
}

_Noreturn void zzi_fatal(const char *msg)
{
    static const char prefix[] = "zeroize: ";
    write_all(prefix, sizeof prefix - 1);
    write_all(msg, strlen(msg));
    write_all("\n", 1);
    abort();
}
