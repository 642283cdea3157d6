/* 100,000 live 32-byte blocks in one process, under the default
 * vm.max_map_count of 65530.  Only possible if guard pages do not cost a VMA
 * each (MADV_GUARD_INSTALL); with ZEROIZE_GUARDS=mprotect every guard splits
 * the mapping, so there the test asserts a clean ENOMEM that names
 * vm.max_map_count instead (or success, if the library shares guards). */
#include "test_util.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define COUNT 100000

static int kernel_has_guard_regions(void)
{
    size_t pg = tu_page_size();
    void *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 0;
    int ok = madvise(m, pg, MADV_GUARD_INSTALL) == 0;
    munmap(m, 2 * pg);
    return ok;
}

static long read_max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long v = -1;
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void test_scale_100k_live_blocks(void **state)
{
    (void)state;
    if (TU_ON_VALGRIND()) {
        print_message("skipped under valgrind (100k blocks would take minutes)\n");
        skip();
    }
    int guard_regions = !tu_mprotect_mode() && kernel_has_guard_regions();
    if (TU_SANITIZED && !guard_regions) {
        /* This path runs the process into vm.max_map_count on purpose; the
         * sanitizer runtime then cannot map its own memory and dies. */
        print_message("skipped: sanitizer build on the mprotect path\n");
        skip();
    }
    void **blocks = calloc(COUNT, sizeof *blocks);
    assert_non_null(blocks);
    zz_stats s0, s1;
    zz_get_stats(&s0);
    long vmas0 = tu_count_vmas();
    size_t got = 0;
    int err = 0;
    for (; got < COUNT; got++) {
        errno = 0;
        unsigned char *p = zz_alloc(32);
        if (p == NULL) {
            err = errno;
            break;
        }
        p[0] = (unsigned char)got;
        p[31] = (unsigned char)(got >> 8);
        blocks[got] = p;
    }
    long vmas1 = tu_count_vmas();
    print_message("%zu blocks live, VMAs %ld -> %ld (max_map_count %ld), guard regions %s\n", got,
                  vmas0, vmas1, read_max_map_count(), guard_regions ? "yes" : "no");
    if (guard_regions) {
        if (got != COUNT) {
            print_error("default path: only %zu blocks, errno %d: %s\n", got, err, zz_last_error());
            fail();
        }
        /* far fewer VMAs than blocks: a tenth is generous */
        assert_true(vmas1 - vmas0 < COUNT / 10);
    } else if (got < COUNT) {
        assert_int_equal(err, ENOMEM);
        assert_non_null(strstr(zz_last_error(), "max_map_count"));
        assert_int_equal(zz_last_error_code(), ZZ_ERR_MAPCOUNT);
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks - s0.live_blocks, got);
    assert_int_equal(s1.live_bytes - s0.live_bytes, got * 32);
    for (size_t i = 0; i < got; i++) {
        unsigned char *p = blocks[i];
        assert_int_equal(p[0], (unsigned char)i);
        assert_int_equal(p[31], (unsigned char)(i >> 8));
        zz_free(p);
    }
    zz_get_stats(&s1);
    assert_int_equal(s1.live_blocks, s0.live_blocks);
    assert_int_equal(s1.live_bytes, s0.live_bytes);
    /* and the process can still allocate */
    void *p = zz_alloc(32);
    assert_non_null(p);
    zz_free(p);
    free(blocks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_100k_live_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
