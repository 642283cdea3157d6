/* zz_realloc: contents kept on growth and shrink, the old block wiped, NULL
 * acting as zz_alloc, failures leaving the block untouched, EACCES in
 * ZZ_NOACCESS mode, misuse fatal as in zz_free.
 * zz_alloc_aligned: every power-of-two alignment up to the page size, EINVAL
 * otherwise, canaries in the gap after the block. */
#include "test_util.h"

static unsigned char byte_at(size_t i)
{
    return (unsigned char)(0x21 + i * 13 + (i >> 8));
}

static void fill(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = byte_at(i);
}

static int holds_pattern(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != byte_at(i))
            return 0;
    return 1;
}

/* ---- contents ------------------------------------------------------------ */

static void test_realloc_keeps_contents(void **state)
{
    (void)state;
    /* from -> to pairs: within a page, across pages, to a dedicated mapping
     * (70000 bytes) and back, and to zero. */
    static const size_t steps[] = { 1, 32, 100, 4000, 4096, 5000, 70000, 100, 17, 16, 0, 40 };
    unsigned char *p = zz_alloc(steps[0]);
    assert_non_null(p);
    fill(p, steps[0]);
    size_t have = steps[0]; /* bytes that must still hold the pattern */
    for (size_t s = 1; s < sizeof steps / sizeof steps[0]; s++) {
        size_t n = steps[s];
        unsigned char *q = zz_realloc(p, n);
        assert_non_null(q);
        assert_int_equal(zz_size(q), n);
        size_t kept = have < n ? have : n;
        assert_true(holds_pattern(q, kept));
        assert_true(zz_is_zero(q + kept, n - kept)); /* the rest is a fresh block */
        assert_int_equal((uintptr_t)q % 16, 0);
        unsigned want = ZZ_INFO_GUARDED | ZZ_INFO_CANARY;
        assert_int_equal(zz_info(q) & want, want);
        fill(q, n);
        have = n;
        p = q;
    }
    zz_free(p);
}

static void test_realloc_null_is_alloc(void **state)
{
    (void)state;
    zz_stats s0, s1;
    zz_get_stats(&s0);
    unsigned char *p = zz_realloc(NULL, 40);
    assert_non_null(p);
    assert_int_equal(zz_size(p), 40);
    assert_true(zz_is_zero(p, 40));
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks + 1);
    assert_int_equal(s1.live_bytes, s0.live_bytes + 40);
    zz_free(p);
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
}

static void test_realloc_readonly_block(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(64);
    assert_non_null(p);
    fill(p, 64);
    assert_int_equal(zz_protect(p, ZZ_READONLY), 0);
    unsigned char *q = zz_realloc(p, 128);
    assert_non_null(q);
    assert_true(holds_pattern(q, 64));
    q[127] = 1; /* the new block is read-write */
    zz_free(q);
}

/* ---- failures leave p alone ----------------------------------------------- */

static void test_realloc_failure_keeps_block(void **state)
{
    (void)state;
    static const size_t too_big[] = { SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2 };
    unsigned char *p = zz_alloc(100);
    assert_non_null(p);
    fill(p, 100);
    zz_stats s0, s1;
    zz_get_stats(&s0);
    for (size_t i = 0; i < sizeof too_big / sizeof too_big[0]; i++) {
        errno = 0;
        assert_null(zz_realloc(p, too_big[i]));
        assert_int_equal(errno, ENOMEM);
        assert_true(strlen(zz_last_error()) > 0);
        assert_int_equal(zz_size(p), 100);
        assert_true(holds_pattern(p, 100));
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
    zz_free(p); /* still valid: no canary report, no double free */
}

static void test_realloc_noaccess_is_eacces(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(48);
    assert_non_null(p);
    fill(p, 48);
    assert_int_equal(zz_protect(p, ZZ_NOACCESS), 0);
    errno = 0;
    assert_null(zz_realloc(p, 96));
    assert_int_equal(errno, EACCES);
    /* its own code and words (issue 19, item 6b): not an invalid argument */
    assert_int_equal(zz_last_error_code(), ZZ_ERR_NOACCESS);
    assert_non_null(strstr(zz_last_error(), "ZZ_NOACCESS"));
    assert_non_null(strstr(zz_last_error(), "zz_protect"));
    /* untouched and still in its mode */
    struct tu_vma v;
    assert_int_equal(tu_smaps_vma(p, &v), 0);
    assert_int_equal(v.perms[0], '-');
    assert_int_equal(zz_protect(p, ZZ_READWRITE), 0);
    assert_true(holds_pattern(p, 48));
    assert_int_equal(zz_size(p), 48);
    zz_free(p);
}

/* ---- the old block is wiped ----------------------------------------------- */

struct stale {
    size_t from, to;
};

/* Reads the old block after zz_realloc: zeros, or a fault (SIGSEGV), never
 * the secret. */
static OPTNONE void child_read_old_block(void *arg)
{
    const struct stale *st = arg;
    unsigned char *p = zz_alloc(st->from);
    child_check(p != NULL);
    memset(p, 0xC3, st->from);
    unsigned char *q = zz_realloc(p, st->to);
    child_check(q != NULL);
#if defined(ZZ_TEST_HAVE_MEMCHECK_H)
    VALGRIND_DISABLE_ERROR_REPORTING; /* the read after free is the point */
#endif
    unsigned char acc = 0;
    for (size_t i = 0; i < st->from; i++)
        acc |= VREAD(p + i);
#if defined(ZZ_TEST_HAVE_MEMCHECK_H)
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
    child_check(acc == 0);
}

static void test_realloc_wipes_old_block(void **state)
{
    (void)state;
    static struct stale cases[] = { { 64, 128 }, { 64, 16 }, { 4096, 5000 }, { 70000, 64 },
                                    { 100, 70000 } };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tu_child_result r;
        assert_int_equal(tu_run_child(child_read_old_block, &cases[i], &r), 0);
        int ok = (r.exited && r.exit_code == 0) || (r.signaled && r.signal == SIGSEGV);
        if (!ok) {
            tu_describe_child(&r, __FILE__, __LINE__);
            print_error("  ^ zz_realloc from %zu to %zu bytes\n", cases[i].from, cases[i].to);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* After zz_realloc the secret exists exactly once (in the new block); after
 * zz_free, nowhere. */
static void test_realloc_leaves_one_copy(void **state)
{
    (void)state;
    const uint64_t seed = 0x4EA110CA7Eull;
    enum { LEN = 48 };
    unsigned char *p = zz_alloc(LEN);
    assert_non_null(p);
    tu_fill_secret(p, seed, LEN);
    assert_int_equal(tu_scan_memory(seed, LEN, NULL), 1);
    unsigned char *q = zz_realloc(p, 3000);
    assert_non_null(q);
    assert_int_equal(tu_scan_memory(seed, LEN, NULL), 1);
    unsigned char *r = zz_realloc(q, LEN);
    assert_non_null(r);
    assert_int_equal(tu_scan_memory(seed, LEN, NULL), 1);
    zz_free(r);
    assert_int_equal(tu_scan_memory(seed, LEN, NULL), 0);
}

/* ---- misuse ------------------------------------------------------------------ */

enum realloc_misuse { RM_FREED, RM_MALLOCED, RM_INTERIOR, RM_ARENA, RM_OVERFLOW, RM_UNDERFLOW };

static OPTNONE void child_realloc_misuse(void *arg)
{
    enum realloc_misuse kind = *(const enum realloc_misuse *)arg;
    unsigned char *p = zz_alloc(40);
    child_check(p != NULL);
    void *m = malloc(16);
    zz_arena *a = zz_arena_create(0);
    child_check(m != NULL && a != NULL);
    void *ab = zz_arena_alloc(a, 40);
    child_check(ab != NULL);
    void *q = NULL;
    switch (kind) {
    case RM_FREED:
        zz_free(p);
        q = zz_realloc(p, 80);
        break;
    case RM_MALLOCED:
        q = zz_realloc(m, 80);
        break;
    case RM_INTERIOR:
        q = zz_realloc(p + 16, 80);
        break;
    case RM_ARENA:
        q = zz_realloc(ab, 80);
        break;
    case RM_OVERFLOW:
        VWRITE(p + 40, VREAD(p + 40) ^ 0x5A); /* never the byte already there */
        q = zz_realloc(p, 80);
        break;
    case RM_UNDERFLOW:
        VWRITE(p - 1, VREAD(p - 1) ^ 0x5A); /* never the byte already there */
        q = zz_realloc(p, 80);
        break;
    }
    (void)q;
}

static void test_realloc_misuse_aborts(void **state)
{
    (void)state;
    static struct {
        enum realloc_misuse kind;
        const char *line;
    } cases[] = {
        { RM_FREED, "zeroize: double free" },
        { RM_MALLOCED, "zeroize: invalid pointer" },
        { RM_INTERIOR, "zeroize: invalid pointer" },
        { RM_ARENA, "zeroize: invalid pointer" },
        { RM_OVERFLOW, "zeroize: canary corrupted (after block)" },
        { RM_UNDERFLOW, "zeroize: canary corrupted (before block)" },
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!fatal_ok(child_realloc_misuse, &cases[i].kind, cases[i].line)) {
            print_error("  ^ case %zu\n", i);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* ---- zz_alloc_aligned ----------------------------------------------------------- */

static void test_aligned_alignments_honoured(void **state)
{
    (void)state;
    static const size_t sizes[] = { 0, 1, 16, 100, 4095, 4096, 5000, 70000 };
    size_t page = tu_page_size();
    for (size_t al = 1; al <= page; al *= 2) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            unsigned char *p = zz_alloc_aligned(n, al);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % (al < 16 ? 16 : al), 0);
            assert_int_equal(zz_size(p), n);
            assert_true(zz_is_zero(p, n));
            unsigned want = ZZ_INFO_GUARDED | ZZ_INFO_CANARY;
            assert_int_equal(zz_info(p) & want, want);
            memset(p, 0x6B, n); /* every byte writable */
            zz_free(p);
        }
    }
}

static void test_aligned_bad_alignment_is_einval(void **state)
{
    (void)state;
    size_t page = tu_page_size();
    const size_t bad[] = { 0, 3, 24, 48, 100, 2 * page, 8192 == page ? 16384 : 8192, SIZE_MAX,
                           (size_t)1 << 63 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_null(zz_alloc_aligned(32, bad[i]));
        assert_int_equal(errno, EINVAL);
    }
    errno = 0;
    assert_null(zz_alloc_aligned(SIZE_MAX, 64));
    assert_int_equal(errno, ENOMEM);
}

struct aligned_write {
    size_t n, alignment;
    size_t offset; /* p[offset] is written */
};

static OPTNONE void child_aligned_overflow(void *arg)
{
    const struct aligned_write *w = arg;
    unsigned char *p = zz_alloc_aligned(w->n, w->alignment);
    child_check(p != NULL);
    VWRITE(p + w->offset, VREAD(p + w->offset) ^ 0x77); /* never the byte already there */
    zz_free(p);
}

static void test_aligned_canary_after_block(void **state)
{
    (void)state;
    /* the byte just past the block, and the last byte of the gap before the
     * guard page (the block is padded to a multiple of the alignment) */
    static struct aligned_write cases[] = { { 100, 256, 100 }, { 100, 256, 255 },
                                            { 1, 4096, 1 },    { 1, 4096, 4095 },
                                            { 5000, 1024, 5000 }, { 33, 64, 63 } };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!fatal_ok(child_aligned_overflow, &cases[i],
                      "zeroize: canary corrupted (after block)")) {
            print_error("  ^ n=%zu alignment=%zu write at p[%zu]\n", cases[i].n,
                        cases[i].alignment, cases[i].offset);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Past the padded end lies the guard page. */
static OPTNONE void child_aligned_past_padding(void *arg)
{
    const struct aligned_write *w = arg;
    unsigned char *p = zz_alloc_aligned(w->n, w->alignment);
    child_check(p != NULL);
    VWRITE(p + w->offset, VREAD(p + w->offset) ^ 0x77); /* never the byte already there */
}

static void test_aligned_guard_after_padding(void **state)
{
    (void)state;
    static struct aligned_write w = { 100, 256, 256 };
    expect_segv(child_aligned_past_padding, &w);
}

/* ---- realloc keeps the block's backend and alignment (issue 11, defect 4) -- */
/* On 53bd339 zz_realloc allocated the new block with zz_alloc: the
 * process-wide backend and 16-byte alignment, whatever the old block had. */

/* 0 if /proc/self/mem reads n bytes at p (and they equal p's), else the
 * errno of the refused read. */
static int proc_mem_read_errno(const unsigned char *p, size_t n)
{
    int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    unsigned char buf[256];
    assert_true(n <= sizeof buf);
    errno = 0;
    ssize_t got = pread(fd, buf, n, (off_t)(uintptr_t)p);
    int e = got < 0 ? errno : 0;
    close(fd);
    if (got >= 0) {
        assert_int_equal(got, (ssize_t)n);
        assert_memory_equal(buf, p, n);
    }
    return e;
}

static void test_realloc_keeps_secretmem_backend(void **state)
{
    (void)state;
    if (!tu_have_secretmem()) {
        print_message("skipped: no memfd_secret on this kernel\n");
        skip();
    }
    assert_int_equal(zz_get_backend(), ZZ_BACKEND_ANON);
    unsigned char *p = zz_alloc_backend(32, ZZ_BACKEND_SECRETMEM);
    assert_non_null(p);
    assert_int_equal(zz_info(p) & ZZ_INFO_SECRETMEM, ZZ_INFO_SECRETMEM);
    fill(p, 32);
    size_t have = 32;
    static const size_t steps[] = { 64, 9000, 100000, 100, 16 };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        size_t n = steps[s];
        unsigned char *q = zz_realloc(p, n);
        assert_non_null(q);
        unsigned info = zz_info(q);
        if (!(info & ZZ_INFO_SECRETMEM))
            print_error("zz_realloc(p, %zu) of a secretmem block: zz_info 0x%x, no "
                        "ZZ_INFO_SECRETMEM\n",
                        n, info);
        assert_int_equal(info & ZZ_INFO_SECRETMEM, ZZ_INFO_SECRETMEM);
        size_t keep = have < n ? have : n;
        assert_true(holds_pattern(q, keep));
        fill(q, n);
        have = n;
        int e = proc_mem_read_errno(q, n < 64 ? n : 64);
        if (e != EIO && e != EFAULT)
            print_error("/proc/self/mem read the block after zz_realloc(p, %zu) (errno %d)\n", n,
                        e);
        assert_true(e == EIO || e == EFAULT);
        p = q;
    }
    zz_free(p);
}

/* The other way: an anon block stays anon while the process-wide backend is
 * secretmem. */
static void test_realloc_keeps_anon_backend(void **state)
{
    (void)state;
    if (!tu_have_secretmem()) {
        print_message("skipped: no memfd_secret on this kernel\n");
        skip();
    }
    unsigned char *p = zz_alloc_backend(32, ZZ_BACKEND_ANON);
    assert_non_null(p);
    fill(p, 32);
    assert_int_equal(zz_set_backend(ZZ_BACKEND_SECRETMEM), 0);
    unsigned char *q = zz_realloc(p, 64);
    unsigned char *r = q != NULL ? zz_realloc(q, 9000) : NULL;
    assert_int_equal(zz_set_backend(ZZ_BACKEND_ANON), 0);
    assert_non_null(q);
    assert_non_null(r);
    assert_int_equal(zz_info(r) & ZZ_INFO_SECRETMEM, 0);
    assert_true(holds_pattern(r, 32));
    assert_int_equal(proc_mem_read_errno(r, 32), 0);
    zz_free(r);
}

/* A zz_alloc_aligned block keeps its alignment through realloc, growing into
 * a big block (a mapping of its own) and back, and keeps its contents. */
static void test_realloc_keeps_alignment(void **state)
{
    (void)state;
    static const size_t alignments[] = { 256, 32, 64, 1024, 4096 };
    static const size_t steps[] = { 300, 100000, 100, 5000, 1 };
    for (size_t a = 0; a < sizeof alignments / sizeof alignments[0]; a++) {
        size_t al = alignments[a];
        unsigned char *p = zz_alloc_aligned(100, al);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % al, 0);
        fill(p, 100);
        size_t have = 100;
        for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
            size_t n = steps[s];
            unsigned char *q = zz_realloc(p, n);
            assert_non_null(q);
            if ((uintptr_t)q % al != 0)
                print_error("zz_realloc to %zu bytes of a block aligned to %zu: %p\n", n, al,
                            (void *)q);
            assert_int_equal((uintptr_t)q % al, 0);
            assert_true(holds_pattern(q, have < n ? have : n));
            fill(q, n);
            have = n;
            p = q;
        }
        zz_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realloc_keeps_contents),
        cmocka_unit_test(test_realloc_null_is_alloc),
        cmocka_unit_test(test_realloc_readonly_block),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_realloc_noaccess_is_eacces),
        cmocka_unit_test(test_realloc_wipes_old_block),
        cmocka_unit_test(test_realloc_leaves_one_copy),
        cmocka_unit_test(test_realloc_misuse_aborts),
        cmocka_unit_test(test_aligned_alignments_honoured),
        cmocka_unit_test(test_aligned_bad_alignment_is_einval),
        cmocka_unit_test(test_aligned_canary_after_block),
        cmocka_unit_test(test_aligned_guard_after_padding),
        cmocka_unit_test(test_realloc_keeps_secretmem_backend),
        cmocka_unit_test(test_realloc_keeps_anon_backend),
        cmocka_unit_test(test_realloc_keeps_alignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
