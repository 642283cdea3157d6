/* Fatal misuse of zz_free / zz_size / zz_info / zz_realloc, and stale reads
 * after zz_free.  Each case runs in a forked child. */
#include "test_util.h"

static void child_double_free(void *arg)
{
    const size_t *n = arg;
    void *p = zz_alloc(*n);
    child_check(p != NULL);
    zz_free(p);
    zz_free(p);
}

static void test_free_double_free_aborts(void **state)
{
    (void)state;
    size_t ns[] = { 0, 1, 32, 4096, 65536, 65537, 70000, 1u << 20 };
    int failures = 0;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        if (!fatal_ok(child_double_free, &ns[i], "zeroize: double free")) {
            print_error("  ^ for a block of %zu bytes\n", ns[i]);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* A double free is still caught after other blocks came and went, as long as
 * the slot itself was not handed out again. */
static void child_double_free_after_other_traffic(void *arg)
{
    (void)arg;
    void *p = zz_alloc(48);
    child_check(p != NULL);
    void *other = zz_alloc(5000);
    child_check(other != NULL);
    zz_free(p);
    zz_free(other);
    zz_free(p);
}

static void test_free_double_free_after_traffic_aborts(void **state)
{
    (void)state;
    expect_fatal(child_double_free_after_other_traffic, NULL, "zeroize: double free");
}

static void child_free_inside_block(void *arg)
{
    const ptrdiff_t *off = arg;
    unsigned char *p = zz_alloc(256);
    child_check(p != NULL);
    zz_free(p + *off);
}

static void test_free_interior_pointer_aborts(void **state)
{
    (void)state;
    ptrdiff_t offs[] = { 16, 1, 255 };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        expect_fatal(child_free_inside_block, &offs[i], "zeroize: invalid pointer");
}

static void child_free_malloc_pointer(void *arg)
{
    (void)arg;
    void *p = malloc(64);
    child_check(p != NULL);
    zz_free(p);
}

static void test_free_malloc_pointer_aborts(void **state)
{
    (void)state;
    expect_fatal(child_free_malloc_pointer, NULL, "zeroize: invalid pointer");
}

static void child_free_stack_pointer(void *arg)
{
    (void)arg;
    unsigned char local[64];
    memset(local, 1, sizeof local);
    zz_free(local + 16);
}

static void test_free_stack_pointer_aborts(void **state)
{
    (void)state;
    expect_fatal(child_free_stack_pointer, NULL, "zeroize: invalid pointer");
}

/* A page-aligned pointer into an anonymous mapping that is not ours. */
static void child_free_foreign_page(void *arg)
{
    (void)arg;
    void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(m != MAP_FAILED);
    zz_free((unsigned char *)m + 4096 - 16);
}

static void test_free_foreign_mapping_aborts(void **state)
{
    (void)state;
    expect_fatal(child_free_foreign_page, NULL, "zeroize: invalid pointer");
}

static void child_size_of_foreign(void *arg)
{
    (void)arg;
    unsigned char local[32];
    memset(local, 0, sizeof local);
    (void)zz_size(local);
}

static void child_info_of_interior(void *arg)
{
    (void)arg;
    unsigned char *p = zz_alloc(64);
    child_check(p != NULL);
    (void)zz_info(p + 16);
}

static void child_realloc_freed(void *arg)
{
    (void)arg;
    void *p = zz_alloc(64);
    child_check(p != NULL);
    zz_free(p);
    void *q = zz_realloc(p, 128);
    (void)q;
}

static void child_realloc_malloced(void *arg)
{
    (void)arg;
    void *p = malloc(32);
    child_check(p != NULL);
    void *q = zz_realloc(p, 64);
    (void)q;
}

static void test_size_foreign_pointer_aborts(void **state)
{
    (void)state;
    expect_fatal(child_size_of_foreign, NULL, "zeroize: invalid pointer");
}

static void test_info_interior_pointer_aborts(void **state)
{
    (void)state;
    expect_fatal(child_info_of_interior, NULL, "zeroize: invalid pointer");
}

static void test_realloc_freed_pointer_aborts(void **state)
{
    (void)state;
    expect_fatal(child_realloc_freed, NULL, "zeroize: double free");
}

static void test_realloc_malloc_pointer_aborts(void **state)
{
    (void)state;
    expect_fatal(child_realloc_malloced, NULL, "zeroize: invalid pointer");
}

/* After zz_free the stale pointer reads zeros or faults: never the secret.
 * The child exits 0 if every byte read as zero, 3 if any byte was not zero;
 * a SIGSEGV is the other acceptable outcome. */
struct stale {
    size_t n;
    int mode;   /* protection mode the block was in when freed */
};

OPTNONE static void child_read_after_free(void *arg)
{
    const struct stale *s = arg;
    unsigned char *p = zz_alloc(s->n);
    child_check(p != NULL);
    tu_fill_secret(p, 0x5EC2E7ull + s->n, s->n & ~(size_t)7);
    memset(p + (s->n & ~(size_t)7), 0xA7, s->n & 7);
    child_check(zz_protect(p, s->mode) == 0);
    zz_free(p);
    unsigned char acc = 0;
    for (size_t i = 0; i < s->n; i++)
        acc |= VREAD(p + i);
    tu_child_exit(acc == 0 ? 0 : 3);
}

static void test_free_stale_read_zero_or_fault(void **state)
{
    (void)state;
    const size_t ns[] = { 8, 64, 100, 4096, 70000 };
    const int modes[] = { ZZ_READWRITE, ZZ_READONLY, ZZ_NOACCESS };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        for (size_t m = 0; m < 3; m++) {
            struct stale s = { ns[i], modes[m] };
            struct tu_child_result r;
            assert_int_equal(tu_run_child(child_read_after_free, &s, &r), 0);
            int ok = (r.exited && r.exit_code == 0) || (r.signaled && r.signal == SIGSEGV);
            if (!ok) {
                tu_describe_child(&r, __FILE__, __LINE__);
                print_error("size %zu mode %d: stale read saw non-zero bytes (exit 3) or died "
                            "otherwise\n",
                            ns[i], modes[m]);
                fail();
            }
            assert_int_equal(r.err_len, 0);
        }
    }
}

/* ---- fatal messages name the real cause (issue 11, defect 11) ------------ */

/* A big block (a mapping of its own) freed twice after n other big frees:
 * 53bd339 remembered only the last 64 unmapped blocks and then said "invalid
 * pointer". */
static void child_big_double_free_after(void *arg)
{
    size_t others = *(const size_t *)arg;
    void **big = calloc(others + 1, sizeof *big);
    child_check(big != NULL);
    for (size_t i = 0; i <= others; i++) {
        big[i] = zz_alloc(100000);
        child_check(big[i] != NULL);
    }
    for (size_t i = 0; i <= others; i++)
        zz_free(big[i]);
    zz_free(big[0]);
}

static void test_free_big_double_free_after_many_aborts(void **state)
{
    (void)state;
    static size_t others[] = { 64, 65, 200 };
    int failures = 0;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        if (!fatal_ok(child_big_double_free_after, &others[i], "zeroize: double free")) {
            print_error("  ^ after %zu other big blocks were freed\n", others[i]);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* A slot that was never handed out is not a double free.  The parent of this
 * program never allocates, so in the child the first zz_alloc(32) takes the
 * first slot of a fresh slab, and one slot stride (a data page and a guard
 * page) further lie the positions a block of the next, never used, slot
 * would have: the same offset (a 32-byte block), and the end of its data
 * page (a 0-byte block, where 53bd339 said "double free"). */
static void child_free_never_used_slot(void *arg)
{
    const size_t *offset = arg;
    unsigned char *p = zz_alloc(32);
    child_check(p != NULL);
    zz_free(p + 2 * tu_page_size() + *offset);
}

static void test_free_never_used_slot_is_invalid_pointer(void **state)
{
    (void)state;
    static size_t offsets[] = { 0, 32 };
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++)
        expect_fatal(child_free_never_used_slot, &offsets[i], "zeroize: invalid pointer");
}

/* A double free of a block whose slab was unmapped after it was freed
 * (issue 19, item 4): zeroize.h promises "double free" for the last 4,096
 * unmapped blocks, whichever way the slab went.  5c03a46 remembered only the
 * block whose free emptied a slab, and said "invalid pointer" for the others:
 * a slab trimmed when its class went idle (decay 0), let go by a thread
 * cache at thread exit, dropped because a lock was refused (a finite
 * RLIMIT_MEMLOCK), or given back by zz_trim. */
enum unmap_way { UNMAP_IDLE_CLASS, UNMAP_THREAD_EXIT, UNMAP_LOCK_REFUSED, UNMAP_TRIM, UNMAP_WAYS };
static const char *const unmap_way_name[] = { "class gone idle (decay 0)", "thread exit",
                                              "lock refused", "zz_trim" };
#define UNMAP_BURST 600

struct unmap_case {
    enum unmap_way way;
    size_t which; /* the block freed again: an index into the burst */
};

static void *burst_thread(void *arg)
{
    void **p = arg;
    for (size_t i = 0; i < UNMAP_BURST; i++)
        if ((p[i] = zz_alloc(32)) == NULL)
            return NULL;
    for (size_t i = 0; i < UNMAP_BURST; i++)
        zz_free(p[i]);
    return arg;
}

static void child_double_free_after_unmap(void *arg)
{
    const struct unmap_case *c = arg;
    void *p[UNMAP_BURST];
    zz_stats before, after;
    if (c->way == UNMAP_IDLE_CLASS || c->way == UNMAP_THREAD_EXIT)
        child_check(zz_set_cache_decay_ms(0) == 0);
    if (c->way == UNMAP_LOCK_REFUSED)
        child_check(tu_drop_ipc_lock(8u << 20) == 0);
    if (c->way == UNMAP_THREAD_EXIT) {
        pthread_t t;
        void *ok = NULL;
        child_check(pthread_create(&t, NULL, burst_thread, p) == 0);
        child_check(pthread_join(t, &ok) == 0 && ok == p);
    } else {
        child_check(burst_thread(p) == p);
    }
    zz_get_stats(&before);
    if (c->way == UNMAP_LOCK_REFUSED) {
        /* a mapping that fits in the limit only once the cache gives way */
        size_t big = (8u << 20) - before.locked_bytes / 2;
        void *q = zz_alloc(big);
        child_check(q != NULL);
        zz_free(q);
    }
    if (c->way == UNMAP_TRIM)
        zz_trim();
    zz_get_stats(&after);
    child_check(after.cached_bytes < (size_t)UNMAP_BURST * 4096); /* the burst's slabs are gone */
    zz_free(p[c->which]);
}

static void test_free_double_free_after_slab_unmapped_aborts(void **state)
{
    (void)state;
    int failures = 0;
    for (int w = 0; w < UNMAP_WAYS; w++) {
        size_t which[] = { 0, UNMAP_BURST / 2, UNMAP_BURST - 1 };
        for (size_t k = 0; k < sizeof which / sizeof which[0]; k++) {
            struct unmap_case c = { (enum unmap_way)w, which[k] };
            if (!fatal_ok(child_double_free_after_unmap, &c, "zeroize: double free")) {
                print_error("  ^ block %zu of %d freed again after: %s\n", which[k], UNMAP_BURST,
                            unmap_way_name[w]);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);
}

/* zz_size and zz_info on a freed block: a use after free, not a double
 * free. */
struct after_free {
    size_t n;
    int info; /* zz_info instead of zz_size */
};

static void child_query_after_free(void *arg)
{
    const struct after_free *a = arg;
    void *p = zz_alloc(a->n);
    child_check(p != NULL);
    void *keep = zz_alloc(a->n); /* the slab stays mapped */
    child_check(keep != NULL);
    zz_free(p);
    if (a->info)
        (void)zz_info(p);
    else
        (void)zz_size(p);
}

static void test_size_and_info_after_free_abort(void **state)
{
    (void)state;
    static struct after_free cases[] = { { 32, 0 },   { 32, 1 },     { 0, 0 },      { 5000, 0 },
                                         { 5000, 1 }, { 100000, 0 }, { 100000, 1 } };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!fatal_ok(child_query_after_free, &cases[i],
                      "zeroize: use after free (the block was already freed)")) {
            print_error("  ^ %s of a freed block of %zu bytes\n",
                        cases[i].info ? "zz_info" : "zz_size", cases[i].n);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_double_free_aborts),
        cmocka_unit_test(test_free_double_free_after_traffic_aborts),
        cmocka_unit_test(test_free_interior_pointer_aborts),
        cmocka_unit_test(test_free_malloc_pointer_aborts),
        cmocka_unit_test(test_free_stack_pointer_aborts),
        cmocka_unit_test(test_free_foreign_mapping_aborts),
        cmocka_unit_test(test_size_foreign_pointer_aborts),
        cmocka_unit_test(test_info_interior_pointer_aborts),
        cmocka_unit_test(test_realloc_freed_pointer_aborts),
        cmocka_unit_test(test_realloc_malloc_pointer_aborts),
        cmocka_unit_test(test_free_stale_read_zero_or_fault),
        cmocka_unit_test(test_free_big_double_free_after_many_aborts),
        cmocka_unit_test(test_free_never_used_slot_is_invalid_pointer),
        cmocka_unit_test(test_free_double_free_after_slab_unmapped_aborts),
        cmocka_unit_test(test_size_and_info_after_free_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
