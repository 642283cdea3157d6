/*
 * policy.c - the lock policy (ZZ_LOCK_REQUIRED / ZZ_LOCK_BEST_EFFORT, and the
 * ZEROIZE_LOCK environment variable) and the per-thread explanation of the
 * last failure that zz_last_error() and zz_last_error_code() return.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

_Atomic unsigned zzi_checks_gen;

static _Atomic int lock_policy = -1; /* -1: not read from the environment yet */

static int policy_from_env(void)
{
    const char *v = zzi_os_getenv("ZEROIZE_LOCK");
    if (v != NULL && (strcmp(v, "best-effort") == 0 || strcmp(v, "best_effort") == 0))
        return ZZ_LOCK_BEST_EFFORT;
    return ZZ_LOCK_REQUIRED; /* unknown values fail closed */
}

static int current_policy(void)
{
    int p = atomic_load_explicit(&lock_policy, memory_order_relaxed);
    if (zz_unlikely(p < 0)) {
        int expected = -1;
        atomic_compare_exchange_strong(&lock_policy, &expected, policy_from_env());
        p = atomic_load(&lock_policy);
    }
    return p;
}

int zzi_policy_lock_required(void)
{
    return current_policy() == ZZ_LOCK_REQUIRED;
}

ZZ_API int zz_set_lock_policy(int policy)
{
    if (policy != ZZ_LOCK_REQUIRED && policy != ZZ_LOCK_BEST_EFFORT) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return zzi_api_rc(-1);
    }
    int was = atomic_exchange(&lock_policy, policy);
    if (policy == ZZ_LOCK_REQUIRED && was != ZZ_LOCK_REQUIRED)
        atomic_fetch_add(&zzi_checks_gen, 1); /* arenas look at their chunks again */
    return 0;
}

ZZ_API int zz_get_lock_policy(void)
{
    return current_policy();
}

_Atomic int zzi_backend_choice = -1; /* -1: not read from the environment yet */
_Atomic int zzi_secretmem_unavailable;

static int backend_from_env(void)
{
    const char *v = zzi_os_getenv("ZEROIZE_BACKEND");
    if (v == NULL || strcmp(v, "anon") == 0)
        return ZZ_BACKEND_ANON;
    if (strcmp(v, "auto") == 0)
        return ZZ_BACKEND_AUTO;
    /* "secretmem", and any value we do not know: fail closed on the
     * strongest choice rather than silently weaken it. */
    return ZZ_BACKEND_SECRETMEM;
}

ZZ_API int zz_get_backend(void)
{
    int b = atomic_load_explicit(&zzi_backend_choice, memory_order_relaxed);
    if (zz_unlikely(b < 0)) {
        int expected = -1;
        atomic_compare_exchange_strong(&zzi_backend_choice, &expected, backend_from_env());
        b = atomic_load(&zzi_backend_choice);
    }
    return b;
}

ZZ_API int zz_set_backend(int b)
{
    if (b != ZZ_BACKEND_ANON && b != ZZ_BACKEND_SECRETMEM && b != ZZ_BACKEND_AUTO) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return zzi_api_rc(-1);
    }
    atomic_store(&zzi_backend_choice, b);
    return 0;
}

int zzi_policy_backend(void)
{
    return zzi_policy_resolve(zz_get_backend());
}

void zzi_policy_secretmem_unavailable(void)
{
    atomic_store(&zzi_secretmem_unavailable, 1);
}

/* The thread's last failure (what zz_last_error says), and the failure of
 * the call in progress, published only if that call fails (internal.h). */
static _Thread_local zzi_failure_t last_failure, pending_failure;
static _Thread_local char unmapped_text[200], pending_unmapped_text[200];

void zzi_fail(zzi_failure_t why)
{
    pending_failure = why;
}

void zzi_fail_unmapped(uintptr_t start, uintptr_t end)
{
    int saved = errno;
    snprintf(pending_unmapped_text, sizeof pending_unmapped_text,
             "zz_lock: the range 0x%lx-0x%lx is not mapped in this process (freed or unmapped "
             "memory?): lock only memory that is mapped for as long as it stays locked",
             (unsigned long)start, (unsigned long)end);
    errno = saved;
    pending_failure = ZZ_ERR_UNMAPPED;
}

void zzi_fail_publish(void)
{
    if (pending_failure == ZZ_ERR_NONE)
        return;
    if (pending_failure == ZZ_ERR_UNMAPPED)
        memcpy(unmapped_text, pending_unmapped_text, sizeof unmapped_text);
    last_failure = pending_failure;
    pending_failure = ZZ_ERR_NONE;
}

ZZ_API int zz_last_error_code(void)
{
    return (int)last_failure;
}

ZZ_API const char *zz_last_error(void)
{
    switch (last_failure) {
    case ZZ_ERR_NONE:
        return "";
    case ZZ_ERR_MEMLOCK:
        return "the kernel refused to lock secret memory in RAM: the locked-memory limit "
               "(RLIMIT_MEMLOCK) is reached; raise it with `ulimit -l` (or LimitMEMLOCK= in a "
               "systemd unit, memlock in /etc/security/limits.conf), grant CAP_IPC_LOCK, or "
               "allow unlocked secrets with ZEROIZE_LOCK=best-effort";
    case ZZ_ERR_MAPCOUNT:
        return "the kernel refused a new memory mapping: out of memory, or the process "
               "reached vm.max_map_count; raise it with `sysctl vm.max_map_count=262144`, "
               "or free secrets you no longer need";
    case ZZ_ERR_NOMEM:
        return "the requested size is too large: more than this machine's memory, or than a "
               "size can express";
    case ZZ_ERR_ADVICE:
        return "the kernel does not support MADV_DONTDUMP or MADV_WIPEONFORK (Linux 4.14+ "
               "needed); use ZEROIZE_LOCK=best-effort to accept secrets without them";
    case ZZ_ERR_ARGUMENT:
        return "invalid argument";
    case ZZ_ERR_SECRETMEM:
        return "the kernel refused memfd_secret: it needs Linux 5.14+ (before 6.5 booted with "
               "secretmem.enable=1) and no seccomp filter blocking it, and its pages count "
               "against RLIMIT_MEMLOCK (`ulimit -l`); or choose ZEROIZE_BACKEND=auto or anon";
    case ZZ_ERR_RANDOM:
        return "the kernel's random generator (getrandom) failed, so no canary key could be "
               "made; it is tried again on the next call (early in boot, wait for the entropy "
               "pool; under seccomp, allow getrandom)";
    case ZZ_ERR_ARENA_BLOCK:
        return "arena blocks are at most 16,336 bytes: allocate larger secrets with zz_alloc";
    case ZZ_ERR_UNMAPPED:
        return unmapped_text;
    case ZZ_ERR_SECRETMEM_LIMIT:
        return "the kernel refused secret memory (memfd_secret): its pages are always locked and "
               "count against RLIMIT_MEMLOCK, which is reached; raise it with `ulimit -l` (or "
               "LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf), grant "
               "CAP_IPC_LOCK, free secrets you no longer need, or use ZEROIZE_BACKEND=anon "
               "(ZEROIZE_LOCK=best-effort cannot help: secret memory is never unlocked)";
    case ZZ_ERR_ARENA_UNFIT:
        return "the fixed arena's memory no longer meets its promises (it was mapped unlocked "
               "under ZZ_LOCK_BEST_EFFORT and the policy is now ZZ_LOCK_REQUIRED, or, in a forked "
               "child, its secret memory was replaced by zero pages) and a fixed arena cannot "
               "grow: create a new arena";
    case ZZ_ERR_NOACCESS:
        return "zz_realloc cannot copy a block in ZZ_NOACCESS mode: make it readable first with "
               "zz_protect(p, ZZ_READONLY) or zz_protect(p, ZZ_READWRITE)";
    case ZZ_ERR_ARENA_FULL:
        return "the fixed-capacity arena is full: free blocks, or create it with a larger "
               "capacity (or 0 for an arena that grows)";
    }
    return "";
}
