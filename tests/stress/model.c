/*
 * model.c - what include/zeroize.h promises about one block, checked against
 * the worker's shadow model: its contents (intact, or zero after a purge),
 * its size and alignment, and its flags (the lock policy and backend it was
 * asked under, with /proc/self/smaps agreeing with zz_info).  Also the
 * process-wide settings as the model knows them (policy, backend).
 *
 * Contents and purges (counters in purge_signals.c):
 *   - a full purge began after the block was last changed and ended before
 *     the check (Ff before the read > S after the change): all zero;
 *   - no purge began since the contents were set (S after the read == F
 *     before the change): exactly the pattern;
 *   - otherwise each byte is its pattern or zero.
 * "Changed" includes a mode change: zz_purge skips a block whose mode
 * another thread is changing (src/purge.c), so only a purge that began after
 * the mode change counts as covering it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stress.h"


/* ---- process-wide settings ---- */

static _Atomic unsigned long settings_seq;
static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;

void zs_settings_read(struct zs_setting_snap *s)
{
    s->seq = atomic_load(&settings_seq);
    s->policy = zz_get_lock_policy();
    s->backend = zz_get_backend();
}

void zs_settings_settle(const struct zs_setting_snap *s, int *policy, int *backend)
{
    unsigned long now = atomic_load(&settings_seq);
    int known = now == s->seq && (now & 1) == 0;
    *policy = known ? s->policy : -1;
    *backend = known ? s->backend : -1;
}

static void switch_setting(int is_policy, int value)
{
    ZS_CHECK(pthread_mutex_lock(&settings_lock) == 0, "pthread_mutex_lock");
    atomic_fetch_add(&settings_seq, 1);
    int rc = is_policy ? zz_set_lock_policy(value) : zz_set_backend(value);
    ZS_CHECK(rc == 0, "zz_set_%s(%d) returned %d, errno %d", is_policy ? "lock_policy" : "backend",
             value, rc, errno);
    int now = is_policy ? zz_get_lock_policy() : zz_get_backend();
    ZS_CHECK(now == value, "zz_get_%s() is %d right after setting %d",
             is_policy ? "lock_policy" : "backend", now, value);
    atomic_fetch_add(&settings_seq, 1);
    ZS_CHECK(pthread_mutex_unlock(&settings_lock) == 0, "pthread_mutex_unlock");
}

void zs_settings_switch_policy(int policy)
{
    switch_setting(1, policy);
}

void zs_settings_switch_backend(int backend)
{
    switch_setting(0, backend);
}

/* ---- bytes of blocks that purges race with on purpose ---- */

/* The harness's own accesses to secret blocks race with zz_purge's wipes by
 * design (the model accepts either value).  TSan is not shown them: the
 * suppression in tsan.supp needs the wipe's stack, which TSan cannot always
 * restore ("failed to restore the stack").  The library's own accesses stay
 * instrumented.  Volatile byte accesses: what the model reads is what was
 * there. */
#if defined(__SANITIZE_THREAD__)
#define ZS_RACY __attribute__((no_sanitize("thread"), noinline))
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZS_RACY __attribute__((no_sanitize("thread"), noinline))
#endif
#endif
#ifndef ZS_RACY
#define ZS_RACY __attribute__((noinline))
#endif

ZS_RACY void zs_block_fill(unsigned char *dst, const unsigned char *src, size_t n)
{
    volatile unsigned char *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = src[i];
}

ZS_RACY void zs_block_read(unsigned char *dst, const unsigned char *src, size_t n)
{
    const volatile unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = s[i];
}

unsigned char *zs_scratch(size_t n)
{
    /* per thread, so forked children (one thread, allocator locks perhaps
     * held by threads that do not exist there) never need malloc to read */
    static _Thread_local unsigned char buf[ZS_SCRATCH];
    ZS_CHECK(n <= sizeof buf, "internal: a block of %zu bytes is larger than the scratch buffer", n);
    return buf;
}

int zs_all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

void zs_pattern(uint64_t *rng, unsigned char *dst, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            w = zs_rand(rng);
        dst[i] = (unsigned char)(1 + (w & 0xff) % 255);
        w >>= 8;
    }
}

/* ---- the model's bookkeeping ---- */

void zs_model_add(struct zs_thread *t, const struct zs_block *b)
{
    ZS_CHECK(t->nblocks < ZS_MAX_BLOCKS, "internal: model full");
    t->blocks[t->nblocks] = *b;
    t->blocks[t->nblocks].op_born = t->blocks[t->nblocks].op_changed =
        atomic_load(&t->log.next) - 1;
    t->nblocks++;
}

void zs_model_remove(struct zs_thread *t, size_t i)
{
    free(t->blocks[i].expect);
    t->blocks[i] = t->blocks[--t->nblocks];
}

int zs_find_block(struct zs_thread *t, const void *p)
{
    for (size_t i = 0; i < t->nblocks; i++)
        if (t->blocks[i].p == p)
            return (int)i;
    return -1;
}

void zs_model_write(struct zs_thread *t, struct zs_block *b, size_t off, size_t len)
{
    ZS_CHECK(b->mode == ZZ_READWRITE && off + len <= b->n, "internal: bad write");
    uint64_t f_before = zs_purges_done();
    zs_pattern(&t->rng, b->expect + off, len);
    zs_block_fill(b->p + off, b->expect + off, len);
    if (off == 0 && len == b->n)
        b->fw = f_before;
    b->settled = zs_purges_started();
    b->op_changed = atomic_load(&t->log.next) - 1;
}

static const char *verdict_name(enum zs_verdict v)
{
    return v == ZS_EXACT ? "intact" : v == ZS_ZERO ? "zero (a purge covered it)" : "pattern or zero";
}

enum zs_verdict zs_model_check(struct zs_thread *t, struct zs_block *b, const char *when)
{
    if (b->n == 0)
        return ZS_EXACT;
    unsigned char *got = zs_scratch(b->n);
    /* Read before any mode change of ours: a purge that overlaps our own
     * zz_protect below may skip the block (src/purge.c), so only one that
     * ended before it counts as covering the block. */
    uint64_t full_before = zs_purges_done_full();
    uint64_t done_before = zs_purges_done();
    int restore = 0;
    if (b->mode == ZZ_NOACCESS) {
        int rc = zz_protect(b->p, ZZ_READONLY);
        ZS_CHECK(rc == 0, "%s: zz_protect(%p, READONLY) of a NOACCESS block: %d errno %d", when,
                 (void *)b->p, rc, errno);
        restore = 1;
    }
    zs_block_read(got, b->p, b->n);
    uint64_t started_after = zs_purges_started();

    enum zs_verdict v = full_before > b->settled ? ZS_ZERO
                        : started_after == b->fw ? ZS_EXACT
                                                 : ZS_EITHER;
    for (size_t i = 0; i < b->n; i++) {
        int ok = v == ZS_ZERO    ? got[i] == 0
                 : v == ZS_EXACT ? got[i] == b->expect[i]
                                 : got[i] == b->expect[i] || got[i] == 0;
        if (!ok)
            zs_fail("%s: block %p (%zu bytes, kind %d, mode %d, backend %d) must be %s, but "
                    "byte %zu is 0x%02x (model 0x%02x); purges S=%llu F=%llu Ff=%llu, block "
                    "fw=%llu settled=%llu; made at op #%lu, last written or protected at op #%lu",
                    when, (void *)b->p, b->n, b->kind, b->mode, b->backend, verdict_name(v), i,
                    got[i], b->expect[i], (unsigned long long)started_after,
                    (unsigned long long)done_before, (unsigned long long)full_before,
                    (unsigned long long)b->fw, (unsigned long long)b->settled, b->op_born,
                    b->op_changed);
    }
    /* What was read is the new truth: later, each byte is it or zero, and
     * exactly it if no purge starts from now on. */
    memcpy(b->expect, got, b->n);
    b->fw = done_before;
    if (restore) {
        int rc = zz_protect(b->p, ZZ_NOACCESS);
        ZS_CHECK(rc == 0, "%s: zz_protect(%p, NOACCESS) back: %d errno %d", when, (void *)b->p, rc,
                 errno);
        b->settled = zs_purges_started();
    }
    if (t != NULL) {
        if (v == ZS_EXACT)
            t->n.checks_exact++;
        else if (v == ZS_ZERO)
            t->n.checks_zero++;
        else
            t->n.checks_either++;
    }
    return v;
}

/* ---- flags ---- */

static void flag_names(unsigned info, char *out, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = { { ZZ_INFO_LOCKED, "LOCKED" },         { ZZ_INFO_DONTDUMP, "DONTDUMP" },
                  { ZZ_INFO_WIPEONFORK, "WIPEONFORK" }, { ZZ_INFO_GUARDED, "GUARDED" },
                  { ZZ_INFO_SECRETMEM, "SECRETMEM" },   { ZZ_INFO_CANARY, "CANARY" } };
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (info & names[i].bit) {
            int w = snprintf(out + at, cap - at, "%s%s", at ? "|" : "", names[i].name);
            if (w < 0 || (size_t)w >= cap - at)
                break;
            at += (size_t)w;
        }
    if (at == 0)
        snprintf(out, cap, "none");
}

/* Another thread may lock a block's memory between the caller's zz_info and
 * the smaps read: after zz_set_lock_policy(ZZ_LOCK_REQUIRED) an arena locks
 * a chunk mapped under best effort on its next use, mlock first and the
 * LOCKED flag after.  That upgrade is not a lie in zz_info if zz_info soon
 * agrees; the other direction (LOCKED claimed, 'lo' missing) is never
 * excused.  Returns zz_info once it says LOCKED, or info after 200 ms. */
static unsigned await_locked_flag(const struct zs_block *b, unsigned info)
{
    for (int i = 0; i < 200 && !(info & ZZ_INFO_LOCKED); i++) {
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
        info = zz_info(b->p);
    }
    return info;
}

void zs_check_smaps(const struct zs_block *b, unsigned info, const char *what)
{
    if (b->n == 0)
        return;
    struct zs_vma v;
    ZS_CHECK(zs_smaps_find(b->p, &v) == 0, "%s: block %p is in no VMA of /proc/self/smaps", what,
             (void *)b->p);
    if (zs_has_flag(v.vmflags, "lo") && !(info & ZZ_INFO_LOCKED))
        info = await_locked_flag(b, info);
    char names[128];
    flag_names(info, names, sizeof names);
    int lo = zs_has_flag(v.vmflags, "lo"), dd = zs_has_flag(v.vmflags, "dd");
    int sm = strstr(v.path, "secretmem") != NULL;
    /* ZZ_INFO_WIPEONFORK means "a forked child sees zeros": MADV_WIPEONFORK
     * on anon memory; on secretmem, MADV_DONTFORK ('dc') plus the library's
     * fork handler (zeroize.h, zz_set_backend). */
    int wf = zs_has_flag(v.vmflags, sm ? "dc" : "wf");
#define ZS_AGREE(flag, has, name)                                                                  \
    ZS_CHECK(!!(info & (flag)) == (has),                                                           \
             "%s: zz_info(%p) = %s, but smaps %s '" name "' (VMA %lx-%lx %s \"%s\" VmFlags: %s)",    \
             what, (void *)b->p, names, (has) ? "shows" : "lacks", (unsigned long)v.start,          \
             (unsigned long)v.end, v.perms, v.path, v.vmflags)
    ZS_AGREE(ZZ_INFO_LOCKED, lo, "lo");
    ZS_AGREE(ZZ_INFO_DONTDUMP, dd, "dd");
    ZS_AGREE(ZZ_INFO_WIPEONFORK, wf, "wf (dc on secretmem)");
    ZS_AGREE(ZZ_INFO_SECRETMEM, sm, "/secretmem");
#undef ZS_AGREE
    if (!(info & ZZ_INFO_LOCKED))
        ZS_CHECK(v.locked_kb == 0, "%s: zz_info(%p) = %s (not LOCKED), but smaps says Locked: %ld kB",
                 what, (void *)b->p, names, v.locked_kb);
}

void zs_check_flags(struct zs_thread *t, const struct zs_block *b, unsigned info, int in_child,
                    const char *what)
{
    if (b->n == 0)
        return;
    char names[128];
    flag_names(info, names, sizeof names);
    int backend = b->arena != NULL ? b->arena->backend : b->backend;
    ZS_CHECK(info & ZZ_INFO_GUARDED, "%s: block %p (%zu bytes) is not GUARDED: zz_info = %s", what,
             (void *)b->p, b->n, names);
    ZS_CHECK(info & ZZ_INFO_DONTDUMP, "%s: block %p (%zu bytes) is not DONTDUMP: zz_info = %s", what,
             (void *)b->p, b->n, names);
    if (b->policy == ZZ_LOCK_REQUIRED)
        ZS_CHECK(info & ZZ_INFO_LOCKED,
                 "%s: block %p (%zu bytes) handed out under ZZ_LOCK_REQUIRED without LOCKED: "
                 "zz_info = %s%s",
                 what, (void *)b->p, b->n, names, b->arena ? " (arena block)" : "");
    if (backend == ZZ_BACKEND_SECRETMEM)
        ZS_CHECK(info & ZZ_INFO_SECRETMEM,
                 "%s: block %p (%zu bytes) asked for on ZZ_BACKEND_SECRETMEM lacks SECRETMEM: "
                 "zz_info = %s%s",
                 what, (void *)b->p, b->n, names, b->arena ? " (arena block)" : "");
    if (backend == ZZ_BACKEND_ANON)
        ZS_CHECK(!(info & ZZ_INFO_SECRETMEM),
                 "%s: block %p asked for on ZZ_BACKEND_ANON claims SECRETMEM: zz_info = %s", what,
                 (void *)b->p, names);
    /* on secretmem too: the flag promises what a child sees (zeroize.h) */
    ZS_CHECK(info & ZZ_INFO_WIPEONFORK, "%s: block %p (%zu bytes) is not WIPEONFORK: zz_info = %s",
             what, (void *)b->p, b->n, names);
    if (ZS_ON(ZS_F_SMAPS) && (in_child || zs_child != NULL || t == NULL || zs_chance(&t->rng, 60))) {
        zs_check_smaps(b, info, what);
        if (t != NULL)
            t->n.smaps_checks++;
    }
}

void zs_model_check_new(struct zs_thread *t, struct zs_block *b, const char *what)
{
    if (b->kind != ZS_K_ARENA) {
        size_t sz = zz_size(b->p);
        ZS_CHECK(sz == b->n, "%s: zz_size(%p) = %zu, asked for %zu", what, (void *)b->p, sz, b->n);
    }
    if (b->n > 0) {
        ZS_CHECK((uintptr_t)b->p % 16 == 0, "%s: block %p is not 16-byte aligned", what, (void *)b->p);
        ZS_CHECK((uintptr_t)b->p % b->align == 0, "%s: block %p is not aligned to %zu", what,
                 (void *)b->p, b->align);
    }
    /* A 0-byte arena block points at 16 zero bytes (zeroize.h): no canary
     * shows there (an edge case: --no=edge leaves it out). */
    size_t len = b->n == 0 && b->kind == ZS_K_ARENA && ZS_ON(ZS_F_EDGE) ? 16 : b->n;
    unsigned char *got = zs_scratch(len);
    zs_block_read(got, b->p, len);
    for (size_t i = 0; i < len; i++)
        ZS_CHECK(got[i] == 0, "%s: new block %p (%zu bytes) is not zero-filled: byte %zu is 0x%02x%s",
                 what, (void *)b->p, b->n, i, got[i],
                 b->n == 0 ? " (a 0-byte arena block must point at 16 zero bytes: issue 11, defect 9)"
                           : "");
    b->info = zz_info(b->p);
    zs_check_flags(t, b, b->info, 0, what);
}

void zs_check_clean_failure(const char *what, int err)
{
    const char *why = zz_last_error();
    ZS_CHECK(err == ENOMEM || err == EAGAIN || err == EPERM,
             "%s failed with errno %d (%s); a resource failure must be ENOMEM, EAGAIN or EPERM "
             "(zz_last_error: \"%s\")",
             what, err, strerror(err), why);
    ZS_CHECK(why != NULL && why[0] != '\0', "%s failed (errno %d) with an empty zz_last_error()",
             what, err);
    zs_note_failure(what, -1);
}

void zs_note_failure(const char *what, int want)
{
    int code = zz_last_error_code();
    ZS_CHECK(code != ZZ_ERR_NONE && (want < 0 || code == want),
             "%s failed, but zz_last_error_code() is %d (%s%d): \"%s\"", what, code,
             want < 0 ? "not ZZ_ERR_NONE" : "expected ", want < 0 ? 0 : want, zz_last_error());
    if (zs_self != NULL)
        zs_self->err_code = code;
}

void zs_check_last_error(struct zs_thread *t, const char *when)
{
    if (!ZS_ON(ZS_F_LAST_ERROR))
        return;
    int code = zz_last_error_code();
    ZS_CHECK(code == t->err_code,
             "%s: zz_last_error_code() is %d (\"%s\"), but the thread's last failed call left %d: "
             "a call that succeeded changed it (issue 19, item 5)", when, code, zz_last_error(),
             t->err_code);
}

void zs_check_guards(const struct zs_block *b, const char *what)
{
    if (b->n == 0 || b->kind == ZS_K_ARENA)
        return;
    /* The block ends within its slot's last page (an aligned one may end
     * further from it) and a guard page follows; a guard page precedes the
     * slot's first page, which holds the block's start unless alignment
     * slack added a page. */
    uintptr_t end = ((uintptr_t)b->p + b->n + zs_page - 1) & ~(uintptr_t)(zs_page - 1);
    ZS_CHECK(zs_probe_faults((const void *)end),
             "%s: block %p (%zu bytes, zz_info 0x%x): the page right after it (%p) is readable: "
             "no guard page", what, (void *)b->p, b->n, b->info, (void *)end);
    if (b->align > 16)
        return;
    uintptr_t before = ((uintptr_t)b->p & ~(uintptr_t)(zs_page - 1)) - 1;
    ZS_CHECK(zs_probe_faults((const void *)before),
             "%s: block %p (%zu bytes, zz_info 0x%x): the byte before its first page (%p) is "
             "readable: no guard page", what, (void *)b->p, b->n, b->info, (void *)before);
}
