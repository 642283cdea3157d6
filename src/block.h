/*
 * block.h - what the zz_alloc files share, and nothing else: slab.c (slabs,
 * size classes, the free-slot cache), block.c (allocating, freeing,
 * realloc, stats) and block_modes.c (protection modes, zz_purge of slabs,
 * queries).  The layout diagram of a slot is at the top of block.c.
 */
#ifndef ZZ_BLOCK_H
#define ZZ_BLOCK_H

#include "canary.h"

struct slab {
    struct zzi_region region;
    size_t data_len;  /* bytes of data pages per slot */
    size_t stride;    /* data_len + one guard page */
    size_t nslots, nfree;
    int cls;          /* data pages per slot, or 0 for a one-block mapping */
    int table;        /* the backend whose class table holds it */
    int retired;      /* hands out no new blocks; unmapped once empty */
    struct slab *prev, *next; /* the class's slabs that have a free slot */
    uint64_t *canary;            /* per slot: head canary word, tail canary word */
    zz_arena **owner;            /* per slot: the growable arena of a large arena block */
    size_t *free_stack;
    _Atomic size_t *size_plus1;  /* SLOT_UNUSED, SLOT_FREED, or n + 1 */
    _Atomic size_t *span;        /* the block ends span bytes before data end */
    _Atomic unsigned char *prot; /* ZZ_NOACCESS / ZZ_READONLY / ZZ_READWRITE */
    unsigned char *align_shift;  /* log2 of the alignment the block was asked with */
    unsigned *epoch;             /* zzi_wipe_epoch when the block was made */
};

/* A slot's state in size_plus1: never handed out, freed, or live with n
 * bytes (n + 1: n is at most SIZE_MAX - 3 pages, see alloc_impl), so that a
 * fatal message can tell a double free from a pointer never returned. */
#define SLOT_UNUSED ((size_t)0)
#define SLOT_FREED SIZE_MAX
static inline int zzi_slot_live(size_t size_plus1)
{
    return size_plus1 != SLOT_UNUSED && size_plus1 != SLOT_FREED;
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

/* ---- slab.c -------------------------------------------------------------- */
/* pre: global lock held.  A free slot for a block of span bytes, on the
 * backend `requested` resolves to (ZZ_BACKEND_AUTO: secretmem, else anon).
 * NULL with errno. */
struct slab *zzi_take_slot(size_t span, size_t *idx, int requested);
/* pre: global lock held; slot i is now free and wiped; p was its block. */
void zzi_release_slot(struct slab *s, size_t i, uintptr_t p);
/* 1 if p was a block whose slab was unmapped when it was freed (one of the
 * last few thousand): a pointer no region covers is then a double free. */
int zzi_was_unmapped_block(uintptr_t p);

/* ---- block.c ------------------------------------------------------------- */
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
