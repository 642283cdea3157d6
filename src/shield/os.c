/*
 * os.c - the shield's fatal path, the few system calls it makes itself
 * (getpid, the clock) and the text of the last error.  Memory, locking and
 * protection all go through libzeroize; random bytes and the cryptography
 * through libsodium.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shield.h"

_Noreturn void zzs_fatal(const char *msg)
{
    static const char prefix[] = "zeroize: ";
    char line[160];
    size_t n = sizeof prefix - 1, m = strlen(msg);
    if (m > sizeof line - n - 1)
        m = sizeof line - n - 1;
    memcpy(line, prefix, n);
    memcpy(line + n, msg, m);
    line[n + m] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n + m + 1);
    (void)w;
    abort();
}

pid_t zzs_os_getpid(void)
{
    return getpid();
}

uint64_t zzs_os_now_ms(void)
{
    struct timespec t;
    ZZS_CHECK(clock_gettime(CLOCK_MONOTONIC_COARSE, &t) == 0, "clock_gettime failed");
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static _Thread_local char last_error[320];

void zzs_fail(int err, const char *what, const char *detail)
{
    snprintf(last_error, sizeof last_error, what, detail != NULL ? detail : "");
    errno = err;
}

void zzs_fail_alloc(const char *what)
{
    int e = errno;
    const char *why = zz_last_error();
    snprintf(last_error, sizeof last_error, "%s: %s", what,
             why[0] != '\0' ? why : strerror(e));
    errno = e;
}

ZZ_EXPORT const char *zz_shield_last_error(void)
{
    return last_error;
}
