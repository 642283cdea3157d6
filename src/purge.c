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

/* Wipes every live block of every region on the purge list (see
 * zzi_purge_begin for nested). */
static void purge_all(int nested)
{
    /* After a fork that ran no handler, zz_purge mapped zero pages where
     * secret memory was not inherited (MADV_DONTFORK) before it began; a
     * region still without them is being mapped by the frame this purge
     * interrupted, and reads zero once it is. */
    int missed = zzi_fork_missed();
    for (struct zzi_region *r = zzi_registry_purge_list(); r != NULL;
         r = atomic_load(&r->next)) {
        if (missed && r->map.backend == ZZ_BACKEND_SECRETMEM)
            continue;
        if (r->kind == ZZI_REGION_SLAB)
            zzi_block_purge_region(r, nested);
        else
            zzi_arena_purge_region(r);
    }
}

ZZ_API void zz_purge(void)
{
    int saved = errno;
    if (zzi_fork_missed()) {
        /* before the purge protocol: a dead thread's purge is forgotten,
         * and a mode change it was committing (which every purge would
         * skip) is settled */
        zzi_recover_inherited_memory();
        zzi_block_modes_after_fork();
    }
    int nested = zzi_purge_begin();
    ZZ_VG_QUIET_BEGIN();
    purge_all(nested);
    ZZ_VG_QUIET_END();
    zzi_purge_end(nested);
    errno = saved;
}

ZZ_API int zz_harden_process(unsigned flags)
{
    if (flags & ~(ZZ_HARDEN_NO_CORE | ZZ_HARDEN_NO_PTRACE)) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return zzi_api_rc(-1);
    }
    if ((flags & ZZ_HARDEN_NO_CORE) && zzi_os_set_core_limit_zero() != 0)
        return -1;
    if ((flags & ZZ_HARDEN_NO_PTRACE) && zzi_os_set_nondumpable() != 0)
        return -1;
    return 0;
}
