/* zz_alloc, zz_alloc_aligned, zz_realloc, zz_size, zz_info: the properties
 * that can be checked without crashing (the guard pages and canaries are
 * exercised in test_guards.c). */
#include "test_util.h"

static const size_t sizes[] = { 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 100, 255, 256, 1000,
                                4080, 4095, 4096, 4097, 8191, 8192, 10000, 65536, 70000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_alloc_zero_filled_and_aligned(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        assert_int_equal(zz_is_zero(p, sizes[i]), 1);
        memset(p, 0xEE, sizes[i]);   /* the whole block is writable */
        zz_free(p);
    }
}

/* A block handed out again from the cache is zero-filled too. */
static void test_alloc_reused_slot_is_zero(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        memset(p, 0x77, sizes[i]);
        zz_free(p);
        unsigned char *q = zz_alloc(sizes[i]);
        assert_non_null(q);
        assert_int_equal(zz_is_zero(q, sizes[i]), 1);
        zz_free(q);
    }
}

/* The end of the block lies within 15 bytes of a page boundary (the trailing
 * guard page begins there). */
static void test_alloc_block_ends_near_page_end(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        uintptr_t end = (uintptr_t)p + sizes[i];
        uintptr_t next_page = (end + pg - 1) & ~(uintptr_t)(pg - 1);
        assert_true(next_page - end <= 15);
        assert_int_equal((uintptr_t)p + tu_round16(sizes[i]), next_page);
        zz_free(p);
    }
}

static void test_alloc_size_reports_request(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        void *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal(zz_size(p), sizes[i]);
        zz_free(p);
    }
    assert_int_equal(zz_size(NULL), 0);
}

/* The VMA holding the block is locked, not dumped, wiped on fork.
 * Measured on Linux 6.18: both guard paths lock with mlock2(MLOCK_ONFAULT),
 * which smaps shows as "lo lf" (VM_LOCKED | VM_LOCKONFAULT); the default path
 * adds "gu" (the VMA holds MADV_GUARD_INSTALL guard regions), e.g.
 * "rd wr mr mw me gu lo lf ac wf dd".  With ONFAULT, "Locked:" counts only
 * pages already faulted in, so the block is touched first.  "lo" is the
 * contract (mlock) and is asserted, "lf" is an implementation choice and is
 * not. */
static void test_alloc_pages_locked_dontdump_wipeonfork(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        p[0] = 1;   /* make sure the page is faulted in (onfault locking) */
        struct tu_vma v;
        assert_int_equal(tu_smaps_vma(p, &v), 0);
        if (!tu_has_flag(v.vmflags, "lo") || !tu_has_flag(v.vmflags, "dd")
            || !tu_has_flag(v.vmflags, "wf")) {
            print_error("size %zu: VmFlags \"%s\"\n", sizes[i], v.vmflags);
            fail();
        }
        assert_true(v.locked_kb >= 4);
        zz_free(p);
    }
}

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* Does this kernel flag a VMA that holds guard regions with "gu" in smaps? */
static int kernel_shows_gu(void)
{
    size_t pg = tu_page_size();
    unsigned char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 0;
    int shows = madvise(m, pg, MADV_GUARD_INSTALL) == 0 && tu_addr_has_flag(m + pg, "gu");
    munmap(m, 2 * pg);
    return shows;
}

/* mlock2(MLOCK_ONFAULT) works?  (valgrind 3.19 does not know the syscall.) */
static int have_mlock2(void)
{
    size_t pg = tu_page_size();
    void *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 0;
    int ok = syscall(SYS_mlock2, m, pg, 1 /* MLOCK_ONFAULT */) == 0;
    munmap(m, pg);
    return ok;
}

/* On the default path the guards are guard regions inside the block's own
 * VMA (no VMA per guard); on the mprotect path they are separate PROT_NONE
 * VMAs and the block's VMA has none.  The library takes the default path
 * when the kernel has both MADV_GUARD_INSTALL and mlock2, unless
 * ZEROIZE_GUARDS=mprotect. */
static void test_alloc_guard_kind_matches_path(void **state)
{
    (void)state;
    if (!kernel_shows_gu()) {
        print_message("skipped: this kernel does not show guard regions in smaps\n");
        skip();
    }
    int guard_regions = !tu_mprotect_mode() && have_mlock2();
    unsigned char *p = zz_alloc(32);
    assert_non_null(p);
    struct tu_vma v;
    assert_int_equal(tu_smaps_vma(p, &v), 0);
    if (!guard_regions) {
        assert_false(tu_has_flag(v.vmflags, "gu"));
        struct tu_vma next;
        assert_int_equal(tu_smaps_vma(p + 32, &next), 0);
        assert_memory_equal(next.perms, "---", 3);
    } else {
        assert_true(tu_has_flag(v.vmflags, "gu"));
    }
    zz_free(p);
}

static void test_alloc_info_reports_protections(void **state)
{
    (void)state;
    unsigned want = ZZ_INFO_LOCKED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK | ZZ_INFO_GUARDED;
    for (size_t i = 0; i < NSIZES; i++) {
        void *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        unsigned info = zz_info(p);
        if ((info & want) != want) {
            print_error("size %zu: zz_info %#x lacks %#x\n", sizes[i], info, want & ~info);
            fail();
        }
        zz_free(p);
    }
    assert_int_equal(zz_info(NULL), 0);
}

/* zz_info tells the truth: what it claims matches smaps. */
static void test_alloc_info_matches_smaps(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(40);
    assert_non_null(p);
    unsigned info = zz_info(p);
    assert_int_equal(!!(info & ZZ_INFO_LOCKED), tu_addr_has_flag(p, "lo"));
    assert_int_equal(!!(info & ZZ_INFO_DONTDUMP), tu_addr_has_flag(p, "dd"));
    assert_int_equal(!!(info & ZZ_INFO_WIPEONFORK), tu_addr_has_flag(p, "wf"));
    zz_free(p);
}

static void test_alloc_zero_size_unique_pointers(void **state)
{
    (void)state;
    enum { N = 64 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = zz_alloc(0);
        assert_non_null(p[i]);
        assert_int_equal(zz_size(p[i]), 0);
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(p[i], p[j]);
    }
    for (int i = 0; i < N; i++)
        zz_free(p[i]);
}

/* Each size in its own child: a library that aborts instead of failing
 * (seen under valgrind, whose mmap answers EINVAL where the kernel says
 * ENOMEM) then fails this test alone, with its stderr shown. */
static void child_alloc_huge(void *arg)
{
    const size_t *n = arg;
    errno = 0;
    void *p = zz_alloc(*n);
    child_check(p == NULL);
    child_check(errno == ENOMEM);
    child_check(strlen(zz_last_error()) > 0);
    p = zz_alloc_aligned(*n, 64);
    child_check(p == NULL);
    child_check(errno == ENOMEM);
}

static void test_alloc_huge_sizes_fail_enomem(void **state)
{
    (void)state;
    size_t huge[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 16, SIZE_MAX - 4095,
                      SIZE_MAX - 4096, SIZE_MAX - 8192, SIZE_MAX / 2 + 1, SIZE_MAX / 2,
                      (size_t)1 << 62, (size_t)1 << 48 };
    int failures = 0;
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        struct tu_child_result r;
        assert_int_equal(tu_run_child(child_alloc_huge, &huge[i], &r), 0);
        if (!r.exited || r.exit_code != 0) {
            tu_describe_child(&r, __FILE__, __LINE__);
            print_error("  ^ zz_alloc(%#zx)\n", huge[i]);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_alloc_aligned_alignment_honoured(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    for (size_t a = 1; a <= pg; a *= 2) {
        for (size_t n = 1; n < 200; n += 37) {
            unsigned char *p = zz_alloc_aligned(n, a);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % a, 0);
            assert_int_equal(zz_is_zero(p, n), 1);
            assert_int_equal(zz_size(p), n);
            memset(p, 0x11, n);
            zz_free(p);
        }
    }
}

static void test_alloc_aligned_bad_alignment_einval(void **state)
{
    (void)state;
    const size_t bad[] = { 0, 3, 24, 48, 8192, 1u << 20 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = zz_alloc_aligned(32, bad[i]);
        assert_null(p);
        assert_int_equal(errno, EINVAL);
    }
}

static void test_realloc_keeps_prefix_and_size(void **state)
{
    (void)state;
    unsigned char *p = zz_realloc(NULL, 10);
    assert_non_null(p);
    assert_int_equal(zz_size(p), 10);
    for (int i = 0; i < 10; i++)
        p[i] = (unsigned char)(i + 1);
    unsigned char *q = zz_realloc(p, 5000);
    assert_non_null(q);
    assert_int_equal(zz_size(q), 5000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(q[i], i + 1);
    assert_int_equal(zz_is_zero(q + 10, 4990), 1);
    unsigned char *r = zz_realloc(q, 3);
    assert_non_null(r);
    assert_int_equal(zz_size(r), 3);
    assert_int_equal(r[0], 1);
    assert_int_equal(r[2], 3);
    zz_free(r);
}

static void test_realloc_failure_keeps_block(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(20);
    assert_non_null(p);
    memset(p, 0x42, 20);
    errno = 0;
    assert_null(zz_realloc(p, SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(zz_size(p), 20);
    for (int i = 0; i < 20; i++)
        assert_int_equal(p[i], 0x42);
    zz_free(p);
}

static void test_alloc_version_matches_header(void **state)
{
    (void)state;
    assert_string_equal(zz_version(), ZEROIZE_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_zero_filled_and_aligned),
        cmocka_unit_test(test_alloc_reused_slot_is_zero),
        cmocka_unit_test(test_alloc_block_ends_near_page_end),
        cmocka_unit_test(test_alloc_size_reports_request),
        cmocka_unit_test(test_alloc_pages_locked_dontdump_wipeonfork),
        cmocka_unit_test(test_alloc_guard_kind_matches_path),
        cmocka_unit_test(test_alloc_info_reports_protections),
        cmocka_unit_test(test_alloc_info_matches_smaps),
        cmocka_unit_test(test_alloc_zero_size_unique_pointers),
        cmocka_unit_test(test_alloc_huge_sizes_fail_enomem),
        cmocka_unit_test(test_alloc_aligned_alignment_honoured),
        cmocka_unit_test(test_alloc_aligned_bad_alignment_einval),
        cmocka_unit_test(test_realloc_keeps_prefix_and_size),
        cmocka_unit_test(test_realloc_failure_keeps_block),
        cmocka_unit_test(test_alloc_version_matches_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
