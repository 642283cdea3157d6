/*
 * block.h - what the zz_alloc files share, and nothing else: slab.c (slabs,
 * size classes, the free-slot cache), block.c (allocating, freeing,
 * realloc, stats) and block_modes.c (protection modes, zz_purge of slabs,
 * queries).  The layout diagram of a slot is at the top of block.c.
 */
#ifndef ZZ_BLOCK_H
#define ZZ_BLOCK_H

#include "canary.h"

/* What a slab knows of each slot, side by side (the fast paths read and
 * write them all: one cache line, not six).  The canaries are apart, in
 * struct slab's canary array: drawn for the whole slab at once. */
struct slot_meta {
    _Atomic size_t size_plus1;  /* SLOT_UNUSED, SLOT_FREED, SLOT_FREEING or n + 1 */
    _Atomic size_t span;        /* the block ends span bytes before data end */
    zz_arena *owner;            /* the growable arena of a large arena block */
    unsigned epoch;             /* zzi_wipe_epoch when the block was made */
    _Atomic unsigned char prot; /* ZZ_NOACCESS / ZZ_READONLY / ZZ_READWRITE */
    unsigned char align_shift;  /* log2 of the alignment the block was asked with */
};

struct slab {
    struct zzi_region region;
    size_t data_len;  /* bytes of data pages per slot */
    size_t stride;    /* data_len + one guard page */
    unsigned stride_shift; /* log2 of stride when it is a power of two, else 0 */
    size_t tc_unit;   /* what a slot adds to a thread cache's count (block_tcache.c) */
    size_t nslots, nfree;
    int cls;          /* data pages per slot, or 0 for a one-block mapping */
    int table;        /* the backend whose class table holds it */
    int retired;      /* hands out no new blocks; unmapped once empty */
    unsigned pins;    /* thread caches that may free into it without the lock
                       * (block_tcache.c): its struct is never freed while any
                       * does; its memory is unmapped only once every slot is
                       * free and claimed (zzi_slab_kill_pinned) */
    _Atomic int dead; /* unmapped while pinned: the pinning caches' fast paths
                       * must not look into it (read without the lock) */
    struct slab *prev, *next; /* the class's slabs that have a free slot */
    uint64_t *canary;       /* per slot: head canary word, tail canary word */
    struct slot_meta *meta; /* per slot */
    size_t *free_stack;
};

/* A slot's state in size_plus1: never handed out, freed, being freed,
 * cached by a thread, or live with n bytes (n + 1: n is below
 * SLOT_CACHED minus 3 pages, see alloc_impl), so that a fatal message can
 * tell a double free from a pointer never returned.  A free claims the slot
 * with one atomic exchange to SLOT_FREEING (a second free, from any thread,
 * then sees it and aborts); the slot still counts as live for zz_purge
 * until its wipe is done and it becomes SLOT_FREED, or cached.
 *
 * A slot in a thread's cache (block_tcache.c) is SLOT_CACHED | the cache's
 * address (64-byte aligned) | 1 if it was never handed out.  The cache
 * takes it back with a compare-and-swap of that exact value to
 * SLOT_FREEING; any other thread, under the global lock, may claim it
 * first with a compare-and-swap to SLOT_FREED or SLOT_UNUSED (stealing:
 * block_tcache.c, top).  Exactly one of them wins; the cache's stale entry
 * then fails its swap and is dropped.  No cache's value outlives it (a
 * cache gives everything back before it is freed), so an address reused by
 * a newer cache is never confused with an old one. */
#define SLOT_UNUSED ((size_t)0)
#define SLOT_FREED SIZE_MAX
#define SLOT_FREEING (SIZE_MAX - 1)
#define SLOT_CACHED (SIZE_MAX ^ (SIZE_MAX >> 1)) /* the top bit */
#define SLOT_CACHED_UNUSED ((size_t)1)
/* Held by a thread's cache (wiped, or never used). */
static inline int zzi_slot_cached(size_t size_plus1)
{
    return size_plus1 >= SLOT_CACHED && size_plus1 < SLOT_FREEING;
}
/* Holds a block a caller may use (not freed, not being freed, not cached). */
static inline int zzi_slot_in_use(size_t size_plus1)
{
    return size_plus1 - 1 < SLOT_CACHED - 1;
}
/* Live for zz_purge: holds a block, or one whose wipe is not done. */
static inline int zzi_slot_live(size_t size_plus1)
{
    return zzi_slot_in_use(size_plus1) || size_plus1 == SLOT_FREEING;
}
/* Never held a block (a pointer into it is not a double free). */
static inline int zzi_slot_never_used(size_t size_plus1)
{
    return size_plus1 == SLOT_UNUSED ||
           (zzi_slot_cached(size_plus1) && (size_plus1 & SLOT_CACHED_UNUSED));
}
/* What a cached slot goes back to when a thread gives it back or another
 * claims it. */
static inline size_t zzi_slot_uncached(size_t size_plus1)
{
    return (size_plus1 & SLOT_CACHED_UNUSED) ? SLOT_UNUSED : SLOT_FREED;
}

/* ---- slot geometry -------------------------------------------------------- */

static inline uintptr_t zzi_slot_data(const struct slab *s, size_t i)
{
    return s->region.map.base + zzi_page() + i * s->stride;
}

static inline unsigned char *zzi_block_at(const struct slab *s, size_t i, size_t span)
{
    return (unsigned char *)(zzi_slot_data(s, i) + s->data_len - span);
}

/* Bytes before the block that hold the head canary (0 or 16). */
static inline size_t zzi_head_len(const struct slab *s, size_t span)
{
    return s->data_len - span >= ZZ_CANARY_LEN ? ZZ_CANARY_LEN : 0;
}

/* Data pages per slot for a block of span bytes (its size class). */
static inline size_t zzi_pages_for(size_t span)
{
    size_t page = zzi_page(); /* a power of two: a shift, not a division */
    return span == 0 ? 1 : (span + page - 1) >> __builtin_ctzl(page);
}

/* ---- slab.c -------------------------------------------------------------- */
/* pre: global lock held.  A free slot for a block of span bytes, on the
 * backend `requested` resolves to (ZZ_BACKEND_AUTO: secretmem, else anon).
 * NULL with errno. */
struct slab *zzi_take_slot(size_t span, size_t *idx, int requested);
/* pre: global lock held; slot i is now free and wiped. */
void zzi_release_slot(struct slab *s, size_t i);
/* pre: global lock held; s was fit when its slot was just taken.  Takes up
 * to want more free slots of s (no new mapping), their indexes in idx[];
 * returns how many. */
size_t zzi_take_more_slots(struct slab *s, size_t *idx, size_t want);
/* Takes the global lock.  If class cls of backend table t is idle but for
 * the calling thread's cache and maps more than its bound, the cache gives
 * the class's slots and slabs back (so the class is trimmed); if the cache
 * grew since its last look (grew), the caches' share of a finite lock
 * limit is kept too. */
void zzi_slab_check_idle(int t, int cls, int grew);
/* pre: global lock held.  Under a finite RLIMIT_MEMLOCK, brings the caches
 * within their share of it (slab.c): after a slow allocation has refilled
 * the thread's cache. */
void zzi_slab_keep_share(void);
/* pre: global lock held.  A thread cache lets go of s: an empty slab is then
 * unmapped or kept as the cache bound says, a retired one unmapped. */
void zzi_slab_unpin(struct slab *s);
/* pre: global lock held, in a forked child.  Every size class forgets its
 * slabs and counts (zzi_slab_rebuild_after_fork counts them again). */
void zzi_slab_forget_classes_after_fork(void);
/* pre: global lock held, in a forked child, after the classes forgot.
 * Rebuilds s's free slots from the slots' states (a thread that does not
 * exist here may have held some in its cache, or been half-way through
 * taking or freeing one, or moving s in its class's list): a slot caught
 * half-freed is wiped.  Drops every pin; s goes back into its class. */
void zzi_slab_rebuild_after_fork(struct slab *s);
/* pre: global lock held, in a forked child, after the rebuilds.  Unmaps the
 * slabs the rebuild found empty that nothing keeps: retired ones and the
 * mappings of single large blocks. */
void zzi_slab_drop_empty_after_fork(void);
/* 1 if p was a block whose slab was unmapped when it was freed (one of the
 * last few thousand): a pointer no region covers is then a double free. */
int zzi_was_unmapped_block(uintptr_t p);

/* ---- block.c ------------------------------------------------------------- */
/* (slot.h: handing out, finding and taking back one slot's block) */
/* pre: global lock held.  Adds to the live counts of zz_alloc blocks. */
void zzi_block_count_add(size_t blocks, size_t bytes);
/* pre: global lock held, in a forked child.  Counts the live blocks again
 * from the slots' states (a thread cache's counts may have been half-way
 * through a change when the fork happened). */
void zzi_block_recount_after_fork(void);

/* ---- block_tcache.c: per-thread caches of free slots ------------------------ */
/* The fast paths: a block of n bytes from the calling thread's cache, NULL
 * when it has none of that class (then the caller takes the global lock). */
void *zzi_tcache_alloc(size_t n, size_t span, size_t align, int backend);
/* 1 if p was freed through the calling thread's cache, 0 if the caller must
 * take the global lock and free it there. */
int zzi_tcache_free(void *p);
/* Call before taking the global lock on a slow path: sets up the thread's
 * cache the first time (registers its fork hook while no lock is held). */
void zzi_tcache_prepare(void);
/* Registers the blocks' fork hook (the size classes, the live counts and the
 * thread caches rebuilt in a child): every path that may map a slab calls it
 * first, with no library lock held (zzi_tcache_prepare does for zz_alloc's). */
void zzi_blocks_register_fork_hook(void);
/* pre: global lock held.  Brings the calling thread's cache up to date
 * before a slow path takes a slot, so that the take knows whether the thread
 * gets a slab of its own (zzi_tcache_wants_own): a thread's first slow path
 * may be its only one, when a steady alloc/free pair follows. */
void zzi_tcache_sync(void);
/* pre: global lock held.  A zz_alloc slot of s was just handed out on the
 * slow path: brings the thread's cache up to date and lets it keep more of
 * s's free slots (and free into s without the lock). */
void zzi_tcache_refill(struct slab *s);
/* pre: global lock held.  Gives every slot the calling thread's cache holds
 * back (memory is short; not while it is giving back already), and asks the
 * other threads to do the same at their next call (what they hold
 * meanwhile, slab.c steals). */
void zzi_tcache_give_back(void);
/* pre: global lock held.  1 if the calling thread's cache pins a slab
 * (and is not giving back already). */
int zzi_tcache_holds_any(void);
/* pre: global lock held.  The calling thread's cache gives every slot back
 * and lets go of its slabs (it refills at its next slow path). */
void zzi_tcache_give_back_own(void);
/* 1 once any thread has had a cache (else nothing can be stolen). */
int zzi_tcache_any(void);
/* pre: global lock held.  A slot whose cached state was `state` (its
 * cache's tag) was just stolen: its cache counts one unit (the slab's
 * tc_unit) fewer. */
void zzi_tcache_note_stolen(size_t state, size_t unit);
/* A cache's count of its slots: their bytes below TC_SLOT_ONE, and in its
 * units the number of them whose guard page is not locked (anon slots on
 * the mprotect guard path; a secretmem slot's guard page is charged by the
 * kernel, a guard-install slab is locked whole): one counter, one add on
 * the fast paths.  A cache holds at most 2 x 16 x TC_BIN slots of at most
 * 17 pages: their bytes stay far below it.  zzi_tcache_unit: what a slot of
 * that stride adds (slab.c keeps it in the slab, so the fast paths load it
 * as they loaded the stride). */
#define TC_SLOT_ONE ((size_t)1 << 40)
size_t zzi_tcache_unit(size_t stride, int guard_locked);
/* pre: global lock held.  The free slots the threads' caches hold: their
 * bytes (in cached_bytes' unit, guard pages included) and how many of them
 * have a guard page that is not locked. */
void zzi_tcache_cached(size_t *bytes, size_t *unlocked_guards);
/* pre: global lock held.  The calling thread's cache holds `held` slots of
 * class cls of backend table t (0 if it has no cache). */
size_t zzi_tcache_held(int t, int cls);
/* pre: global lock held.  The class went idle but for the calling thread's
 * cache: gives its slots of that class back and unpins its slabs of it, so
 * the class can be trimmed. */
void zzi_tcache_give_back_class(int t, int cls);
/* pre: global lock held.  1 if the calling thread's cache is on and keeps
 * slots of class cls: its slow path then prefers a slab of its own. */
int zzi_tcache_wants_own(int cls);
/* pre: global lock held.  1 if the calling thread's cache pins a slab of
 * class cls of backend table t. */
int zzi_tcache_pins_class(int t, int cls);
/* pre: global lock held.  1 if the calling thread's cache pins s, else 0. */
unsigned zzi_tcache_pins(const struct slab *s);
/* pre: global lock held.  Adds what running threads hold: live blocks and
 * bytes allocated minus freed through their caches, free slot bytes cached. */
void zzi_tcache_stats(size_t *live_blocks, size_t *live_bytes, size_t *cached_bytes);
/* What the caller does with the block, for the message when it was freed. */
#define ZZI_FREEING "double free"
#define ZZI_USING "use after free (the block was already freed)"
/* Any owner (zz_size, zz_info), or exactly this one (NULL: a zz_alloc block). */
#define ZZI_ANY_OWNER ((const zz_arena *)1)
/* pre: global lock held.  The slab and slot of live block p, a block of
 * `owner`; fatal when p is not a live block's start (freed_msg when it is a
 * freed one) or belongs to another owner (an arena block given to zz_free,
 * or the other way round: "invalid pointer"). */
struct slab *zzi_find_live(const void *p, size_t *idx, const char *freed_msg,
                           const zz_arena *owner);

/* ---- block_modes.c -------------------------------------------------------- */
/* pre: global lock held.  mprotects slot i's pages to mode, safely against a
 * concurrent zz_purge.  Returns 0, or -1 with errno. */
int zzi_change_protection(struct slab *s, size_t i, int mode);

#endif /* ZZ_BLOCK_H */
