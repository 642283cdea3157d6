/*
 * arena.c - zz_arena_*: many small secrets packed into a few guarded, locked
 * chunks.  All metadata (free lists, sizes) is kept outside the chunks, so a
 * write out of bounds can never redirect the allocator.
 *
 * A chunk is one slab of pages.c (a single slot between guard pages), cut
 * into runs of RUN_BYTES; each run serves one size class and is a row of
 * cells, every cell a head canary followed by the block:
 *
 *   guard | run: [canary|block][canary|block] ... [canary|block][canary] | run ... | guard
 *                 16     span                                   trailing
 *
 * A block's overflow meets the next cell's head canary (or the run's trailing
 * canary); an underflow meets its own head canary.  Head canaries are written
 * once, when the run is set up, and stay in place while cells come and go;
 * only [p, p+span) is wiped on free.  A 32-byte secret thus costs 48 bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RUN_BYTES (16u << 10)
/* Size classes: spans of 16..1024 bytes in steps of 16 (exact: a 32-byte
 * secret costs 48 bytes), then steps of 64 to 4 KiB and of 256 beyond, so no
 * class wastes more than 1/16 of a block. */
#define SMALL_CLASSES 64u  /* 16 .. 1024 */
#define MEDIUM_CLASSES 48u /* 1088 .. 4096 */
#define LARGE_CLASSES 48u  /* 4352 .. 16384, the last one capped at MAX_BLOCK */
#define NCLASSES (SMALL_CLASSES + MEDIUM_CLASSES + LARGE_CLASSES)
#define MAX_BLOCK (RUN_BYTES - 3 * ZZ_CANARY_LEN)
#define FIRST_CHUNK_RUNS 4u
#define MAX_CHUNK_RUNS 256u

struct chunk;

struct run {
    struct chunk *chunk;
    struct run *prev, *next;  /* the class's runs with a free cell */
    unsigned char *start;
    unsigned cls, cell, ncells, nfree;
    unsigned fork_gen;        /* zzi_fork_generation when canaries were written */
    uint16_t *free_stack;
    _Atomic uint32_t *size_plus1; /* per cell; 0 when free */
    unsigned *epoch;
};

struct chunk {
    struct zzi_region region;
    struct zz_arena *arena;
    unsigned char *data;
    size_t nruns;
    _Atomic size_t runs_used; /* runs[0..runs_used) are set up; purge reads it */
    struct run **runs;
};

struct zz_arena {
    zzi_lock_t lock;
    struct zz_arena *list_prev, *list_next;
    int growable;
    int backend;              /* of its first chunk; later chunks follow it */
    size_t total_runs;        /* in all chunks */
    struct chunk **chunks;    /* sorted by address */
    size_t nchunks;
    _Atomic size_t live_blocks, live_bytes; /* written under lock */
    struct run *avail[NCLASSES];
    size_t runs_in_class[NCLASSES];
};

static pthread_mutex_t arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static struct zz_arena *arenas;

/* ---- size classes ------------------------------------------------------- */

static unsigned class_of(size_t n)
{
    size_t span = n == 0 ? 16 : (n + 15) & ~(size_t)15;
    if (span <= 1024)
        return (unsigned)(span / 16 - 1);
    if (span <= 4096)
        return SMALL_CLASSES + (unsigned)((span - 1024 + 63) / 64) - 1;
    return SMALL_CLASSES + MEDIUM_CLASSES + (unsigned)((span - 4096 + 255) / 256) - 1;
}

static size_t class_span(unsigned c)
{
    size_t span;
    if (c < SMALL_CLASSES)
        span = (c + 1) * 16u;
    else if (c < SMALL_CLASSES + MEDIUM_CLASSES)
        span = 1024 + (c - SMALL_CLASSES + 1) * 64u;
    else
        span = 4096 + (c - SMALL_CLASSES - MEDIUM_CLASSES + 1) * 256u;
    return span > MAX_BLOCK ? MAX_BLOCK : span;
}

/* ---- runs --------------------------------------------------------------- */

static void write_run_canaries(struct run *r)
{
    for (unsigned i = 0; i < r->ncells; i++)
        zzi_canary_write(r->start + (size_t)i * r->cell, ZZ_CANARY_LEN);
    unsigned char *tail = r->start + (size_t)r->ncells * r->cell;
    zzi_canary_write(tail, (size_t)(r->start + RUN_BYTES - tail));
    r->fork_gen = atomic_load(&zzi_fork_generation);
}

/* In a forked child WIPEONFORK zeroed the run, canaries and all: write them
 * again (and the partial-tail canaries of live blocks) before use. */
static void refresh_after_fork(struct run *r)
{
    if (zz_likely(r->fork_gen == atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed)))
        return;
    ZZ_VG_QUIET_BEGIN();
    write_run_canaries(r);
    size_t span = class_span(r->cls);
    for (unsigned i = 0; i < r->ncells; i++) {
        uint32_t sp1 = atomic_load_explicit(&r->size_plus1[i], memory_order_relaxed);
        if (sp1 != 0) {
            unsigned char *p = r->start + (size_t)i * r->cell + ZZ_CANARY_LEN;
            zzi_canary_write(p + sp1 - 1, span - (sp1 - 1));
        }
    }
    ZZ_VG_QUIET_END();
}

static struct run *run_new(unsigned char *start, unsigned cls)
{
    size_t span = class_span(cls);
    unsigned cell = (unsigned)(span + ZZ_CANARY_LEN);
    unsigned ncells = (unsigned)((RUN_BYTES - ZZ_CANARY_LEN) / cell);
    struct run *r = calloc(1, sizeof *r + ncells * (sizeof(uint16_t) + sizeof(uint32_t) + sizeof(unsigned)));
    if (r == NULL)
        return NULL;
    r->epoch = (unsigned *)(r + 1);
    r->size_plus1 = (_Atomic uint32_t *)(r->epoch + ncells);
    r->free_stack = (uint16_t *)(void *)(r->epoch + 2 * (size_t)ncells);
    r->start = start;
    r->cls = cls;
    r->cell = cell;
    r->ncells = r->nfree = ncells;
    for (unsigned i = 0; i < ncells; i++)
        r->free_stack[i] = (uint16_t)(ncells - 1 - i);
    ZZ_VG_UNDEFINED(start, RUN_BYTES);
    write_run_canaries(r);
    ZZ_VG_NOACCESS(start, RUN_BYTES);
    return r;
}

static void avail_push(zz_arena *a, struct run *r)
{
    r->prev = NULL;
    r->next = a->avail[r->cls];
    if (r->next)
        r->next->prev = r;
    a->avail[r->cls] = r;
}

static void avail_remove(zz_arena *a, struct run *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        a->avail[r->cls] = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* ---- chunks -------------------------------------------------------------- */

static struct chunk *chunk_new(zz_arena *a, size_t nruns)
{
    struct chunk *c = calloc(1, sizeof *c + nruns * sizeof(struct run *));
    if (c == NULL) {
        zzi_fail(ZZI_FAIL_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    c->runs = (struct run **)(c + 1);
    c->nruns = nruns;
    c->arena = a;
    size_t pages = nruns * RUN_BYTES / zzi_page();
    int rc = a->nchunks == 0 ? zzi_pages_map_slab_auto(pages, 1, &c->region.map)
                             : zzi_pages_map_slab(pages, 1, a->backend, &c->region.map);
    if (rc != 0) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    c->region.kind = ZZI_REGION_ARENA;
    c->region.owner = c;
    c->data = (unsigned char *)c->region.map.base + zzi_page();
    a->backend = c->region.map.backend;
    zzi_global_lock();
    rc = zzi_registry_add(&c->region);
    zzi_global_unlock();
    if (rc != 0) {
        zzi_pages_unmap_slab(&c->region.map);
        free(c);
        zzi_fail(ZZI_FAIL_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    return c;
}

/* A growable arena adds a quarter of its size (at least the first chunk's,
 * at most MAX_CHUNK_RUNS): few chunks, and never more than a quarter of its
 * locked memory unused by growth. */
static size_t growth_runs(size_t total_runs)
{
    size_t n = total_runs / 4;
    if (n < FIRST_CHUNK_RUNS)
        n = FIRST_CHUNK_RUNS;
    return n > MAX_CHUNK_RUNS ? MAX_CHUNK_RUNS : n;
}

static int chunk_insert(zz_arena *a, struct chunk *c)
{
    struct chunk **n = realloc(a->chunks, (a->nchunks + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    a->chunks = n;
    size_t at = a->nchunks;
    while (at > 0 && a->chunks[at - 1]->data > c->data) {
        a->chunks[at] = a->chunks[at - 1];
        at--;
    }
    a->chunks[at] = c;
    a->nchunks++;
    a->total_runs += c->nruns;
    return 0;
}

/* Wipes a chunk whole (canaries too) and unmaps it. */
static void chunk_destroy(struct chunk *c)
{
    for (size_t i = 0; i < c->runs_used; i++)
        free(c->runs[i]);
    ZZ_VG_UNDEFINED(c->data, c->nruns * RUN_BYTES);
    zz_wipe(c->data, c->nruns * RUN_BYTES);
    zzi_global_lock();
    zzi_registry_remove(&c->region);
    zzi_global_unlock();
    zzi_pages_unmap_slab(&c->region.map);
    free(c);
}

/* pre: a->lock held.  A run for class cls from a chunk with room, growing
 * the arena when it may. */
static struct run *arena_new_run(zz_arena *a, unsigned cls)
{
    struct chunk *c = NULL;
    for (size_t i = 0; i < a->nchunks && c == NULL; i++)
        if (a->chunks[i]->runs_used < a->chunks[i]->nruns)
            c = a->chunks[i];
    if (c == NULL) {
        if (!a->growable || a->nchunks == 0) {
            zzi_fail(ZZI_FAIL_ARENA_FULL);
            errno = ENOMEM;
            return NULL;
        }
        c = chunk_new(a, growth_runs(a->total_runs));
        if (c == NULL)
            return NULL;
        if (chunk_insert(a, c) != 0) {
            chunk_destroy(c);
            errno = ENOMEM;
            return NULL;
        }
    }
    struct run *r = run_new(c->data + c->runs_used * RUN_BYTES, cls);
    if (r == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    r->chunk = c;
    c->runs[c->runs_used] = r;
    atomic_store_explicit(&c->runs_used, c->runs_used + 1, memory_order_release);
    a->runs_in_class[cls]++;
    avail_push(a, r);
    return r;
}

/* ---- public API ------------------------------------------------------------ */

/* Runs for a fixed arena of `capacity` bytes, counting round_up(n,16) + 16
 * per block: each run loses its 16-byte trailing canary and up to one cell
 * at its end (at most 1/16 of it for blocks up to 1 KiB), and a block size
 * that straddles run boundaries needs one more: 9/8 and two runs cover it. */
static size_t fixed_arena_runs(size_t capacity)
{
    size_t usable = RUN_BYTES - ZZ_CANARY_LEN;
    return (capacity / 8 * 9 + capacity % 8 * 2 + usable - 1) / usable + 2;
}

ZZ_API zz_arena *zz_arena_create(size_t capacity)
{
    if (zzi_init() != 0)
        return NULL;
    size_t nruns = FIRST_CHUNK_RUNS;
    if (capacity > 0) {
        if (capacity > SIZE_MAX / 16) {
            zzi_fail(ZZI_FAIL_NOMEM);
            errno = ENOMEM;
            return NULL;
        }
        nruns = fixed_arena_runs(capacity);
    }
    zz_arena *a = calloc(1, sizeof *a);
    if (a == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    a->growable = capacity == 0;
    struct chunk *c = chunk_new(a, nruns);
    if (c == NULL || chunk_insert(a, c) != 0) {
        int e = c ? ENOMEM : errno;
        if (c)
            chunk_destroy(c);
        free(a);
        errno = e;
        return NULL;
    }
    pthread_mutex_lock(&arenas_lock);
    a->list_next = arenas;
    if (arenas)
        arenas->list_prev = a;
    arenas = a;
    pthread_mutex_unlock(&arenas_lock);
    return a;
}

ZZ_API void *zz_arena_alloc(zz_arena *a, size_t n)
{
    if (a == NULL || n > MAX_BLOCK) {
        zzi_fail(a == NULL ? ZZI_FAIL_ARGUMENT : ZZI_FAIL_ARENA_BLOCK);
        errno = a == NULL ? EINVAL : ENOMEM;
        return NULL;
    }
    unsigned cls = class_of(n);
    zzi_lock(&a->lock);
    struct run *r = a->avail[cls];
    if (r == NULL && (r = arena_new_run(a, cls)) == NULL) {
        int e = errno;
        zzi_unlock(&a->lock);
        errno = e;
        return NULL;
    }
    if (zzi_pages_refresh_after_fork(&r->chunk->region.map) != 0) {
        int e = errno;
        zzi_unlock(&a->lock);
        errno = e;
        return NULL;
    }
    refresh_after_fork(r);
    unsigned i = r->free_stack[--r->nfree];
    if (r->nfree == 0)
        avail_remove(a, r);
    r->epoch[i] = zzi_epoch_stable();
    atomic_store_explicit(&r->size_plus1[i], (uint32_t)n + 1, memory_order_release);
    zzi_count(&a->live_blocks, 1);
    zzi_count(&a->live_bytes, n);
    zzi_unlock(&a->lock);

    unsigned char *p = r->start + (size_t)i * r->cell + ZZ_CANARY_LEN;
    size_t span = class_span(cls);
    ZZ_VG_DEFINED(p, span);
    /* A free cell is all zeros (zz_arena_free wiped it): see block.c. */
    ZZ_CHECK(zz_is_zero(p, span), "write after free (a freed block was modified)");
    ZZ_VG_UNDEFINED(p + n, span - n);
    zzi_canary_write(p + n, span - n);
    ZZ_VG_NOACCESS(p + n, span - n);
    ZZ_VG_MALLOCLIKE(p, n);
    return p;
}

/* pre: a->lock held.  The run and cell of live block p of arena a; fatal
 * when p is not one. */
static struct run *find_cell(zz_arena *a, const unsigned char *p, unsigned *cell)
{
    size_t lo = 0, hi = a->nchunks;
    while (lo < hi) { /* last chunk whose data starts at or before p */
        size_t mid = lo + (hi - lo) / 2;
        if (a->chunks[mid]->data <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    ZZ_CHECK(lo > 0, "invalid pointer");
    struct chunk *c = a->chunks[lo - 1];
    size_t off = (size_t)(p - c->data), ri = off / RUN_BYTES;
    ZZ_CHECK(ri < c->runs_used, "invalid pointer");
    struct run *r = c->runs[ri];
    size_t in_run = off % RUN_BYTES;
    ZZ_CHECK(in_run >= ZZ_CANARY_LEN && (in_run - ZZ_CANARY_LEN) % r->cell == 0 &&
                 (in_run - ZZ_CANARY_LEN) / r->cell < r->ncells,
             "invalid pointer");
    *cell = (unsigned)((in_run - ZZ_CANARY_LEN) / r->cell);
    ZZ_CHECK(atomic_load_explicit(&r->size_plus1[*cell], memory_order_relaxed) != 0,
             "double free");
    return r;
}

static int bytes_acceptable(const unsigned char *p, size_t n, unsigned block_epoch, unsigned now)
{
    return zzi_canary_intact(p, n) || (block_epoch != now && zzi_canary_intact_or_zero(p, n));
}

/* pre: a->lock held.  Checks the canaries around live cell i. */
static void check_cell(struct run *r, unsigned i, const unsigned char *p, size_t n)
{
    size_t span = class_span(r->cls);
    for (;;) {
        unsigned e = zzi_epoch_stable();
        int head_ok = zzi_canary_intact(p - ZZ_CANARY_LEN, ZZ_CANARY_LEN);
        int tail_ok = bytes_acceptable(p + n, span - n, r->epoch[i], e) &&
                      zzi_canary_intact(p + span, ZZ_CANARY_LEN);
        if (!zzi_epoch_unchanged(e))
            continue;
        ZZ_CHECK(head_ok, "canary corrupted (before block)");
        ZZ_CHECK(tail_ok, "canary corrupted (after block)");
        return;
    }
}

ZZ_API void zz_arena_free(zz_arena *a, void *p)
{
    if (p == NULL)
        return;
    ZZ_CHECK(a != NULL, "invalid pointer");
    int saved = errno;
    unsigned char *b = p;
    unsigned i;
    zzi_lock(&a->lock);
    struct run *r = find_cell(a, b, &i);
    refresh_after_fork(r);
    size_t n = atomic_load_explicit(&r->size_plus1[i], memory_order_relaxed) - 1;
    size_t span = class_span(r->cls);
    ZZ_VG_FREELIKE(b);
    ZZ_VG_DEFINED(b - ZZ_CANARY_LEN, span + 2 * ZZ_CANARY_LEN);
    check_cell(r, i, b, n);
    zz_wipe(b, span);
    ZZ_VG_NOACCESS(b - ZZ_CANARY_LEN, span + 2 * ZZ_CANARY_LEN);
    atomic_store_explicit(&r->size_plus1[i], 0, memory_order_release);
    r->free_stack[r->nfree++] = (uint16_t)i;
    if (r->nfree == 1)
        avail_push(a, r);
    zzi_count(&a->live_blocks, (size_t)-1);
    zzi_count(&a->live_bytes, 0 - n);
    zzi_unlock(&a->lock);
    errno = saved;
}

ZZ_API void zz_arena_destroy(zz_arena *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&arenas_lock);
    if (a->list_prev)
        a->list_prev->list_next = a->list_next;
    else
        arenas = a->list_next;
    if (a->list_next)
        a->list_next->list_prev = a->list_prev;
    pthread_mutex_unlock(&arenas_lock);

    for (size_t k = 0; k < a->nchunks; k++) {
        struct chunk *c = a->chunks[k];
        for (size_t ri = 0; ri < c->runs_used; ri++) {
            struct run *r = c->runs[ri];
            refresh_after_fork(r);
            for (unsigned i = 0; i < r->ncells; i++) {
                uint32_t sp1 = atomic_load(&r->size_plus1[i]);
                unsigned char *p = r->start + (size_t)i * r->cell + ZZ_CANARY_LEN;
                ZZ_VG_DEFINED(p - ZZ_CANARY_LEN, class_span(r->cls) + 2 * ZZ_CANARY_LEN);
                if (sp1 != 0) {
                    check_cell(r, i, p, sp1 - 1);
                    ZZ_VG_FREELIKE(p);
                } else {
                    ZZ_CHECK(zzi_canary_intact(p - ZZ_CANARY_LEN, ZZ_CANARY_LEN),
                             "canary corrupted (before block)");
                }
            }
        }
        chunk_destroy(c);
    }
    free(a->chunks);
    free(a);
}

/* ---- purge, info, fork ---------------------------------------------------------- */

void zzi_arena_purge_region(struct zzi_region *reg)
{
    struct chunk *c = reg->owner;
    size_t used = atomic_load_explicit(&c->runs_used, memory_order_acquire);
    for (size_t ri = 0; ri < used; ri++) {
        struct run *r = c->runs[ri];
        size_t span = class_span(r->cls);
        for (unsigned i = 0; i < r->ncells; i++)
            if (atomic_load_explicit(&r->size_plus1[i], memory_order_acquire) != 0)
                zz_wipe(r->start + (size_t)i * r->cell + ZZ_CANARY_LEN, span);
    }
}

unsigned zzi_arena_info(struct zzi_region *reg, uintptr_t addr)
{
    struct chunk *c = reg->owner;
    uintptr_t data = (uintptr_t)c->data;
    ZZ_CHECK(addr >= data && addr < data + c->runs_used * RUN_BYTES, "invalid pointer");
    struct run *r = c->runs[(addr - data) / RUN_BYTES];
    size_t in_run = (addr - data) % RUN_BYTES;
    ZZ_CHECK(in_run >= ZZ_CANARY_LEN && (in_run - ZZ_CANARY_LEN) % r->cell == 0 &&
                 (in_run - ZZ_CANARY_LEN) / r->cell < r->ncells,
             "invalid pointer");
    ZZ_CHECK(atomic_load(&r->size_plus1[(in_run - ZZ_CANARY_LEN) / r->cell]) != 0,
             "invalid pointer");
    return reg->map.info | ZZ_INFO_CANARY;
}

void zzi_arena_count_live(size_t *blocks, size_t *bytes)
{
    pthread_mutex_lock(&arenas_lock);
    for (zz_arena *a = arenas; a != NULL; a = a->list_next) {
        *blocks += atomic_load_explicit(&a->live_blocks, memory_order_relaxed);
        *bytes += atomic_load_explicit(&a->live_bytes, memory_order_relaxed);
    }
    pthread_mutex_unlock(&arenas_lock);
}

void zzi_arena_lock_all(void)
{
    pthread_mutex_lock(&arenas_lock);
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_lock(&a->lock);
}

void zzi_arena_unlock_all(void)
{
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_unlock(&a->lock);
    pthread_mutex_unlock(&arenas_lock);
}
