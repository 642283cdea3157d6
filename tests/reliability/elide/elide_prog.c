/*
 * elide_prog.c - compiled by check_elide.sh at test time with -O3 -flto and
 * linked against the static zeroize library, to show that zz_wipe survives
 * the optimiser where memset does not.
 *
 * Three functions do the same work on a 64-byte stack buffer holding a
 * secret and differ only in their last line:
 *   secret_nowipe  nothing            (the reference)
 *   secret_memset  memset(buf, 0, ..) (a dead store: the compiler drops it)
 *   secret_zzwipe  zz_wipe(buf, ..)   (must stay)
 * check_elide.sh compares their disassembly; this program checks the stack
 * at run time: after each function returns, the bytes where its buffer was
 * must be zero for zz_wipe and still hold the secret for the two others.
 *
 * Exit status: 0 all as expected; 1 zz_wipe left the secret; 2 the memset
 * control was not elided (the check would then prove nothing); 3 setup.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "zeroize.h"

#define LEN 64
#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static unsigned char secret[LEN];
volatile uint64_t sink;

/* Uses the buffer so it must really be filled: a checksum the caller keeps. */
NOINLINE static uint64_t digest(const unsigned char *b, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The buffer's address, hidden from the optimiser (it is only compared). */
static inline uintptr_t address_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    __asm__("" : "+r"(a));
    return a;
}

NOINLINE uintptr_t secret_nowipe(void);
NOINLINE uintptr_t secret_memset(void);
NOINLINE uintptr_t secret_zzwipe(void);

NOINLINE uintptr_t secret_nowipe(void)
{
    unsigned char buf[LEN];
    memcpy(buf, secret, LEN);
    sink = digest(buf, LEN);
    return address_of(buf);
}

NOINLINE uintptr_t secret_memset(void)
{
    unsigned char buf[LEN];
    memcpy(buf, secret, LEN);
    sink = digest(buf, LEN);
    memset(buf, 0, LEN);
    return address_of(buf);
}

NOINLINE uintptr_t secret_zzwipe(void)
{
    unsigned char buf[LEN];
    memcpy(buf, secret, LEN);
    sink = digest(buf, LEN);
    zz_wipe(buf, LEN);
    return address_of(buf);
}

/* Calls fn below 4 KiB of padding, so that the dead frame lies far below
 * the caller's stack pointer and the scan below cannot overwrite it. */
NOINLINE static uintptr_t call_deep(uintptr_t (*fn)(void))
{
    volatile unsigned char pad[4096];
    pad[0] = 1;
    pad[sizeof pad - 1] = 2;
    uintptr_t r = fn();
    return r + (uintptr_t)(pad[0] - 1);
}

/* How many of the LEN bytes at addr still equal the secret (volatile reads
 * of dead stack, below this function's frame). */
NOINLINE static unsigned matching_bytes(uintptr_t addr)
{
    const volatile unsigned char *p = (const volatile unsigned char *)addr;
    unsigned same = 0;
    for (unsigned i = 0; i < LEN; i++)
        same += p[i] == secret[i];
    return same;
}

static unsigned after(const char *name, uintptr_t (*fn)(void))
{
    uintptr_t a = call_deep(fn);
    unsigned same = matching_bytes(a);
    printf("%-14s buffer at %#lx: %2u of %d bytes still hold the secret\n", name,
           (unsigned long)a, same, LEN);
    return same;
}

int main(void)
{
    /* A secret with no zero byte, so "still there" and "wiped" differ in
     * every byte. */
    if (getrandom(secret, LEN, 0) != LEN)
        return 3;
    for (int i = 0; i < LEN; i++)
        secret[i] |= (unsigned char)(secret[i] == 0);
    unsigned ref = after("secret_nowipe", secret_nowipe);
    unsigned ctl = after("secret_memset", secret_memset);
    unsigned zz = after("secret_zzwipe", secret_zzwipe);
    zz_wipe(secret, LEN);
    if (ref != LEN)
        return 3; /* the scan does not see the dead frame: nothing to conclude */
    if (zz != 0) {
        printf("FAIL: zz_wipe left %u secret bytes on the stack\n", zz);
        return 1;
    }
    if (ctl != LEN) {
        printf("control did not reproduce: this compiler kept the dead memset\n");
        return 2;
    }
    printf("ok: zz_wipe wiped the buffer; the compiler elided the plain memset\n");
    return 0;
}
