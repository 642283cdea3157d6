/* zz_protect: access modes of a block's pages. */
#include "test_util.h"

struct prot_case {
    size_t n;
    int mode;
    int write;        /* 0: read p[idx], 1: write p[idx] */
    size_t idx;
};

OPTNONE static void child_access_in_mode(void *arg)
{
    const struct prot_case *c = arg;
    unsigned char *p = zz_alloc(c->n);
    child_check(p != NULL);
    p[c->idx] = 0x42;
    child_check(zz_protect(p, c->mode) == 0);
    if (c->write)
        VWRITE(p + c->idx, 0x24);
    else
        child_check(VREAD(p + c->idx) == 0x42);
}

static const size_t sizes[] = { 1, 64, 4096, 4097, 20000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_protect_noaccess_read_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        struct prot_case first = { sizes[i], ZZ_NOACCESS, 0, 0 };
        struct prot_case last = { sizes[i], ZZ_NOACCESS, 0, sizes[i] - 1 };
        expect_segv(child_access_in_mode, &first);
        expect_segv(child_access_in_mode, &last);
    }
}

static void test_protect_noaccess_write_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        struct prot_case c = { sizes[i], ZZ_NOACCESS, 1, sizes[i] / 2 };
        expect_segv(child_access_in_mode, &c);
    }
}

static void test_protect_readonly_read_ok(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        struct prot_case c = { sizes[i], ZZ_READONLY, 0, sizes[i] - 1 };
        expect_child_ok(child_access_in_mode, &c);
    }
}

static void test_protect_readonly_write_faults(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        struct prot_case first = { sizes[i], ZZ_READONLY, 1, 0 };
        struct prot_case last = { sizes[i], ZZ_READONLY, 1, sizes[i] - 1 };
        expect_segv(child_access_in_mode, &first);
        expect_segv(child_access_in_mode, &last);
    }
}

/* NOACCESS then READWRITE: contents intact, reads and writes work again. */
static void test_protect_readwrite_restores_access(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        memset(p, 0x6B, sizes[i]);
        assert_int_equal(zz_protect(p, ZZ_NOACCESS), 0);
        assert_int_equal(zz_protect(p, ZZ_READONLY), 0);
        assert_int_equal(p[sizes[i] - 1], 0x6B);
        assert_int_equal(zz_protect(p, ZZ_READWRITE), 0);
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(p[k], 0x6B);
        memset(p, 0x11, sizes[i]);
        assert_int_equal(p[0], 0x11);
        zz_free(p);
    }
}

/* The mode shows in the VMA permissions, and READWRITE keeps the block
 * locked (re-protecting must not drop the lock or the madvise flags). */
static void test_protect_modes_visible_in_smaps(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(100);
    assert_non_null(p);
    p[0] = 1;
    const int modes[] = { ZZ_NOACCESS, ZZ_READONLY, ZZ_READWRITE };
    const char *perms[] = { "---", "r--", "rw-" };
    for (int m = 0; m < 3; m++) {
        assert_int_equal(zz_protect(p, modes[m]), 0);
        struct tu_vma v;
        assert_int_equal(tu_smaps_vma(p, &v), 0);
        assert_memory_equal(v.perms, perms[m], 3);
        assert_true(tu_has_flag(v.vmflags, "lo"));
        assert_true(tu_has_flag(v.vmflags, "dd"));
        assert_true(tu_has_flag(v.vmflags, "wf"));
    }
    zz_free(p);
}

/* Protecting one block leaves its neighbours (same size class) alone. */
OPTNONE static void child_neighbour_writable(void *arg)
{
    (void)arg;
    unsigned char *a = zz_alloc(32), *b = zz_alloc(32), *c = zz_alloc(32);
    child_check(a != NULL && b != NULL && c != NULL);
    child_check(zz_protect(b, ZZ_NOACCESS) == 0);
    VWRITE(a, 1);
    VWRITE(c, 1);
    VWRITE(a + 31, 1);
    VWRITE(c + 31, 1);
    zz_free(a);
    zz_free(c);
    zz_free(b);
}

static void test_protect_neighbours_unaffected(void **state)
{
    (void)state;
    expect_child_ok(child_neighbour_writable, NULL);
}

static void test_protect_bad_mode_einval(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(16);
    assert_non_null(p);
    const int bad[] = { -1, 3, 42, 0x7fffffff };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_int_equal(zz_protect(p, bad[i]), -1);
        assert_int_equal(errno, EINVAL);
    }
    p[0] = 9;   /* still writable: a failed call changed nothing */
    assert_int_equal(p[0], 9);
    zz_free(p);
}

static void test_protect_zero_size_block(void **state)
{
    (void)state;
    void *p = zz_alloc(0);
    assert_non_null(p);
    assert_int_equal(zz_protect(p, ZZ_NOACCESS), 0);
    assert_int_equal(zz_protect(p, ZZ_READWRITE), 0);
    zz_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protect_noaccess_read_faults),
        cmocka_unit_test(test_protect_noaccess_write_faults),
        cmocka_unit_test(test_protect_readonly_read_ok),
        cmocka_unit_test(test_protect_readonly_write_faults),
        cmocka_unit_test(test_protect_readwrite_restores_access),
        cmocka_unit_test(test_protect_modes_visible_in_smaps),
        cmocka_unit_test(test_protect_neighbours_unaffected),
        cmocka_unit_test(test_protect_bad_mode_einval),
        cmocka_unit_test(test_protect_zero_size_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
