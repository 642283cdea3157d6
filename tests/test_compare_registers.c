/*
 * zz_equal and zz_is_zero read secrets: nothing of them, nor of their XOR
 * with the other operand (which gives the secret away to whoever knows the
 * other), may stay in a vector register afterwards, where a core dump's
 * register notes (or the XSAVE area lazy binding puts on the stack) would
 * show it.  gcc 12 vectorises both loops at -O3, the Release build's level,
 * and did so before this test: src/wipe.c is compiled into this program at
 * -O3 whatever the build type (tests/CMakeLists.txt).
 */
#include "test_util.h"
#if defined(ZZ_TEST_HAVE_MEMCHECK_H)
#include <valgrind/memcheck.h>
#endif

#if defined(__x86_64__)
/* The low 128 bits of the 16 vector registers, read right after a call. */
static OPTNONE void read_xmm(unsigned char out[16][16])
{
    __asm__ __volatile__("movdqu %%xmm0, 0(%0)\n\tmovdqu %%xmm1, 16(%0)\n\t"
                         "movdqu %%xmm2, 32(%0)\n\tmovdqu %%xmm3, 48(%0)\n\t"
                         "movdqu %%xmm4, 64(%0)\n\tmovdqu %%xmm5, 80(%0)\n\t"
                         "movdqu %%xmm6, 96(%0)\n\tmovdqu %%xmm7, 112(%0)\n\t"
                         "movdqu %%xmm8, 128(%0)\n\tmovdqu %%xmm9, 144(%0)\n\t"
                         "movdqu %%xmm10, 160(%0)\n\tmovdqu %%xmm11, 176(%0)\n\t"
                         "movdqu %%xmm12, 192(%0)\n\tmovdqu %%xmm13, 208(%0)\n\t"
                         "movdqu %%xmm14, 224(%0)\n\tmovdqu %%xmm15, 240(%0)"
                         : : "r"(out) : "memory");
#if defined(ZZ_TEST_HAVE_MEMCHECK_H)
    /* memcheck marks the parts of a register no instruction has written as
     * undefined; the values it gives them are what this test compares, so
     * say they are defined rather than have every comparison reported. */
    VALGRIND_MAKE_MEM_DEFINED(out, 16 * 16);
#endif
}

/* 1 if any 8-byte half of the registers is a non-zero word of words[]. */
static int registers_hold(unsigned char regs[16][16], const uint64_t *words, size_t n)
{
    for (int r = 0; r < 16; r++)
        for (int h = 0; h < 2; h++) {
            uint64_t v;
            memcpy(&v, regs[r] + 8 * h, 8);
            for (size_t k = 0; k < n; k++)
                if (v != 0 && v == words[k])
                    return 1;
        }
    return 0;
}

enum { WORDS = 512 };
static uint64_t secret[WORDS], guess[WORDS], diff[WORDS];

static void fill(void)
{
    for (size_t k = 0; k < WORDS; k++) {
        secret[k] = 0x5a5a000000000000u ^ (k * 0x9E3779B97F4A7C15u);
        guess[k] = 0x00a5000000000000u ^ (k * 0xC2B2AE3D27D4EB4Fu);
        diff[k] = secret[k] ^ guess[k];
    }
}

static OPTNONE int equal_then_read(size_t n, unsigned char regs[16][16])
{
    int r = zz_equal(secret, guess, n);
    read_xmm(regs);
    return r;
}

static OPTNONE int is_zero_then_read(size_t n, unsigned char regs[16][16])
{
    int r = zz_is_zero(secret, n);
    read_xmm(regs);
    return r;
}

static void test_equal_leaves_no_secret_in_vector_registers(void **state)
{
    (void)state;
    unsigned char regs[16][16];
    fill();
    for (size_t n = 64; n <= sizeof secret; n *= 2) {
        assert_int_equal(equal_then_read(n, regs), 0);
        assert_false(registers_hold(regs, secret, WORDS));
        assert_false(registers_hold(regs, diff, WORDS));
    }
}

static void test_is_zero_leaves_no_secret_in_vector_registers(void **state)
{
    (void)state;
    unsigned char regs[16][16];
    fill();
    for (size_t n = 64; n <= sizeof secret; n *= 2) {
        assert_int_equal(is_zero_then_read(n, regs), 0);
        assert_false(registers_hold(regs, secret, WORDS));
    }
}
#endif

int main(void)
{
#if defined(__x86_64__)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_leaves_no_secret_in_vector_registers),
        cmocka_unit_test(test_is_zero_leaves_no_secret_in_vector_registers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    return 77; /* x86-64 registers only */
#endif
}
