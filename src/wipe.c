/*
 * wipe.c - wiping and constant-time comparison.  No dependencies on the rest
 * of the library; the compiler barrier that keeps a wipe from being elided
 * lives here (and in internal.h, for other files that wipe).
 */
#include <string.h>

#include "internal.h"

ZZ_API const char *zz_version(void)
{
    return ZEROIZE_VERSION_STRING;
}

/*
 * memset is the fastest wipe the platform has (glibc picks rep stosb, AVX or
 * non-temporal stores by size and CPU).  What makes it safe is the barrier
 * after it: an asm statement that takes p as input and clobbers memory tells
 * the compiler that the zeroed bytes may be read, so neither the optimiser nor
 * LTO may drop the memset as a dead store.
 */
ZZ_API void zz_wipe(void *p, size_t n)
{
    if (n == 0)
        return;
    memset(p, 0, n);
    zzi_barrier(p);
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Hides acc's value from the optimiser, so it cannot turn the accumulation
 * into an early exit on the first non-zero word. */
static inline uint64_t opaque(uint64_t acc)
{
    __asm__ __volatile__("" : "+r"(acc));
    return acc;
}

/* 1 if acc == 0, else 0, without a branch. */
static inline int is_zero_word(uint64_t acc)
{
    acc = opaque(acc);
    return (int)(1 & (((acc | (0 - acc)) >> 63) ^ 1));
}

ZZ_API int zz_equal(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc |= load64(x + i) ^ load64(y + i);
    for (; i < n; i++)
        acc |= (uint64_t)(x[i] ^ y[i]);
    return is_zero_word(acc);
}

ZZ_API int zz_is_zero(const void *p, size_t n)
{
    const unsigned char *x = p;
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc |= load64(x + i);
    for (; i < n; i++)
        acc |= x[i];
    return is_zero_word(acc);
}

void zzi_copy_secret(void *dst, const void *src, size_t n)
{
    volatile uint64_t *d = dst; /* volatile: no vectorising, no memcpy call */
    const volatile uint64_t *s = src;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++)
        d[i] = s[i];
    volatile unsigned char *db = (volatile unsigned char *)dst;
    const volatile unsigned char *sb = (const volatile unsigned char *)src;
    for (size_t i = words * 8; i < n; i++)
        db[i] = sb[i];
}
