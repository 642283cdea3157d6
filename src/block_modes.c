/*
 * block_modes.c - a zz_alloc block's protection mode (zz_protect), changed so
 * that a concurrent zz_purge never faults nor leaves a block in the wrong
 * mode; zz_purge's walk over a slab; and the queries zz_size and a block's
 * zz_info flags (process.c's zz_info dispatches between blocks and arenas).
 */
#include <errno.h>

#include "block.h"

/* ---- protection changes, safe against a concurrent zz_purge ----------------
 * zz_purge makes a protected block writable, wipes it and restores its mode;
 * a mode change running at the same time could make the purge fault or leave
 * the pages in the wrong mode.  A change (one at a time: the global lock)
 * publishes which slot it changes and goes through two stages:
 *   WAITING:    it does not touch the pages until no purge runs;
 *   COMMITTING: it saw no purge after entering this stage (so any purge that
 *               starts now sees the stage) and is calling mprotect.
 * A purge treats a slot being changed in the WAITING stage as settled in its
 * old mode.  In the COMMITTING stage: if the change belongs to the thread the
 * purge interrupted, the purge wipes and leaves the new mode; otherwise it
 * skips the block (waiting could deadlock: that thread may be stopped in a
 * signal handler that waits for this purge to end). */
enum { CHANGE_IDLE, CHANGE_WAITING, CHANGE_COMMITTING };

static ZZ_TLS_SIGNAL_SAFE char thread_tag; /* its address tells threads apart */
static _Atomic int change_stage;
static _Atomic(struct slab *) change_slab;
static _Atomic size_t change_index;
static _Atomic int change_target;
static _Atomic uintptr_t change_owner;

int zzi_change_protection(struct slab *s, size_t i, int mode)
{
    atomic_store(&change_slab, s);
    atomic_store(&change_index, i);
    atomic_store(&change_target, mode);
    atomic_store(&change_owner, (uintptr_t)&thread_tag);
    for (;;) {
        atomic_store(&change_stage, CHANGE_COMMITTING);
        if (atomic_load(&zzi_purgers) == 0)
            break;
        atomic_store(&change_stage, CHANGE_WAITING);
        while (atomic_load(&zzi_purgers) != 0)
            zzi_os_yield();
    }
    int rc = zzi_os_protect((void *)zzi_slot_data(s, i), s->data_len, mode);
    int e = errno;
    if (rc == 0)
        atomic_store(&s->meta[i].prot, (unsigned char)mode);
    atomic_store(&change_stage, CHANGE_IDLE);
    atomic_store(&change_slab, NULL);
    errno = e;
    return rc;
}

static int committing(const struct slab *s, size_t i)
{
    return atomic_load(&change_stage) == CHANGE_COMMITTING && atomic_load(&change_slab) == s &&
           atomic_load(&change_index) == i;
}

/* For a purge: the mode slot i must be left in, *unsure set when its pages
 * may be in another mode right now; or -1 to skip the slot. */
static int mode_for_purge(const struct slab *s, size_t i, int *unsure)
{
    *unsure = 0;
    if (!committing(s, i))
        return atomic_load(&s->meta[i].prot);
    if (atomic_load(&change_owner) == (uintptr_t)&thread_tag) {
        *unsure = 1; /* our own change, suspended under us: before or after mprotect */
        return atomic_load(&change_target);
    }
    return -1; /* mid-mprotect in another thread (which may be stopped in a
                  signal handler waiting for this purge): skip it */
}

void zzi_block_modes_after_fork(void)
{
    struct slab *s = atomic_load(&change_slab);
    if (s != NULL) { /* before or after its mprotect: the recorded mode is the one that holds */
        size_t i = atomic_load(&change_index);
        ZZ_CHECK(zzi_os_protect((void *)zzi_slot_data(s, i), s->data_len,
                                atomic_load(&s->meta[i].prot)) == 0,
                 "cannot restore a block's mode in a forked child");
    }
    atomic_store(&change_stage, CHANGE_IDLE);
    atomic_store(&change_slab, NULL);
}

/* ---- queries and modes ---------------------------------------------------------- */

ZZ_API size_t zz_size(const void *p)
{
    if (p == NULL)
        return 0;
    size_t i;
    zzi_check_fork();
    zzi_global_lock();
    struct slab *s = zzi_find_live(p, &i, ZZI_USING, ZZI_ANY_OWNER);
    size_t n = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed) - 1;
    zzi_global_unlock();
    return n;
}

unsigned zzi_block_info_locked(const void *p)
{
    size_t i;
    struct slab *s = zzi_find_live(p, &i, ZZI_USING, ZZI_ANY_OWNER);
    return s->region.map.info | ZZ_INFO_CANARY;
}

static int protect_impl(void *p, int mode)
{
    if (mode != ZZ_NOACCESS && mode != ZZ_READONLY && mode != ZZ_READWRITE) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    zzi_check_fork();
    zzi_global_lock();
    struct zzi_region *r = zzi_registry_find((uintptr_t)p);
    if (r != NULL && r->kind == ZZI_REGION_ARENA) {
        zzi_global_unlock();
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    size_t i;
    struct slab *s = zzi_find_live(p, &i, ZZI_USING, ZZI_ANY_OWNER);
    if (s->meta[i].owner != NULL) { /* an arena's large block: arena blocks keep their mode */
        zzi_global_unlock();
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    int rc = zzi_change_protection(s, i, mode);
    if (rc != 0)
        zzi_fail(ZZ_ERR_MAPCOUNT);
    int e = errno;
    zzi_global_unlock();
    errno = e;
    return rc;
}

ZZ_API int zz_protect(void *p, int mode)
{
    return zzi_api_rc(protect_impl(p, mode));
}

/* ---- purge and fork ---------------------------------------------------------------- */

void zzi_block_purge_region(struct zzi_region *r, int nested)
{
    struct slab *s = r->owner;
    for (size_t i = 0; i < s->nslots; i++) {
        if (!zzi_slot_live(atomic_load_explicit(&s->meta[i].size_plus1, memory_order_acquire)))
            continue;
        size_t span = atomic_load_explicit(&s->meta[i].span, memory_order_relaxed);
        if (span > s->data_len)
            continue; /* being reassigned right now */
        uintptr_t data = zzi_slot_data(s, i);
        unsigned char *start = zzi_block_at(s, i, span) - zzi_head_len(s, span);
        int unsure, mode = mode_for_purge(s, i, &unsure);
        if (mode < 0)
            continue; /* another thread is changing its mode right now */
        if (nested && (mode != ZZ_READWRITE || unsure))
            continue; /* the purge we interrupted owns protection changes */
        if ((mode != ZZ_READWRITE || unsure) &&
            zzi_os_protect((void *)data, s->data_len, ZZ_READWRITE) != 0)
            continue;
        zzi_purge_wipe(start, (size_t)(data + s->data_len - (uintptr_t)start));
        if (mode != ZZ_READWRITE)
            zzi_os_protect((void *)data, s->data_len, mode);
    }
}

