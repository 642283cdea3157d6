/*
 * ops.c - one step of a worker: a random operation on the zz_alloc family,
 * zz_realloc, zz_protect, zz_lock/zz_unlock of the worker's own memory,
 * purges, policy and backend switches, bad arguments; arena operations are in
 * ops_arena.c, forked children in fork_check.c.  Every call's result is
 * checked against include/zeroize.h and the worker's shadow model.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "stress.h"

static const char *mode_name(int m)
{
    return m == ZZ_NOACCESS ? "NOACCESS" : m == ZZ_READONLY ? "READONLY" : "READWRITE";
}

static size_t pick_size(struct zs_thread *t)
{
    uint64_t r = zs_below(&t->rng, 1000);
    if (r < 30)
        return 0;
    if (r < 500)
        return 1 + zs_below(&t->rng, 64);
    if (r < 800)
        return 65 + zs_below(&t->rng, 960);
    if (r < 960 || !ZS_ON(ZS_F_BIG))
        return 1025 + zs_below(&t->rng, 15360);
    if (r < 990)
        return 16385 + zs_below(&t->rng, 49152);
    return 65537 + zs_below(&t->rng, 70000);
}

/* A failed allocation: clean, and (with CAP_IPC_LOCK, no lock limit) only for
 * reasons the header allows. */
static void alloc_failed(struct zs_thread *t, const char *what, int err)
{
    zs_check_clean_failure(what, err);
    t->n.clean_failures++;
    if (!zs_cfg.nocap && err != ENOMEM)
        zs_fail("%s failed with errno %d (%s) in a process that holds CAP_IPC_LOCK: \"%s\"", what,
                err, strerror(err), zz_last_error());
}

static int random_backend(struct zs_thread *t)
{
    if (!ZS_ON(ZS_F_SECRETMEM))
        return ZZ_BACKEND_ANON;
    static const int b[] = { ZZ_BACKEND_ANON, ZZ_BACKEND_SECRETMEM, ZZ_BACKEND_AUTO };
    return b[zs_below(&t->rng, 3)];
}

/* A random block, or -1; want_rw: only READWRITE blocks of n > 0;
 * plain: only zz_alloc-family blocks. */
static int pick_block(struct zs_thread *t, int want_rw, int plain)
{
    if (t->nblocks == 0)
        return -1;
    size_t start = zs_below(&t->rng, t->nblocks);
    for (size_t k = 0; k < t->nblocks; k++) {
        size_t i = (start + k) % t->nblocks;
        const struct zs_block *b = &t->blocks[i];
        if (want_rw && (b->mode != ZZ_READWRITE || b->n == 0))
            continue;
        if (plain && b->kind == ZS_K_ARENA)
            continue;
        return (int)i;
    }
    return -1;
}

static void op_alloc(struct zs_thread *t, int kind)
{
    if (t->nblocks >= ZS_MAX_BLOCKS)
        return;
    size_t n = pick_size(t), align = 16;
    int asked = -1;
    char what[96];
    struct zs_setting_snap snap;
    zs_settings_read(&snap);
    void *p;
    if (kind == ZS_K_ALIGNED) {
        align = (size_t)1 << (4 + zs_below(&t->rng, 9)); /* 16 .. 4096 */
        snprintf(what, sizeof what, "zz_alloc_aligned(%zu, %zu)", n, align);
        zs_log(t, "%s", what);
        p = zz_alloc_aligned(n, align);
    } else if (kind == ZS_K_BACKEND) {
        asked = random_backend(t);
        snprintf(what, sizeof what, "zz_alloc_backend(%zu, %d)", n, asked);
        zs_log(t, "%s", what);
        p = zz_alloc_backend(n, asked);
    } else {
        snprintf(what, sizeof what, "zz_alloc(%zu)", n);
        zs_log(t, "%s", what);
        p = zz_alloc(n);
    }
    int err = errno;
    int policy, backend;
    zs_settings_settle(&snap, &policy, &backend);
    t->n.allocs++;
    if (p == NULL) {
        zs_log(t, "  -> NULL errno %d", err);
        alloc_failed(t, what, err);
        return;
    }
    zs_log(t, "  -> %p", p);
    struct zs_block b = { .p = p, .n = n, .align = align, .kind = kind, .mode = ZZ_READWRITE,
                          .backend = kind == ZS_K_BACKEND ? asked : backend, .policy = policy };
    if (b.backend == ZZ_BACKEND_AUTO)
        b.backend = -1;
    b.expect = n ? calloc(1, n) : NULL;
    ZS_CHECK(n == 0 || b.expect != NULL, "calloc");
    b.fw = zs_purges_done();
    b.settled = zs_purges_started();
    zs_model_check_new(t, &b, what);
    if (ZS_ON(ZS_F_GUARDS) && zs_chance(&t->rng, 50))
        zs_check_guards(&b, what);
    zs_model_add(t, &b);
}

static void op_free(struct zs_thread *t)
{
    int i = pick_block(t, 0, 0);
    if (i < 0)
        return;
    struct zs_block *b = &t->blocks[i];
    if (b->kind == ZS_K_ARENA) {
        zs_arena_free_block(t, (size_t)i);
        return;
    }
    if (zs_chance(&t->rng, 500))
        zs_model_check(t, b, "before zz_free");
    zs_log(t, "zz_free(%p) n=%zu mode=%s", (void *)b->p, b->n, mode_name(b->mode));
    errno = EDOM;
    zz_free(b->p);
    ZS_CHECK(errno == EDOM, "zz_free(%p) changed errno to %d", (void *)b->p, errno);
    zs_model_remove(t, (size_t)i);
    t->n.frees++;
}

static void op_write(struct zs_thread *t)
{
    int i = pick_block(t, 1, 0);
    if (i < 0)
        return;
    struct zs_block *b = &t->blocks[i];
    size_t off = 0, len = b->n;
    if (zs_chance(&t->rng, 300)) {
        off = zs_below(&t->rng, b->n);
        len = 1 + zs_below(&t->rng, b->n - off);
    }
    zs_log(t, "write %p [%zu, +%zu) of %zu", (void *)b->p, off, len, b->n);
    zs_model_write(t, b, off, len);
}

static void op_check(struct zs_thread *t)
{
    int i = pick_block(t, 0, 0);
    if (i < 0)
        return;
    struct zs_block *b = &t->blocks[i];
    zs_log(t, "check %p n=%zu mode=%s", (void *)b->p, b->n, mode_name(b->mode));
    zs_model_check(t, b, "check");
    unsigned info = zz_info(b->p);
    zs_check_flags(t, b, info, 0, "zz_info of a live block");
}

static void check_mode_in_smaps(const struct zs_block *b)
{
    if (b->n == 0)
        return;
    /* A purge makes a protected block writable while it wipes it: only a
     * read of smaps that no purge overlapped tells the block's own mode. */
    uint64_t s_before = zs_purges_started(), f_before = zs_purges_done();
    struct zs_vma v;
    ZS_CHECK(zs_smaps_find(b->p, &v) == 0, "block %p in no VMA", (void *)b->p);
    if (s_before != f_before || zs_purges_started() != s_before)
        return;
    const char *want = b->mode == ZZ_NOACCESS ? "---" : b->mode == ZZ_READONLY ? "r--" : "rw-";
    ZS_CHECK(strncmp(v.perms, want, 3) == 0,
             "zz_protect(%p, %s) returned 0 but the VMA is %s (%lx-%lx)", (void *)b->p,
             mode_name(b->mode), v.perms, (unsigned long)v.start, (unsigned long)v.end);
}

static void op_protect(struct zs_thread *t)
{
    int i = pick_block(t, 0, 0);
    if (i < 0)
        return;
    struct zs_block *b = &t->blocks[i];
    int mode = (int)zs_below(&t->rng, 3);
    zs_log(t, "zz_protect(%p, %s) n=%zu%s", (void *)b->p, mode_name(mode), b->n,
           b->kind == ZS_K_ARENA ? " (arena)" : "");
    int rc = zz_protect(b->p, mode);
    int err = errno;
    t->n.protects++;
    if (b->kind == ZS_K_ARENA) {
        ZS_CHECK(rc == -1 && err == EINVAL, "zz_protect of an arena block returned %d errno %d, "
                 "not -1/EINVAL", rc, err);
        zs_note_failure("zz_protect of an arena block", ZZ_ERR_ARGUMENT);
        return;
    }
    if (rc != 0) {
        ZS_CHECK(rc == -1 && err == ENOMEM, "zz_protect(%p, %s) returned %d errno %d", (void *)b->p,
                 mode_name(mode), rc, err);
        zs_note_failure("zz_protect", ZZ_ERR_MAPCOUNT);
        t->n.clean_failures++;
    } else {
        b->mode = mode;
    }
    b->settled = zs_purges_started();
    b->op_changed = atomic_load(&t->log.next) - 1;
    if (rc == 0 && ZS_ON(ZS_F_SMAPS) && zs_chance(&t->rng, 80))
        check_mode_in_smaps(b);
}

static void op_realloc(struct zs_thread *t)
{
    int i = zs_chance(&t->rng, 50) ? -1 : pick_block(t, 0, 1);
    struct zs_block old = { .p = NULL, .n = 0, .mode = ZZ_READWRITE, .align = 16 };
    if (i >= 0) {
        old = t->blocks[i];
        if (old.mode != ZZ_NOACCESS)
            zs_model_check(t, &t->blocks[i], "before zz_realloc");
        old = t->blocks[i];
    } else if (t->nblocks >= ZS_MAX_BLOCKS) {
        return;
    }
    size_t n = pick_size(t);
    struct zs_setting_snap snap;
    zs_settings_read(&snap);
    zs_log(t, "zz_realloc(%p, %zu) old n=%zu mode=%s", (void *)old.p, n, old.n, mode_name(old.mode));
    uint64_t f_before = zs_purges_done();
    void *q = zz_realloc(old.p, n);
    int err = errno;
    int policy, backend;
    zs_settings_settle(&snap, &policy, &backend);
    t->n.reallocs++;
    char what[96];
    snprintf(what, sizeof what, "zz_realloc(%p, %zu)", (void *)old.p, n);
    if (old.p != NULL && old.mode == ZZ_NOACCESS) {
        ZS_CHECK(q == NULL && err == EACCES, "%s of a NOACCESS block returned %p errno %d, not "
                 "NULL/EACCES", what, q, err);
        zs_note_failure("zz_realloc of a NOACCESS block (issue 19, item 6b)", ZZ_ERR_NOACCESS);
        zs_model_check(t, &t->blocks[i], "NOACCESS block after a refused zz_realloc");
        return;
    }
    if (q == NULL) {
        zs_log(t, "  -> NULL errno %d", err);
        alloc_failed(t, what, err);
        if (i >= 0)
            zs_model_check(t, &t->blocks[i], "block after a failed zz_realloc");
        return;
    }
    zs_log(t, "  -> %p", q);
    struct zs_block b = { .p = q, .n = n, .align = 16, .kind = ZS_K_REALLOC, .mode = ZZ_READWRITE,
                          .policy = policy, .backend = backend == ZZ_BACKEND_AUTO ? -1 : backend };
    if (i >= 0) {
        /* Issue 11, defect 4: the block keeps its backend and alignment. */
        if (ZS_ON(ZS_F_REALLOC_KEEPS)) {
            b.backend = (old.info & ZZ_INFO_SECRETMEM) ? ZZ_BACKEND_SECRETMEM : ZZ_BACKEND_ANON;
            b.align = old.align;
        } else {
            b.backend = -1;
        }
    }
    b.expect = n ? calloc(1, n) : NULL;
    ZS_CHECK(n == 0 || b.expect != NULL, "calloc");
    size_t keep = old.n < n ? old.n : n;
    if (keep)
        memcpy(b.expect, old.expect, keep);
    b.fw = i >= 0 ? old.fw : f_before;
    b.settled = zs_purges_started();
    size_t sz = zz_size(q);
    ZS_CHECK(sz == n, "%s: zz_size of the new block is %zu", what, sz);
    if (n > 0)
        ZS_CHECK((uintptr_t)q % b.align == 0, "%s: the new block %p is not aligned to %zu (the old "
                 "block was a zz_alloc_aligned one: issue 11, defect 4)", what, q, b.align);
    b.info = zz_info(q);
    if (i >= 0)
        zs_model_remove(t, (size_t)i);
    zs_model_add(t, &b);
    struct zs_block *nb = &t->blocks[t->nblocks - 1];
    zs_model_check(t, nb, "contents after zz_realloc");
    zs_check_flags(t, nb, nb->info, 0, what);
}

/* ---- caller-owned memory ---- */

static void cm_page_flags(struct zs_thread *t, size_t page, int *lo, int *dd)
{
    struct zs_vma v;
    ZS_CHECK(zs_smaps_find(t->cm + page * zs_page, &v) == 0, "caller page in no VMA");
    *lo = zs_has_flag(v.vmflags, "lo");
    *dd = zs_has_flag(v.vmflags, "dd");
}

/* Every page's lock as the model sees it: locked iff some zz_lock covers it
 * (or we locked it ourselves). */
static void cm_check_locks(struct zs_thread *t, const char *when)
{
    if (!ZS_ON(ZS_F_SMAPS))
        return;
    for (size_t pg = 0; pg < ZS_CALLER_PAGES; pg++) {
        int lo, dd;
        cm_page_flags(t, pg, &lo, &dd);
        int foreign = t->cm_foreign && pg == ZS_CALLER_PAGES - 1;
        int want = t->cm_refs[pg] > 0 || foreign;
        ZS_CHECK(lo == want, "%s: caller page %zu (%p) has %zu zz_lock(s)%s, but smaps %s 'lo'%s",
                 when, pg, (void *)(t->cm + pg * zs_page), (size_t)t->cm_refs[pg],
                 foreign ? " and was locked by the caller itself" : "", lo ? "shows" : "lacks",
                 foreign && !lo ? " (zz_unlock undid a lock it did not make: issue 11, defect 8)" : "");
        ZS_CHECK(dd == want, "%s: caller page %zu has %zu zz_lock(s)%s, but smaps %s 'dd'%s", when,
                 pg, (size_t)t->cm_refs[pg], foreign ? " and was made DONTDUMP by the caller" : "",
                 dd ? "shows" : "lacks", foreign && !dd ? " (issue 11, defect 8)" : "");
    }
}

void zs_check_caller_memory(struct zs_thread *t, const char *when)
{
    size_t len = ZS_CALLER_PAGES * zs_page;
    unsigned char *got = zs_scratch(len);
    zs_block_read(got, t->cm, len);
    for (size_t i = 0; i < len; i++)
        ZS_CHECK(got[i] == t->cm_expect[i], "%s: caller-owned byte %zu (%p) is 0x%02x, expected "
                 "0x%02x: something wrote memory the library does not own", when, i,
                 (void *)(t->cm + i), got[i], t->cm_expect[i]);
}

static void op_lock(struct zs_thread *t)
{
    if (t->nlocks >= ZS_MAX_LOCKS)
        return;
    size_t total = ZS_CALLER_PAGES * zs_page;
    size_t off = zs_below(&t->rng, total - 1);
    size_t len = 1 + zs_below(&t->rng, zs_chance(&t->rng, 300) ? total - off : 256);
    if (off + len > total)
        len = total - off;
    zs_log(t, "zz_lock(cm+%zu, %zu)", off, len);
    int rc = zz_lock(t->cm + off, len);
    int err = errno;
    t->n.locks++;
    if (rc != 0) {
        ZS_CHECK(rc == -1, "zz_lock returned %d", rc);
        zs_check_clean_failure("zz_lock", err);
        t->n.clean_failures++;
        if (!zs_cfg.nocap)
            zs_fail("zz_lock(cm+%zu, %zu) failed with errno %d in a process with CAP_IPC_LOCK: %s",
                    off, len, err, zz_last_error());
        cm_check_locks(t, "after a failed zz_lock (nothing may stay locked)");
        return;
    }
    t->locks[t->nlocks++] = (struct zs_lockrange){ off, len };
    for (size_t pg = off / zs_page; pg <= (off + len - 1) / zs_page; pg++)
        t->cm_refs[pg]++;
    if (zs_chance(&t->rng, 200))
        cm_check_locks(t, "after zz_lock");
}

static void op_unlock(struct zs_thread *t)
{
    if (t->nlocks == 0)
        return;
    size_t k = zs_below(&t->rng, t->nlocks);
    struct zs_lockrange r = t->locks[k];
    int keep = zs_chance(&t->rng, 400);
    zs_log(t, "%s(cm+%zu, %zu)", keep ? "zz_unlock_keep" : "zz_unlock", r.off, r.len);
    int rc = keep ? zz_unlock_keep(t->cm + r.off, r.len) : zz_unlock(t->cm + r.off, r.len);
    ZS_CHECK(rc == 0, "%s(cm+%zu, %zu) returned %d errno %d", keep ? "zz_unlock_keep" : "zz_unlock",
             r.off, r.len, rc, errno);
    t->locks[k] = t->locks[--t->nlocks];
    int emptied = 0;
    for (size_t pg = r.off / zs_page; pg <= (r.off + r.len - 1) / zs_page; pg++) {
        t->cm_refs[pg]--;
        emptied |= t->cm_refs[pg] == 0;
    }
    if (!keep)
        memset(t->cm_expect + r.off, 0, r.len);
    zs_check_caller_memory(t, keep ? "after zz_unlock_keep" : "after zz_unlock (wiped range)");
    if (emptied || zs_chance(&t->rng, 100))
        cm_check_locks(t, "after zz_unlock");
}

static void op_caller_write(struct zs_thread *t)
{
    size_t total = ZS_CALLER_PAGES * zs_page;
    size_t off = zs_below(&t->rng, total);
    size_t len = 1 + zs_below(&t->rng, total - off < 512 ? total - off : 512);
    zs_log(t, "caller memory: check, then write [%zu, +%zu)", off, len);
    zs_check_caller_memory(t, "caller memory (purges must never write it)");
    zs_pattern(&t->rng, t->cm_expect + off, len);
    zs_block_fill(t->cm + off, t->cm_expect + off, len);
}

/* ---- bad arguments ---- */

static void expect_einval_ptr(void *p, int err, const char *what)
{
    ZS_CHECK(p == NULL && err == EINVAL, "%s returned %p errno %d, not NULL/EINVAL", what, p, err);
    zs_note_failure(what, ZZ_ERR_ARGUMENT);
}

static void op_edge(struct zs_thread *t)
{
    static const char *const names[] = {
        "zz_alloc_aligned with a bad alignment", "zz_lock of ranges that wrap (defect 7)",
        "unknown policy and backend", "zz_protect(p, 5)", "NULL arena, unknown backend",
        "zz_alloc(SIZE_MAX)", "NULL frees", "zz_purge_on_signals(SIGKILL)", "zz_get_stats",
    };
    unsigned k = (unsigned)zs_below(&t->rng, 9);
    zs_log(t, "edge case: %s", names[k]);
    t->n.edge++;
    void *p;
    int rc;
    switch (k) {
    case 0:
        p = zz_alloc_aligned(16, 24);
        expect_einval_ptr(p, errno, "zz_alloc_aligned(16, 24)");
        p = zz_alloc_aligned(16, 2 * zs_page);
        expect_einval_ptr(p, errno, "zz_alloc_aligned(16, 2 pages)");
        break;
    case 1:
        /* Issue 11, defect 7: a range whose end wraps is EINVAL at once (the
         * progress watchdog reports a hang). */
        rc = zz_lock((void *)(uintptr_t)-4096, 4096);
        ZS_CHECK(rc == -1 && errno == EINVAL, "zz_lock((void *)-4096, 4096) returned %d errno %d, "
                 "not -1/EINVAL", rc, errno);
        rc = zz_lock(t->cm, SIZE_MAX);
        ZS_CHECK(rc == -1 && errno == EINVAL, "zz_lock(p, SIZE_MAX) returned %d errno %d", rc, errno);
        zs_note_failure("zz_lock(p, SIZE_MAX)", ZZ_ERR_ARGUMENT);
        /* page 1 is never mapped (vm.mmap_min_addr) */
        rc = zz_lock((void *)(uintptr_t)zs_page, 16);
        ZS_CHECK(rc == -1 && errno == ENOMEM, "zz_lock of an unmapped page returned %d errno %d, not "
                 "-1/ENOMEM", rc, errno);
        zs_note_failure("zz_lock of an unmapped page", ZZ_ERR_UNMAPPED);
        break;
    case 2:
        rc = zz_set_lock_policy(7);
        ZS_CHECK(rc == -1 && errno == EINVAL, "zz_set_lock_policy(7) returned %d errno %d", rc, errno);
        zs_note_failure("zz_set_lock_policy(7)", ZZ_ERR_ARGUMENT);
        rc = zz_set_backend(9);
        ZS_CHECK(rc == -1 && errno == EINVAL, "zz_set_backend(9) returned %d errno %d", rc, errno);
        zs_note_failure("zz_set_backend(9)", ZZ_ERR_ARGUMENT);
        break;
    case 3: {
        int i = pick_block(t, 0, 1);
        if (i < 0)
            break;
        struct zs_block *b = &t->blocks[i];
        rc = zz_protect(b->p, 5);
        ZS_CHECK(rc == -1 && errno == EINVAL, "zz_protect(p, 5) returned %d errno %d", rc, errno);
        zs_note_failure("zz_protect(p, 5)", ZZ_ERR_ARGUMENT);
        if (b->mode != ZZ_NOACCESS)
            zs_model_check(t, b, "after a refused zz_protect(p, 5)");
        break;
    }
    case 4:
        p = zz_arena_alloc(NULL, 16);
        expect_einval_ptr(p, errno, "zz_arena_alloc(NULL, 16)");
        p = zz_alloc_backend(16, 9);
        expect_einval_ptr(p, errno, "zz_alloc_backend(16, 9)");
        break;
    case 5:
        p = zz_alloc(SIZE_MAX);
        ZS_CHECK(p == NULL && errno == ENOMEM, "zz_alloc(SIZE_MAX) returned %p errno %d", p, errno);
        zs_note_failure("zz_alloc(SIZE_MAX)", ZZ_ERR_NOMEM);
        p = zz_alloc(SIZE_MAX - zs_page);
        ZS_CHECK(p == NULL && errno == ENOMEM, "zz_alloc(SIZE_MAX - page) returned %p errno %d", p,
                 errno);
        zs_note_failure("zz_alloc(SIZE_MAX - page)", ZZ_ERR_NOMEM);
        break;
    case 6:
        errno = EDOM;
        zz_free(NULL);
        zz_arena_free(NULL, NULL);
        zz_arena_destroy(NULL);
        ZS_CHECK(errno == EDOM, "zz_free(NULL) & co changed errno to %d", errno);
        ZS_CHECK(zz_size(NULL) == 0 && zz_info(NULL) == 0, "zz_size(NULL)/zz_info(NULL) not 0");
        break;
    case 7: {
        static const int bad[] = { SIGKILL };
        rc = zz_purge_on_signals(bad, 1);
        ZS_CHECK(rc == -1 && errno == EINVAL, "zz_purge_on_signals(SIGKILL) returned %d errno %d", rc,
                 errno);
        zs_note_failure("zz_purge_on_signals(SIGKILL)", ZZ_ERR_ARGUMENT);
        break;
    }
    default: {
        zz_stats s;
        zz_get_stats(&s);
        ZS_CHECK(s.live_bytes <= SIZE_MAX / 2 && s.live_blocks <= SIZE_MAX / 2,
                 "zz_get_stats: counters wrapped (live_blocks %zu, live_bytes %zu)", s.live_blocks,
                 s.live_bytes);
        break;
    }
    }
}

/* ---- the free-slot cache ---- */

/* A new decay period for zz_alloc's cache (from forgetting at once to a
 * day), then a burst: up to 300 blocks of one size, each checked zero-filled
 * and written, then all freed, newest first or oldest first.  The blocks
 * stay out of the model: other threads' purges may zero them, which is why
 * only the zero fill is checked. */
static void op_cache_burst(struct zs_thread *t)
{
    static const unsigned long decays[] = { 0, 1, 50, 10000, 86400000ul };
    unsigned long ms = decays[zs_below(&t->rng, sizeof decays / sizeof decays[0])];
    zs_log(t, "zz_set_cache_decay_ms(%lu)", ms);
    ZS_CHECK(zz_set_cache_decay_ms(ms) == 0, "zz_set_cache_decay_ms(%lu) failed", ms);
    enum { MAXB = 300 };
    void *p[MAXB];
    size_t n = 1 + zs_below(&t->rng, 3 * 4096), count = 1 + zs_below(&t->rng, MAXB), got = 0;
    zs_log(t, "burst of %zu x zz_alloc(%zu)", count, n);
    for (; got < count; got++) {
        p[got] = zz_alloc(n);
        if (p[got] == NULL) {
            int err = errno;
            zs_log(t, "  -> NULL errno %d after %zu", err, got);
            alloc_failed(t, "zz_alloc in a burst", err);
            break;
        }
        const unsigned char *c = p[got];
        for (size_t k = 0; k < n; k++)
            ZS_CHECK(c[k] == 0, "burst block %p of %zu bytes: byte %zu is %#x, not 0", p[got], n,
                     k, c[k]);
        memset(p[got], 0xa5, n);
    }
    int newest_first = (int)zs_below(&t->rng, 2);
    for (size_t k = 0; k < got; k++)
        zz_free(p[newest_first ? got - 1 - k : k]);
    t->n.allocs += got;
    t->n.frees += got;
}

/* ---- zz_trim ---- */

/* zz_trim from any thread at any time: it preserves errno, takes every
 * thread's cached slots and unmaps the slabs left empty, and never touches
 * a live block (the caller checks its own blocks after it; the others'
 * checks run as usual while slabs go away under them). */
void zs_trim_check(const char *what)
{
    errno = EDOM;
    zz_trim();
    ZS_CHECK(errno == EDOM, "%s changed errno to %d", what, errno);
    zz_stats s;
    zz_get_stats(&s);
    /* (Not cache_locked_bytes <= cache_share_bytes: free slots in slabs
     * that hold a live block stay locked whatever the share, slab.c's
     * share_excused, and a limit lowered under running threads makes the
     * share smaller at once: seeds 11, 12, 13 without CAP_IPC_LOCK.) */
    ZS_CHECK(s.cached_bytes <= s.mapped_bytes && s.cache_locked_bytes <= s.cached_bytes,
             "%s: then zz_get_stats says cached_bytes %zu, mapped_bytes %zu, cache_locked_bytes %zu",
             what, s.cached_bytes, s.mapped_bytes, s.cache_locked_bytes);
}

static void op_trim(struct zs_thread *t)
{
    zs_log(t, "zz_trim");
    zs_trim_check("zz_trim");
    t->n.trims++;
    zs_check_all(t);
}

/* ---- the step ---- */

enum {
    OP_ALLOC, OP_ALIGNED, OP_BACKEND, OP_REALLOC, OP_FREE, OP_WRITE, OP_CHECK, OP_PROTECT,
    OP_LOCK, OP_UNLOCK, OP_CALLER_WRITE, OP_ARENA, OP_PURGE, OP_POLICY, OP_SET_BACKEND, OP_FORK,
    OP_MISUSE, OP_EDGE, OP_RECHAIN, OP_CACHE, OP_RLIMIT, OP_TRIM, OP_COUNT
};

/* Weights per 10,000 steps.  Forks are few: each child checks a lot. */
static const unsigned weights[OP_COUNT] = {
    [OP_ALLOC] = 1400, [OP_ALIGNED] = 400, [OP_BACKEND] = 500, [OP_REALLOC] = 500,
    [OP_FREE] = 1500,  [OP_WRITE] = 1300,  [OP_CHECK] = 1000,  [OP_PROTECT] = 500,
    [OP_LOCK] = 300,   [OP_UNLOCK] = 300,  [OP_CALLER_WRITE] = 150, [OP_ARENA] = 2200,
    [OP_PURGE] = 60,   [OP_POLICY] = 25,   [OP_SET_BACKEND] = 25, [OP_FORK] = 6,
    [OP_MISUSE] = 5,   [OP_EDGE] = 60,     [OP_RECHAIN] = 8,       [OP_CACHE] = 15,
    [OP_RLIMIT] = 10,  [OP_TRIM] = 15,
};

static int op_enabled(unsigned op)
{
    switch (op) {
    case OP_ALIGNED: return ZS_ON(ZS_F_ALIGNED);
    case OP_REALLOC: return ZS_ON(ZS_F_REALLOC);
    case OP_PROTECT: return ZS_ON(ZS_F_PROTECT);
    case OP_LOCK: case OP_UNLOCK: return ZS_ON(ZS_F_LOCK);
    case OP_ARENA: return ZS_ON(ZS_F_ARENAS);
    case OP_PURGE: return ZS_ON(ZS_F_PURGE);
    case OP_POLICY: return ZS_ON(ZS_F_POLICY);
    case OP_SET_BACKEND: return ZS_ON(ZS_F_BACKEND);
    case OP_FORK: return ZS_ON(ZS_F_FORK);
    case OP_MISUSE: return ZS_ON(ZS_F_MISUSE);
    case OP_EDGE: return ZS_ON(ZS_F_EDGE);
    case OP_RECHAIN: return ZS_ON(ZS_F_RECHAIN) && ZS_ON(ZS_F_SIGNALS);
    case OP_CACHE: return ZS_ON(ZS_F_CACHE);
    case OP_RLIMIT: return ZS_ON(ZS_F_RLIMIT) && zs_cfg.nocap;
    case OP_TRIM: return ZS_ON(ZS_F_TRIM);
    default: return 1;
    }
}

void zs_step(struct zs_thread *t)
{
    unsigned total = 0;
    for (unsigned k = 0; k < OP_COUNT; k++)
        total += weights[k];
    unsigned op;
    for (;;) {
        unsigned r = (unsigned)zs_below(&t->rng, total);
        for (op = 0; op < OP_COUNT && r >= weights[op]; op++)
            r -= weights[op];
        if (op_enabled(op))
            break;
    }
    t->n.ops++;
    switch (op) {
    case OP_ALLOC: op_alloc(t, ZS_K_ALLOC); break;
    case OP_ALIGNED: op_alloc(t, ZS_K_ALIGNED); break;
    case OP_BACKEND: op_alloc(t, ZS_K_BACKEND); break;
    case OP_REALLOC: op_realloc(t); break;
    case OP_FREE: op_free(t); break;
    case OP_WRITE: op_write(t); break;
    case OP_CHECK: op_check(t); break;
    case OP_PROTECT: op_protect(t); break;
    case OP_LOCK: op_lock(t); break;
    case OP_UNLOCK: op_unlock(t); break;
    case OP_CALLER_WRITE: op_caller_write(t); break;
    case OP_ARENA: zs_arena_step(t, (unsigned)zs_below(&t->rng, 1000)); break;
    case OP_PURGE:
        zs_log(t, "zz_purge");
        zs_purge_direct();
        t->n.purges++;
        break;
    case OP_POLICY: {
        int p = zs_below(&t->rng, 2) ? ZZ_LOCK_REQUIRED : ZZ_LOCK_BEST_EFFORT;
        zs_log(t, "zz_set_lock_policy(%s)", p == ZZ_LOCK_REQUIRED ? "REQUIRED" : "BEST_EFFORT");
        zs_settings_switch_policy(p);
        t->n.policy_switches++;
        break;
    }
    case OP_SET_BACKEND: {
        int b = random_backend(t);
        zs_log(t, "zz_set_backend(%d)", b);
        zs_settings_switch_backend(b);
        t->n.backend_switches++;
        break;
    }
    case OP_FORK: zs_fork_check(t, 0); break;
    case OP_MISUSE: zs_misuse_check(t); break;
    case OP_EDGE: op_edge(t); break;
    case OP_RECHAIN: zs_rechain(t); break;
    case OP_CACHE: op_cache_burst(t); break;
    case OP_RLIMIT: zs_rlimit_step(t); break;
    case OP_TRIM: op_trim(t); break;
    default: break;
    }
    zs_check_last_error(t, "after the operation last in this thread's log");
}

/* ---- per-worker set-up and tear-down ---- */

void zs_thread_init(struct zs_thread *t)
{
    size_t len = ZS_CALLER_PAGES * zs_page;
    t->cm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ZS_CHECK(t->cm != MAP_FAILED, "mmap of caller memory: %s", strerror(errno));
    zs_pattern(&t->rng, t->cm_expect, len);
    memcpy(t->cm, t->cm_expect, len);
    if (ZS_ON(ZS_F_FOREIGN) && ZS_ON(ZS_F_LOCK)) {
        /* A page the caller locked itself (the raw system call: sanitizer
         * runtimes turn libc's mlock into a no-op). */
        unsigned char *pg = t->cm + (ZS_CALLER_PAGES - 1) * zs_page;
        if (syscall(SYS_mlock, pg, zs_page) == 0) {
            ZS_CHECK(madvise(pg, zs_page, MADV_DONTDUMP) == 0, "madvise(DONTDUMP): %s",
                     strerror(errno));
            t->cm_foreign = 1;
        }
    }
}

void zs_check_all(struct zs_thread *t)
{
    for (size_t i = 0; i < t->nblocks; i++) {
        zs_model_check(t, &t->blocks[i], "full check");
        zs_check_flags(t, &t->blocks[i], zz_info(t->blocks[i].p), 0, "full check");
    }
    zs_check_caller_memory(t, "full check of caller memory");
}

void zs_thread_release_all(struct zs_thread *t)
{
    while (t->nblocks > 0) {
        struct zs_block *b = &t->blocks[t->nblocks - 1];
        if (b->kind == ZS_K_ARENA) {
            zs_arena_free_block(t, t->nblocks - 1);
        } else {
            zs_model_check(t, b, "at the end");
            zs_log(t, "zz_free(%p) at the end", (void *)b->p);
            zz_free(b->p);
            zs_model_remove(t, t->nblocks - 1);
        }
    }
    while (t->narenas > 0)
        zs_arena_destroy_own(t, t->narenas - 1);
    while (t->nlocks > 0)
        op_unlock(t);
    cm_check_locks(t, "after every zz_unlock");
    if (t->cm_foreign) {
        ZS_CHECK(syscall(SYS_munlock, t->cm + (ZS_CALLER_PAGES - 1) * zs_page, zs_page) == 0,
                 "munlock: %s", strerror(errno));
        t->cm_foreign = 0;
    }
    ZS_CHECK(munmap(t->cm, ZS_CALLER_PAGES * zs_page) == 0, "munmap: %s", strerror(errno));
    t->cm = NULL;
}
