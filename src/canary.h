/*
 * canary.h - the canaries around every block and arena cell, in one place:
 * how they are drawn, written and checked (canary.c), the 16-byte inline
 * forms the arena's and zz_alloc's fast paths use, and the rules by which a
 * canary that a purge or a fork zeroed is told from a corrupted one.  For
 * block.c, slab.c, the arena files and lifecycle.c (its probe of the
 * generator).
 */
#ifndef ZZ_CANARY_H
#define ZZ_CANARY_H

#include "internal.h"

/* Sets the low bit of every byte of w: a canary byte is never zero, so a
 * canary and zeroed memory (after zz_purge, or a fork with WIPEONFORK) can
 * never be mistaken for each other.  56 of each word's 64 bits stay secret. */
static inline uint64_t zzi_canary_no_zero_bytes(uint64_t w)
{
    return w | UINT64_C(0x0101010101010101);
}
/* Fills out[0..n) with fresh canary words from getrandom.  Returns 0, or -1
 * with errno (zz_last_error says the generator failed). */
int zzi_canary_draw(uint64_t *out, size_t n);
/* Writes canary word w over [p, p+n) (the byte at x is byte x % 8 of w). */
void zzi_canary_fill(unsigned char *p, size_t n, uint64_t w);
/* Writes the canary byte over each zero byte of [p, p+n), leaving the others
 * as they are. */
void zzi_canary_fill_zeros(unsigned char *p, size_t n, uint64_t w);
/* 1 if [p, p+n) holds canary word w. */
int zzi_canary_check(const unsigned char *p, size_t n, uint64_t w);
/* 1 if each byte of [p, p+n) is its canary byte or zero: what a canary looks
 * like after a purge that may have raced with its writing. */
int zzi_canary_check_or_zero(const unsigned char *p, size_t n, uint64_t w);

/* 16 bytes as two little-endian words (a struct, not an array: arrays in the
 * fast paths would make them pay for -fstack-protector-strong). */
struct zzi_words {
    uint64_t lo, hi;
};
static inline struct zzi_words zzi_load16(const unsigned char *p)
{
    struct zzi_words v;
    __builtin_memcpy(&v.lo, p, 8);
    __builtin_memcpy(&v.hi, p + 8, 8);
    return v;
}
/* zzi_canary_fill(p, 16, w) and zzi_canary_check(p, 16, w) for 16-byte-aligned
 * p, inline for the arena's fast path (a cell's head and trailing canaries
 * are one aligned chunk each). */
static inline void zzi_canary16_write(unsigned char *p, uint64_t w)
{
    __builtin_memcpy(p, &w, 8);
    __builtin_memcpy(p + 8, &w, 8);
}
static inline int zzi_canary16_intact(const unsigned char *p, uint64_t w)
{
    struct zzi_words v = zzi_load16(p);
    return ((v.lo ^ w) | (v.hi ^ w)) == 0;
}
/* For a block whose end is not 16-byte aligned: its tail canary is the bytes
 * [k, 16) of the aligned chunk at p (0 <= k < 16), handled with word masks
 * instead of a byte loop. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline struct zzi_words zzi_canary_tail_mask(unsigned k)
{
    struct zzi_words m = {
        k >= 8 ? 0 : ~UINT64_C(0) << (8 * k),
        k <= 8 ? ~UINT64_C(0) : ~UINT64_C(0) << (8 * (k - 8)),
    };
    return m;
}
/* zzi_canary_check(p + k, 16 - k, w). */
static inline int zzi_canary16_tail_intact(const unsigned char *p, unsigned k, uint64_t w)
{
    struct zzi_words v = zzi_load16(p), m = zzi_canary_tail_mask(k);
    return (((v.lo ^ w) & m.lo) | ((v.hi ^ w) & m.hi)) == 0;
}
/* zzi_canary_fill(p + k, 16 - k, w), leaving [p, p+k) as it was. */
static inline void zzi_canary16_tail_write(unsigned char *p, unsigned k, uint64_t w)
{
    struct zzi_words v = zzi_load16(p), m = zzi_canary_tail_mask(k);
    v.lo = (v.lo & ~m.lo) | (w & m.lo);
    v.hi = (v.hi & ~m.hi) | (w & m.hi);
    __builtin_memcpy(p, &v.lo, 8);
    __builtin_memcpy(p + 8, &v.hi, 8);
}
#else
static inline int zzi_canary16_tail_intact(const unsigned char *p, unsigned k, uint64_t w)
{
    return zzi_canary_check(p + k, 16 - k, w);
}
static inline void zzi_canary16_tail_write(unsigned char *p, unsigned k, uint64_t w)
{
    zzi_canary_fill(p + k, 16 - k, w);
}
#endif

/* 1 if the canary bytes at [p, p+n) are word w, or were zeroed (wholly or,
 * when the purge raced with their writing, in part) by a purge or a fork that
 * happened since the block was made (block_epoch != now). */
int zzi_canary_acceptable(const unsigned char *p, size_t n, uint64_t w, unsigned block_epoch,
                          unsigned now);

/* What a look at a block's two canaries found, under wipe epoch e. */
struct zzi_canary_sides {
    int head_ok, tail_ok;
};
/* Looks at a block's canaries (look(ctx, e)) again and again until no purge
 * ran while it looked, then reports what it found: fatal "canary corrupted
 * (before block)" or "(after block)".  Inline, so look is too. */
static inline void zzi_canary_check_settled(struct zzi_canary_sides (*look)(const void *ctx,
                                                                            unsigned e),
                                            const void *ctx)
{
    for (;;) {
        unsigned e = zzi_epoch_stable();
        struct zzi_canary_sides v = look(ctx, e);
        if (!zzi_epoch_unchanged(e))
            continue; /* a purge ran while we looked: look again */
        ZZ_CHECK(v.head_ok, "canary corrupted (before block)");
        ZZ_CHECK(v.tail_ok, "canary corrupted (after block)");
        return;
    }
}

/* 1 if the n bytes at p (16-byte aligned, n a multiple of 16) are all zero.
 * For checking that a free slot or cell is still zero: it reads no secret,
 * so it need not be constant-time, and it is inline for the allocation fast
 * paths (four 16-byte accumulators: a quarter of the instructions of word
 * loads). */
typedef uint64_t zzi_v2u64 __attribute__((vector_size(16)));
static inline int zzi_is_zero_small(const unsigned char *p, size_t n)
{
    zzi_v2u64 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
    size_t k = 0;
    for (; k + 64 <= n; k += 64) {
        zzi_v2u64 v0, v1, v2, v3;
        __builtin_memcpy(&v0, p + k, 16);
        __builtin_memcpy(&v1, p + k + 16, 16);
        __builtin_memcpy(&v2, p + k + 32, 16);
        __builtin_memcpy(&v3, p + k + 48, 16);
        a0 |= v0;
        a1 |= v1;
        a2 |= v2;
        a3 |= v3;
    }
    for (; k < n; k += 16) {
        zzi_v2u64 v;
        __builtin_memcpy(&v, p + k, 16);
        a0 |= v;
    }
    a0 |= a1 | a2 | a3;
    return (a0[0] | a0[1]) == 0;
}

/* Wipes the n bytes at p (16-byte aligned, n a multiple of 16, at most
 * ZZI_WIPE_SMALL_MAX) with 16-byte stores, inline: for the free fast paths,
 * where a call costs more than the stores.  The empty asm in the loop hides
 * the count, so that the compiler cannot turn the loop into `rep stos`
 * (GCC did: on Intel Xeon a `rep stos` ending at a guard page costs ~140 ns,
 * and every small block ends at one; see wipe.c).  The barrier after the
 * stores keeps the compiler from dropping them, as zz_wipe's does. */
#define ZZI_WIPE_SMALL_MAX 256u
static inline void zzi_wipe_small(unsigned char *p, size_t n)
{
    const zzi_v2u64 zero = {0, 0};
    size_t k = 0;
    for (; k + 32 <= n; k += 32) {
        __builtin_memcpy(p + k, &zero, 16);
        __builtin_memcpy(p + k + 16, &zero, 16);
        __asm__("" : "+r"(k));
    }
    if (k < n)
        __builtin_memcpy(p + k, &zero, 16);
    zzi_barrier(p);
}

#endif /* ZZ_CANARY_H */
