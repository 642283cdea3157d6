/*
 * canary.c - the bytes placed before and after every block to catch writes
 * that miss the guard pages.  The pattern depends on a per-process random key
 * and on each byte's address, so a canary copied from one block does not fit
 * another and an attacker who cannot read memory cannot forge one.
 */
#include <string.h>

#include "internal.h"

uint64_t zzi_canary_key[2];

int zzi_canary_init(void)
{
    return zzi_os_random(zzi_canary_key, sizeof zzi_canary_key);
}

/* The 16 canary bytes of the 16-byte-aligned chunk that holds address a. */
static inline void chunk_pattern(uintptr_t a, unsigned char out[16])
{
    struct zzi_words w = zzi_canary_chunk(a);
    memcpy(out, &w.lo, 8);
    memcpy(out + 8, &w.hi, 8);
}

/* Calls fn on each piece of [p, p+n) that lies in one 16-byte chunk, with
 * that chunk's pattern: most canaries are one piece, so one pattern. */
#define FOR_EACH_PIECE(p, n, pat, off, len, body)                                \
    do {                                                                     \
        uintptr_t a_ = (uintptr_t)(p), end_ = a_ + (n);                      \
        while (a_ < end_) {                                                  \
            unsigned char pat[16];                                           \
            chunk_pattern(a_, pat);                                          \
            size_t off = a_ & 15, len = 16 - off;                            \
            if (len > end_ - a_)                                             \
                len = end_ - a_;                                             \
            body;                                                            \
            a_ += len;                                                       \
        }                                                                    \
    } while (0)

void zzi_canary_write(unsigned char *p, size_t n)
{
    if (n == 16 && ((uintptr_t)p & 15) == 0) { /* a head canary: one chunk */
        unsigned char pat[16];
        chunk_pattern((uintptr_t)p, pat);
        memcpy(p, pat, 16);
        return;
    }
    unsigned char *dst = p;
    FOR_EACH_PIECE(p, n, pat, off, len, {
        memcpy(dst, pat + off, len);
        dst += len;
    });
}

int zzi_canary_intact(const unsigned char *p, size_t n)
{
    if (n == 16 && ((uintptr_t)p & 15) == 0)
        return zzi_canary16_intact(p);
    const unsigned char *src = p;
    int ok = 1;
    FOR_EACH_PIECE(p, n, pat, off, len, {
        ok &= memcmp(src, pat + off, len) == 0;
        src += len;
    });
    return ok;
}

int zzi_canary_intact_or_zero(const unsigned char *p, size_t n)
{
    const unsigned char *src = p;
    int ok = 1;
    FOR_EACH_PIECE(p, n, pat, off, len, {
        for (size_t k = 0; k < len; k++)
            ok &= src[k] == pat[off + k] || src[k] == 0;
        src += len;
    });
    return ok;
}
