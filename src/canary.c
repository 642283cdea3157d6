/*
 * canary.c - the bytes placed before and after every block to catch writes
 * that miss the guard pages.  Each canary is its own random word, drawn from
 * the kernel's CSPRNG when its slot or run is set up and kept out of band
 * (in the slab's or run's metadata, never next to the block): reading any
 * number of canaries tells nothing about any other, so a program that can
 * read one canary (an over-read, a zero-size block) cannot forge the next.
 *
 * A word w covers a range byte by byte: the byte at address x is byte x % 8
 * of w, so an 8-byte-aligned word of the range is w itself and a partial
 * range needs no shifting.  Every byte of a canary word has its low bit set,
 * so a canary is never mistaken for zeroed memory (after zz_purge, or in a
 * forked child with WIPEONFORK) and vice versa.
 */
#include <string.h>

#include "canary.h"

int zzi_canary_draw(uint64_t *out, size_t n)
{
    if (zzi_os_random(out, n * sizeof *out) != 0) {
        zzi_fail(ZZ_ERR_RANDOM);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = zzi_canary_no_zero_bytes(out[i]);
    return 0;
}

static inline unsigned char byte_at(uintptr_t x, uint64_t w)
{
    unsigned char b[8];
    memcpy(b, &w, 8); /* memory order, as the 8-byte stores of the fast paths lay it out */
    return b[x & 7];
}

/* Bytes up to the next 8-byte boundary, then whole words, then the rest. */
void zzi_canary_fill(unsigned char *p, size_t n, uint64_t w)
{
    unsigned char *end = p + n;
    for (; p < end && ((uintptr_t)p & 7) != 0; p++)
        *p = byte_at((uintptr_t)p, w);
    for (; end - p >= 8; p += 8)
        memcpy(p, &w, 8);
    for (; p < end; p++)
        *p = byte_at((uintptr_t)p, w);
}

void zzi_canary_fill_zeros(unsigned char *p, size_t n, uint64_t w)
{
    for (size_t k = 0; k < n; k++)
        if (p[k] == 0)
            p[k] = byte_at((uintptr_t)(p + k), w);
}

int zzi_canary_check(const unsigned char *p, size_t n, uint64_t w)
{
    const unsigned char *end = p + n;
    uint64_t diff = 0;
    for (; p < end && ((uintptr_t)p & 7) != 0; p++)
        diff |= (unsigned char)(*p ^ byte_at((uintptr_t)p, w));
    for (; end - p >= 8; p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        diff |= v ^ w;
    }
    for (; p < end; p++)
        diff |= (unsigned char)(*p ^ byte_at((uintptr_t)p, w));
    return diff == 0;
}

int zzi_canary_check_or_zero(const unsigned char *p, size_t n, uint64_t w)
{
    int ok = 1;
    for (size_t k = 0; k < n; k++)
        ok &= p[k] == byte_at((uintptr_t)(p + k), w) || p[k] == 0;
    return ok;
}

int zzi_canary_acceptable(const unsigned char *p, size_t n, uint64_t w, unsigned block_epoch,
                          unsigned now)
{
    return zzi_canary_check(p, n, w) || (block_epoch != now && zzi_canary_check_or_zero(p, n, w));
}
