/*
 * process.c - the queries that span every allocator: zz_get_stats (zz_alloc
 * blocks, arenas, zz_lock's pages), zz_arena_stats (arena.c counts; both copy
 * out only as many bytes as the caller's zz_stats has: docs/ABI.md) and
 * zz_info (a zz_alloc block or an arena block, whichever holds the pointer).
 * At the top of the layering: it calls down into the allocators, and nothing
 * calls it.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

static void fill_stats(zz_stats *out)
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

/* The caller's zz_stats is `size` bytes (its header's sizeof): copy what
 * both sides know, zero what only the caller knows, write nothing past it. */
static void copy_stats_out(zz_stats *out, size_t size, const zz_stats *full)
{
    size_t known = size < sizeof *full ? size : sizeof *full;
    memcpy(out, full, known);
    if (size > known)
        memset((char *)out + known, 0, size - known);
}

static int bad_stats_args(int ok, const void *out, size_t size)
{
    if (ok && out != NULL && size >= ZZ_STATS_SIZE_0_1)
        return 0;
    zzi_fail(ZZ_ERR_ARGUMENT);
    errno = EINVAL;
    return 1;
}

ZZ_API int zz_get_stats_sized(zz_stats *out, size_t size)
{
    if (bad_stats_args(1, out, size))
        return zzi_api_rc(-1);
    zz_stats full;
    memset(&full, 0, sizeof full); /* a field fill_stats does not know reads 0 */
    fill_stats(&full);
    copy_stats_out(out, size, &full);
    return 0;
}

/* The symbol of version 0.1, which binaries built before the sized call
 * still use: their struct has the 0.1 fields. */
ZZ_API void(zz_get_stats)(zz_stats *out)
{
    zz_get_stats_sized(out, ZZ_STATS_SIZE_0_1);
}

ZZ_API int zz_arena_stats_sized(zz_arena *a, zz_stats *out, size_t size)
{
    if (bad_stats_args(a != NULL, out, size))
        return zzi_api_rc(-1);
    zzi_check_fork();
    zz_stats full;
    memset(&full, 0, sizeof full);
    zzi_arena_stats(a, &full);
    copy_stats_out(out, size, &full);
    return 0;
}

ZZ_API int(zz_arena_stats)(zz_arena *a, zz_stats *out)
{
    return zz_arena_stats_sized(a, out, ZZ_STATS_SIZE_0_1);
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
