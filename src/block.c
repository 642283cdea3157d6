/*
 * block.c - zz_alloc and friends: each block on data pages of its own, between
 * guard pages, packed into slabs of equal-sized slots.  This file owns the
 * allocation and free entry points (slot.h: what goes into a slot, the block
 * and its canaries, and how it is taken back), realloc and the live
 * counters; slab.c owns slabs, size classes and
 * the free-slot cache, block_modes.c protection modes and the purge of a
 * slab, pages.c the mappings, registry.c finding a slot's slab.
 *
 * One slot of a slab whose class has k data pages (all block metadata is kept
 * out of band, in struct slab, never next to the block):
 *
 *   guard      data page(s) of the slot                        guard
 *   +-------+-------------------------------------------------+-------+
 *   | ----- | 0 0 0 ... 0 | head canary | block | tail canary | ----- |
 *   +-------+-------------------------------------------------+-------+
 *                          16 bytes      n      span - n
 *                                        ^p
 *   span = n rounded up to the alignment (16), so the block ends within 15
 *   bytes of the next guard page.  The head canary exists only when the block
 *   does not start on the first data byte (there the guard page does its job).
 *
 * A free slot is all zeros: zz_free wipes the block and both canaries, so the
 * next zz_alloc checks it is still zero instead of clearing it.  Freed slots
 * stay mapped, guarded and locked: that is the cache that makes the steady
 * state free of system calls (slab.c keeps it, block_cache.c bounds it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "slot.h"

static _Atomic size_t live_blocks, live_bytes; /* written under the global lock */

/* ---- allocation ------------------------------------------------------------- */

/* Every allocation: the calling thread's cache first (for zz_alloc
 * blocks), then the global lock. */
static void *alloc_impl(size_t n, size_t align, int backend, zz_arena *owner)
{
    if (zzi_init() != 0)
        return NULL;
    zzi_check_fork();
    if (n >= SLOT_CACHED - align - 3 * zzi_page()) { /* n + 1 must read as a live slot's state */
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    size_t span = (n + align - 1) & ~(align - 1), i;
    if (owner == NULL) {
        void *p = zzi_tcache_alloc(n, span, align, backend);
        if (p != NULL)
            return p;
        zzi_tcache_prepare();
    } else {
        /* an arena's large block: in a process that never calls zz_alloc,
         * the only path to a slab, and it must register the hook too */
        zzi_blocks_register_fork_hook();
    }
    zzi_global_lock();
    if (owner == NULL)
        zzi_tcache_sync();
    struct slab *s = zzi_take_slot(span, &i, backend);
    if (s == NULL) {
        int e = errno;
        zzi_global_unlock();
        errno = e;
        return NULL;
    }
    /* published under the lock, so the thread cache's refill and every
     * lookup see the slot taken */
    atomic_store_explicit(&s->meta[i].size_plus1, SLOT_FREEING, memory_order_relaxed);
    zzi_count(&live_blocks, 1);
    zzi_count(&live_bytes, n);
    if (owner == NULL)
        zzi_tcache_refill(s);
    zzi_slab_keep_share(); /* (s has a slot taken: it stays) */
    zzi_global_unlock();
    return zzi_slot_hand_out(s, i, n, span, align, owner);
}

/* The steady state of zz_alloc, inline: a block from the calling thread's
 * cache, or NULL, and alloc_impl does everything (the first call's set-up,
 * a fork that ran no handler, sizes no cache keeps, a miss). */
static inline void *alloc_cached(size_t n, size_t align, int backend)
{
    if (zz_unlikely(!atomic_load_explicit(&zzi_initialized, memory_order_acquire) ||
                    zzi_fork_missed() || n > ((size_t)1 << 20)))
        return NULL; /* (below 1 MiB, rounding n up to the alignment cannot overflow) */
    return zzi_tcache_alloc(n, (n + align - 1) & ~(align - 1), align, backend);
}

ZZ_API void *zz_alloc(size_t n)
{
    int backend = zzi_backend_setting();
    void *p = alloc_cached(n, ZZ_ALIGN, backend);
    return zz_likely(p != NULL) ? p : zzi_api_ptr(alloc_impl(n, ZZ_ALIGN, backend, NULL));
}

void *zzi_block_alloc_for_arena(size_t n, int backend, zz_arena *owner)
{
    return alloc_impl(n, ZZ_ALIGN, backend, owner);
}

ZZ_API void *zz_alloc_backend(size_t n, int backend)
{
    if (backend != ZZ_BACKEND_ANON && backend != ZZ_BACKEND_SECRETMEM &&
        backend != ZZ_BACKEND_AUTO) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return zzi_api_ptr(NULL);
    }
    return zzi_api_ptr(alloc_impl(n, ZZ_ALIGN, backend, NULL));
}

ZZ_API void *zz_alloc_aligned(size_t n, size_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 ||
        alignment > zzi_page()) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return zzi_api_ptr(NULL);
    }
    return zzi_api_ptr(
        alloc_impl(n, alignment < ZZ_ALIGN ? ZZ_ALIGN : alignment, zzi_backend_setting(), NULL));
}

/* ---- finding a block ---------------------------------------------------------- */

struct slab *zzi_find_live(const void *p, size_t *idx, const char *freed_msg,
                           const zz_arena *owner)
{
    uintptr_t a = (uintptr_t)p;
    struct zzi_region *r = zzi_registry_find(a);
    ZZ_CHECK(r != NULL || !zzi_was_unmapped_block(a), freed_msg);
    ZZ_CHECK(r != NULL && r->kind == ZZI_REGION_SLAB, "invalid pointer");
    struct slab *s = r->owner;
    *idx = zzi_slot_of(s, a, freed_msg, owner);
    return s;
}

/* ---- the slot protocol's rare paths (slot.h has the rest) ------------------- */

struct slot_look {
    const struct slab *s;
    size_t i, n, span;
    const unsigned char *p;
};

static struct zzi_canary_sides look_at_slot(const void *ctx, unsigned e)
{
    const struct slot_look *l = ctx;
    size_t head = zzi_head_len(l->s, l->span), i = l->i;
    struct zzi_canary_sides v = {
        zzi_canary_acceptable(l->p - head, head, l->s->canary[2 * i], l->s->meta[i].epoch, e),
        zzi_canary_acceptable(l->p + l->n, l->span - l->n, l->s->canary[2 * i + 1], l->s->meta[i].epoch, e),
    };
    return v;
}

void zzi_slot_check_canaries_settled(const struct slab *s, size_t i, const unsigned char *p,
                                     size_t n, size_t span)
{
    struct slot_look l = {s, i, n, span, p};
    zzi_canary_check_settled(look_at_slot, &l);
}

void zzi_slot_restore_write_access(struct slab *s, size_t i)
{
    ZZ_CHECK(zzi_change_protection(s, i, ZZ_READWRITE) == 0,
             "cannot restore write access to a block being freed (mprotect failed)");
}

/* ---- freeing ------------------------------------------------------------------- */

/* The global path of a free (the lock held for the slot's whole take-back). */
static void free_global(void *p, const zz_arena *owner)
{
    int saved = errno;
    zzi_global_lock();
    size_t i;
    struct slab *s = zzi_find_live(p, &i, ZZI_FREEING, owner);
    size_t n = zzi_slot_take_back(s, i, p, SLOT_FREED);
    zzi_release_slot(s, i);
    zzi_count(&live_blocks, (size_t)-1);
    zzi_count(&live_bytes, 0 - n);
    zzi_global_unlock();
    errno = saved;
}

ZZ_API void zz_free(void *p)
{
    if (p == NULL)
        return;
    zzi_check_fork();
    if (zzi_tcache_free(p))
        return; /* no system call on that path: errno is untouched */
    free_global(p, NULL);
}

void zzi_block_free_for_arena(void *p, zz_arena *owner)
{
    zzi_check_fork();
    free_global(p, owner);
}

struct owned_walk {
    const zz_arena *owner;
    void *found;
};

static int find_one_owned(struct zzi_region *r, void *ctx)
{
    struct owned_walk *w = ctx;
    if (r->kind != ZZI_REGION_SLAB)
        return 0;
    const struct slab *s = r->owner;
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->meta[i].owner == w->owner &&
            zzi_slot_in_use(atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed))) {
            w->found = zzi_block_at(s, i, atomic_load_explicit(&s->meta[i].span, memory_order_relaxed));
            return 1;
        }
    }
    return 0;
}

struct owned_stats {
    const zz_arena *owner;
    zz_stats *out;
};

/* An arena's large blocks are zz_alloc blocks in slots like any other: each
 * counts its slot's share of the slab's mapping and lock. */
static int add_owned(struct zzi_region *r, void *ctx)
{
    struct owned_stats *w = ctx;
    const struct slab *s = r->owner;
    if (r->kind != ZZI_REGION_SLAB)
        return 0;
    for (size_t i = 0; i < s->nslots; i++) {
        size_t sp1 = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed);
        if (s->meta[i].owner != w->owner || !zzi_slot_in_use(sp1))
            continue;
        w->out->live_blocks++;
        w->out->live_bytes += sp1 - 1;
        w->out->mapped_bytes += s->region.map.len / s->nslots;
        w->out->locked_bytes += s->region.map.locked_len / s->nslots;
    }
    return 0;
}

void zzi_block_add_owned_stats(const zz_arena *owner, zz_stats *out)
{
    struct owned_stats w = {owner, out};
    zzi_global_lock();
    zzi_registry_each(add_owned, &w);
    zzi_global_unlock();
}

/* Arena teardown is rare and an arena's large blocks few: one registry walk
 * per block keeps this free of allocation. */
void zzi_block_free_all_for_arena(zz_arena *owner)
{
    for (;;) {
        struct owned_walk w = {owner, NULL};
        zzi_global_lock();
        zzi_registry_each(find_one_owned, &w);
        zzi_global_unlock();
        if (w.found == NULL)
            return;
        zzi_block_free_for_arena(w.found, owner);
    }
}

/* The new block keeps the old one's backend (the table it was asked from: a
 * secretmem block stays in secretmem whatever the process-wide choice) and
 * alignment. */
static void *realloc_impl(void *p, size_t n)
{
    size_t i, old_n, align;
    int backend;
    zzi_check_fork();
    zzi_global_lock();
    struct slab *s = zzi_find_live(p, &i, ZZI_FREEING, NULL); /* realloc frees p */
    old_n = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed) - 1;
    int readable = atomic_load_explicit(&s->meta[i].prot, memory_order_relaxed) != ZZ_NOACCESS;
    backend = s->table;
    align = (size_t)1 << s->meta[i].align_shift;
    zzi_global_unlock();
    if (!readable) {
        zzi_fail(ZZ_ERR_NOACCESS);
        errno = EACCES;
        return NULL;
    }
    void *q = alloc_impl(n, align, backend, NULL);
    if (q == NULL)
        return NULL;
    zzi_copy_secret(q, p, old_n < n ? old_n : n);
    zz_free(p);
    return q;
}

ZZ_API void *zz_realloc(void *p, size_t n)
{
    return p == NULL ? zz_alloc(n) : zzi_api_ptr(realloc_impl(p, n));
}

void zzi_block_count_live(size_t *blocks, size_t *bytes)
{
    size_t b = 0, n = 0, cached = 0;
    zzi_global_lock();
    zzi_tcache_stats(&b, &n, &cached);
    *blocks += atomic_load_explicit(&live_blocks, memory_order_relaxed) + b;
    *bytes += atomic_load_explicit(&live_bytes, memory_order_relaxed) + n;
    zzi_global_unlock();
}

void zzi_block_count_add(size_t blocks, size_t bytes)
{
    zzi_count(&live_blocks, blocks);
    zzi_count(&live_bytes, bytes);
}

static int recount_region(struct zzi_region *r, void *ctx)
{
    size_t *sum = ctx;
    if (r->kind != ZZI_REGION_SLAB)
        return 0;
    const struct slab *s = r->owner;
    for (size_t i = 0; i < s->nslots; i++) {
        size_t sp1 = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed);
        if (zzi_slot_in_use(sp1)) {
            sum[0]++;
            sum[1] += sp1 - 1;
        }
    }
    return 0;
}

void zzi_block_recount_after_fork(void)
{
    size_t sum[2] = {0, 0};
    zzi_registry_each(recount_region, sum);
    atomic_store_explicit(&live_blocks, sum[0], memory_order_relaxed);
    atomic_store_explicit(&live_bytes, sum[1], memory_order_relaxed);
}
