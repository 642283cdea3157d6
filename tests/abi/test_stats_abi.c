/*
 * test_stats_abi.c - a caller's zz_stats is as big as its header says, and
 * the library writes nothing past it (docs/ABI.md).  Built three times
 * against the shared library, each time with another copy of zeroize.h
 * (header_variant.py): the real one, version 0.1's (what an older program
 * was built with) and one with a field the library does not know (a newer
 * header).  Guard bytes after the struct must come back untouched.
 */
#include "../test_util.h"

#define GUARD 0xA5
#define GUARD_BYTES 64

/* The struct as this program's header has it, followed by guard bytes (no
 * padding between: zz_stats is size_t fields only). */
struct probe {
    zz_stats s;
    unsigned char guard[GUARD_BYTES];
};

static void fill_probe(struct probe *p)
{
    memset(p, GUARD, sizeof *p);
}

/* Bytes [from, sizeof *p) are all still GUARD. */
static void assert_untouched_from(const struct probe *p, size_t from)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = from; i < sizeof *p; i++)
        if (b[i] != GUARD)
            fail_msg("byte %zu of a %zu-byte zz_stats (+%d guard bytes) was written", i,
                     sizeof p->s, GUARD_BYTES);
}

static void assert_sane(const zz_stats *s, size_t min_live)
{
    assert_true(s->live_blocks >= min_live);
    assert_true(s->live_bytes >= 32 * min_live);
    assert_true(s->mapped_bytes >= s->locked_bytes);
    assert_true(s->mapped_bytes > 0);
}

/* zz_get_stats(out), the macro, passes this header's sizeof(zz_stats). */
static void test_stats_abi_macro_fills_this_headers_struct(void **state)
{
    (void)state;
    void *blocks[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(blocks[i] = zz_alloc(32));
    struct probe p;
    fill_probe(&p);
    zz_get_stats(&p.s);
    assert_untouched_from(&p, sizeof p.s);
    assert_sane(&p.s, 3);
#ifdef ZZ_TEST_NEWER_HEADER
    assert_int_equal(p.s.zz_test_field, 0); /* the library does not know it */
#endif
    for (int i = 0; i < 3; i++)
        zz_free(blocks[i]);
}

/* (zz_get_stats)(out), the function a binary built before the sized call
 * links to, fills the 0.1 fields only. */
static void test_stats_abi_old_symbol_fills_0_1_fields_only(void **state)
{
    (void)state;
    void *block = zz_alloc(32);
    assert_non_null(block);
    struct probe p;
    fill_probe(&p);
    (zz_get_stats)(&p.s);
    assert_untouched_from(&p, ZZ_STATS_SIZE_0_1);
    assert_sane(&p.s, 1);
    zz_free(block);
}

static void test_stats_abi_arena_stats_fill_this_headers_struct(void **state)
{
    (void)state;
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    void *x = zz_arena_alloc(a, 32);
    assert_non_null(x);
    struct probe p;
    fill_probe(&p);
    assert_int_equal(zz_arena_stats(a, &p.s), 0);
    assert_untouched_from(&p, sizeof p.s);
    assert_int_equal(p.s.live_blocks, 1);
    assert_int_equal(p.s.live_bytes, 32);
    assert_true(p.s.mapped_bytes > 0);
#ifdef ZZ_TEST_NEWER_HEADER
    assert_int_equal(p.s.zz_test_field, 0);
#endif
    fill_probe(&p);
    assert_int_equal((zz_arena_stats)(a, &p.s), 0);
    assert_untouched_from(&p, ZZ_STATS_SIZE_0_1);
    assert_int_equal(p.s.live_blocks, 1);
    zz_arena_free(a, x);
    zz_arena_destroy(a);
}

/* No header ever had a zz_stats smaller than version 0.1's: refused, and
 * nothing written. */
static void test_stats_abi_size_below_0_1_refused(void **state)
{
    (void)state;
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    struct probe p;
    fill_probe(&p);
    errno = 0;
    assert_int_equal(zz_get_stats_sized(&p.s, ZZ_STATS_SIZE_0_1 - 1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(zz_last_error_code(), ZZ_ERR_ARGUMENT);
    errno = 0;
    assert_int_equal(zz_arena_stats_sized(a, &p.s, 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_untouched_from(&p, 0);
    zz_arena_destroy(a);
}

/* A caller's struct bigger than the library's: the library's fields, then
 * zeros up to the size the caller gave, then nothing.  Run by
 * abi_selftest.sh against a library copy with one more field, which it
 * fills with all ones (ZZ_TEST_NEWER_LIBRARY=1): that field comes through.
 * A program built against an older header (v0_1) gets the library's own
 * newer fields first, whatever they count. */
static void test_stats_abi_bigger_struct_zero_filled(void **state)
{
    (void)state;
    struct {
        zz_stats s;
        size_t future[4];
        unsigned char guard[GUARD_BYTES];
    } big;
    const char *newer = getenv("ZZ_TEST_NEWER_LIBRARY");
    size_t known = newer != NULL && strcmp(newer, "1") == 0 ? 1 : 0;
    size_t mine = sizeof big.s / sizeof(size_t), library = ZZ_TEST_LIBRARY_STATS_FIELDS;
    size_t own = library > mine ? library - mine : 0; /* the library's fields past mine */
    memset(&big, GUARD, sizeof big);
    assert_int_equal(zz_get_stats_sized(&big.s, sizeof big.s + sizeof big.future), 0);
    for (size_t i = own; i < 4; i++)
        assert_int_equal(big.future[i], i < own + known ? ~(size_t)0 : 0);
    for (size_t i = 0; i < GUARD_BYTES; i++)
        assert_int_equal(big.guard[i], GUARD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_abi_macro_fills_this_headers_struct),
        cmocka_unit_test(test_stats_abi_old_symbol_fills_0_1_fields_only),
        cmocka_unit_test(test_stats_abi_arena_stats_fill_this_headers_struct),
        cmocka_unit_test(test_stats_abi_size_below_0_1_refused),
        cmocka_unit_test(test_stats_abi_bigger_struct_zero_filled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
