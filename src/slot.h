/*
 * slot.h - one slot's protocol: handing a block out of a free slot, finding
 * the slot of a pointer, taking a block back.  Inline, because both the
 * thread caches' fast paths (block_tcache.c) and the global paths (block.c)
 * run it on every call: as functions of their own they cost a call, six
 * saved registers and the loads of the same slab fields again, a quarter of
 * an alloc/free pair.  The rare branches (a protection mode to undo, a
 * canary to look at again after a purge) stay out of line in block.c.
 *
 * The layout of a slot and the meaning of its states: block.c (top) and
 * block.h (SLOT_*).
 */
#ifndef ZZ_SLOT_H
#define ZZ_SLOT_H

#include "block.h"

/* block.c: what a canary check does when the inline look finds anything
 * but two intact canaries (fatal unless a purge explains it). */
void zzi_slot_check_canaries_settled(const struct slab *s, size_t i, const unsigned char *p,
                                     size_t n, size_t span);
/* block.c: gives slot i of s its write access back before a free wipes it
 * (fatal when mprotect fails). */
void zzi_slot_restore_write_access(struct slab *s, size_t i);

/* Makes free slot i of s the block of n bytes (span, align; owner: the arena
 * of a large arena block, else NULL) and returns it: checks the slot is
 * still zero, writes the canaries.  The caller counts it live. */
static inline void *zzi_slot_hand_out(struct slab *s, size_t i, size_t n, size_t span,
                                      size_t align, zz_arena *owner)
{
    atomic_store_explicit(&s->meta[i].span, span, memory_order_relaxed);
    s->meta[i].align_shift = (unsigned char)__builtin_ctzl(align);
    s->meta[i].owner = owner;
    atomic_store_explicit(&s->meta[i].size_plus1, n + 1, memory_order_release);

    /* The epoch is read before the canaries are written: a purge that wipes
     * them after this point changes the epoch, so zz_free will know. */
    s->meta[i].epoch = zzi_epoch_stable();
    unsigned char *p = zzi_block_at(s, i, span);
    size_t head = zzi_head_len(s, span);
    ZZ_VG_DEFINED(p - head, head + span);
    /* A free slot is all zeros (zz_free wiped it); anything else was written
     * through a stale pointer, and handing it out would break both the
     * zero-fill promise and the secrecy of whatever was written. */
    size_t len = head + span; /* a multiple of 16 */
    ZZ_CHECK(len <= 1024 ? zzi_is_zero_small(p - head, len) : zz_is_zero(p - head, len),
             "write after free (a freed block was modified)");
    if (head != 0) /* p is 16-byte aligned: the head canary is one aligned chunk */
        zzi_canary16_write(p - head, s->canary[2 * i]);
    if (n < span && span - n <= 16) /* the usual tail: inside the last aligned chunk */
        zzi_canary16_tail_write(p + span - 16, (unsigned)(n + 16 - span), s->canary[2 * i + 1]);
    else if (n < span)
        zzi_canary_fill(p + n, span - n, s->canary[2 * i + 1]);
    ZZ_VG_NOACCESS(p - head, head + span);
    ZZ_VG_MALLOCLIKE(p, n);
    return p;
}

/* Slot of s whose block starts at a (a lies in s's mapping): fatal when a is
 * not a block's start, freed_msg when it is a freed one, "invalid pointer"
 * when it belongs to another owner (ZZI_ANY_OWNER: any). */
static inline size_t zzi_slot_of(const struct slab *s, uintptr_t a, const char *freed_msg,
                                 const zz_arena *owner)
{
    size_t page = zzi_page(), off = a - s->region.map.base;
    ZZ_CHECK(off >= page, "invalid pointer");
    size_t i = s->stride_shift ? (off - page) >> s->stride_shift : (off - page) / s->stride;
    ZZ_CHECK(i < s->nslots, "invalid pointer");
    size_t state = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_acquire);
    ZZ_CHECK(!zzi_slot_never_used(state), "invalid pointer"); /* never handed out */
    size_t span = atomic_load_explicit(&s->meta[i].span, memory_order_relaxed);
    ZZ_CHECK(a == (uintptr_t)zzi_block_at(s, i, span), "invalid pointer");
    ZZ_CHECK(zzi_slot_in_use(state), freed_msg);
    ZZ_CHECK(owner == ZZI_ANY_OWNER || s->meta[i].owner == owner, "invalid pointer");
    return i;
}

/* The usual case: a 16-byte head canary (or none) and a tail of at most 16
 * bytes, both intact.  0 sends the caller to the general look. */
static inline int zzi_slot_canaries_intact(const struct slab *s, size_t i, const unsigned char *p,
                                           size_t n, size_t span)
{
    if (zzi_head_len(s, span) != 0 && !zzi_canary16_intact(p - ZZ_CANARY_LEN, s->canary[2 * i]))
        return 0;
    if (n == span)
        return 1;
    return span - n <= 16 &&
           zzi_canary16_tail_intact(p + span - 16, (unsigned)(n + 16 - span), s->canary[2 * i + 1]);
}

/* Takes live block b of slot i back: claims the slot (a second free is fatal
 * from here on), restores write access if need be, checks the canaries,
 * wipes it and gives it state `now` (SLOT_FREED, or cached by the caller's
 * thread).  Returns the block's size.  pre: the global lock held, or s is
 * pinned by the caller's cache and b's mode is ZZ_READWRITE. */
static inline size_t zzi_slot_take_back(struct slab *s, size_t i, unsigned char *b, size_t now)
{
    /* One atomic exchange: of two frees of b, from any threads, exactly one
     * sees a block in use; the other aborts. */
    size_t sp1 = atomic_exchange_explicit(&s->meta[i].size_plus1, SLOT_FREEING, memory_order_acq_rel);
    ZZ_CHECK(zzi_slot_in_use(sp1), ZZI_FREEING);
    size_t n = sp1 - 1, span = atomic_load_explicit(&s->meta[i].span, memory_order_relaxed);
    if (zz_unlikely(atomic_load_explicit(&s->meta[i].prot, memory_order_relaxed) != ZZ_READWRITE))
        zzi_slot_restore_write_access(s, i);
    size_t head = zzi_head_len(s, span);
    ZZ_VG_FREELIKE(b);
    ZZ_VG_DEFINED(b - head, head + span);
    if (zz_unlikely(!zzi_slot_canaries_intact(s, i, b, n, span)))
        zzi_slot_check_canaries_settled(s, i, b, n, span);
    size_t len = head + span; /* a multiple of 16, from a 16-byte boundary */
    if (len <= ZZI_WIPE_SMALL_MAX)
        zzi_wipe_small(b - head, len);
    else
        zz_wipe(b - head, len);
    ZZ_VG_NOACCESS(b - head, head + span);
    /* owner[i] stays as it was: the slot's state says it holds no block, the
     * next hand-out sets it, and a second free racing this one reads it */
    atomic_store_explicit(&s->meta[i].size_plus1, now, memory_order_release);
    return n;
}

#endif /* ZZ_SLOT_H */
