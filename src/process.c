/*
 * process.c - the queries that span every allocator: zz_get_stats (zz_alloc
 * blocks, arenas, zz_lock's pages) and zz_info (a zz_alloc block or an arena
 * block, whichever holds the pointer).  At the top of the layering: it calls
 * down into the allocators, and nothing calls it.
 */
#include "internal.h"

ZZ_API void zz_get_stats(zz_stats *out)
{
    zzi_check_fork();
    out->live_blocks = 0;
    out->live_bytes = 0;
    zzi_block_count_live(&out->live_blocks, &out->live_bytes);
    zzi_arena_count_live(&out->live_blocks, &out->live_bytes);
    out->locked_bytes = atomic_load(&zzi_counters.locked_bytes) + zzi_lockref_locked_bytes();
    out->mapped_bytes = atomic_load(&zzi_counters.mapped_bytes);
    zzi_block_cache_stats(out);
}

ZZ_API unsigned zz_info(const void *p)
{
    if (p == NULL)
        return 0;
    zzi_check_fork();
    zzi_global_lock();
    struct zzi_region *r = zzi_registry_find((uintptr_t)p);
    if (r != NULL && r->kind == ZZI_REGION_ARENA) {
        zzi_global_unlock(); /* a fixed arena's lookup takes its lock, which comes first */
        return zzi_arena_info(r, (uintptr_t)p);
    }
    unsigned info = zzi_block_info_locked(p);
    zzi_global_unlock();
    return info;
}
