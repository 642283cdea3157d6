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
 * zz_wipe stores the zeros itself, with vector stores, up to
 * WIPE_LOOP_MAX bytes; memset only above that.  Why not memset everywhere:
 * every zz_alloc block ends within 15 bytes of a guard page, and on Intel
 * Xeon (family 6 model 167) a `rep stos` that ends at a page boundary in
 * front of a PROT_NONE page costs about 140 ns, against 9 ns in the middle
 * of a page (issue 18).  glibc's memset uses `rep stosb` from 2 KiB up (a
 * tunable can lower that to 1 byte), musl's `rep stosq` from 127 bytes.  On
 * AMD EPYC (family 26) the AVX2 loop below is also faster than glibc's
 * memset from 2 KiB to 256 KiB (rep stosb there: 4 KiB 42 ns against 21),
 * and as fast below; above 256 KiB a fixed cost, if a CPU charges one, is
 * lost in the time the stores take, and memset picks non-temporal stores
 * for the largest sizes.
 *
 * What makes the wipe safe is the barrier after it: an asm statement that
 * takes p as input and clobbers memory tells the compiler that the zeroed
 * bytes may be read, so neither the optimiser nor LTO may drop the stores.
 * The empty asm in each loop hides the loop's counter, so the compiler cannot
 * see a memset in the loop and emit `rep stos` (or a call to memset) for it
 * (tools/check_string_ops.py checks the built code for both compilers).
 */
#define WIPE_LOOP_MAX (256u * 1024u)

typedef uint64_t v2u64 __attribute__((vector_size(16)));

/* Hides k from the optimiser (see above). */
#define OPAQUE_COUNT(k) __asm__("" : "+r"(k))

/* n >= 16: 16-byte stores, the last one ending at p + n (it may overlap the
 * one before); after a first store at p, from the first 16-byte boundary
 * (as wipe_avx2).  noinline, so that zz_wipe jumps to it. */
__attribute__((noinline)) static void wipe_vec16(unsigned char *p, size_t n)
{
    const v2u64 zero = {0, 0};
    __builtin_memcpy(p, &zero, 16);
    size_t k = (size_t)(0 - (uintptr_t)p) & 15;
    for (; k + 64 <= n; k += 64) {
        __builtin_memcpy(p + k, &zero, 16);
        __builtin_memcpy(p + k + 16, &zero, 16);
        __builtin_memcpy(p + k + 32, &zero, 16);
        __builtin_memcpy(p + k + 48, &zero, 16);
        OPAQUE_COUNT(k);
    }
    for (; k + 16 <= n; k += 16) {
        __builtin_memcpy(p + k, &zero, 16);
        OPAQUE_COUNT(k);
    }
    if (k < n)
        __builtin_memcpy(p + n - 16, &zero, 16);
    zzi_barrier(p);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1

/* n >= 32: 32-byte stores, 128 bytes a step, the last store ending at p + n.
 * The first store covers p's first 32 bytes wherever p is; the loop then
 * starts at the first 32-byte boundary, so that no store of the loop
 * splits a cache line (a buffer misaligned by 1 byte: 64 KiB at 130 GB/s
 * against memset's 152 before, AMD EPYC).  The compiler clears the upper
 * halves of the vector registers on return (vzeroupper), and the registers
 * only ever held zeros. */
__attribute__((target("avx2"))) static void wipe_avx2(unsigned char *p, size_t n)
{
    const __m256i zero = _mm256_setzero_si256();
    _mm256_storeu_si256((__m256i *)(void *)p, zero);
    size_t k = (size_t)(0 - (uintptr_t)p) & 31;
    for (; k + 128 <= n; k += 128) {
        _mm256_storeu_si256((__m256i *)(void *)(p + k), zero);
        _mm256_storeu_si256((__m256i *)(void *)(p + k + 32), zero);
        _mm256_storeu_si256((__m256i *)(void *)(p + k + 64), zero);
        _mm256_storeu_si256((__m256i *)(void *)(p + k + 96), zero);
        OPAQUE_COUNT(k);
    }
    for (; k + 32 <= n; k += 32) {
        _mm256_storeu_si256((__m256i *)(void *)(p + k), zero);
        OPAQUE_COUNT(k);
    }
    if (k < n)
        _mm256_storeu_si256((__m256i *)(void *)(p + n - 32), zero);
    zzi_barrier(p);
}

/* n > 128: as wipe_avx2 with 64-byte stores, one per cache line; up to 512
 * bytes with four or eight stores from both ends that meet or overlap, no
 * loop (as glibc's memset does: AMD EPYC, best of 15 runs of 200,000 calls,
 * 256 B at p + 1: 2.35 ns against 2.95 with the loop; explicit_bzero 4.5).
 * Taken on AMD CPUs only (Zen 4 and later keep their clock for 512-bit
 * stores; Intel's Skylake-SP family lowers the core's clock for a while
 * after them, and glibc's memset avoids them there too).  AMD EPYC (family
 * 26), zz-bench wipe --cpu 0, page-aligned 1 KiB: 181 GB/s with 32-byte
 * stores against memset's 212 (which stores 64 bytes at a time on this CPU). */
__attribute__((target("avx512f"))) static void wipe_avx512(unsigned char *p, size_t n)
{
    const __m512i zero = _mm512_setzero_si512();
    if (n <= 512) { /* n > 128: stores from both ends, no loop (see above) */
        _mm512_storeu_si512((void *)p, zero);
        _mm512_storeu_si512((void *)(p + 64), zero);
        _mm512_storeu_si512((void *)(p + n - 128), zero);
        _mm512_storeu_si512((void *)(p + n - 64), zero);
        if (n > 256) {
            _mm512_storeu_si512((void *)(p + 128), zero);
            _mm512_storeu_si512((void *)(p + 192), zero);
            _mm512_storeu_si512((void *)(p + n - 256), zero);
            _mm512_storeu_si512((void *)(p + n - 192), zero);
        }
        zzi_barrier(p);
        return;
    }
    _mm512_storeu_si512((void *)p, zero);
    size_t k = (size_t)(0 - (uintptr_t)p) & 63;
    for (; k + 256 <= n; k += 256) {
        _mm512_storeu_si512((void *)(p + k), zero);
        _mm512_storeu_si512((void *)(p + k + 64), zero);
        _mm512_storeu_si512((void *)(p + k + 128), zero);
        _mm512_storeu_si512((void *)(p + k + 192), zero);
        OPAQUE_COUNT(k);
    }
    for (; k + 64 <= n; k += 64) {
        _mm512_storeu_si512((void *)(p + k), zero);
        OPAQUE_COUNT(k);
    }
    if (k < n)
        _mm512_storeu_si512((void *)(p + n - 64), zero);
    zzi_barrier(p);
}

/* 1 where wipe_avx512 is the faster loop (see above). */
static int prefer_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_is("amd");
}
#endif

/* 16 <= n <= 128: 16-byte stores from both ends that meet or overlap in the
 * middle, no loop (as glibc's memset does for small sizes). */
static inline void wipe_16_to_128(unsigned char *p, size_t n)
{
    const v2u64 zero = {0, 0};
    unsigned char *end = p + n;
    __builtin_memcpy(p, &zero, 16);
    __builtin_memcpy(end - 16, &zero, 16);
    if (n <= 32)
        return;
    __builtin_memcpy(p + 16, &zero, 16);
    __builtin_memcpy(end - 32, &zero, 16);
    if (n <= 64)
        return;
    __builtin_memcpy(p + 32, &zero, 16);
    __builtin_memcpy(p + 48, &zero, 16);
    __builtin_memcpy(end - 48, &zero, 16);
    __builtin_memcpy(end - 64, &zero, 16);
}

/* n < 16: word stores that overlap in the middle, then bytes. */
static void wipe_short(unsigned char *p, size_t n)
{
    const uint64_t z8 = 0;
    const uint32_t z4 = 0;
    if (n >= 8) {
        __builtin_memcpy(p, &z8, 8);
        __builtin_memcpy(p + n - 8, &z8, 8);
    } else if (n >= 4) {
        __builtin_memcpy(p, &z4, 4);
        __builtin_memcpy(p + n - 4, &z4, 4);
    } else {
        for (size_t k = 0; k < n; k++) {
            p[k] = 0;
            OPAQUE_COUNT(k);
        }
    }
}

/* Each branch ends in a call that the compiler makes a jump (the helpers
 * end with the barrier themselves): no frame of its own for zz_wipe. */
ZZ_API void zz_wipe(void *p, size_t n)
{
    unsigned char *b = p;
    if (n < 16) {
        wipe_short(b, n);
        zzi_barrier(p);
        return;
    }
    if (n <= 128) {
        wipe_16_to_128(b, n);
        zzi_barrier(p);
        return;
    }
#ifdef HAVE_AVX2_PATH
    if (n <= WIPE_LOOP_MAX && prefer_avx512()) {
        wipe_avx512(b, n);
        return;
    }
    if (n <= WIPE_LOOP_MAX && __builtin_cpu_supports("avx2")) {
        wipe_avx2(b, n);
        return;
    }
#endif
    if (n <= WIPE_LOOP_MAX) {
        wipe_vec16(b, n);
        return;
    }
    memset(b, 0, n);
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

/* The comparisons read secrets.  Vector registers keep their contents until
 * something else happens to use them (a core dump's register notes, or the
 * XSAVE area that lazy binding puts on the stack, would hold them): the
 * generic loops are kept out of vector registers, and the AVX2 loop clears
 * every vector register before it returns. */
#if defined(__clang__)
#define NO_VECTORS
#define NO_VECTORS_LOOP _Pragma("clang loop vectorize(disable) interleave(disable)")
#elif defined(__GNUC__)
#define NO_VECTORS __attribute__((optimize("no-tree-vectorize", "no-tree-slp-vectorize")))
#define NO_VECTORS_LOOP
#else
#define NO_VECTORS
#define NO_VECTORS_LOOP
#endif

/* Both loops read 32 bytes per step into four independent accumulators, so
 * the CPU overlaps the loads; the work is the same whatever the data. */
NO_VECTORS ZZ_API int zz_equal(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    uint64_t acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
    size_t i = 0;
    NO_VECTORS_LOOP
    for (; i + 32 <= n; i += 32) {
        acc0 |= load64(x + i) ^ load64(y + i);
        acc1 |= load64(x + i + 8) ^ load64(y + i + 8);
        acc2 |= load64(x + i + 16) ^ load64(y + i + 16);
        acc3 |= load64(x + i + 24) ^ load64(y + i + 24);
    }
    for (; i + 8 <= n; i += 8)
        acc0 |= load64(x + i) ^ load64(y + i);
    for (; i < n; i++)
        acc1 |= (uint64_t)(x[i] ^ y[i]);
    return is_zero_word(acc0 | acc1 | acc2 | acc3);
}

#ifdef HAVE_AVX2_PATH
/* 128 bytes per step through four 256-bit accumulators: about the speed of
 * memset on cached data, which matters because zz_alloc checks each slot it
 * hands out (see block.c).  Same work whatever the data. */
__attribute__((target("avx2"))) static int is_zero_avx2(const unsigned char *x, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_or_si256(a0, _mm256_loadu_si256((const __m256i *)(const void *)(x + i)));
        a1 = _mm256_or_si256(a1, _mm256_loadu_si256((const __m256i *)(const void *)(x + i + 32)));
        a2 = _mm256_or_si256(a2, _mm256_loadu_si256((const __m256i *)(const void *)(x + i + 64)));
        a3 = _mm256_or_si256(a3, _mm256_loadu_si256((const __m256i *)(const void *)(x + i + 96)));
    }
    __m256i a = _mm256_or_si256(_mm256_or_si256(a0, a1), _mm256_or_si256(a2, a3));
    uint64_t acc = (uint64_t)_mm256_extract_epi64(a, 0) | (uint64_t)_mm256_extract_epi64(a, 1) |
                   (uint64_t)_mm256_extract_epi64(a, 2) | (uint64_t)_mm256_extract_epi64(a, 3);
    for (; i + 8 <= n; i += 8)
        acc |= load64(x + i);
    for (; i < n; i++)
        acc |= x[i];
    _mm256_zeroall(); /* leave no piece of the data in any vector register */
    return is_zero_word(acc);
}
#endif

NO_VECTORS ZZ_API int zz_is_zero(const void *p, size_t n)
{
    const unsigned char *x = p;
#ifdef HAVE_AVX2_PATH
    if (n >= 256 && __builtin_cpu_supports("avx2"))
        return is_zero_avx2(x, n);
#endif
    uint64_t acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
    size_t i = 0;
    NO_VECTORS_LOOP
    for (; i + 32 <= n; i += 32) {
        acc0 |= load64(x + i);
        acc1 |= load64(x + i + 8);
        acc2 |= load64(x + i + 16);
        acc3 |= load64(x + i + 24);
    }
    for (; i + 8 <= n; i += 8)
        acc0 |= load64(x + i);
    for (; i < n; i++)
        acc1 |= x[i];
    return is_zero_word(acc0 | acc1 | acc2 | acc3);
}

/* An 8-byte word at any alignment (a plain uint64_t pointer to an unaligned
 * address is undefined behaviour). */
typedef uint64_t unaligned_word __attribute__((aligned(1), may_alias));

/* noinline: the loop's registers are this function's scratch registers,
 * never a caller's callee-saved ones (which a later prologue would push). */
__attribute__((noinline)) void zzi_copy_secret(void *dst, const void *src, size_t n)
{
    /* volatile: one load and one store per word through a general-purpose
     * register; the compiler may neither vectorise nor call memcpy. */
    volatile unaligned_word *dw = dst;
    const volatile unaligned_word *sw = src;
    volatile unsigned char *db = dst;
    const volatile unsigned char *sb = src;
    size_t words = n / 8;
    if (n == 0 || dst == src)
        return;
    if ((uintptr_t)dst < (uintptr_t)src || (uintptr_t)dst >= (uintptr_t)src + n) {
        for (size_t i = 0; i < words; i++)
            dw[i] = sw[i];
        for (size_t i = words * 8; i < n; i++)
            db[i] = sb[i];
    } else { /* dst overlaps the end of src: copy from the end */
        for (size_t i = n; i > words * 8; i--)
            db[i - 1] = sb[i - 1];
        for (size_t i = words; i > 0; i--)
            dw[i - 1] = sw[i - 1];
    }
}
