/*
 * fuzz_ops.c - drives the zeroize API with a sequence of operations decoded
 * from the fuzzer's input, against a shadow model of what every block, arena
 * and locked range should hold, and checks the library against the model
 * after every step.
 *
 * The harness never misuses the API (misuse is fatal by design, so a fuzzer
 * would only rediscover the abort): it frees only live blocks, writes only
 * inside blocks it may write, reads NOACCESS blocks through /proc/self/mem.
 * Everything else the header promises is checked:
 *   - contents of every live block (zz_alloc, zz_realloc, arenas) and of the
 *     caller-owned pool that zz_lock/zz_unlock act on;
 *   - zz_size, zz_info flags, 16-byte (or requested) alignment, no overlap,
 *     zero fill, the guard page right after a zz_alloc block's 16-byte span,
 *     the page mode after zz_protect (via process_vm_readv/writev, which
 *     honour page permissions without faulting);
 *   - zz_get_stats: live_blocks/live_bytes exactly, locked_bytes against
 *     mapped_bytes and the lock counts of the pool's pages;
 *   - the documented errors (EINVAL, EACCES, ENOMEM for a full fixed arena)
 *     and that zz_free preserves errno;
 *   - zz_equal / zz_is_zero agree with memcmp.
 * A violation prints one line and aborts, which libFuzzer reports as a crash.
 *
 * Two builds:
 *   - with -DZZ_FUZZ_LIBFUZZER (clang -fsanitize=fuzzer): libFuzzer's main;
 *   - without: a main() that replays files and directories given on the
 *     command line, and "--random N SEED" pseudo-random inputs, so ctest can
 *     run the same checks with any compiler.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "zeroize.h"

/* Not in the public header: which guard path the process uses decides how
 * locked_bytes relates to mapped_bytes (see src/pages.c).  Linked from the
 * static library, where hidden visibility does not matter. */
int zzi_pages_uses_guard_install(void);

#define MAX_BLOCKS 32
#define MAX_ARENAS 6 /* more than a thread cache has slots (4): slots get reused */
#define MAX_ARENA_BLOCKS 48
#define MAX_LOCKS 32
#define POOL_PAGES 8
#define MAX_STEPS 400
#define ARENA_MAX_PACKED 16336 /* a growable arena's larger blocks get pages of their own */

struct block {
    unsigned char *p;      /* NULL: slot unused */
    size_t n, align;
    int mode;
    int secret;            /* on the memfd_secret backend */
    unsigned char *shadow; /* expected contents, n bytes (at least 1 allocated) */
};

struct arena_block {
    unsigned char *p;
    size_t n;
    unsigned char *shadow;
};

struct arena {
    zz_arena *a;           /* NULL: slot unused */
    size_t capacity;
    int secret;            /* created on the memfd_secret backend */
    struct arena_block b[MAX_ARENA_BLOCKS];
};

struct lock_rec {
    size_t off, len;
    int used;
};

struct model {
    struct block blk[MAX_BLOCKS];
    struct arena ar[MAX_ARENAS];
    struct lock_rec locks[MAX_LOCKS];
    unsigned page_locks[POOL_PAGES]; /* zz_lock count of each pool page */
    unsigned char *pool;             /* caller-owned memory for zz_lock */
    unsigned char pool_shadow[POOL_PAGES * 4096];
    uint64_t rng;
    unsigned step;
    const char *op;
};

static struct model M;
static size_t page_size;
#ifdef ZZ_FUZZ_SHIELD /* fuzz_shield.h: shielded secrets (libzeroize-shield) */
static void shield_check(size_t *blocks, size_t *bytes);
static void shield_after_purge(void);
#endif
static int memfd = -1;
static unsigned expected_info;
static int have_secretmem; /* zz_alloc_backend(.., ZZ_BACKEND_SECRETMEM) works here */

/* ---- reporting ------------------------------------------------------------ */

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_ops: step %u (%s): ", M.step, M.op ? M.op : "-");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            bug(__VA_ARGS__);                                                                      \
    } while (0)

/* ---- input ----------------------------------------------------------------- */

struct input {
    const uint8_t *d;
    size_t n, at;
};

static int more(const struct input *in)
{
    return in->at < in->n;
}

static uint8_t u8(struct input *in)
{
    return in->at < in->n ? in->d[in->at++] : 0;
}

static uint16_t u16(struct input *in)
{
    uint16_t lo = u8(in);
    return (uint16_t)(lo | (uint16_t)u8(in) << 8);
}

static uint64_t next_rand(void)
{
    uint64_t z = (M.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random bytes that are never all zero, so a wipe is always visible. */
static void fill_random(unsigned char *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)(next_rand() | 1);
}

/* A block size: mostly small, sometimes the page-geometry edges, sometimes
 * larger than the biggest slab class (a mapping of its own). */
static size_t pick_size(struct input *in)
{
    static const size_t edges[] = {0, 1, 15, 16, 17, 31, 32, 33, 4079, 4080, 4081,
                                   4095, 4096, 4097, 8192, 65520, 65536, 65537};
    uint8_t sel = u8(in);
    uint16_t v = u16(in);
    switch (sel % 8) {
    case 0:
    case 1:
    case 2:
        return v % 65;
    case 3:
        return v % 1025;
    case 4:
        return v % (page_size + 1);
    case 5:
        return edges[v % (sizeof edges / sizeof edges[0])] * (page_size / 4096);
    case 6:
        return (size_t)v + (sel & 0x10 ? 4096 : 0); /* up to 69631: past 16 pages */
    default:
        return v % 257;
    }
}

static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* ---- reading memory without faulting ------------------------------------------ */

/* 1 if the calling process can read (write=0) or write (write=1) the byte at
 * p according to its page permissions.  process_vm_readv/writev on ourselves
 * go through the same permission checks as a user access, but report EFAULT
 * instead of raising SIGSEGV.  A write writes back the byte read through
 * /proc/self/mem, so the contents never change. */
static int can_access(const void *p, int write)
{
    unsigned char byte = 0;
    if (write && pread(memfd, &byte, 1, (off_t)(uintptr_t)p) != 1)
        bug("cannot read %p through /proc/self/mem", p);
    struct iovec local = {&byte, 1}, remote = {(void *)(uintptr_t)p, 1};
    ssize_t r = write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                      : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (r == 1)
        return 1;
    CHECK(r < 0 && errno == EFAULT, "process_vm_%s: unexpected result %zd errno %d",
          write ? "writev" : "readv", r, errno);
    return 0;
}

/* 1 if the model's n bytes are all zero (memcmp against a zero page: the
 * byte loop is slow under coverage instrumentation). */
static int all_zero(const unsigned char *b, size_t n)
{
    static const unsigned char zeros[4096];
    for (size_t off = 0; off < n; off += sizeof zeros) {
        size_t len = n - off < sizeof zeros ? n - off : sizeof zeros;
        if (memcmp(b + off, zeros, len) != 0)
            return 0;
    }
    return 1;
}

/* Compares n bytes at p with want, whatever p's protection.  `readable`
 * says whether p may be read directly. */
static void expect_bytes(const unsigned char *p, const unsigned char *want, size_t n,
                         int readable, const char *what)
{
    if (n == 0)
        return;
    if (readable) {
        int same = memcmp(p, want, n) == 0;
        CHECK(same, "%s %p (%zu bytes): contents differ from the model", what, (const void *)p, n);
        CHECK(zz_equal(p, want, n) == 1, "zz_equal says %s differs, memcmp says equal", what);
        int zero = all_zero(want, n);
        CHECK(zz_is_zero(p, n) == zero, "zz_is_zero(%s) = %d, expected %d", what,
              zz_is_zero(p, n), zero);
        return;
    }
    unsigned char buf[4096];
    for (size_t off = 0; off < n; off += sizeof buf) {
        size_t len = n - off < sizeof buf ? n - off : sizeof buf;
        ssize_t got = pread(memfd, buf, len, (off_t)(uintptr_t)(p + off));
        CHECK(got == (ssize_t)len, "cannot read %s through /proc/self/mem", what);
        CHECK(memcmp(buf, want + off, len) == 0,
              "%s %p (NOACCESS, %zu bytes): contents differ from the model", what,
              (const void *)p, n);
    }
}

/* ---- model checks ------------------------------------------------------------------ */

static size_t pool_locked_pages(void)
{
    size_t k = 0;
    for (int i = 0; i < POOL_PAGES; i++)
        k += M.page_locks[i] != 0;
    return k;
}

static void check_mode(const struct block *b)
{
    if (b->n == 0 || b->mode == ZZ_READWRITE || b->secret)
        return; /* a zero-size block points at a guard page; the kernel
                   itself cannot reach secretmem pages */
    int r = can_access(b->p, 0), w = can_access(b->p, 1);
    if (b->mode == ZZ_NOACCESS)
        CHECK(!r && !w, "NOACCESS block %p is accessible (read %d write %d)", (void *)b->p, r, w);
    else
        CHECK(r && !w, "READONLY block %p: read %d write %d", (void *)b->p, r, w);
}

static void check_block(const struct block *b)
{
    CHECK(zz_size(b->p) == b->n, "zz_size(%p) = %zu, expected %zu", (void *)b->p, zz_size(b->p),
          b->n);
    unsigned info = zz_info(b->p), want = expected_info | (b->secret ? ZZ_INFO_SECRETMEM : 0);
    CHECK(info == want, "zz_info(%p) = %#x, expected %#x", (void *)b->p, info, want);
    if (b->secret && b->mode == ZZ_NOACCESS)
        ; /* neither readable by us nor through /proc/self/mem */
    else
        expect_bytes(b->p, b->shadow, b->n, b->mode != ZZ_NOACCESS, "block");
    check_mode(b);
}

static void check_all(void)
{
    size_t blocks = 0, bytes = 0;
    for (int i = 0; i < MAX_BLOCKS; i++) {
        if (M.blk[i].p == NULL)
            continue;
        check_block(&M.blk[i]);
        blocks++;
        bytes += M.blk[i].n;
    }
    for (int a = 0; a < MAX_ARENAS; a++) {
        if (M.ar[a].a == NULL)
            continue;
        for (int i = 0; i < MAX_ARENA_BLOCKS; i++) {
            struct arena_block *ab = &M.ar[a].b[i];
            if (ab->p == NULL)
                continue;
            int packed = M.ar[a].capacity > 0 || ab->n <= ARENA_MAX_PACKED;
            unsigned want = expected_info | (M.ar[a].secret ? ZZ_INFO_SECRETMEM : 0) |
                            (packed ? ZZ_INFO_PACKED : 0);
            CHECK(zz_info(ab->p) == want, "zz_info(arena block %p) = %#x, expected %#x",
                  (void *)ab->p, zz_info(ab->p), want);
            expect_bytes(ab->p, ab->shadow, ab->n, 1, "arena block");
            blocks++;
            bytes += ab->n;
        }
    }
    expect_bytes(M.pool, M.pool_shadow, POOL_PAGES * page_size, 1, "zz_lock pool");

#ifdef ZZ_FUZZ_SHIELD
    shield_check(&blocks, &bytes);
#endif
    zz_stats st;
    zz_get_stats(&st);
    CHECK(st.live_blocks == blocks, "live_blocks %zu, model %zu", st.live_blocks, blocks);
    CHECK(st.live_bytes == bytes, "live_bytes %zu, model %zu", st.live_bytes, bytes);
    CHECK(st.mapped_bytes % page_size == 0 && st.locked_bytes % page_size == 0,
          "stats not in pages: mapped %zu locked %zu", st.mapped_bytes, st.locked_bytes);
    size_t pool_locked = pool_locked_pages() * page_size;
    CHECK(st.locked_bytes >= pool_locked, "locked_bytes %zu < pool pages locked %zu",
          st.locked_bytes, pool_locked);
    size_t slab_locked = st.locked_bytes - pool_locked;
    if (expected_info & ZZ_INFO_LOCKED) {
        if (zzi_pages_uses_guard_install())
            CHECK(slab_locked == st.mapped_bytes,
                  "guard-install path: slab locked_bytes %zu != mapped_bytes %zu", slab_locked,
                  st.mapped_bytes);
        else
            CHECK(slab_locked <= st.mapped_bytes && (st.mapped_bytes == 0) == (slab_locked == 0),
                  "mprotect path: slab locked_bytes %zu vs mapped_bytes %zu", slab_locked,
                  st.mapped_bytes);
    }
    if (blocks > 0)
        CHECK(st.mapped_bytes > 0, "live blocks but mapped_bytes is 0");
}

/* A new block or arena block must not overlap anything live. */
static void check_no_overlap(const unsigned char *p, size_t n, const void *self)
{
    size_t len = n ? n : 1;
    uintptr_t a = (uintptr_t)p, e = a + len;
    for (int i = 0; i < MAX_BLOCKS; i++) {
        const struct block *b = &M.blk[i];
        if (b->p == NULL || (const void *)b == self)
            continue;
        uintptr_t ba = (uintptr_t)b->p, be = ba + (b->n ? b->n : 1);
        CHECK(e <= ba || be <= a, "new block %p+%zu overlaps block %p+%zu", (const void *)p, n,
              (void *)b->p, b->n);
    }
    for (int k = 0; k < MAX_ARENAS; k++) {
        for (int i = 0; M.ar[k].a != NULL && i < MAX_ARENA_BLOCKS; i++) {
            const struct arena_block *b = &M.ar[k].b[i];
            if (b->p == NULL || (const void *)b == self)
                continue;
            uintptr_t ba = (uintptr_t)b->p, be = ba + (b->n ? b->n : 1);
            CHECK(e <= ba || be <= a, "new block %p+%zu overlaps arena block %p+%zu",
                  (const void *)p, n, (void *)b->p, b->n);
        }
    }
}

/* A fresh zz_alloc block: aligned, zero-filled, its span ends on a guard
 * page, and a guard page precedes its first data page. */
static void check_fresh_block(const unsigned char *p, size_t n, size_t align, int secret)
{
    size_t a = align < 16 ? 16 : align;
    CHECK(((uintptr_t)p & (a - 1)) == 0, "block %p not aligned to %zu", (const void *)p, a);
    if (n > 0) {
        size_t span = round_up(n, a);
        uintptr_t end = (uintptr_t)p + span;
        CHECK(end % page_size == 0, "block %p+%zu: span does not end on a page boundary",
              (const void *)p, n);
        size_t pages = (span + page_size - 1) / page_size;
        CHECK(all_zero(p, n), "new block %p+%zu not zero-filled", (const void *)p, n);
        if (secret)
            return; /* process_vm_readv cannot tell a guard from secretmem */
        CHECK(!can_access((void *)end, 0), "no guard page after block %p+%zu", (const void *)p,
              n);
        CHECK(!can_access((void *)(end - (pages + 1) * page_size), 0),
              "no guard page before block %p+%zu", (const void *)p, n);
    }
}

/* After a free: "the old contents are gone: a read through a stale pointer
 * yields zeros or faults".  Read through /proc/self/mem, which neither
 * faults nor cares about protections: either the page is gone (EIO/EFAULT)
 * or it reads as zeros.  Must run before anything else is allocated. */
static void check_stale(const unsigned char *p, size_t n, int secret, const char *what)
{
    unsigned char buf[4096];
    if (secret)
        return; /* /proc/self/mem cannot read secretmem pages */
    for (size_t off = 0; off < n; off += sizeof buf) {
        size_t len = n - off < sizeof buf ? n - off : sizeof buf;
        ssize_t got = pread(memfd, buf, len, (off_t)(uintptr_t)(p + off));
        if (got <= 0)
            return; /* unmapped: a stale access faults */
        CHECK(all_zero(buf, (size_t)got), "%s %p+%zu: bytes from %zu on not zero after free",
              what, (const void *)p, n, off);
    }
}

/* ---- model updates -------------------------------------------------------------------- */

static unsigned char *shadow_new(size_t n)
{
    unsigned char *s = calloc(1, n ? n : 1);
    if (s == NULL)
        abort();
    return s;
}

static struct block *free_block_slot(struct input *in)
{
    int start = u8(in) % MAX_BLOCKS;
    for (int k = 0; k < MAX_BLOCKS; k++) {
        struct block *b = &M.blk[(start + k) % MAX_BLOCKS];
        if (b->p == NULL)
            return b;
    }
    return NULL;
}

static struct block *live_block(struct input *in)
{
    int start = u8(in) % MAX_BLOCKS;
    for (int k = 0; k < MAX_BLOCKS; k++) {
        struct block *b = &M.blk[(start + k) % MAX_BLOCKS];
        if (b->p != NULL)
            return b;
    }
    return NULL;
}

static void block_forget(struct block *b)
{
    free(b->shadow);
    memset(b, 0, sizeof *b);
}

static void expect_error(const void *r, int want_errno, const char *call)
{
    int e = errno;
    CHECK(r == NULL, "%s succeeded, expected errno %d", call, want_errno);
    CHECK(e == want_errno, "%s: errno %d, expected %d", call, e, want_errno);
    CHECK(zz_last_error()[0] != '\0', "%s failed but zz_last_error() is empty", call);
}

/* ---- operations ------------------------------------------------------------------------ */

static void op_alloc(struct input *in, int aligned, int secret)
{
    struct block *b = free_block_slot(in);
    size_t n = pick_size(in), align = 16;
    uint8_t asel = u8(in);
    if (b == NULL)
        return;
    void *p;
    if (aligned) {
        if (asel >= 240) { /* not a power of two, zero, or above the page size */
            static const size_t bad[] = {0, 3, 24, 48, 8192};
            size_t al = bad[asel % 5];
            errno = 0;
            void *q = zz_alloc_aligned(n, al == 8192 ? 2 * page_size : al);
            expect_error(q, EINVAL, "zz_alloc_aligned(bad alignment)");
            return;
        }
        align = (size_t)1 << (asel % 13);
        if (align > page_size)
            align = page_size;
        p = zz_alloc_aligned(n, align);
    } else if (secret) {
        if (!have_secretmem)
            return;
        p = zz_alloc_backend(n, ZZ_BACKEND_SECRETMEM);
    } else {
        p = zz_alloc(n);
    }
    CHECK(p != NULL, "zz_alloc%s(%zu) failed: errno %d, %s",
          aligned ? "_aligned" : secret ? "_backend" : "", n, errno, zz_last_error());
    check_no_overlap(p, n, NULL);
    check_fresh_block(p, n, align, secret);
    b->secret = secret;
    b->p = p;
    b->n = n;
    b->align = align;
    b->mode = ZZ_READWRITE;
    b->shadow = shadow_new(n);
    if (n > 0 && (asel & 1)) { /* usually fill it with a secret */
        fill_random(b->shadow, n);
        memcpy(b->p, b->shadow, n);
    }
}

static void op_free(struct input *in)
{
    struct block *b = live_block(in);
    if (b == NULL) {
        errno = 4242;
        zz_free(NULL);
        CHECK(errno == 4242, "zz_free(NULL) changed errno");
        return;
    }
    errno = 4242;
    zz_free(b->p);
    CHECK(errno == 4242, "zz_free changed errno to %d", errno);
    check_stale(b->p, b->n, b->secret, "freed block");
    block_forget(b);
}

static void op_realloc(struct input *in)
{
    struct block *b = live_block(in);
    size_t n = pick_size(in);
    if (b == NULL) {
        b = free_block_slot(in);
        if (b == NULL)
            return;
        void *p = zz_realloc(NULL, n);
        CHECK(p != NULL, "zz_realloc(NULL, %zu) failed: errno %d", n, errno);
        check_no_overlap(p, n, NULL);
        check_fresh_block(p, n, 16, 0);
        *b = (struct block){.p = p, .n = n, .align = 16, .mode = ZZ_READWRITE,
                            .shadow = shadow_new(n)};
        return;
    }
    if (b->mode == ZZ_NOACCESS) {
        errno = 0;
        void *q = zz_realloc(b->p, n);
        expect_error(q, EACCES, "zz_realloc(NOACCESS block)");
        return; /* b untouched: check_all verifies it */
    }
    unsigned char *q = zz_realloc(b->p, n);
    CHECK(q != NULL, "zz_realloc(%p, %zu) failed: errno %d, %s", (void *)b->p, n, errno,
          zz_last_error());
    check_no_overlap(q, n, b);
    /* realloc keeps the block's alignment and backend */
    CHECK(((uintptr_t)q & (b->align - 1)) == 0, "zz_realloc result %p not %zu-byte aligned",
          (void *)q, b->align);
    check_stale(b->p, b->n, b->secret, "realloc'd old block");
    unsigned char *s = shadow_new(n);
    memcpy(s, b->shadow, b->n < n ? b->n : n);
    free(b->shadow);
    *b = (struct block){.p = q, .n = n, .align = b->align, .secret = b->secret,
                        .mode = ZZ_READWRITE, .shadow = s};
}

static void op_protect(struct input *in)
{
    struct block *b = live_block(in);
    uint8_t m = u8(in);
    if (b == NULL)
        return;
    if (m % 8 == 7) {
        errno = 0;
        CHECK(zz_protect(b->p, 3 + m) == -1 && errno == EINVAL,
              "zz_protect(unknown mode) did not fail with EINVAL");
        return;
    }
    int mode = m % 3;
    CHECK(zz_protect(b->p, mode) == 0, "zz_protect(%p, %d) failed: errno %d", (void *)b->p, mode,
          errno);
    b->mode = mode;
}

static void write_span(unsigned char *dst, unsigned char *shadow, size_t n, struct input *in)
{
    uint16_t o = u16(in), l = u16(in);
    if (n == 0)
        return;
    size_t off = o % n, len = l % (n - off) + 1;
    fill_random(shadow + off, len);
    memcpy(dst + off, shadow + off, len);
}

static void op_write(struct input *in)
{
    struct block *b = live_block(in);
    if (b == NULL || b->mode != ZZ_READWRITE) {
        u16(in), u16(in);
        return;
    }
    write_span(b->p, b->shadow, b->n, in);
}

static void op_pool_write(struct input *in)
{
    write_span(M.pool, M.pool_shadow, POOL_PAGES * page_size, in);
}

static void op_lock(struct input *in)
{
    size_t total = POOL_PAGES * page_size;
    size_t off = u16(in) % total, len = (size_t)u16(in) % (total - off + 1);
    int slot = -1;
    for (int i = 0; i < MAX_LOCKS; i++)
        if (!M.locks[i].used)
            slot = i;
    if (slot < 0)
        return;
    CHECK(zz_lock(M.pool + off, len) == 0, "zz_lock(pool+%zu, %zu) failed: errno %d", off, len,
          errno);
    if (len == 0)
        return; /* a no-op, nothing to undo */
    M.locks[slot] = (struct lock_rec){off, len, 1};
    for (size_t pg = off / page_size; pg <= (off + len - 1) / page_size; pg++)
        M.page_locks[pg]++;
}

static void unlock_range(size_t off, size_t len, int keep)
{
    int r = keep ? zz_unlock_keep(M.pool + off, len) : zz_unlock(M.pool + off, len);
    CHECK(r == 0, "zz_unlock%s(pool+%zu, %zu) failed: errno %d", keep ? "_keep" : "", off, len,
          errno);
    for (size_t pg = off / page_size; len > 0 && pg <= (off + len - 1) / page_size; pg++)
        if (M.page_locks[pg] > 0)
            M.page_locks[pg]--;
    if (!keep)
        memset(M.pool_shadow + off, 0, len);
}

static void op_unlock(struct input *in)
{
    uint8_t sel = u8(in);
    int keep = sel & 1;
    for (int k = 0; k < MAX_LOCKS; k++) {
        struct lock_rec *l = &M.locks[(sel / 2 + k) % MAX_LOCKS];
        if (l->used) {
            unlock_range(l->off, l->len, keep);
            l->used = 0;
            return;
        }
    }
    /* Nothing locked: unlocking never-locked pages only wipes (or keeps). */
    size_t total = POOL_PAGES * page_size, off = sel * 97u % total;
    unlock_range(off, total - off < 300 ? total - off : 300, keep);
}

static struct arena *arena_pick(struct input *in, int want_live)
{
    int start = u8(in) % MAX_ARENAS;
    for (int k = 0; k < MAX_ARENAS; k++) {
        struct arena *a = &M.ar[(start + k) % MAX_ARENAS];
        if ((a->a != NULL) == want_live)
            return a;
    }
    return NULL;
}

static void op_arena_create(struct input *in)
{
    struct arena *a = arena_pick(in, 0);
    uint8_t sel = u8(in);
    uint16_t v = u16(in);
    if (a == NULL)
        return;
    size_t cap = sel % 3 == 0 ? 0 : (size_t)v * (sel % 3 == 1 ? 1 : 4) + 1;
    int secret = have_secretmem && (sel & 0x80);
    if (secret)
        CHECK(zz_set_backend(ZZ_BACKEND_SECRETMEM) == 0, "zz_set_backend(secretmem) failed");
    a->a = zz_arena_create(cap);
    int e = errno;
    CHECK(zz_set_backend(ZZ_BACKEND_ANON) == 0, "zz_set_backend(anon) failed");
    errno = e;
    CHECK(a->a != NULL, "zz_arena_create(%zu%s) failed: errno %d, %s", cap,
          secret ? ", secretmem" : "", errno, zz_last_error());
    a->capacity = cap;
    a->secret = secret;
}

static void op_arena_alloc(struct input *in)
{
    struct arena *a = arena_pick(in, 1);
    uint8_t sel = u8(in);
    uint16_t v = u16(in);
    if (a == NULL)
        return;
    size_t n = sel % 4 == 0 ? v : v % (sel % 4 == 1 ? 1025u : 65u);
    int slot = -1;
    for (int i = 0; i < MAX_ARENA_BLOCKS && slot < 0; i++)
        if (a->b[(sel + i) % MAX_ARENA_BLOCKS].p == NULL)
            slot = (sel + i) % MAX_ARENA_BLOCKS;
    if (slot < 0)
        return;
    errno = 0;
    unsigned char *p = zz_arena_alloc(a->a, n);
    if (p == NULL && a->capacity > 0) {
        /* A fixed arena may be full: the one allowed failure. */
        CHECK(errno == ENOMEM, "fixed arena alloc(%zu): errno %d, expected ENOMEM", n, errno);
        CHECK(strstr(zz_last_error(), "arena") != NULL, "full arena: zz_last_error() = \"%s\"",
              zz_last_error());
        return;
    }
    CHECK(p != NULL, "zz_arena_alloc(growable, %zu) failed: errno %d, %s", n, errno,
          zz_last_error());
    CHECK(((uintptr_t)p & 15) == 0, "arena block %p not 16-byte aligned", (void *)p);
    check_no_overlap(p, n, NULL);
    CHECK(all_zero(p, n), "new arena block %p+%zu not zero-filled", (void *)p, n);
    struct arena_block *b = &a->b[slot];
    *b = (struct arena_block){.p = p, .n = n, .shadow = shadow_new(n)};
    if (n > 0 && (sel & 0x10)) {
        fill_random(b->shadow, n);
        memcpy(p, b->shadow, n);
    }
}

static struct arena_block *arena_live_block(struct arena *a, uint8_t sel)
{
    for (int i = 0; i < MAX_ARENA_BLOCKS; i++) {
        struct arena_block *b = &a->b[(sel + i) % MAX_ARENA_BLOCKS];
        if (b->p != NULL)
            return b;
    }
    return NULL;
}

static void op_arena_free(struct input *in)
{
    struct arena *a = arena_pick(in, 1);
    uint8_t sel = u8(in);
    if (a == NULL)
        return;
    struct arena_block *b = arena_live_block(a, sel);
    errno = 4242;
    zz_arena_free(a->a, b ? b->p : NULL);
    CHECK(errno == 4242, "zz_arena_free changed errno to %d", errno);
    if (b != NULL) {
        check_stale(b->p, b->n, a->secret, "freed arena block");
        free(b->shadow);
        memset(b, 0, sizeof *b);
    }
}

static void op_arena_write(struct input *in)
{
    struct arena *a = arena_pick(in, 1);
    uint8_t sel = u8(in);
    struct arena_block *b = a ? arena_live_block(a, sel) : NULL;
    if (b == NULL) {
        u16(in), u16(in);
        return;
    }
    write_span(b->p, b->shadow, b->n, in);
}

static void arena_forget(struct arena *a)
{
    for (int i = 0; i < MAX_ARENA_BLOCKS; i++)
        free(a->b[i].shadow);
    memset(a, 0, sizeof *a);
}

static void op_arena_destroy(struct input *in)
{
    struct arena *a = arena_pick(in, 1);
    if (a == NULL) {
        zz_arena_destroy(NULL);
        return;
    }
    zz_arena_destroy(a->a);
    for (int i = 0; i < MAX_ARENA_BLOCKS; i++)
        if (a->b[i].p != NULL)
            check_stale(a->b[i].p, a->b[i].n, a->secret, "block of a destroyed arena");
    arena_forget(a);
}

static void op_purge(void)
{
    zz_purge();
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (M.blk[i].p != NULL)
            memset(M.blk[i].shadow, 0, M.blk[i].n);
    for (int k = 0; k < MAX_ARENAS; k++)
        for (int i = 0; M.ar[k].a != NULL && i < MAX_ARENA_BLOCKS; i++)
            if (M.ar[k].b[i].p != NULL)
                memset(M.ar[k].b[i].shadow, 0, M.ar[k].b[i].n);
#ifdef ZZ_FUZZ_SHIELD
    shield_after_purge();
#endif
}

/* Documented error returns and NULL arguments. */
static void op_edge(struct input *in)
{
    uint8_t sel = u8(in);
    switch (sel % 6) {
    case 0:
        CHECK(zz_size(NULL) == 0 && zz_info(NULL) == 0, "zz_size/zz_info(NULL) not 0");
        break;
    case 1:
        errno = 0;
        expect_error(zz_alloc(SIZE_MAX - sel), ENOMEM, "zz_alloc(huge)");
        break;
    case 2: {
        struct arena *a = arena_pick(in, 1);
        struct arena_block *b = a ? arena_live_block(a, sel) : NULL;
        if (b != NULL) {
            errno = 0;
            CHECK(zz_protect(b->p, ZZ_READONLY) == -1 && errno == EINVAL,
                  "zz_protect(arena block) did not fail with EINVAL");
        }
        break;
    }
    case 3:
        errno = 0;
        CHECK(zz_lock((void *)(UINTPTR_MAX - 100), 4096) == -1 && errno == EINVAL,
              "zz_lock(wrapping range) did not fail with EINVAL");
        CHECK(zz_lock(M.pool, 0) == 0 && zz_unlock(M.pool, 0) == 0, "zero-length lock failed");
        break;
    case 4:
        errno = 0;
        expect_error(zz_arena_alloc(NULL, 16), EINVAL, "zz_arena_alloc(NULL arena)");
        break;
    default: {
        int policy = sel & 0x40 ? ZZ_LOCK_BEST_EFFORT : ZZ_LOCK_REQUIRED;
        errno = 0;
        CHECK(zz_set_lock_policy(7) == -1 && errno == EINVAL, "bad lock policy accepted");
        CHECK(zz_set_lock_policy(policy) == 0 && zz_get_lock_policy() == policy,
              "zz_set_lock_policy(%d) did not stick", policy);
        break;
    }
    }
}

#ifdef ZZ_FUZZ_SHIELD
#include "fuzz_shield.h"
#endif

/* ---- driver ------------------------------------------------------------------------------ */

static const char *const op_names[] = {"alloc",       "alloc_aligned", "free",        "realloc",
                                       "protect",     "write",         "lock",        "unlock",
                                       "arena_create", "arena_alloc",  "arena_free",  "arena_write",
                                       "arena_destroy", "purge",       "pool_write",  "edge",
                                       "alloc_secretmem"
#ifdef ZZ_FUZZ_SHIELD
                                       , "shield_seal", "shield_seal_block", "shield_open",
                                       "shield_close", "shield_destroy", "shield_rekey"
#endif
};
#define NOPS (sizeof op_names / sizeof op_names[0])

static void run_op(unsigned op, struct input *in)
{
    switch (op) {
    case 0: op_alloc(in, 0, 0); break;
    case 1: op_alloc(in, 1, 0); break;
    case 2: op_free(in); break;
    case 3: op_realloc(in); break;
    case 4: op_protect(in); break;
    case 5: op_write(in); break;
    case 6: op_lock(in); break;
    case 7: op_unlock(in); break;
    case 8: op_arena_create(in); break;
    case 9: op_arena_alloc(in); break;
    case 10: op_arena_free(in); break;
    case 11: op_arena_write(in); break;
    case 12: op_arena_destroy(in); break;
    case 13: op_purge(); break;
    case 14: op_pool_write(in); break;
    case 15: op_edge(in); break;
#ifdef ZZ_FUZZ_SHIELD
    case 17: op_shield_seal(in); break;
    case 18: op_shield_seal_block(in); break;
    case 19: op_shield_open(in); break;
    case 20: op_shield_close(in); break;
    case 21: op_shield_destroy(in); break;
    case 22: op_shield_rekey(); break;
#endif
    default: op_alloc(in, 0, 1); break;
    }
}

/* Frees everything the model holds, so each input starts from nothing. */
static void teardown(void)
{
    M.op = "teardown";
#ifdef ZZ_FUZZ_SHIELD
    shield_teardown();
#endif
    for (int i = 0; i < MAX_BLOCKS; i++) {
        if (M.blk[i].p != NULL) {
            zz_free(M.blk[i].p);
            block_forget(&M.blk[i]);
        }
    }
    for (int k = 0; k < MAX_ARENAS; k++) {
        if (M.ar[k].a != NULL) {
            zz_arena_destroy(M.ar[k].a);
            arena_forget(&M.ar[k]);
        }
    }
    for (int i = 0; i < MAX_LOCKS; i++) {
        if (M.locks[i].used) {
            unlock_range(M.locks[i].off, M.locks[i].len, 1);
            M.locks[i].used = 0;
        }
    }
    for (int i = 0; i < POOL_PAGES; i++)
        CHECK(M.page_locks[i] == 0, "model: pool page %d still counted", i);
    check_all();
    zz_stats st;
    zz_get_stats(&st);
    /* The free-slot cache keeps at most one empty slab per class (16 classes
     * of at most 2 MiB each): with nothing live, no more than that stays. */
    size_t bound = 17 * ((size_t)2 << 20) + 17 * 2 * page_size;
    CHECK(st.mapped_bytes <= bound, "nothing live but %zu bytes stay mapped", st.mapped_bytes);
    zz_set_lock_policy(ZZ_LOCK_REQUIRED);
}

static void init_once(void)
{
    if (page_size != 0)
        return;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    if (page_size > 4096) {
        fprintf(stderr, "fuzz_ops: pages larger than 4096 bytes are not supported\n");
        abort();
    }
    memfd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (memfd < 0)
        memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    M.pool = mmap(NULL, POOL_PAGES * page_size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memfd < 0 || M.pool == MAP_FAILED) {
        perror("fuzz_ops: setup");
        abort();
    }
    /* What every block should report: as root (CAP_IPC_LOCK) or within
     * RLIMIT_MEMLOCK, everything; otherwise run unlocked, best-effort. */
    void *probe = zz_alloc(1);
    if (probe == NULL) {
        zz_set_lock_policy(ZZ_LOCK_BEST_EFFORT);
        probe = zz_alloc(1);
    }
    if (probe == NULL) {
        fprintf(stderr, "fuzz_ops: zz_alloc(1) fails: %s\n", zz_last_error());
        abort();
    }
    expected_info = zz_info(probe);
    zz_free(probe);
    /* The memfd_secret backend, where the kernel has it (Linux 5.14+). */
    probe = zz_alloc_backend(1, ZZ_BACKEND_SECRETMEM);
    if (probe != NULL) {
        have_secretmem = (zz_info(probe) & ZZ_INFO_SECRETMEM) != 0;
        if (have_secretmem && (zz_info(probe) | ZZ_INFO_SECRETMEM) != (expected_info | ZZ_INFO_SECRETMEM)) {
            fprintf(stderr, "fuzz_ops: secretmem block info %#x\n", zz_info(probe));
            abort();
        }
        zz_free(probe);
    }
    unsigned must = ZZ_INFO_GUARDED | ZZ_INFO_CANARY | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK;
    if ((expected_info & must) != must) {
        fprintf(stderr, "fuzz_ops: zz_info of a new block is %#x, lacks %#x\n", expected_info,
                must & ~expected_info);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    struct input in = {data, size, 0};
    M.rng = 0x5EC2E7;
    M.step = 0;
    M.op = "start";
    check_all();
    while (more(&in) && M.step < MAX_STEPS) {
        unsigned op = u8(&in) % NOPS;
        M.step++;
        M.op = op_names[op];
        run_op(op, &in);
        check_all();
    }
    teardown();
    return 0;
}

#ifndef ZZ_FUZZ_LIBFUZZER
/* ---- replay driver (no libFuzzer) ----------------------------------------------------------- */

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

static int replay_path(const char *path, unsigned *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    struct dirent **names;
    int k = scandir(path, &names, NULL, alphasort);
    if (k < 0) {
        perror(path);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < k; i++) {
        if (names[i]->d_name[0] != '.' && rc == 0) {
            char full[4096];
            snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
            rc = replay_path(full, count);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* n inputs of 64..1087 bytes from a fixed seed: more sequences than the
 * corpus holds, the same ones on every run. */
static void replay_random(unsigned n, uint64_t seed)
{
    static uint8_t buf[1088];
    uint64_t s = seed;
    for (unsigned i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 64 + (size_t)(s >> 33) % 1024;
        for (size_t j = 0; j < len; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[j] = (uint8_t)(s >> 56);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
}

int main(int argc, char **argv)
{
    unsigned files = 0, randoms = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR... [--random N SEED]\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--random") == 0 && i + 2 < argc) {
            randoms = (unsigned)strtoul(argv[i + 1], NULL, 0);
            replay_random(randoms, strtoull(argv[i + 2], NULL, 0));
            i += 2;
        } else if (replay_path(argv[i], &files) != 0) {
            return 1;
        }
    }
    if (files + randoms == 0) {
        fprintf(stderr, "fuzz_ops: no input replayed\n");
        return 1;
    }
    printf("fuzz_ops: %u corpus files and %u random inputs replayed, all checks passed\n", files,
           randoms);
    return 0;
}
#endif
