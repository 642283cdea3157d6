/*
 * test_faults.c - every failure path of the OS layer, made to happen on
 * purpose with the library's test-only fault injection (ZZ_FAULT_INJECTION):
 * zzi_fault_inject(op, nth, err) makes the nth call from now of one OS
 * operation fail once with err.
 *
 * For each failure the test asserts the outcome the header promises:
 *   - NULL or -1 with the injected errno and a zz_last_error() sentence that
 *     names the limit to raise;
 *   - nothing leaks: zz_get_stats (locked, mapped, live) and the kernel's own
 *     VmLck are where they were before the call;
 *   - every other live block (zz_alloc, a large one, arena blocks, a zz_lock'ed
 *     caller buffer) still holds its contents;
 *   - the same call succeeds once the fault is gone.
 * Under ZZ_LOCK_BEST_EFFORT a refused lock or an unsupported madvise gives a
 * block that works but does not claim the protection it lacks (zz_info and
 * /proc/self/smaps agree).
 *
 * Which operation makes the guard pages depends on the guard path:
 * MADV_GUARD_INSTALL ("guard") by default, mprotect ("protect") under
 * ZEROIZE_GUARDS=mprotect; the tests ask tu_mprotect_mode().
 */
#include "../test_util.h"

/* Test-only, exported by a ZZ_FAULT_INJECTION build (src/internal.h). */
void zzi_fault_inject(const char *op, unsigned nth, int err);
#define ZZI_FAULT_EVERY 0xffffffffu /* src/internal.h: every call until cleared */
void zzi_fault_drop_caches(void);
void zzi_fault_on_inject(void (*fn)(const char *op));

#define LARGE (20 * 4096 + 100) /* more than 16 pages: a mapping of its own */
#define SENTINEL_ARENA_BLOCKS 3

/* Live blocks that must survive every failure, with the byte each holds. */
static struct {
    unsigned char *small, *large, *arena_blk[SENTINEL_ARENA_BLOCKS], *locked;
    zz_arena *arena;
} live;

static char self_exe[4096];

static void fill(unsigned char *p, size_t n, unsigned char v)
{
    memset(p, v, n);
}

static int all_equal(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void check_live_blocks(void)
{
    assert_true(all_equal(live.small, 64, 0x11));
    assert_true(all_equal(live.large, LARGE, 0x22));
    for (int i = 0; i < SENTINEL_ARENA_BLOCKS; i++)
        assert_true(all_equal(live.arena_blk[i], 40, (unsigned char)(0x30 + i)));
    assert_true(all_equal(live.locked, 100, 0x44));
    assert_true(zz_size(live.small) == 64 && zz_size(live.large) == LARGE);
    assert_true(tu_addr_has_flag(live.locked, "lo"));
}

static int setup(void **state)
{
    (void)state;
    /* Warm up: the first call initialises the library (random canary key,
     * guard-path probe), whose OS calls would otherwise shift the counts. */
    zz_free(zz_alloc(1));
    live.small = zz_alloc(64);
    live.large = zz_alloc(LARGE);
    live.arena = zz_arena_create(0);
    live.locked = mmap(NULL, tu_page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (!live.small || !live.large || !live.arena || live.locked == MAP_FAILED)
        return -1;
    fill(live.small, 64, 0x11);
    fill(live.large, LARGE, 0x22);
    for (int i = 0; i < SENTINEL_ARENA_BLOCKS; i++) {
        live.arena_blk[i] = zz_arena_alloc(live.arena, 40);
        if (live.arena_blk[i] == NULL)
            return -1;
        fill(live.arena_blk[i], 40, (unsigned char)(0x30 + i));
    }
    fill(live.locked, 100, 0x44);
    return zz_lock(live.locked, 100);
}

static int teardown(void **state)
{
    (void)state;
    zz_unlock(live.locked, 100);
    munmap(live.locked, tu_page_size());
    zz_arena_destroy(live.arena);
    zz_free(live.large);
    zz_free(live.small);
    zz_stats st;
    zz_get_stats(&st);
    return st.live_blocks == 0 && st.live_bytes == 0 ? 0 : -1;
}

/* Each test starts and ends without a pending fault, with the default
 * policy, and with no cached empty slab (a failure to map or lock a new slab
 * is retried once after dropping cached ones: the tests that inject one
 * failure expect it to stand, and test_faults_cached_slabs_give_way tests
 * the retry). */
static int clear_faults(void **state)
{
    (void)state;
    zzi_fault_drop_caches();
    static const char *const ops[] = {"map", "protect", "guard", "dontdump",
                                      "wipeonfork", "lock", "random"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        zzi_fault_inject(ops[i], 0, 0);
    zz_set_lock_policy(ZZ_LOCK_REQUIRED);
    return 0;
}

/* ---- snapshot of everything that must not leak --------------------------------- */

struct snapshot {
    zz_stats st;
    long vmlck_kb;
};

static struct snapshot snap(void)
{
    struct snapshot s;
    zz_get_stats(&s.st);
    s.vmlck_kb = tu_status_kb("VmLck");
    return s;
}

static void assert_same(const struct snapshot *before)
{
    struct snapshot now = snap();
    assert_int_equal(now.st.live_blocks, before->st.live_blocks);
    assert_int_equal(now.st.live_bytes, before->st.live_bytes);
    assert_int_equal(now.st.locked_bytes, before->st.locked_bytes);
    assert_int_equal(now.st.mapped_bytes, before->st.mapped_bytes);
    assert_int_equal(now.vmlck_kb, before->vmlck_kb);
    check_live_blocks();
}

static const char *guard_op(void)
{
    return tu_mprotect_mode() ? "protect" : "guard";
}

/* A failure: NULL, errno, a sentence containing `hint`, and no leak. */
static void assert_failed(const void *r, int err, const char *hint, const struct snapshot *before)
{
    int e = errno;
    assert_null(r);
    assert_int_equal(e, err);
    if (strstr(zz_last_error(), hint) == NULL) {
        print_error("zz_last_error() = \"%s\", expected it to mention \"%s\"\n", zz_last_error(),
                    hint);
        fail();
    }
    assert_same(before);
}

/* The same allocation works once the fault is gone, and has everything. */
static void assert_alloc_recovers(size_t n)
{
    unsigned char *p = zz_alloc(n);
    assert_non_null(p);
    unsigned want = ZZ_INFO_LOCKED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK | ZZ_INFO_GUARDED |
                    ZZ_INFO_CANARY;
    assert_int_equal(zz_info(p) & want, want);
    memset(p, 0x5A, n);
    zz_free(p);
    check_live_blocks();
}

/* ---- zz_alloc ----------------------------------------------------------------------- */

/* Fails the nth call of op with err during zz_alloc(LARGE) and checks the
 * failure. */
static void alloc_fails(const char *op, unsigned nth, int err, const char *hint)
{
    struct snapshot before = snap();
    zzi_fault_inject(op, nth, err);
    errno = 0;
    void *p = zz_alloc(LARGE);
    assert_failed(p, err, hint, &before);
    assert_alloc_recovers(LARGE);
}

static void test_faults_alloc_map_enomem(void **state)
{
    (void)state;
    alloc_fails("map", 1, ENOMEM, "vm.max_map_count");
}

static void test_faults_alloc_first_guard_fails(void **state)
{
    (void)state;
    alloc_fails(guard_op(), 1, ENOMEM, "vm.max_map_count");
}

/* The second guard page fails after the first was made: both undone. */
static void test_faults_alloc_second_guard_fails(void **state)
{
    (void)state;
    alloc_fails(guard_op(), 2, ENOMEM, "vm.max_map_count");
}

static void test_faults_alloc_dontdump_enomem(void **state)
{
    (void)state;
    alloc_fails("dontdump", 1, ENOMEM, "vm.max_map_count");
}

/* EINVAL from madvise means the kernel lacks the advice: fatal under the
 * required policy, with a sentence saying which. */
static void test_faults_alloc_dontdump_unsupported_required(void **state)
{
    (void)state;
    alloc_fails("dontdump", 1, EINVAL, "MADV_DONTDUMP");
}

static void test_faults_alloc_wipeonfork_enomem(void **state)
{
    (void)state;
    alloc_fails("wipeonfork", 1, ENOMEM, "vm.max_map_count");
}

static void test_faults_alloc_wipeonfork_unsupported_required(void **state)
{
    (void)state;
    alloc_fails("wipeonfork", 1, EINVAL, "MADV_WIPEONFORK");
}

static void test_faults_alloc_lock_eagain(void **state)
{
    (void)state;
    alloc_fails("lock", 1, EAGAIN, "ulimit -l");
}

static void test_faults_alloc_lock_eperm(void **state)
{
    (void)state;
    alloc_fails("lock", 1, EPERM, "RLIMIT_MEMLOCK");
}

static void test_faults_alloc_lock_enomem(void **state)
{
    (void)state;
    alloc_fails("lock", 1, ENOMEM, "ulimit -l");
}

/* Best effort: a block the kernel would not lock, or could not advise, is
 * handed out; zz_info and smaps both say what it lacks. */
static void best_effort_block_lacks(const char *op, int err, unsigned flag, const char *vmflag)
{
    assert_int_equal(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT), 0);
    struct snapshot before = snap();
    zzi_fault_inject(op, 1, err);
    unsigned char *p = zz_alloc(LARGE);
    assert_non_null(p);
    unsigned info = zz_info(p);
    assert_int_equal(info & flag, 0);
    assert_true(info & ZZ_INFO_GUARDED);
    assert_false(tu_addr_has_flag(p, vmflag));
    memset(p, 0x77, LARGE);
    assert_true(all_equal(p, LARGE, 0x77));
    struct snapshot during = snap();
    assert_int_equal(during.st.live_blocks, before.st.live_blocks + 1);
    if (flag == ZZ_INFO_LOCKED) { /* nothing more is locked, per library and kernel */
        assert_int_equal(during.st.locked_bytes, before.st.locked_bytes);
        assert_int_equal(during.vmlck_kb, before.vmlck_kb);
    }
    zz_free(p);
    assert_same(&before);
    assert_int_equal(zz_set_lock_policy(ZZ_LOCK_REQUIRED), 0);
    assert_alloc_recovers(LARGE);
}

static void test_faults_alloc_lock_fails_best_effort_unlocked(void **state)
{
    (void)state;
    best_effort_block_lacks("lock", EAGAIN, ZZ_INFO_LOCKED, "lo");
}

static void test_faults_alloc_dontdump_unsupported_best_effort(void **state)
{
    (void)state;
    best_effort_block_lacks("dontdump", EINVAL, ZZ_INFO_DONTDUMP, "dd");
}

static void test_faults_alloc_wipeonfork_unsupported_best_effort(void **state)
{
    (void)state;
    best_effort_block_lacks("wipeonfork", EINVAL, ZZ_INFO_WIPEONFORK, "wf");
}

/* A size class that has no slab yet: the library halves the new slab while
 * the kernel refuses, so one refused mapping costs nothing. */
static void test_faults_alloc_class_slab_retries_smaller(void **state)
{
    (void)state;
    size_t n = 15 * tu_page_size() - 200; /* class 15: used by no other test here */
    assert_int_equal(zz_set_backend(42), -1); /* the thread's last failure: EINVAL */
    zzi_fault_inject("map", 1, ENOMEM);
    unsigned char *p = zz_alloc(n);
    assert_non_null(p);
    assert_int_equal(zz_last_error_code(), ZZ_ERR_ARGUMENT); /* a success changes nothing */
    zzi_fault_inject("lock", 1, EAGAIN);
    unsigned char *q[8];
    for (int i = 0; i < 8; i++) { /* more slabs of the class; one lock refused */
        q[i] = zz_alloc(n);
        assert_non_null(q[i]);
        assert_true(zz_info(q[i]) & ZZ_INFO_LOCKED);
        memset(q[i], i, n);
    }
    for (int i = 0; i < 8; i++) {
        assert_true(all_equal(q[i], n, (unsigned char)i));
        zz_free(q[i]);
    }
    zz_free(p);
    check_live_blocks();
}

/* A new slab that cannot be mapped for lack of memory is tried again once the
 * empty slabs cached for other sizes are unmapped: memory cached for one size
 * never makes an allocation of another size fail (64 threads under a small
 * RLIMIT_MEMLOCK once left every lockable byte in caches). */
static void test_faults_cached_slabs_give_way(void **state)
{
    (void)state;
    enum { N = 300 };
    static void *p[N];
    for (size_t i = 0; i < N; i++)
        assert_non_null(p[i] = zz_alloc(32));
    for (size_t i = 0; i < N; i++)
        zz_free(p[i]);
    struct snapshot cached = snap(); /* one-page slots, cached */
    size_t n = 13 * tu_page_size() - 300; /* class 13: used by no other test here */
    assert_int_equal(zz_set_backend(42), -1); /* the thread's last failure: EINVAL */
    zzi_fault_inject("map", 1, ENOMEM);
    unsigned char *q = zz_alloc(n);
    assert_non_null(q);
    assert_true(zz_info(q) & ZZ_INFO_LOCKED);
    assert_int_equal(zz_last_error_code(), ZZ_ERR_ARGUMENT); /* a success changes nothing */
    zz_free(q);
    struct snapshot after = snap();
    assert_true(after.st.mapped_bytes < cached.st.mapped_bytes); /* the cache gave way */
    assert_true(after.st.locked_bytes < cached.st.locked_bytes);
    check_live_blocks();
}

/* zz_realloc that cannot get its new block leaves the old one as it was. */
static void test_faults_realloc_failure_keeps_block(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(100);
    assert_non_null(p);
    memset(p, 0x66, 100);
    struct snapshot before = snap();
    zzi_fault_inject("map", 1, ENOMEM);
    errno = 0;
    void *q = zz_realloc(p, LARGE);
    assert_failed(q, ENOMEM, "vm.max_map_count", &before);
    assert_int_equal(zz_size(p), 100);
    assert_true(all_equal(p, 100, 0x66));
    q = zz_realloc(p, LARGE);
    assert_non_null(q);
    assert_true(all_equal(q, 100, 0x66));
    zz_free(q);
}

/* ---- zz_protect ---------------------------------------------------------------------- */

static void test_faults_protect_fails_mode_unchanged(void **state)
{
    (void)state;
    unsigned char *p = zz_alloc(64);
    assert_non_null(p);
    memset(p, 0x12, 64);
    zzi_fault_inject("protect", 1, ENOMEM);
    errno = 0;
    assert_int_equal(zz_protect(p, ZZ_READONLY), -1);
    assert_int_equal(errno, ENOMEM);
    assert_non_null(strstr(zz_last_error(), "vm.max_map_count"));
    /* Still read-write: the write below would fault otherwise. */
    memset(p, 0x13, 64);
    assert_true(all_equal(p, 64, 0x13));
    struct tu_vma v;
    assert_int_equal(tu_smaps_vma(p, &v), 0);
    assert_string_equal(v.perms, "rw-p");
    assert_int_equal(zz_protect(p, ZZ_NOACCESS), 0);
    assert_int_equal(zz_protect(p, ZZ_READWRITE), 0);
    assert_true(all_equal(p, 64, 0x13));
    zz_free(p);
    check_live_blocks();
}

/* zz_free must make a protected block writable to wipe it; if the kernel
 * refuses, it cannot keep its promise and says so (fatal, by design). */
static void child_free_cannot_unprotect(void *arg)
{
    (void)arg;
    unsigned char *p = zz_alloc(64);
    child_check(p != NULL && zz_protect(p, ZZ_NOACCESS) == 0);
    zzi_fault_inject("protect", 1, ENOMEM);
    zz_free(p);
}

static void test_faults_free_protect_fails_fatal(void **state)
{
    (void)state;
    expect_fatal(child_free_cannot_unprotect, NULL,
                 "zeroize: cannot restore write access to a block being freed (mprotect failed)");
    check_live_blocks();
}

/* zz_purge cannot unprotect one NOACCESS block: it skips that block, wipes
 * every other one, does not crash, and the library keeps working. */
static void test_faults_purge_protect_fails_others_wiped(void **state)
{
    (void)state;
    unsigned char *hidden = zz_alloc(64), *open = zz_alloc(64);
    assert_non_null(hidden);
    assert_non_null(open);
    memset(hidden, 0x21, 64);
    memset(open, 0x22, 64);
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    unsigned char *ab = zz_arena_alloc(a, 32);
    assert_non_null(ab);
    memset(ab, 0x23, 32);
    assert_int_equal(zz_protect(hidden, ZZ_NOACCESS), 0);
    zzi_fault_inject("protect", 1, ENOMEM);
    zz_purge();
    assert_true(all_equal(open, 64, 0));
    assert_true(all_equal(ab, 32, 0));
    assert_true(all_equal(live.small, 64, 0)); /* the sentinels too: refill them */
    assert_true(all_equal(live.large, LARGE, 0));
    fill(live.small, 64, 0x11);
    fill(live.large, LARGE, 0x22);
    for (int i = 0; i < SENTINEL_ARENA_BLOCKS; i++) {
        assert_true(all_equal(live.arena_blk[i], 40, 0));
        fill(live.arena_blk[i], 40, (unsigned char)(0x30 + i));
    }
    assert_int_equal(zz_protect(hidden, ZZ_READWRITE), 0);
    zz_free(hidden);
    zz_free(open);
    zz_arena_free(a, ab);
    zz_arena_destroy(a);
    check_live_blocks();
    assert_alloc_recovers(64);
}

/* ---- arenas ----------------------------------------------------------------------------- */

static void arena_create_fails(const char *op, unsigned nth, int err, const char *hint)
{
    struct snapshot before = snap();
    zzi_fault_inject(op, nth, err);
    errno = 0;
    zz_arena *a = zz_arena_create(4096);
    assert_failed(a, err, hint, &before);
    a = zz_arena_create(4096);
    assert_non_null(a);
    void *p = zz_arena_alloc(a, 32);
    assert_non_null(p);
    assert_true(zz_info(p) & ZZ_INFO_LOCKED);
    zz_arena_destroy(a);
    assert_same(&before);
}

static void test_faults_arena_create_map_fails(void **state)
{
    (void)state;
    arena_create_fails("map", 1, ENOMEM, "vm.max_map_count");
}

static void test_faults_arena_create_guard_fails(void **state)
{
    (void)state;
    arena_create_fails(guard_op(), 2, ENOMEM, "vm.max_map_count");
}

static void test_faults_arena_create_dontdump_fails(void **state)
{
    (void)state;
    arena_create_fails("dontdump", 1, ENOMEM, "vm.max_map_count");
}

static void test_faults_arena_create_wipeonfork_fails(void **state)
{
    (void)state;
    arena_create_fails("wipeonfork", 1, EINVAL, "MADV_WIPEONFORK");
}

static void test_faults_arena_create_lock_fails(void **state)
{
    (void)state;
    arena_create_fails("lock", 1, EPERM, "ulimit -l");
}

/* A growing arena that cannot map its next chunk: NULL, and the blocks it
 * already holds are untouched; it grows once the fault is gone. */
static void test_faults_arena_grow_fails(void **state)
{
    (void)state;
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    /* The first chunk has 4 runs of 16 KiB, one size class each. */
    unsigned char *b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = zz_arena_alloc(a, 16 * (size_t)(i + 1));
        assert_non_null(b[i]);
        memset(b[i], 0x50 + i, 16 * (size_t)(i + 1));
    }
    static const char *const ops[] = {"map", "lock", "dontdump"};
    static const int errs[] = {ENOMEM, EAGAIN, ENOMEM};
    static const char *const hints[] = {"vm.max_map_count", "ulimit -l", "vm.max_map_count"};
    /* Every try refused (a new chunk is tried smaller and smaller, down to
     * one run, before the allocation fails): nothing leaks, nothing changes. */
    for (int k = 0; k < 3; k++) {
        struct snapshot before = snap();
        zzi_fault_inject(ops[k], ZZI_FAULT_EVERY, errs[k]);
        errno = 0;
        void *p = zz_arena_alloc(a, 80); /* a fifth class: needs a new chunk */
        zzi_fault_inject(ops[k], 0, 0);
        assert_failed(p, errs[k], hints[k], &before);
        for (int i = 0; i < 4; i++)
            assert_true(all_equal(b[i], 16 * (size_t)(i + 1), (unsigned char)(0x50 + i)));
    }
    /* One refusal: a smaller chunk serves the block, locked as ever. */
    zzi_fault_inject("lock", 1, EAGAIN);
    unsigned char *p = zz_arena_alloc(a, 80);
    zzi_fault_inject("lock", 0, 0);
    assert_non_null(p);
    assert_true(zz_info(p) & ZZ_INFO_LOCKED);
    zz_arena_free(a, p);
    for (int i = 0; i < 4; i++)
        zz_arena_free(a, b[i]);
    zz_arena_destroy(a);
    check_live_blocks();
}

/* zz_set_lock_policy(ZZ_LOCK_REQUIRED) from another thread, landing after
 * the new chunk's mapping found the lock refused under best effort and
 * before the chunk was put in service: the first lock refusal lets the
 * mapping go on unlocked (best effort), the retry after zz_alloc's cache
 * gave way is refused too, and at that moment the policy becomes required.
 * The chunk must not count as checked under the new policy (zz-stress found
 * an arena created during a switch handing out unlocked blocks). */
static int refusals_seen;

static void require_on_second_refusal(const char *op)
{
    if (strcmp(op, "lock") != 0)
        return;
    if (++refusals_seen == 1)
        zzi_fault_inject("lock", 1, EPERM);
    else
        assert_int_equal(zz_set_lock_policy(ZZ_LOCK_REQUIRED), 0);
}

static void test_faults_arena_chunk_mapped_during_policy_switch(void **state)
{
    (void)state;
    zz_free(zz_alloc(5000)); /* an empty two-page slab in the cache, to give way */
    assert_int_equal(zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT), 0);
    refusals_seen = 0;
    zzi_fault_on_inject(require_on_second_refusal);
    zzi_fault_inject("lock", 1, EPERM);
    zz_arena *a = zz_arena_create(0);
    zzi_fault_on_inject(NULL);
    assert_int_equal(refusals_seen, 2);
    assert_int_equal(zz_get_lock_policy(), ZZ_LOCK_REQUIRED);
    if (a == NULL)
        return; /* refusing the arena is also correct */
    unsigned char *p = zz_arena_alloc(a, 32);
    if (p != NULL) {
        assert_true(zz_info(p) & ZZ_INFO_LOCKED);
        assert_true(tu_addr_has_flag(p, "lo"));
        zz_arena_free(a, p);
    }
    zz_arena_destroy(a);
    check_live_blocks();
}

/* ---- zz_lock ------------------------------------------------------------------------------ */

static unsigned char *map_pages(size_t pages)
{
    unsigned char *m = mmap(NULL, pages * tu_page_size(), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    memset(m, 0xAB, pages * tu_page_size());
    return m;
}

static void lock_fails(const char *op, int err, const char *hint)
{
    unsigned char *m = map_pages(3);
    struct snapshot before = snap();
    zzi_fault_inject(op, 1, err);
    errno = 0;
    assert_int_equal(zz_lock(m + 10, 2 * tu_page_size()), -1);
    assert_int_equal(errno, err);
    assert_non_null(strstr(zz_last_error(), hint));
    assert_same(&before);
    for (int i = 0; i < 3; i++) {
        assert_false(tu_addr_has_flag(m + i * tu_page_size(), "lo"));
        assert_false(tu_addr_has_flag(m + i * tu_page_size(), "dd"));
    }
    assert_true(all_equal(m, 3 * tu_page_size(), 0xAB)); /* a failed lock wipes nothing */
    assert_int_equal(zz_lock(m + 10, 2 * tu_page_size()), 0);
    assert_true(tu_addr_has_flag(m, "lo"));
    assert_int_equal(zz_unlock(m + 10, 2 * tu_page_size()), 0);
    assert_same(&before);
    munmap(m, 3 * tu_page_size());
}

static void test_faults_lock_mlock_fails(void **state)
{
    (void)state;
    lock_fails("lock", ENOMEM, "ulimit -l");
}

static void test_faults_lock_dontdump_fails(void **state)
{
    (void)state;
    lock_fails("dontdump", ENOMEM, "ulimit -l");
}

/* Pages 0 and 2 are new, page 1 is already locked by someone else: the lock
 * of page 2 fails, so page 0 is unlocked again and page 1 keeps its lock. */
static void test_faults_lock_partial_failure_undone(void **state)
{
    (void)state;
    size_t pg = tu_page_size();
    unsigned char *m = map_pages(3);
    assert_int_equal(zz_lock(m + pg + 8, 8), 0);
    struct snapshot before = snap();
    zzi_fault_inject("lock", 2, EAGAIN);
    errno = 0;
    assert_int_equal(zz_lock(m, 3 * pg), -1);
    assert_int_equal(errno, EAGAIN);
    assert_same(&before);
    assert_false(tu_addr_has_flag(m, "lo"));
    assert_true(tu_addr_has_flag(m + pg, "lo"));
    assert_true(tu_addr_has_flag(m + pg, "dd"));
    assert_false(tu_addr_has_flag(m + 2 * pg, "lo"));
    assert_false(tu_addr_has_flag(m + 2 * pg, "dd"));
    /* The neighbour's count was not disturbed: one unlock releases it. */
    assert_int_equal(zz_unlock_keep(m + pg + 8, 8), 0);
    assert_false(tu_addr_has_flag(m + pg, "lo"));
    munmap(m, 3 * pg);
    check_live_blocks();
}

/* ---- secretmem backend ------------------------------------------------------------------------ */

static int have_secretmem(void)
{
    void *p = zz_alloc_backend(1, ZZ_BACKEND_SECRETMEM);
    int ok = p != NULL && (zz_info(p) & ZZ_INFO_SECRETMEM);
    zz_free(p);
    return ok;
}

static void secretmem_fails(const char *op, int err, int want_errno, const char *hint)
{
    if (!have_secretmem())
        skip();
    zzi_fault_drop_caches(); /* have_secretmem's slab: see clear_faults */
    struct snapshot before = snap();
    zzi_fault_inject(op, 1, err);
    errno = 0;
    void *p = zz_alloc_backend(LARGE, ZZ_BACKEND_SECRETMEM);
    assert_failed(p, want_errno, hint, &before);
    p = zz_alloc_backend(LARGE, ZZ_BACKEND_SECRETMEM);
    assert_non_null(p);
    assert_true(zz_info(p) & ZZ_INFO_SECRETMEM);
    zz_free(p);
    assert_same(&before);
}

static void test_faults_secretmem_unavailable(void **state)
{
    (void)state;
    secretmem_fails("map", ENOSYS, ENOSYS, "memfd_secret");
}

static void test_faults_secretmem_over_memlock(void **state)
{
    (void)state;
    secretmem_fails("map", ENOMEM, ENOMEM, "ulimit -l");
}

static void test_faults_secretmem_guard_fails(void **state)
{
    (void)state;
    secretmem_fails("protect", ENOMEM, ENOMEM, "vm.max_map_count");
}

static void test_faults_secretmem_dontdump_fails(void **state)
{
    (void)state;
    secretmem_fails("dontdump", EINVAL, EINVAL, "MADV_DONTDUMP");
}

/* ZZ_BACKEND_AUTO on a kernel that refuses memfd_secret: anon memory, and
 * zz_info says so.  (In a child: AUTO remembers the refusal for good.) */
static void child_auto_falls_back(void *arg)
{
    (void)arg;
    child_check(zz_set_backend(ZZ_BACKEND_AUTO) == 0);
    child_check(zz_set_backend(42) == -1 && zz_last_error_code() == ZZ_ERR_ARGUMENT);
    zzi_fault_inject("map", 1, ENOSYS);
    unsigned char *p = zz_alloc(LARGE);
    child_check(p != NULL);
    child_check(zz_last_error_code() == ZZ_ERR_ARGUMENT); /* the refusal was internal */
    unsigned want = ZZ_INFO_LOCKED | ZZ_INFO_GUARDED | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK;
    child_check((zz_info(p) & want) == want && !(zz_info(p) & ZZ_INFO_SECRETMEM));
    memset(p, 1, LARGE);
    zz_free(p);
}

static void test_faults_secretmem_auto_falls_back(void **state)
{
    (void)state;
    if (!have_secretmem())
        skip();
    expect_child_ok(child_auto_falls_back, NULL);
}

/* ---- forked children: locks and guards made again -------------------------------------------- */

/* In a child, a slab inherited from the parent must be locked again (and,
 * on the guard-install path, guarded again) before it hands out a block.
 * When that fails, the allocation fails; a later allocation from the same
 * slab must try again or fail too, never hand out an unlocked or unguarded
 * block under the required policy. */
static void child_relock_fails(void *arg)
{
    const char *op = arg;
    zzi_fault_inject(op, 1, strcmp(op, "lock") == 0 ? EAGAIN : ENOMEM);
    errno = 0;
    void *p = zz_alloc(64); /* class of live.small: a slab made before the fork */
    child_check(p == NULL && errno == EAGAIN);
    child_check(zz_last_error()[0] != '\0');
    zzi_fault_inject(op, 0, 0);
    unsigned char *q = zz_alloc(64);
    if (q != NULL) {
        unsigned want = ZZ_INFO_LOCKED | ZZ_INFO_GUARDED;
        if ((zz_info(q) & want) != want)
            fprintf(stderr, "after a failed refresh: block %p has info %#x (locked: smaps %d)\n",
                    (void *)q, zz_info(q), tu_addr_has_flag(q, "lo"));
        child_check((zz_info(q) & want) == want);
        child_check(tu_addr_has_flag(q, "lo"));
        zz_free(q);
    }
}

static char op_lock[] = "lock", op_guard[] = "guard";

/* KNOWN BUGS (reported): zzi_pages_refresh_slow marks the slab refreshed
 * before it knows the refresh worked, so the next allocation takes a block
 * from the slab that is neither locked (under ZZ_LOCK_REQUIRED) nor, on the
 * guard-install path, guarded.  Run only with --known-bugs (ctest:
 * test_faults_known_bugs, WILL_FAIL until fixed). */
static void test_faults_fork_relock_failure_then_unlocked_block(void **state)
{
    (void)state;
    expect_child_ok(child_relock_fails, op_lock);
}

static void test_faults_fork_reguard_failure_then_unguarded_block(void **state)
{
    (void)state;
    if (tu_mprotect_mode())
        skip(); /* mprotect guards are inherited: nothing to make again */
    expect_child_ok(child_relock_fails, op_guard);
}

/* ---- initialisation (fresh processes) --------------------------------------------------------- */

/* Runs this program again with --child SCENARIO, in a fresh process whose
 * library has not been initialised. */
static void exec_scenario(void *arg)
{
    execl(self_exe, self_exe, "--child", (const char *)arg, (char *)NULL);
    _exit(127);
}

static int child_random_at_init(void)
{
    zzi_fault_inject("random", 1, EAGAIN);
    errno = 0;
    void *p = zz_alloc(32);
    if (p != NULL || errno != EAGAIN) {
        fprintf(stderr, "zz_alloc with getrandom failing: %p errno %d\n", p, errno);
        return 1;
    }
    zz_stats st;
    zz_get_stats(&st);
    if (st.mapped_bytes != 0 || st.locked_bytes != 0) {
        fprintf(stderr, "init failed but %zu bytes mapped\n", st.mapped_bytes);
        return 2;
    }
    return 0;
}

/* The header promises a sentence for every failed call, a failed
 * initialisation included (the first version left it empty). */
static int child_random_init_explained(void)
{
    zzi_fault_inject("random", 1, EAGAIN);
    if (zz_alloc(32) != NULL)
        return 1;
    if (zz_last_error()[0] == '\0') {
        fprintf(stderr, "init failure: zz_last_error() is empty\n");
        return 3;
    }
    return 0;
}

/* After a failed initialisation every later call either fails cleanly
 * (this version draws the canary key once, so it keeps failing) or works
 * completely: never a block without its canary key. */
static int child_random_init_later_calls(void)
{
    zzi_fault_inject("random", 1, EAGAIN);
    if (zz_alloc(32) != NULL)
        return 1;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        unsigned char *p = zz_alloc(32);
        zz_arena *a = zz_arena_create(0);
        if (p == NULL && errno == 0)
            return 2;
        if (a == NULL && errno == 0)
            return 3;
        if (p != NULL) {
            unsigned want = ZZ_INFO_CANARY | ZZ_INFO_GUARDED | ZZ_INFO_LOCKED;
            if ((zz_info(p) & want) != want)
                return 4;
            memset(p, 1, 32);
            zz_free(p);
        }
        zz_arena_destroy(a);
    }
    return 0;
}

/* The guard-install probe at initialisation fails: the library falls back
 * to mprotect guards (separate PROT_NONE mappings) and still guards. */
static int child_guard_probe_fails(void)
{
    zzi_fault_inject("guard", 1, EINVAL);
    unsigned char *p = zz_alloc(LARGE);
    if (p == NULL || !(zz_info(p) & ZZ_INFO_GUARDED))
        return 1;
    size_t pg = tu_page_size();
    uintptr_t end = (uintptr_t)p + tu_round16(LARGE);
    struct tu_vma v;
    if (tu_smaps_vma((void *)end, &v) != 0 || strcmp(v.perms, "---p") != 0) {
        fprintf(stderr, "the page after the block is not a PROT_NONE mapping\n");
        return 2;
    }
    uintptr_t first = end - ((tu_round16(LARGE) + pg - 1) / pg) * pg;
    if (tu_smaps_vma((void *)(first - pg), &v) != 0 || strcmp(v.perms, "---p") != 0)
        return 3;
    zz_free(p);
    return 0;
}

static int run_child_scenario(const char *name)
{
    if (strcmp(name, "random_at_init") == 0)
        return child_random_at_init();
    if (strcmp(name, "random_init_later_calls") == 0)
        return child_random_init_later_calls();
    if (strcmp(name, "random_init_explained") == 0)
        return child_random_init_explained();
    if (strcmp(name, "guard_probe_fails") == 0)
        return child_guard_probe_fails();
    return 99;
}

static void expect_scenario_ok(const char *name)
{
    struct tu_child_result r;
    assert_int_equal(tu_run_child(exec_scenario, (void *)(uintptr_t)name, &r), 0);
    if (!r.exited || r.exit_code != 0) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail_msg("scenario %s failed", name);
    }
}

static void test_faults_init_random_fails(void **state)
{
    (void)state;
    expect_scenario_ok("random_at_init");
}

static void test_faults_init_random_later_calls_clean(void **state)
{
    (void)state;
    expect_scenario_ok("random_init_later_calls");
}

static void test_faults_init_random_failure_explained(void **state)
{
    (void)state;
    expect_scenario_ok("random_init_explained");
}

static void test_faults_init_guard_probe_falls_back(void **state)
{
    (void)state;
    if (tu_mprotect_mode())
        skip(); /* the probe does not run on this path */
    expect_scenario_ok("guard_probe_fails");
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return run_child_scenario(argv[2]);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    if (argc == 2 && strcmp(argv[1], "--known-bugs") == 0) {
        const struct CMUnitTest known[] = {
            cmocka_unit_test_setup_teardown(test_faults_fork_relock_failure_then_unlocked_block,
                                            clear_faults, clear_faults),
            cmocka_unit_test_setup_teardown(test_faults_fork_reguard_failure_then_unguarded_block,
                                            clear_faults, clear_faults),
        };
        return cmocka_run_group_tests(known, setup, teardown);
    }
#define T(f) cmocka_unit_test_setup_teardown(f, clear_faults, clear_faults)
    const struct CMUnitTest tests[] = {
        T(test_faults_alloc_map_enomem),
        T(test_faults_alloc_first_guard_fails),
        T(test_faults_alloc_second_guard_fails),
        T(test_faults_alloc_dontdump_enomem),
        T(test_faults_alloc_dontdump_unsupported_required),
        T(test_faults_alloc_wipeonfork_enomem),
        T(test_faults_alloc_wipeonfork_unsupported_required),
        T(test_faults_alloc_lock_eagain),
        T(test_faults_alloc_lock_eperm),
        T(test_faults_alloc_lock_enomem),
        T(test_faults_alloc_lock_fails_best_effort_unlocked),
        T(test_faults_alloc_dontdump_unsupported_best_effort),
        T(test_faults_alloc_wipeonfork_unsupported_best_effort),
        T(test_faults_alloc_class_slab_retries_smaller),
        T(test_faults_cached_slabs_give_way),
        T(test_faults_realloc_failure_keeps_block),
        T(test_faults_protect_fails_mode_unchanged),
        T(test_faults_free_protect_fails_fatal),
        T(test_faults_purge_protect_fails_others_wiped),
        T(test_faults_arena_create_map_fails),
        T(test_faults_arena_create_guard_fails),
        T(test_faults_arena_create_dontdump_fails),
        T(test_faults_arena_create_wipeonfork_fails),
        T(test_faults_arena_create_lock_fails),
        T(test_faults_arena_grow_fails),
        T(test_faults_arena_chunk_mapped_during_policy_switch),
        T(test_faults_lock_mlock_fails),
        T(test_faults_lock_dontdump_fails),
        T(test_faults_lock_partial_failure_undone),
        T(test_faults_secretmem_unavailable),
        T(test_faults_secretmem_over_memlock),
        T(test_faults_secretmem_guard_fails),
        T(test_faults_secretmem_dontdump_fails),
        T(test_faults_secretmem_auto_falls_back),
        T(test_faults_init_random_fails),
        T(test_faults_init_random_later_calls_clean),
        T(test_faults_init_random_failure_explained),
        T(test_faults_init_guard_probe_falls_back),
    };
#undef T
    return cmocka_run_group_tests(tests, setup, teardown);
}
