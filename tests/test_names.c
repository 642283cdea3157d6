/* The library names its anonymous mappings "zeroize" (PR_SET_VMA_ANON_NAME,
 * Linux 5.17+ with CONFIG_ANON_VMA_NAME), so /proc/PID/maps shows
 * "[anon:zeroize]" for zz_alloc blocks, arena blocks, large blocks and the
 * guard pages around them.  The label tests skip only when a probe shows the
 * kernel cannot name a mapping; the VMA-count test runs everywhere (one name
 * for every mapping must not stop adjacent mappings from merging). */
#include "test_util.h"

#include <sys/prctl.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif
#ifndef PR_SET_VMA_ANON_NAME
#define PR_SET_VMA_ANON_NAME 0
#endif

#define LABEL "[anon:zeroize]"

/* 1 if this kernel can name an anonymous mapping. */
static int kernel_names_mappings(void)
{
    size_t pg = tu_page_size();
    void *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 0;
    int ok = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)m, (unsigned long)pg,
                   (unsigned long)"zz-probe") == 0;
    munmap(m, pg);
    return ok;
}

static void skip_unless_names(void)
{
    if (!kernel_names_mappings()) {
        print_message("skipped: this kernel cannot name anonymous mappings\n");
        skip();
    }
}

/* The /proc/self/maps line of the mapping that holds addr, without its
 * newline, in out.  Returns 0, or -1 if no mapping holds addr. */
static int maps_line(uintptr_t addr, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    int rc = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) != 2)
            continue;
        if (addr >= a && addr < b) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, cap, "%s", line);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* 1 if the library's guard pages are PROT_NONE mappings of their own
 * (ZEROIZE_GUARDS=mprotect, a kernel without MADV_GUARD_INSTALL, valgrind),
 * as the page after a fresh block shows. */
static int guards_split_mappings(void)
{
    static int answer = -1;
    if (answer < 0) {
        unsigned char *p = zz_alloc(32);
        assert_non_null(p);
        uintptr_t pg = tu_page_size();
        char line[512];
        assert_int_equal(maps_line(((uintptr_t)p + 32 + pg - 1) & ~(pg - 1), line, sizeof line), 0);
        answer = strstr(line, " ---p ") != NULL;
        zz_free(p);
    }
    return answer;
}

/* Asserts that the mapping holding addr is labelled "[anon:zeroize]"; with
 * want_noaccess, also that it is PROT_NONE (a guard page on the mprotect
 * path; MADV_GUARD_INSTALL guards stay inside the data mapping). */
static void assert_labelled(uintptr_t addr, int want_noaccess, const char *what)
{
    char line[512];
    assert_int_equal(maps_line(addr, line, sizeof line), 0);
    size_t len = strlen(line), ll = strlen(LABEL);
    if (len < ll || strcmp(line + len - ll, LABEL) != 0) {
        print_error("%s at %#lx: %s\n", what, (unsigned long)addr, line);
        fail();
    }
    if (want_noaccess && guards_split_mappings() && strstr(line, " ---p ") == NULL) {
        print_error("%s at %#lx is not a guard page: %s\n", what, (unsigned long)addr, line);
        fail();
    }
}

/* A block of n bytes at p: its own pages and the guard page on each side
 * ([guard][slack | head canary | block | tail canary][guard], zeroize.h;
 * a block of whole pages starts on the page after its guard). */
static void assert_block_labelled(const void *p, size_t n, const char *what)
{
    uintptr_t pg = tu_page_size(), a = (uintptr_t)p;
    uintptr_t first = a & ~(pg - 1);
    uintptr_t after = (a + n + pg - 1) & ~(pg - 1);
    assert_labelled(a, 0, what);
    assert_labelled(first - pg, 1, what);
    assert_labelled(after, 1, what);
}

static void test_zz_alloc_block_labelled(void **state)
{
    (void)state;
    skip_unless_names();
    void *p = zz_alloc(32);
    assert_non_null(p);
    assert_block_labelled(p, 32, "zz_alloc(32)");
    zz_free(p);
}

static void test_large_block_labelled(void **state)
{
    (void)state;
    skip_unless_names();
    size_t n = 1u << 20;
    void *p = zz_alloc(n);
    assert_non_null(p);
    assert_block_labelled(p, n, "zz_alloc(1 MiB)");
    zz_free(p);
}

static void test_arena_blocks_labelled(void **state)
{
    (void)state;
    skip_unless_names();
    zz_arena *grow = zz_arena_create(0), *fixed = zz_arena_create(64 * 1024);
    assert_non_null(grow);
    assert_non_null(fixed);
    void *g = zz_arena_alloc(grow, 48), *f = zz_arena_alloc(fixed, 48);
    void *big = zz_arena_alloc(grow, 256 * 1024);
    assert_non_null(g);
    assert_non_null(f);
    assert_non_null(big);
    assert_labelled((uintptr_t)g, 0, "growable arena cell");
    assert_labelled((uintptr_t)f, 0, "fixed arena cell");
    assert_block_labelled(big, 256 * 1024, "growable arena large block");
    zz_arena_free(grow, g);
    zz_arena_free(grow, big);
    zz_arena_free(fixed, f);
    zz_arena_destroy(grow);
    zz_arena_destroy(fixed);
}

/* The same name on every mapping keeps adjacent ones mergeable: on the
 * guard-install path 1,000 live blocks cost far fewer VMAs than blocks; on
 * the mprotect path two per slot (its guard splits the slab) and the slack
 * of the last slabs, never a further split per block. */
static void test_names_add_no_vmas(void **state)
{
    (void)state;
    enum { COUNT = 1000 };
    void *blocks[COUNT];
    long before = tu_count_vmas();
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = zz_alloc(32);
        assert_non_null(blocks[i]);
    }
    long after = tu_count_vmas();
    print_message("%d blocks: VMAs %ld -> %ld (%s path, names %s)\n", COUNT, before, after,
                  guards_split_mappings() ? "mprotect" : "guard-install",
                  kernel_names_mappings() ? "supported" : "unsupported");
    if (guards_split_mappings())
        assert_true(after - before <= 2 * COUNT + COUNT / 10);
    else
        assert_true(after - before < COUNT / 10);
    for (int i = 0; i < COUNT; i++)
        zz_free(blocks[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zz_alloc_block_labelled),
        cmocka_unit_test(test_large_block_labelled),
        cmocka_unit_test(test_arena_blocks_labelled),
        cmocka_unit_test(test_names_add_no_vmas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
