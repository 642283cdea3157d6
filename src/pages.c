/*
 * pages.c - maps slabs: runs of data pages between guard pages, excluded from
 * core dumps, wiped in forked children and locked in RAM.  It decides how
 * guards are made (MADV_GUARD_INSTALL where the kernel has it, mprotect
 * otherwise) and what a lock costs; it knows nothing of blocks or canaries.
 *
 * Two guard paths, picked once per process:
 *   guard-install (Linux 6.13+): one mapping, guard markers installed in its
 *     page tables, then mlock2(MLOCK_ONFAULT) over the whole range.  The slab
 *     stays ONE VMA however many slots it has, but the lock is charged for the
 *     guard pages too (the kernel counts the whole mlock2 range).
 *   mprotect: guard pages are PROT_NONE, which splits the mapping into two
 *     VMAs per slot; only the data pages are locked.
 * By default the path that holds more blocks under this process's limits is
 * taken; ZEROIZE_GUARDS=mprotect or =guard-install forces one.
 *
 * The secretmem backend (memfd_secret) always uses mprotect guards, and its
 * pages are locked and charged by the kernel itself.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

struct zzi_counters zzi_counters;
_Atomic unsigned zzi_fork_generation;

static int use_guard_install = -1;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

/* Can this kernel install guards and then lock the range on fault? */
static int probe_guard_install(void)
{
    size_t page = zzi_os_page_size();
    unsigned char *p = zzi_os_map(3 * page);
    if (p == NULL)
        return 0;
    int ok = zzi_os_guard_install(p + page, page) == 0 &&
             zzi_os_lock_onfault(p, 3 * page) == 0;
    zzi_os_unmap(p, 3 * page);
    return ok;
}

/* Which path holds more one-page blocks?  Guard-install locks a guard page
 * per slot too (the whole mlock2 range is charged), mprotect locks only data
 * pages but needs two VMAs per slot.  Without a lock limit (root,
 * CAP_IPC_LOCK) guard-install wins; under a small one (a user's 8 MiB:
 * 1,016 blocks against 2,048) mprotect does. */
static int guard_install_holds_more(void)
{
    size_t limit = zzi_os_memlock_limit(), page = zzi_os_page_size();
    if (limit == SIZE_MAX)
        return 1;
    size_t by_guard_install = limit / (2 * page);
    size_t by_mprotect = limit / page, by_maps = zzi_os_max_map_count() / 2;
    if (by_maps < by_mprotect)
        by_mprotect = by_maps;
    return by_guard_install >= by_mprotect;
}

static void choose_guard_path(void)
{
    const char *env = zzi_os_getenv("ZEROIZE_GUARDS");
#ifdef ZZ_FORCE_MPROTECT_GUARDS
    env = "mprotect";
#endif
    int saved = errno;
    if (env != NULL && strcmp(env, "mprotect") == 0)
        use_guard_install = 0;
    else if (env != NULL && strcmp(env, "guard-install") == 0)
        use_guard_install = probe_guard_install();
    else
        use_guard_install = guard_install_holds_more() && probe_guard_install();
    errno = saved;
}

int zzi_pages_uses_guard_install(void)
{
    pthread_once(&probe_once, choose_guard_path);
    return use_guard_install;
}

/* The advice failed with errno; may we go on without that protection? */
static int advice_optional(void)
{
    return errno == EINVAL && !zzi_policy_lock_required();
}

static int add_guards(uintptr_t base, size_t stride, size_t nslots, size_t page)
{
    for (size_t g = 0; g <= nslots; g++) {
        void *guard = (void *)(base + g * stride);
        int r = use_guard_install ? zzi_os_guard_install(guard, page)
                                  : zzi_os_protect(guard, page, ZZ_NOACCESS);
        if (r != 0)
            return -1;
    }
    return 0;
}

static int add_advice(struct zzi_slab_map *m)
{
    if (zzi_os_dontdump((void *)m->base, m->len) == 0)
        m->info |= ZZ_INFO_DONTDUMP;
    else if (!advice_optional())
        return -1;
    if (zzi_os_wipeonfork((void *)m->base, m->len) == 0)
        m->info |= ZZ_INFO_WIPEONFORK;
    else if (!advice_optional())
        return -1;
    return 0;
}

static int lock_data(struct zzi_slab_map *m, size_t stride, size_t nslots, size_t page)
{
    if (use_guard_install) {
        if (zzi_os_lock_onfault((void *)m->base, m->len) != 0)
            return -1;
        m->locked_len = m->len;
        return 0;
    }
    size_t data_len = stride - page;
    for (size_t i = 0; i < nslots; i++) {
        if (zzi_os_lock_onfault((void *)(m->base + page + i * stride), data_len) != 0) {
            int e = errno;
            zzi_os_unlock((void *)m->base, m->len);
            errno = e;
            return -1;
        }
    }
    m->locked_len = nslots * data_len;
    return 0;
}

/* Secret memory: out of the kernel's direct map, locked by the kernel, not
 * inherited by children (the fork handler maps zeros in its place). */
static int map_secretmem(struct zzi_slab_map *m, size_t stride, size_t page)
{
    void *p = zzi_os_map_secretmem(m->len);
    if (p == NULL) {
        zzi_fail(errno == EAGAIN || errno == ENOMEM ? ZZ_ERR_SECRETMEM_LIMIT : ZZ_ERR_SECRETMEM);
        return -1;
    }
    m->base = (uintptr_t)p;
    for (size_t g = 0; g <= m->nslots; g++) {
        if (zzi_os_protect((void *)(m->base + g * stride), page, ZZ_NOACCESS) != 0) {
            zzi_fail(ZZ_ERR_MAPCOUNT);
            goto fail;
        }
    }
    if (zzi_os_dontdump(p, m->len) != 0 || zzi_os_dontfork(p, m->len) != 0) {
        zzi_fail(ZZ_ERR_ADVICE);
        goto fail;
    }
    m->info = ZZ_INFO_GUARDED | ZZ_INFO_LOCKED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK |
              ZZ_INFO_SECRETMEM;
    m->locked_len = m->len;
    return 0;
fail:;
    int e = errno;
    zzi_os_unmap(p, m->len);
    errno = e;
    return -1;
}

/* 1 if err from mapping secret memory means the kernel does not offer it
 * (missing, or refused by seccomp or a security module); 0 for resource
 * errors (memlock, memory). */
static int secretmem_refused(int err)
{
    return err == ENOSYS || err == EPERM || err == EINVAL || err == EACCES;
}

int zzi_pages_fall_back_to_anon(int requested, int tried, int err)
{
    if (tried != ZZ_BACKEND_SECRETMEM || requested != ZZ_BACKEND_AUTO || !secretmem_refused(err))
        return 0;
    zzi_policy_secretmem_unavailable();
    return 1;
}

int zzi_pages_map_slab_auto(size_t slot_pages, size_t nslots, struct zzi_slab_map *out)
{
    int backend = zzi_policy_backend();
    if (zzi_pages_map_slab(slot_pages, nslots, backend, out) == 0)
        return 0;
    if (!zzi_pages_fall_back_to_anon(zz_get_backend(), backend, errno))
        return -1;
    return zzi_pages_map_slab(slot_pages, nslots, ZZ_BACKEND_ANON, out);
}

int zzi_pages_map_slab(size_t slot_pages, size_t nslots, int backend, struct zzi_slab_map *out)
{
    size_t page = zzi_os_page_size(), stride, len;
    zzi_pages_uses_guard_install();
    if (__builtin_add_overflow(slot_pages, 1, &stride) ||
        __builtin_mul_overflow(stride, page, &stride) ||
        __builtin_mul_overflow(stride, nslots, &len) ||
        __builtin_add_overflow(len, page, &len)) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return -1;
    }
    struct zzi_slab_map m = {.len = len, .info = ZZ_INFO_GUARDED, .slot_pages = slot_pages,
                             .nslots = nslots, .backend = backend,
                             .fork_gen = atomic_load(&zzi_fork_generation)};
    if (backend == ZZ_BACKEND_SECRETMEM) {
        if (map_secretmem(&m, stride, page) != 0)
            return -1;
        *out = m;
        return 0;
    }
    void *p = zzi_os_map(len);
    if (p == NULL) {
        zzi_fail(len > zzi_os_physical_memory() ? ZZ_ERR_NOMEM : ZZ_ERR_MAPCOUNT);
        return -1;
    }
    m.base = (uintptr_t)p;
    if (add_guards(m.base, stride, nslots, page) != 0) {
        zzi_fail(ZZ_ERR_MAPCOUNT);
        goto fail;
    }
    if (add_advice(&m) != 0) {
        zzi_fail(errno == EINVAL ? ZZ_ERR_ADVICE : ZZ_ERR_MAPCOUNT);
        goto fail;
    }
    if (lock_data(&m, stride, nslots, page) == 0) {
        m.info |= ZZ_INFO_LOCKED;
    } else if (zzi_policy_lock_required()) {
        zzi_fail(ZZ_ERR_MEMLOCK);
        goto fail;
    }
    *out = m;
    return 0;
fail:;
    int e = errno;
    zzi_os_unmap(p, len);
    errno = e;
    return -1;
}

int zzi_pages_try_lock(struct zzi_slab_map *m, int registered)
{
    size_t page = zzi_os_page_size(), stride = (m->slot_pages + 1) * page;
    if (m->info & ZZ_INFO_LOCKED)
        return 0;
    if (lock_data(m, stride, m->nslots, page) != 0) {
        zzi_fail(ZZ_ERR_MEMLOCK);
        return -1;
    }
    m->info |= ZZ_INFO_LOCKED;
    /* A map not yet registered is counted by zzi_registry_add, whose
     * zzi_registry_remove takes it off once: counted here too, an arena's
     * first chunk locked after the caches gave way stayed in locked_bytes
     * for good (65536 with nothing mapped; test_arena_budget). */
    if (registered)
        atomic_fetch_add(&zzi_counters.locked_bytes, m->locked_len);
    return 0;
}

int zzi_pages_refresh_slow(struct zzi_slab_map *m)
{
    unsigned gen = atomic_load(&zzi_fork_generation);
    size_t page = zzi_os_page_size(), stride = (m->slot_pages + 1) * page;
    int saved = errno;
    /* A failed attempt leaves fork_gen stale, so the next allocation from
     * this slab tries again (and fails again) instead of using it as is. */
    atomic_fetch_sub(&zzi_counters.locked_bytes, m->locked_len);
    m->info &= ~ZZ_INFO_LOCKED;
    m->locked_len = 0;
    if (use_guard_install || m->remapped) {
        m->info &= ~ZZ_INFO_GUARDED;
        if (add_guards(m->base, stride, m->nslots, page) == 0)
            m->info |= ZZ_INFO_GUARDED;
    }
    if (m->remapped && add_advice(m) == 0)
        m->remapped = 0;
    if (lock_data(m, stride, m->nslots, page) == 0)
        m->info |= ZZ_INFO_LOCKED;
    atomic_fetch_add(&zzi_counters.locked_bytes, m->locked_len);
    if (!(m->info & ZZ_INFO_GUARDED) ||
        (!(m->info & ZZ_INFO_LOCKED) && zzi_policy_lock_required())) {
        zzi_fail(m->info & ZZ_INFO_GUARDED ? ZZ_ERR_MEMLOCK : ZZ_ERR_MAPCOUNT);
        errno = EAGAIN;
        return -1;
    }
    m->fork_gen = gen;
    errno = saved;
    return 0;
}

void zzi_pages_replace_unforked(struct zzi_slab_map *m)
{
    if (m->backend != ZZ_BACKEND_SECRETMEM)
        return;
    ZZ_CHECK(zzi_os_remap_zero((void *)m->base, m->len) == 0,
             "cannot map zero pages over secret memory in a forked child");
    m->backend = ZZ_BACKEND_ANON;
    m->info = 0;
    m->remapped = 1;
}

void zzi_pages_unmap_slab(const struct zzi_slab_map *m)
{
    zzi_os_unmap((void *)m->base, m->len);
}
