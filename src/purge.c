/*
 * purge.c - the emergency brake: zz_purge wipes every live secret at once,
 * from anywhere, including a signal handler (signals.c wires it to signals);
 * zz_harden_process is the only place the library changes process-wide
 * settings, and only when asked.
 *
 * Guarantee (what zz_purge promises while other threads keep working):
 *   - every block live from before zz_purge starts until after it returns
 *     reads as zero afterwards, in any protection mode (except: a block whose
 *     mode another thread is changing at that moment (inside its mprotect
 *     call) is skipped; and a purge
 *     run by a signal that interrupted a purge on the same thread wipes only
 *     the ZZ_READWRITE blocks, leaving the rest to the interrupted one);
 *   - a block allocated or freed meanwhile may or may not be wiped (a block
 *     being freed counts as live until its own wipe is done, so a purge from
 *     a signal that interrupts zz_free or zz_arena_free still wipes it); free
 *     cells, those in threads' arena caches included, are zero already;
 *   - no lock is taken, so a thread interrupted while holding the allocator's
 *     lock cannot deadlock it; no memory outside the library's slots is ever
 *     written; a canary zeroed by the purge is not reported as corruption
 *     (the wipe epoch tells zz_free that a purge happened since the block was
 *     made, and a canary never contains a zero byte, so an untouched canary
 *     and a purged one cannot be confused).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

/* One purge at a time: two would race on a protected block (one restoring
 * its mode while the other wipes it).  A purge waits for one in another
 * thread, which always finishes; a purge that interrupted a purge on its own
 * thread cannot wait, and leaves protected blocks to it. */
static _Atomic int purge_running;
static ZZ_TLS_SIGNAL_SAFE int purging_here;

/* Fork child: a purge that another thread of the parent was running (or
 * waiting to run) does not exist here; the forking thread was in none. */
/* Odd while a purge runs (one at a time, nested ones inside its window):
 * a remover waits for the purge that may have seen what it removed, never
 * for the ones after it, so a thread that purges in a loop cannot starve
 * it. */
static _Atomic unsigned purge_gen;

void zzi_purge_wait_for_readers(void)
{
    unsigned g = atomic_load(&purge_gen);
    if (g & 1)
        while (atomic_load(&purge_gen) == g)
            zzi_os_yield();
}

void zzi_purge_after_fork_child(void)
{
    atomic_store(&purge_running, 0);
    unsigned g = atomic_load(&purge_gen);
    atomic_store(&purge_gen, g + (g & 1));
    purging_here = 0;
}

ZZ_API void zz_purge(void)
{
    int saved = errno;
    int nested = purging_here;
    if (!nested) {
        while (atomic_exchange(&purge_running, 1))
            zzi_os_yield();
        atomic_fetch_add(&purge_gen, 1); /* before any region is read */
    }
    purging_here = 1;
    atomic_fetch_add(&zzi_purgers, 1);
    atomic_fetch_add(&zzi_wipe_epoch, 1);
    ZZ_VG_QUIET_BEGIN();
    zzi_registry_purge_all(nested);
    ZZ_VG_QUIET_END();
    atomic_fetch_add(&zzi_wipe_epoch, 1);
    atomic_fetch_sub(&zzi_purgers, 1);
    purging_here = nested;
    if (!nested) {
        atomic_fetch_add(&purge_gen, 1); /* after the last region was read */
        atomic_store(&purge_running, 0);
    }
    errno = saved;
}

ZZ_API int zz_harden_process(unsigned flags)
{
    if (flags & ~(ZZ_HARDEN_NO_CORE | ZZ_HARDEN_NO_PTRACE)) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    if ((flags & ZZ_HARDEN_NO_CORE) && zzi_os_set_core_limit_zero() != 0)
        return -1;
    if ((flags & ZZ_HARDEN_NO_PTRACE) && zzi_os_set_nondumpable() != 0)
        return -1;
    return 0;
}
