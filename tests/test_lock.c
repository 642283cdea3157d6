/* zz_lock / zz_unlock / zz_unlock_keep on caller-owned memory. */
#include "test_util.h"

static unsigned char *map_pages(size_t pages)
{
    void *m = mmap(NULL, pages * tu_page_size(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    memset(m, 0xAA, pages * tu_page_size());   /* resident, and a known pattern */
    return m;
}

static void test_lock_shared_page_counted(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    unsigned char *page = map_pages(1);
    unsigned char *a = page + 0, *b = page + 200;
    assert_int_equal(zz_lock(a, 100), 0);
    assert_int_equal(zz_lock(b, 100), 0);
    assert_true(tu_addr_has_flag(page, "lo"));
    assert_int_equal(zz_unlock(a, 100), 0);
    assert_true(tu_addr_has_flag(page, "lo"));   /* b still holds the page */
    assert_true(tu_addr_has_flag(page, "dd"));
    assert_int_equal(zz_unlock(b, 100), 0);
    assert_false(tu_addr_has_flag(page, "lo"));
    assert_false(tu_addr_has_flag(page, "dd"));
    munmap(page, tu_page_size());
}

/* The same buffer locked twice needs two unlocks. */
static void test_lock_nested_same_range(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    unsigned char *page = map_pages(1);
    assert_int_equal(zz_lock(page + 8, 16), 0);
    assert_int_equal(zz_lock(page + 8, 16), 0);
    assert_int_equal(zz_unlock_keep(page + 8, 16), 0);
    assert_true(tu_addr_has_flag(page, "lo"));
    assert_int_equal(zz_unlock_keep(page + 8, 16), 0);
    assert_false(tu_addr_has_flag(page, "lo"));
    munmap(page, tu_page_size());
}

/* A buffer spanning three pages, overlapped at each end by another lock. */
static void test_lock_span_pages_counted_per_page(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(4);
    assert_int_equal(zz_lock(m + pg - 10, pg + 20), 0);   /* pages 0,1,2 */
    assert_int_equal(zz_lock(m + 2 * pg + 100, 10), 0);   /* page 2 */
    assert_int_equal(zz_unlock(m + pg - 10, pg + 20), 0);
    assert_false(tu_addr_has_flag(m, "lo"));
    assert_false(tu_addr_has_flag(m + pg, "lo"));
    assert_true(tu_addr_has_flag(m + 2 * pg, "lo"));
    assert_false(tu_addr_has_flag(m + 3 * pg, "lo"));
    assert_int_equal(zz_unlock(m + 2 * pg + 100, 10), 0);
    assert_false(tu_addr_has_flag(m + 2 * pg, "lo"));
    munmap(m, 4 * pg);
}

static void test_unlock_wipes_only_range(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(2);
    for (size_t off = 0; off < 20; off++) {
        for (size_t n = 1; n < 300; n += 13) {
            memset(m, 0xAA, 2 * pg);
            unsigned char *p = m + pg - 150 + off;   /* straddles the page boundary */
            assert_int_equal(zz_lock(p, n), 0);
            assert_int_equal(zz_unlock(p, n), 0);
            for (size_t i = 0; i < 2 * pg; i++) {
                int inside = m + i >= p && m + i < p + n;
                assert_int_equal(m[i], inside ? 0 : 0xAA);
            }
        }
    }
    munmap(m, 2 * pg);
}

static void test_unlock_keep_keeps_contents(void **state)
{
    (void)state;
    unsigned char *page = map_pages(1);
    assert_int_equal(zz_lock(page + 50, 100), 0);
    assert_int_equal(zz_unlock_keep(page + 50, 100), 0);
    for (size_t i = 0; i < tu_page_size(); i++)
        assert_int_equal(page[i], 0xAA);
    assert_false(tu_addr_has_flag(page, "lo"));
    munmap(page, tu_page_size());
}

/* zz_unlock of memory that was never locked only wipes. */
static void test_unlock_never_locked_only_wipes(void **state)
{
    (void)state;
    unsigned char *page = map_pages(1);
    assert_int_equal(zz_unlock(page + 10, 20), 0);
    assert_int_equal(zz_is_zero(page + 10, 20), 1);
    assert_int_equal(page[9], 0xAA);
    assert_int_equal(page[30], 0xAA);
    assert_false(tu_addr_has_flag(page, "lo"));
    munmap(page, tu_page_size());
}

static void test_lock_zero_length_ok(void **state)
{
    (void)state;
    unsigned char x[4] = { 1, 2, 3, 4 };
    assert_int_equal(zz_lock(NULL, 0), 0);
    assert_int_equal(zz_lock(x, 0), 0);
    assert_int_equal(zz_unlock(NULL, 0), 0);
    assert_int_equal(zz_unlock(x, 0), 0);
    assert_int_equal(zz_unlock_keep(x, 0), 0);
    assert_int_equal(x[0], 1);
}

static void test_lock_overflow_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_int_equal(zz_lock((void *)(UINTPTR_MAX - 10), 100), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(zz_lock((void *)4096, SIZE_MAX), -1);
    assert_int_equal(errno, EINVAL);
}

/* Stack and heap buffers work too (the documented use). */
static void test_lock_stack_buffer(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    unsigned char key[32];
    memset(key, 0x5C, sizeof key);
    assert_int_equal(zz_lock(key, sizeof key), 0);
    assert_true(tu_addr_has_flag(key, "lo"));
    assert_int_equal(zz_unlock(key, sizeof key), 0);
    assert_int_equal(zz_is_zero(key, sizeof key), 1);
}

/* Locked bytes in the stats follow the page counts. */
static void test_lock_stats_locked_bytes(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(3);
    zz_stats s0, s1, s2;
    zz_get_stats(&s0);
    assert_int_equal(zz_lock(m + 10, pg), 0);            /* pages 0 and 1 */
    zz_get_stats(&s1);
    assert_int_equal(s1.locked_bytes - s0.locked_bytes, 2 * pg);
    assert_int_equal(zz_lock(m + pg + 5, 10), 0);        /* page 1 again: no change */
    zz_get_stats(&s2);
    assert_int_equal(s2.locked_bytes, s1.locked_bytes);
    assert_int_equal(zz_unlock(m + 10, pg), 0);
    assert_int_equal(zz_unlock(m + pg + 5, 10), 0);
    zz_get_stats(&s2);
    assert_int_equal(s2.locked_bytes, s0.locked_bytes);
    munmap(m, 3 * pg);
}

/* Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 64 KiB, locking 1 MiB
 * fails with an mlock errno and leaves nothing locked (an earlier, small lock
 * stays as it was). */
static void child_lock_over_limit(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(64 * 1024) == 0);
    size_t big = 1u << 20;
    unsigned char *small = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(small != MAP_FAILED && m != MAP_FAILED);
    memset(m, 1, big);
    long vmlck0 = tu_status_kb("VmLck");
    child_check(zz_lock(small, 100) == 0);
    long vmlck1 = tu_status_kb("VmLck");
    child_check(vmlck1 == vmlck0 + 4);
    errno = 0;
    child_check(zz_lock(m, big) == -1);
    child_check(errno == ENOMEM || errno == EAGAIN || errno == EPERM);
    child_check(strstr(zz_last_error(), "RLIMIT_MEMLOCK") != NULL);
    child_check(zz_last_error_code() == ZZ_ERR_MEMLOCK);
    child_check(tu_status_kb("VmLck") == vmlck1);
    child_check(!tu_addr_has_flag(m, "lo"));
    child_check(!tu_addr_has_flag(m + big - 1, "lo"));
    child_check(!tu_addr_has_flag(m, "dd"));
    child_check(tu_addr_has_flag(small, "lo"));
    /* and the failure did not corrupt the page counts: small unlocks fully */
    child_check(zz_unlock(small, 100) == 0);
    child_check(tu_status_kb("VmLck") == vmlck0);
    /* a range partly locked already (small page again + the big one) */
    child_check(zz_lock(small, 100) == 0);
    child_check(zz_lock(m + big - 4096, 4096 + 0) == 0);
    errno = 0;
    child_check(zz_lock(m, big) == -1);
    child_check(tu_addr_has_flag(m + big - 4096, "lo"));   /* the earlier lock survives */
    child_check(!tu_addr_has_flag(m, "lo"));
    child_check(zz_unlock(m + big - 4096, 4096) == 0);
    child_check(zz_unlock(small, 100) == 0);
    child_check(tu_status_kb("VmLck") == vmlck0);
}

static void test_lock_over_rlimit_fails_cleanly(void **state)
{
    (void)state;
    SKIP_IF_MLOCK_INTERCEPTED();
    expect_child_ok(child_lock_over_limit, NULL);
}

/* ---- ranges that wrap or are not mapped (issue 11, defect 7) ------------- */
/* On 53bd339 zz_lock((void *)-4096, 4096) hung while holding the lockref
 * mutex (the range check used a + n - 1 and the page walk wrapped past
 * 2^64); every call runs under alarm(5) in a child. */
struct range {
    uintptr_t p;
    size_t n;
};

static void child_wrapping_ranges(void *arg)
{
    (void)arg;
    alarm(5);
    static const struct range wrap[] = {
        { (uintptr_t)-4096, 4096 }, { (uintptr_t)-1, 1 },        { (uintptr_t)-16, 32 },
        { (uintptr_t)-4096, 8192 }, { (uintptr_t)-4095, 4096 }, { 4096, SIZE_MAX },
        { (uintptr_t)-4096, SIZE_MAX },
    };
    for (size_t i = 0; i < sizeof wrap / sizeof wrap[0]; i++) {
        void *p = (void *)wrap[i].p;
        size_t n = wrap[i].n;
        errno = 0;
        child_check(zz_lock(p, n) == -1);
        child_check(errno == EINVAL);
        errno = 0;
        child_check(zz_unlock(p, n) == -1); /* nothing wiped either: it would fault */
        child_check(errno == EINVAL);
        errno = 0;
        child_check(zz_unlock_keep(p, n) == -1);
        child_check(errno == EINVAL);
    }
    /* and no lock was left held: the next call works */
    unsigned char buf[64];
    memset(buf, 0x5A, sizeof buf);
    child_check(zz_lock(buf, sizeof buf) == 0);
    child_check(zz_unlock(buf, sizeof buf) == 0);
    child_check(zz_is_zero(buf, sizeof buf));
}

static void test_lock_wrapping_range_einval_at_once(void **state)
{
    (void)state;
    expect_child_ok(child_wrapping_ranges, NULL);
}

/* mmap 3 pages, unmap the middle one, zz_lock all 3: ENOMEM, a zz_last_error
 * that names the unmapped range ("0x%lx" of its start) and not the lock
 * limit, and nothing left locked. */
static void child_unmapped_range(void *arg)
{
    (void)arg;
    size_t pg = tu_page_size();
    unsigned char warm[32]; /* the library's own set-up happens before the hole */
    child_check(zz_lock(warm, sizeof warm) == 0 && zz_unlock(warm, sizeof warm) == 0);
    unsigned char *m = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    child_check(m != MAP_FAILED);
    memset(m, 0x11, 3 * pg);
    child_check(munmap(m + pg, pg) == 0);
    long vmlck0 = tu_status_kb("VmLck");
    errno = 0;
    child_check(zz_lock(m, 3 * pg) == -1);
    child_check(errno == ENOMEM);
    const char *msg = zz_last_error();
    char start[32];
    snprintf(start, sizeof start, "0x%lx", (unsigned long)(uintptr_t)(m + pg));
    if (strstr(msg, "not mapped") == NULL || strstr(msg, start) == NULL ||
        strstr(msg, "RLIMIT_MEMLOCK") != NULL)
        fprintf(stderr, "zz_last_error() for the hole at %s: \"%s\"\n", start, msg);
    child_check(strstr(msg, "not mapped") != NULL);
    child_check(strstr(msg, start) != NULL);
    child_check(strstr(msg, "RLIMIT_MEMLOCK") == NULL);
    child_check(zz_last_error_code() == ZZ_ERR_UNMAPPED);
    struct tu_vma v;
    child_check(tu_smaps_vma(m, &v) == 0);
    child_check(v.locked_kb == 0 && !tu_has_flag(v.vmflags, "lo") &&
                !tu_has_flag(v.vmflags, "dd"));
    child_check(tu_smaps_vma(m + 2 * pg, &v) == 0);
    child_check(v.locked_kb == 0 && !tu_has_flag(v.vmflags, "lo"));
    child_check(tu_status_kb("VmLck") == vmlck0);
    /* no page count was left behind either: lock and unlock the first page */
    child_check(zz_lock(m, 16) == 0);
    child_check(zz_unlock(m, 16) == 0);
    child_check(tu_smaps_vma(m, &v) == 0);
    child_check(v.locked_kb == 0 && !tu_has_flag(v.vmflags, "lo"));
}

static void test_lock_unmapped_range_enomem_names_it(void **state)
{
    (void)state;
    expect_child_ok(child_unmapped_range, NULL);
}

/* ---- zz_unlock undoes only what zz_lock did (issue 11, defect 8) --------- */
/* mlock and mlockall go through syscall(): the sanitizers' runtimes turn
 * libc's into no-ops. */

static void child_callers_own_lock(void *arg)
{
    const int *keep = arg;
    size_t pg = tu_page_size();
    unsigned char *page = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    child_check(page != MAP_FAILED);
    memset(page, 0x77, pg);
    child_check(syscall(SYS_mlock, page, pg) == 0);
    child_check(madvise(page, pg, MADV_DONTDUMP) == 0);
    struct tu_vma v;
    child_check(tu_smaps_vma(page, &v) == 0);
    child_check(v.locked_kb == (long)(pg / 1024) && tu_has_flag(v.vmflags, "lo") &&
                tu_has_flag(v.vmflags, "dd"));
    child_check(zz_lock(page + 100, 32) == 0);
    child_check((*keep ? zz_unlock_keep(page + 100, 32) : zz_unlock(page + 100, 32)) == 0);
    child_check(tu_smaps_vma(page, &v) == 0);
    if (v.locked_kb != (long)(pg / 1024) || !tu_has_flag(v.vmflags, "lo") ||
        !tu_has_flag(v.vmflags, "dd"))
        fprintf(stderr, "after zz_lock + zz_unlock%s of a page the caller had locked: Locked: %ld "
                "kB, VmFlags %s\n",
                *keep ? "_keep" : "", v.locked_kb, v.vmflags);
    child_check(v.locked_kb == (long)(pg / 1024));
    child_check(tu_has_flag(v.vmflags, "lo"));
    child_check(tu_has_flag(v.vmflags, "dd"));
    /* twice, nested, the same */
    child_check(zz_lock(page + 8, 16) == 0 && zz_lock(page + 200, 16) == 0);
    child_check(zz_unlock(page + 8, 16) == 0 && zz_unlock(page + 200, 16) == 0);
    child_check(tu_smaps_vma(page, &v) == 0);
    child_check(tu_has_flag(v.vmflags, "lo") && tu_has_flag(v.vmflags, "dd"));
}

static void test_unlock_keeps_callers_own_lock(void **state)
{
    (void)state;
    static int modes[] = { 0, 1 };
    expect_child_ok(child_callers_own_lock, &modes[0]);
    expect_child_ok(child_callers_own_lock, &modes[1]);
}

static void child_under_mlockall(void *arg)
{
    (void)arg;
    size_t pg = tu_page_size();
    child_check(syscall(SYS_mlockall, MCL_CURRENT | MCL_FUTURE) == 0);
    unsigned char warm[32]; /* the library's own set-up before measuring */
    child_check(zz_lock(warm, sizeof warm) == 0 && zz_unlock(warm, sizeof warm) == 0);
    unsigned char *buf = malloc(3 * pg);
    child_check(buf != NULL);
    memset(buf, 0x42, 3 * pg);
    long before = tu_status_kb("VmLck");
    child_check(zz_lock(buf + 10, 2 * pg) == 0);
    child_check(zz_unlock(buf + 10, 2 * pg) == 0);
    long after = tu_status_kb("VmLck");
    if (after != before)
        fprintf(stderr, "under mlockall: VmLck %ld kB before zz_lock + zz_unlock, %ld kB after\n",
                before, after);
    child_check(before > 0 && after == before);
    child_check(tu_addr_has_flag(buf + pg, "lo"));
    free(buf);
}

static void test_unlock_under_mlockall_keeps_vmlck(void **state)
{
    (void)state;
    if (TU_ON_VALGRIND() || TU_SANITIZED) {
        /* mlockall(MCL_CURRENT) would populate and lock valgrind's or the
         * sanitizer's reserved address space (terabytes of shadow) */
        print_message("skipped under valgrind and sanitizers\n");
        skip();
    }
    expect_child_ok(child_under_mlockall, NULL);
}

/* The ordinary case still works: a page nobody had locked is locked and
 * excluded from dumps by zz_lock, and neither after zz_unlock. */
static void test_lock_unlock_plain_page_round_trip(void **state)
{
    (void)state;
    unsigned char *page = map_pages(1);
    struct tu_vma v;
    assert_int_equal(tu_smaps_vma(page, &v), 0);
    assert_false(tu_has_flag(v.vmflags, "lo") || tu_has_flag(v.vmflags, "dd"));
    assert_int_equal(zz_lock(page + 100, 32), 0);
    assert_int_equal(tu_smaps_vma(page, &v), 0);
    assert_true(tu_has_flag(v.vmflags, "lo") && tu_has_flag(v.vmflags, "dd"));
    assert_int_equal(v.locked_kb, (long)(tu_page_size() / 1024));
    assert_int_equal(zz_unlock(page + 100, 32), 0);
    assert_int_equal(tu_smaps_vma(page, &v), 0);
    assert_false(tu_has_flag(v.vmflags, "lo"));
    assert_false(tu_has_flag(v.vmflags, "dd"));
    assert_int_equal(v.locked_kb, 0);
    assert_true(zz_is_zero(page + 100, 32));
    munmap(page, tu_page_size());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_shared_page_counted),
        cmocka_unit_test(test_lock_nested_same_range),
        cmocka_unit_test(test_lock_span_pages_counted_per_page),
        cmocka_unit_test(test_unlock_wipes_only_range),
        cmocka_unit_test(test_unlock_keep_keeps_contents),
        cmocka_unit_test(test_unlock_never_locked_only_wipes),
        cmocka_unit_test(test_lock_zero_length_ok),
        cmocka_unit_test(test_lock_overflow_einval),
        cmocka_unit_test(test_lock_stack_buffer),
        cmocka_unit_test(test_lock_stats_locked_bytes),
        cmocka_unit_test(test_lock_over_rlimit_fails_cleanly),
        cmocka_unit_test(test_lock_wrapping_range_einval_at_once),
        cmocka_unit_test(test_lock_unmapped_range_enomem_names_it),
        cmocka_unit_test(test_unlock_keeps_callers_own_lock),
        cmocka_unit_test(test_unlock_under_mlockall_keeps_vmlck),
        cmocka_unit_test(test_lock_unlock_plain_page_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
