/* Canaries as an attacker sees them (issue 11, defect 9): a zero-size arena
 * block exposes no canary bytes; no two canaries are equal; reading one
 * canary does not predict any other (the old construction, key XOR a public
 * function of the address, let one leaked canary forge them all); and an
 * overflow that writes a canary forged that way is still caught by zz_free.
 *
 * Reading a canary means reading the 16 bytes just before a block: an
 * attacker's out-of-bounds read, done here on purpose (valgrind would report
 * it, so this program carries the "death" label and stays out of memcheck). */
#include "test_util.h"

/* ---- the construction of 53bd339, as an attacker would rebuild it --------- */

#define OLD_MUL0 UINT64_C(0x9E3779B97F4A7C15)
#define OLD_MUL1 UINT64_C(0xC2B2AE3D27D4EB4F)
#define OLD_LOW_BITS UINT64_C(0x0101010101010101)

struct canary16 {
    uint64_t w0, w1; /* little-endian words of the 16 bytes */
};

static struct canary16 read_canary(const void *at)
{
    struct canary16 c;
    unsigned char b[16];
    for (size_t i = 0; i < 16; i++)
        b[i] = VREAD((const unsigned char *)at + i);
    memcpy(&c.w0, b, 8);
    memcpy(&c.w1, b + 8, 8);
    return c;
}

/* The key, modulo the low bit of each byte, that the old construction would
 * have used to make canary c at the 16-byte chunk at address a. */
static struct canary16 old_key_from(struct canary16 c, uintptr_t a)
{
    uint64_t chunk = (uint64_t)(a >> 4);
    struct canary16 k = { c.w0 ^ (chunk * OLD_MUL0), c.w1 ^ ((chunk + 1) * OLD_MUL1) };
    return k;
}

/* The canary the old construction makes with key k for the chunk at a. */
static struct canary16 old_predict(struct canary16 k, uintptr_t a)
{
    uint64_t chunk = (uint64_t)(a >> 4);
    struct canary16 c = { (k.w0 ^ (chunk * OLD_MUL0)) | OLD_LOW_BITS,
                          (k.w1 ^ ((chunk + 1) * OLD_MUL1)) | OLD_LOW_BITS };
    return c;
}

static int canary_equal(struct canary16 a, struct canary16 b)
{
    return a.w0 == b.w0 && a.w1 == b.w1;
}

static int cmp_canary(const void *x, const void *y)
{
    const struct canary16 *a = x, *b = y;
    if (a->w0 != b->w0)
        return a->w0 < b->w0 ? -1 : 1;
    if (a->w1 != b->w1)
        return a->w1 < b->w1 ? -1 : 1;
    return 0;
}

/* ---- a zero-size block ------------------------------------------------------ */

/* The 16 bytes at an arena block of 0 bytes are where the old code kept the
 * block's tail canary, readable through the block pointer.  They must read as
 * zeros (or fault): no canary byte is reachable from it. */
static OPTNONE void child_read_zero_size_block(void *arg)
{
    const size_t *capacity = arg;
    zz_arena *a = zz_arena_create(*capacity);
    child_check(a != NULL);
    unsigned char *b = zz_arena_alloc(a, 0);
    child_check(b != NULL);
    unsigned char seen[16];
    for (size_t i = 0; i < 16; i++)
        seen[i] = VREAD(b + i);
    if (!zz_is_zero(seen, sizeof seen)) {
        fprintf(stderr, "zz_arena_alloc(a, 0) exposes:");
        for (size_t i = 0; i < 16; i++)
            fprintf(stderr, " %02x", seen[i]);
        fprintf(stderr, "\n");
        tu_child_exit(3);
    }
    zz_arena_free(a, b);
    zz_arena_destroy(a);
}

static void test_canary_zero_size_arena_block_exposes_none(void **state)
{
    (void)state;
    static size_t capacities[] = { 0, 65536 };
    for (size_t i = 0; i < sizeof capacities / sizeof capacities[0]; i++) {
        struct tu_child_result r;
        assert_int_equal(tu_run_child(child_read_zero_size_block, &capacities[i], &r), 0);
        int ok = (r.exited && r.exit_code == 0) || (r.signaled && r.signal == SIGSEGV);
        if (!ok) {
            tu_describe_child(&r, __FILE__, __LINE__);
            print_error("arena of capacity %zu: the 16 bytes at a 0-byte block must read as "
                        "zeros (or fault)\n",
                        capacities[i]);
            fail();
        }
    }
}

/* ---- canaries reveal nothing about each other ------------------------------ */

enum { ARENA_BLOCKS = 1000, ALLOC_BLOCKS = 256, ALL = ARENA_BLOCKS + ALLOC_BLOCKS };

struct canary_sample {
    zz_arena *arena;
    unsigned char *arena_blocks[ARENA_BLOCKS];
    unsigned char *alloc_blocks[ALLOC_BLOCKS];
    uintptr_t at[ALL];          /* where each head canary lies */
    struct canary16 value[ALL];
};

/* Head canaries (the 16 bytes before the block) of 1000 arena blocks and 256
 * zz_alloc blocks, all of 32 bytes (both have a 16-byte aligned head canary
 * then). */
static void take_sample(struct canary_sample *s)
{
    s->arena = zz_arena_create(0);
    assert_non_null(s->arena);
    for (size_t i = 0; i < ARENA_BLOCKS; i++) {
        s->arena_blocks[i] = zz_arena_alloc(s->arena, 32);
        assert_non_null(s->arena_blocks[i]);
        s->at[i] = (uintptr_t)s->arena_blocks[i] - 16;
    }
    for (size_t i = 0; i < ALLOC_BLOCKS; i++) {
        s->alloc_blocks[i] = zz_alloc(32);
        assert_non_null(s->alloc_blocks[i]);
        s->at[ARENA_BLOCKS + i] = (uintptr_t)s->alloc_blocks[i] - 16;
    }
    for (size_t i = 0; i < ALL; i++) {
        assert_int_equal(s->at[i] % 16, 0);
        s->value[i] = read_canary((const void *)s->at[i]);
    }
}

static void drop_sample(struct canary_sample *s)
{
    for (size_t i = 0; i < ARENA_BLOCKS; i++)
        zz_arena_free(s->arena, s->arena_blocks[i]);
    for (size_t i = 0; i < ALLOC_BLOCKS; i++)
        zz_free(s->alloc_blocks[i]);
    zz_arena_destroy(s->arena);
}

static void test_canary_values_all_distinct(void **state)
{
    (void)state;
    struct canary_sample *s = calloc(1, sizeof *s);
    assert_non_null(s);
    take_sample(s);
    struct canary16 *sorted = malloc(sizeof s->value);
    assert_non_null(sorted);
    memcpy(sorted, s->value, sizeof s->value);
    qsort(sorted, ALL, sizeof sorted[0], cmp_canary);
    size_t equal = 0, zero = 0;
    for (size_t i = 0; i < ALL; i++) {
        zero += sorted[i].w0 == 0 && sorted[i].w1 == 0;
        equal += i > 0 && canary_equal(sorted[i - 1], sorted[i]);
    }
    print_message("%d head canaries: %zu equal to their predecessor, %zu all-zero\n", ALL, equal,
                  zero);
    free(sorted);
    drop_sample(s);
    free(s);
    assert_int_equal(equal, 0);
    assert_int_equal(zero, 0); /* a live block's head canary is there */
}

/* From the first canary, derive the key the old construction would have used
 * and predict every other canary with it.  On 53bd339 every prediction hits;
 * a keyed pseudo-random function (or random per-slab canaries) makes a hit a
 * 2^-112 event. */
static void test_canary_unpredictable_from_one_leak(void **state)
{
    (void)state;
    struct canary_sample *s = calloc(1, sizeof *s);
    assert_non_null(s);
    take_sample(s);
    size_t hits_arena = 0, hits_alloc = 0;
    /* leak from an arena block, then from a zz_alloc block */
    static const size_t leaks[] = { 0, ARENA_BLOCKS };
    for (size_t l = 0; l < sizeof leaks / sizeof leaks[0]; l++) {
        struct canary16 k = old_key_from(s->value[leaks[l]], s->at[leaks[l]]);
        for (size_t i = 0; i < ALL; i++) {
            if (i == leaks[l])
                continue;
            if (canary_equal(old_predict(k, s->at[i]), s->value[i])) {
                if (i < ARENA_BLOCKS)
                    hits_arena++;
                else
                    hits_alloc++;
            }
        }
    }
    print_message("predicted from one leaked canary: %zu of %d arena canaries, %zu of %d "
                  "zz_alloc canaries\n",
                  hits_arena, 2 * ARENA_BLOCKS - 1, hits_alloc, 2 * ALLOC_BLOCKS - 1);
    drop_sample(s);
    free(s);
    assert_int_equal(hits_arena, 0);
    assert_int_equal(hits_alloc, 0);
}

/* The forgery: read one canary (the head canary of another block),
 * derive the key, and overflow zz_alloc(20) by 12 bytes that are the canary
 * the old construction gives those addresses.  zz_free must notice. */
static OPTNONE void child_forged_overflow(void *arg)
{
    (void)arg;
    unsigned char *leak = zz_alloc(32);
    child_check(leak != NULL);
    struct canary16 k = old_key_from(read_canary(leak - 16), (uintptr_t)leak - 16);
    unsigned char *p = zz_alloc(20);
    child_check(p != NULL && (uintptr_t)p % 16 == 0);
    /* the tail canary is bytes 4..15 of the 16-byte chunk at p + 16 */
    struct canary16 forged = old_predict(k, (uintptr_t)p + 16);
    unsigned char bytes[16];
    memcpy(bytes, &forged.w0, 8);
    memcpy(bytes + 8, &forged.w1, 8);
    for (size_t i = 4; i < 16; i++)
        VWRITE(p + 16 + i, bytes[i]);
    zz_free(p);
}

static void test_canary_forged_overflow_detected(void **state)
{
    (void)state;
    expect_fatal(child_forged_overflow, NULL, "zeroize: canary corrupted (after block)");
}

/* The same forgery against an arena block: a 20-byte block's tail canary is
 * bytes 4..15 of the chunk at p + 16 (the next cell's head canary follows). */
static OPTNONE void child_forged_arena_overflow(void *arg)
{
    (void)arg;
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    unsigned char *leak = zz_arena_alloc(a, 32);
    child_check(leak != NULL);
    struct canary16 k = old_key_from(read_canary(leak - 16), (uintptr_t)leak - 16);
    unsigned char *p = zz_arena_alloc(a, 20);
    child_check(p != NULL && (uintptr_t)p % 16 == 0);
    struct canary16 forged = old_predict(k, (uintptr_t)p + 16);
    unsigned char bytes[16];
    memcpy(bytes, &forged.w0, 8);
    memcpy(bytes + 8, &forged.w1, 8);
    for (size_t i = 4; i < 16; i++)
        VWRITE(p + 16 + i, bytes[i]);
    zz_arena_free(a, p);
}

static void test_canary_forged_arena_overflow_detected(void **state)
{
    (void)state;
    expect_fatal(child_forged_arena_overflow, NULL, "zeroize: canary corrupted (after block)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canary_zero_size_arena_block_exposes_none),
        cmocka_unit_test(test_canary_values_all_distinct),
        cmocka_unit_test(test_canary_unpredictable_from_one_leak),
        cmocka_unit_test(test_canary_forged_overflow_detected),
        cmocka_unit_test(test_canary_forged_arena_overflow_detected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
