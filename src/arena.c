/*
 * arena.c - zz_arena_*: many small secrets packed into a few guarded, locked
 * chunks.  All metadata (free lists, sizes, canary words) is kept outside the
 * chunks, so a write out of bounds can never redirect the allocator.  This
 * file owns cells, runs' canaries, chunks and the public API; arena_grow.c
 * lays out growable arenas (a grid of 16 KiB runs, growth, large blocks),
 * arena_fixed.c fixed ones (a heap of runs of any length), and arena_cache.c
 * keeps the per-thread caches of free cells that let growable arenas skip
 * the lock.
 *
 * A run is a row of cells of one span, every cell a head canary followed by
 * the block, then a trailing canary:
 *
 *   guard | run: [canary|block][canary|block] ... [canary|block][canary] | run ... | guard
 *                 16     span                                   trailing
 *
 * A block's overflow meets the next cell's head canary (or the run's trailing
 * canary); an underflow meets its own head canary; bytes between the end of
 * a block and the end of its span hold its tail canary.  Head canaries are
 * written once, when the run is set up, and stay in place while cells come
 * and go; only [p, p+span) is wiped on free.  A 32-byte secret thus costs 48
 * bytes.
 *
 * A free cell is all zeros, so handing one out only checks that it still is
 * (a write after free otherwise).  Freeing a growable arena's block needs no
 * lock: the cell is found from the address through an immutable index of
 * chunks, and one atomic exchange of its size both claims it and catches a
 * second free.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

pthread_mutex_t zzi_arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static zz_arena *arenas; /* under zzi_arenas_lock */

static void register_fork_hooks(void);
static uint64_t last_arena_id;

/* ---- runs --------------------------------------------------------------- */

static void write_run_canaries(struct run *r)
{
    for (unsigned i = 0; i < r->ncells; i++)
        zzi_canary16_write(r->start + (size_t)i * r->cell, r->canary[2 * i]);
    unsigned char *tail = r->start + (size_t)r->ncells * r->cell;
    zzi_canary_fill(tail, (size_t)(r->start + r->length - tail), r->canary[2 * r->ncells]);
}

/* Writes the tail canary of cell i, block p of n bytes: the bytes [n, span)
 * left over by the span.  A zero-size block has none: its bytes stay zero
 * (and are checked to be), so it shows no canary to whoever holds it. */
static inline void write_tail_canary(const struct run *r, unsigned i, unsigned char *p, size_t n)
{
    size_t span = r->span;
    if (n == 0 || n == span)
        return;
    if (span - n <= 16) /* the usual case: one aligned chunk, word masks */
        zzi_canary16_tail_write(p + span - 16, (unsigned)(n + 16 - span), r->canary[2 * i + 1]);
    else /* growable classes above 1 KiB step by 64 or 256 bytes */
        zzi_canary_fill(p + n, span - n, r->canary[2 * i + 1]);
}

/* In a forked child WIPEONFORK (or the zero pages that replace secret
 * memory) zeroed the run, canaries and all, and they are written again
 * before the run is used.  Only the zero bytes: a byte that is not zero was
 * written since the fork through a block of this run (an overflow or
 * underflow), and is left for the canary check of that block's free to
 * report, with the message that names its side. */
void zzi_arena_run_refresh(struct run *r)
{
    unsigned now = atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed);
    if (zz_likely(atomic_load_explicit(&r->fork_gen, memory_order_relaxed) == now))
        return;
    ZZ_VG_QUIET_BEGIN();
    for (unsigned i = 0; i < r->ncells; i++) {
        zzi_canary_fill_zeros(r->start + (size_t)i * r->cell, ZZ_CANARY_LEN, r->canary[2 * i]);
        uint32_t sp1 = atomic_load_explicit(&r->size_plus1[i], memory_order_relaxed);
        if (zzi_arena_cell_live(sp1) && sp1 - 1 != 0 && sp1 - 1 < r->span) {
            unsigned char *p = zzi_arena_cell_block(r, i);
            zzi_canary_fill_zeros(p + sp1 - 1, r->span - (sp1 - 1), r->canary[2 * i + 1]);
        }
    }
    unsigned char *tail = r->start + (size_t)r->ncells * r->cell;
    zzi_canary_fill_zeros(tail, (size_t)(r->start + r->length - tail), r->canary[2 * r->ncells]);
    ZZ_VG_QUIET_END();
    atomic_store_explicit(&r->fork_gen, now, memory_order_release);
}

struct run *zzi_arena_run_new(unsigned char *start, size_t span, unsigned ncells, size_t length,
                        unsigned cls)
{
    size_t words = 2 * (size_t)ncells + 1, cell = span + ZZ_CANARY_LEN;
    struct run *r = calloc(1, sizeof *r + words * sizeof(uint64_t) +
                                  ncells * (sizeof(uint16_t) + sizeof(uint32_t) + sizeof(unsigned)));
    if (r == NULL) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    uint64_t *canary = (uint64_t *)(void *)(r + 1);
    if (zzi_canary_draw(canary, words) != 0) {
        int e = errno;
        free(r);
        errno = e;
        return NULL;
    }
    r->canary = canary;
    r->epoch = (unsigned *)(void *)(canary + words);
    r->size_plus1 = (_Atomic uint32_t *)(r->epoch + ncells);
    r->free_stack = (uint16_t *)(void *)(r->epoch + 2 * (size_t)ncells);
    r->start = start;
    r->length = length;
    r->cls = cls;
    r->cell = (uint32_t)cell;
    r->span = (uint32_t)span;
    r->reciprocal = cell < (UINT64_C(1) << 32) ? (uint32_t)((UINT64_C(1) << 32) / cell + 1) : 0;
    r->ncells = r->nfree = ncells;
    for (unsigned i = 0; i < ncells; i++)
        r->free_stack[i] = (uint16_t)(ncells - 1 - i);
    ZZ_VG_UNDEFINED(start, length);
    write_run_canaries(r);
    ZZ_VG_NOACCESS(start, length);
    atomic_store_explicit(&r->fork_gen, atomic_load(&zzi_fork_generation), memory_order_relaxed);
    return r;
}

/* ---- chunks -------------------------------------------------------------- */

/* Maps a chunk's pages.  zz_alloc's free-slot cache gives way to arenas:
 * when the kernel refuses memory or a lock, or (under best effort) maps the
 * chunk unlocked, the cached slabs are unmapped and the chunk is mapped or
 * locked again, so locked memory goes to live blocks before caches. */
static int map_chunk_pages(zz_arena *a, size_t pages, int first, struct zzi_slab_map *m)
{
    for (int tries = 0;; tries++) {
        int rc = first ? zzi_pages_map_slab_auto(pages, 1, m)
                       : zzi_pages_map_slab(pages, 1, a->backend, m);
        if (rc != 0 && tries == 0 && zzi_block_drop_caches(errno))
            continue;
        if (rc == 0 && !(m->info & ZZ_INFO_LOCKED) && zzi_block_drop_caches(ENOMEM))
            (void)zzi_pages_try_lock(m, 0); /* stays unlocked if still refused */
        return rc;
    }
}

struct chunk *zzi_arena_chunk_new(zz_arena *a, size_t bytes, int first)
{
    struct chunk *c = calloc(1, sizeof *c);
    if (c == NULL) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    c->arena = a;
    c->bytes = bytes;
    size_t pages = bytes / zzi_page();
    /* The generation before the mapping reads the policy: a switch to
     * ZZ_LOCK_REQUIRED that lands after that read (the chunk mapped
     * unlocked) leaves the chunk unchecked, so it is locked or retired
     * before it hands out a cell. */
    unsigned gen = atomic_load(&zzi_checks_gen);
    if (map_chunk_pages(a, pages, first, &c->region.map) != 0) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    c->region.kind = ZZI_REGION_ARENA;
    c->region.owner = c;
    atomic_init(&c->checked_gen, gen);
    c->data = (unsigned char *)c->region.map.base + zzi_page();
    if (first)
        a->backend = c->region.map.backend;
    return c;
}

int zzi_arena_chunk_register(struct chunk *c)
{
    zzi_global_lock();
    int rc = zzi_registry_add(&c->region);
    zzi_global_unlock();
    if (rc != 0)
        return -1;
    c->registered = 1;
    return 0;
}

/* A registered chunk leaves the registry first, which waits until no
 * zz_purge can still be walking it: only then may its runs be freed (a
 * purge reads them). */
void zzi_arena_chunk_destroy(struct chunk *c)
{
    if (c->registered) {
        zzi_global_lock();
        zzi_registry_remove(&c->region);
        zzi_global_unlock();
    }
    for (size_t i = 0; i < c->runs_used; i++)
        free(c->runs[i]);
    free(c->runs);
    zzi_arena_fixed_free(c);
    ZZ_VG_UNDEFINED(c->data, c->bytes);
    zz_wipe(c->data, c->bytes);
    zzi_pages_unmap_slab(&c->region.map);
    free(c);
}

/* pre: a->lock held.  Takes chunk c out of service: its runs hand out no
 * more cells (their live blocks stay valid and can be freed). */
static void chunk_retire(zz_arena *a, struct chunk *c)
{
    c->retired = 1;
    a->has_retired = 1;
    if (c->heap != NULL)
        zzi_arena_fixed_retire_runs(c);
    else
        zzi_arena_grow_retire_runs(a, c);
}

/* pre: a->lock held.  Locks a chunk mapped under best effort, now that the
 * policy requires it; zz_alloc's cached slabs give way if the limit refuses. */
static int lock_chunk_now(struct zzi_slab_map *m)
{
    if (zzi_pages_try_lock(m, 1) == 0)
        return 0;
    return zzi_block_drop_caches(errno) ? zzi_pages_try_lock(m, 1) : -1;
}

/* May chunk c hand out cells now?  Only if refreshed after a fork (locks
 * and guards made again), still on the arena's backend (a forked child's
 * secret memory is replaced by anonymous zero pages), and locked if the
 * policy requires it (locking it now if it was mapped under
 * ZZ_LOCK_BEST_EFFORT). */
int zzi_arena_chunk_fit(zz_arena *a, struct chunk *c)
{
    unsigned gen = atomic_load(&zzi_checks_gen);
    if (c->retired)
        return 0;
    if (atomic_load_explicit(&c->checked_gen, memory_order_relaxed) == gen)
        return 1;
    struct zzi_slab_map *m = &c->region.map;
    int e = errno;
    int fit = zzi_pages_refresh_after_fork(m) == 0 && m->backend == a->backend &&
              ((m->info & ZZ_INFO_LOCKED) || !zzi_policy_lock_required() ||
               lock_chunk_now(m) == 0);
    errno = e;
    if (!fit) {
        chunk_retire(a, c);
        return 0;
    }
    atomic_store_explicit(&c->checked_gen, gen, memory_order_release);
    return 1;
}

void zzi_arena_add_live(zz_arena *a, size_t blocks, size_t bytes, int with_lock)
{
    if (with_lock)
        zzi_lock(&a->lock);
    zzi_count(&a->live_blocks, blocks);
    zzi_count(&a->live_bytes, bytes);
    if (with_lock)
        zzi_unlock(&a->lock);
}

/* ---- cells ---------------------------------------------------------------- */

/* Hands out free cell i of run r (taken off the free lists by the caller) as
 * a block of n bytes. */
static void *cell_hand_out(struct run *r, unsigned i, size_t n)
{
    unsigned char *p = zzi_arena_cell_block(r, i);
    size_t span = r->span;
    r->epoch[i] = zzi_epoch_stable();
    atomic_store_explicit(&r->size_plus1[i], (uint32_t)n + 1, memory_order_release);
    ZZ_VG_DEFINED(p, span);
    ZZ_CHECK(zzi_is_zero_small(p, span), "write after free (a freed block was modified)");
    if (n < span) {
        ZZ_VG_UNDEFINED(p + n, span - n);
        write_tail_canary(r, i, p, n);
        ZZ_VG_NOACCESS(p + n, span - n);
    }
    ZZ_VG_MALLOCLIKE(p, n);
    return p;
}

/* The tail of a block of n bytes in cell i: its canary, or for a zero-size
 * block, zeros. */
static inline int tail_intact(const struct run *r, unsigned i, const unsigned char *p, size_t n)
{
    size_t span = r->span;
    if (n == span)
        return 1;
    if (n == 0)
        return zzi_is_zero_small(p, span);
    if (span - n <= 16)
        return zzi_canary16_tail_intact(p + span - 16, (unsigned)(n + 16 - span), r->canary[2 * i + 1]);
    return zzi_canary_check(p + n, span - n, r->canary[2 * i + 1]);
}

/* Checks the canaries around cell i of r (block p, n bytes) again and
 * again until no purge ran meanwhile, then reports what it found. */
struct cell_look {
    const struct run *r;
    unsigned i;
    const unsigned char *p;
    size_t n;
};

static struct zzi_canary_sides look_at_cell(const void *ctx, unsigned e)
{
    const struct cell_look *l = ctx;
    const struct run *r = l->r;
    unsigned i = l->i;
    size_t span = r->span, n = l->n;
    const unsigned char *p = l->p;
    struct zzi_canary_sides v = {
        zzi_canary16_intact(p - ZZ_CANARY_LEN, r->canary[2 * i]),
        zzi_canary16_intact(p + span, r->canary[2 * i + 2]) &&
            (n == span || (n == 0 && zzi_is_zero_small(p, span)) ||
             (n > 0 && zzi_canary_acceptable(p + n, span - n, r->canary[2 * i + 1], r->epoch[i], e))),
    };
    return v;
}

__attribute__((noinline)) static void check_cell_slow(const struct run *r, unsigned i, const unsigned char *p, size_t n)
{
    struct cell_look l = {r, i, p, n};
    zzi_canary_check_settled(look_at_cell, &l);
}

/* The canaries around cell i of r (block p, n bytes).  Intact canaries need
 * no more: a purge only ever zeroes bytes.  Anything else is looked at again
 * in the light of purges (check_cell_slow). */
static inline void check_cell(const struct run *r, unsigned i, const unsigned char *p, size_t n)
{
    if (zz_likely(tail_intact(r, i, p, n) && zzi_canary16_intact(p - ZZ_CANARY_LEN, r->canary[2 * i]) &&
                  zzi_canary16_intact(p + r->span, r->canary[2 * i + 2])))
        return;
    check_cell_slow(r, i, p, n);
}

/* Takes back live cell i of r, block p: claims it (a second free is fatal
 * from here on), checks its canaries, wipes it and marks it free.  Until the
 * wipe is done the cell still counts as live, so a zz_purge from a signal
 * that interrupts this wipes it too.  under_lock: the caller holds the
 * arena's lock, as every free of a fixed arena does, so a plain load and
 * store claim the cell; otherwise one atomic exchange does.  Returns the
 * block's size. */
static inline size_t cell_take_back(struct run *r, unsigned i, unsigned char *p, int under_lock)
{
    uint32_t sp1;
    if (under_lock) {
        sp1 = atomic_load_explicit(&r->size_plus1[i], memory_order_relaxed);
        atomic_store_explicit(&r->size_plus1[i], ZZI_ARENA_CELL_FREEING, memory_order_relaxed);
    } else {
        sp1 = atomic_exchange_explicit(&r->size_plus1[i], ZZI_ARENA_CELL_FREEING, memory_order_acq_rel);
    }
    ZZ_CHECK(zzi_arena_cell_live(sp1), "double free");
    size_t n = sp1 - 1, span = r->span;
    ZZ_VG_FREELIKE(p);
    ZZ_VG_DEFINED(p - ZZ_CANARY_LEN, span + 2 * ZZ_CANARY_LEN);
    check_cell(r, i, p, n);
    if (span <= ZZI_WIPE_SMALL_MAX)
        zzi_wipe_small(p, span);
    else
        zz_wipe(p, span);
    /* The block only: its canaries are shared with the cells on either
     * side, whose frees in other threads make them defined and read them
     * meanwhile (marked no-access here, memcheck saw a neighbour's canary
     * read as "after a block freed"; the canary check, not memcheck, is
     * what catches a write into them). */
    ZZ_VG_NOACCESS(p, span);
    atomic_store_explicit(&r->size_plus1[i], ZZI_ARENA_CELL_FREE, memory_order_release);
    return n;
}

/* ---- public API ------------------------------------------------------------ */

static void free_indexes(zz_arena *a)
{
    struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    free(ix);
    while (a->retired) {
        ix = a->retired;
        a->retired = ix->retired_next;
        free(ix);
    }
}

/* A fixed arena's one chunk, set up as an empty heap, in a's index. */
static struct chunk *fixed_chunk_new(zz_arena *a, size_t capacity)
{
    size_t bytes = zzi_arena_fixed_bytes(capacity);
    struct chunk_index *ix = malloc(sizeof *ix + sizeof(struct chunk *));
    if (bytes == 0 || ix == NULL) {
        free(ix);
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    struct chunk *c = zzi_arena_chunk_new(a, bytes, 1);
    if (c != NULL && (zzi_arena_fixed_init(c) != 0 || zzi_arena_chunk_register(c) != 0)) {
        int e = errno;
        zzi_arena_chunk_destroy(c);
        errno = e;
        c = NULL;
    }
    if (c == NULL) {
        free(ix);
        return NULL;
    }
    ix->retired_next = NULL;
    ix->n = 1;
    ix->chunks[0] = c;
    atomic_store(&a->index, ix);
    return c;
}

static zz_arena *arena_create_impl(size_t capacity)
{
    if (zzi_init() != 0)
        return NULL;
    zzi_check_fork();
    register_fork_hooks();
    zz_arena *a = calloc(1, sizeof *a);
    if (a == NULL) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    a->growable = capacity == 0;
    a->rebuilt_gen = atomic_load(&zzi_fork_generation);
    struct chunk *c = a->growable ? zzi_arena_grow_first_chunk(a) : fixed_chunk_new(a, capacity);
    if (c == NULL) {
        int e = errno;
        free(a);
        errno = e;
        return NULL;
    }
    zzi_mutex_lock(&zzi_arenas_lock);
    a->id = ++last_arena_id;
    ZZI_LIST_PUSH(arenas, a, list_prev, list_next);
    pthread_mutex_unlock(&zzi_arenas_lock);
    return a;
}

ZZ_API zz_arena *zz_arena_create(size_t capacity)
{
    return zzi_api_ptr(arena_create_impl(capacity));
}

static void *arena_alloc_impl(zz_arena *a, size_t n)
{
    if (zz_unlikely(a == NULL)) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return NULL;
    }
    zzi_check_fork();
    struct zzi_arena_cell c;
    if (a->growable) {
        if (zz_unlikely(n > ZZI_ARENA_MAX_BLOCK))
            return zzi_arena_grow_alloc_large(a, n);
        if (zzi_arena_cache_take(a, zzi_arena_class_of(n), n, &c) != 0)
            return NULL;
    } else {
        if (zz_unlikely(n > ZZI_ARENA_FIXED_MAX_BLOCK)) {
            zzi_fail(ZZ_ERR_ARENA_BLOCK);
            errno = ENOMEM;
            return NULL;
        }
        /* under the lock for every block, so that all of a fixed arena's
         * capacity stays available to every thread (no cell sits in one
         * thread's cache while another is told the arena is full) */
        if (zzi_arena_fixed_take(a, n, &c) != 0)
            return NULL;
    }
    return cell_hand_out(c.run, c.index, n);
}

ZZ_API void *zz_arena_alloc(zz_arena *a, size_t n)
{
    return zzi_api_ptr(arena_alloc_impl(a, n));
}

static inline int run_is_stale(const struct run *r)
{
    return atomic_load_explicit(&r->fork_gen, memory_order_acquire) !=
           atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed);
}

static void fixed_free(zz_arena *a, unsigned char *p)
{
    unsigned i;
    zzi_lock(&a->lock);
    struct chunk *c = atomic_load_explicit(&a->index, memory_order_relaxed)->chunks[0];
    struct run *r = zzi_arena_fixed_find(c, p, &i, "double free");
    zzi_arena_run_refresh(r);
    size_t n = cell_take_back(r, i, p, 1);
    zzi_count(&a->live_blocks, (size_t)-1);
    zzi_count(&a->live_bytes, 0 - n);
    zzi_arena_fixed_return_cell(a, r, i);
    zzi_unlock(&a->lock);
}

ZZ_API void zz_arena_free(zz_arena *a, void *p)
{
    if (p == NULL)
        return;
    ZZ_CHECK(a != NULL, "invalid pointer");
    zzi_check_fork();
    if (!a->growable) {
        int saved = errno;
        fixed_free(a, p);
        errno = saved;
        return;
    }
    unsigned i; /* errno: nothing here sets it; arena_cache.c keeps it on its slow paths */
    struct run *r = zzi_arena_grow_find(a, p, &i);
    if (zz_unlikely(r == NULL)) { /* not in a chunk: a large block, or not a's */
        zzi_arena_grow_free_large(a, p);
        return;
    }
    if (zz_unlikely(run_is_stale(r))) {
        zzi_lock(&a->lock);
        zzi_arena_grow_rebuild_after_fork(a); /* before any cell of a moves in this child */
        zzi_arena_run_refresh(r);
        zzi_unlock(&a->lock);
    }
    size_t n = cell_take_back(r, i, p, 0);
    zzi_arena_cache_put(a, r, i, n);
}

/* Checks every cell's canaries (live ones fully) before the chunks go. */
static void check_run_cells(struct run *r)
{
    zzi_arena_run_refresh(r);
    for (unsigned i = 0; i < r->ncells; i++) {
        uint32_t sp1 = atomic_load(&r->size_plus1[i]);
        unsigned char *p = zzi_arena_cell_block(r, i);
        ZZ_VG_DEFINED(p - ZZ_CANARY_LEN, r->span + 2 * ZZ_CANARY_LEN);
        if (zzi_arena_cell_live(sp1)) {
            check_cell(r, i, p, sp1 - 1);
            ZZ_VG_FREELIKE(p);
        } else {
            ZZ_CHECK(zzi_canary16_intact(p - ZZ_CANARY_LEN, r->canary[2 * i]),
                     "canary corrupted (before block)");
        }
    }
}

static void each_run(struct chunk *c, void (*fn)(struct run *r))
{
    if (c->heap != NULL) {
        zzi_arena_fixed_each_run(c, fn);
        return;
    }
    size_t used = atomic_load_explicit(&c->runs_used, memory_order_acquire);
    for (size_t ri = 0; ri < used; ri++)
        fn(c->runs[ri]);
}

ZZ_API void zz_arena_destroy(zz_arena *a)
{
    if (a == NULL)
        return;
    zzi_check_fork();
    zzi_mutex_lock(&zzi_arenas_lock);
    ZZI_LIST_UNLINK(arenas, a, list_prev, list_next);
    pthread_mutex_unlock(&zzi_arenas_lock);

    if (atomic_load(&a->large_live) != 0)
        zzi_block_free_all_for_arena(a);
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t k = 0; k < ix->n; k++) {
        each_run(ix->chunks[k], check_run_cells);
        zzi_arena_chunk_destroy(ix->chunks[k]);
    }
    free_indexes(a);
    free(a);
}

/* ---- purge, info, stats, fork ----------------------------------------------- */

static void purge_run(struct run *r)
{
    for (unsigned i = 0; i < r->ncells; i++)
        if (atomic_load_explicit(&r->size_plus1[i], memory_order_acquire) != ZZI_ARENA_CELL_FREE)
            zzi_purge_wipe(zzi_arena_cell_block(r, i), r->span);
}

void zzi_arena_purge_region(struct zzi_region *reg)
{
    each_run(reg->owner, purge_run);
}

unsigned zzi_arena_info(struct zzi_region *reg, uintptr_t addr)
{
    struct chunk *c = reg->owner;
    const unsigned char *p = (const unsigned char *)addr;
    unsigned i;
    struct run *r;
    if (c->heap != NULL) {
        zzi_lock(&c->arena->lock);
        r = zzi_arena_fixed_find(c, p, &i, "use after free (the block was already freed)");
        zzi_unlock(&c->arena->lock);
    } else {
        r = zzi_arena_grow_find(c->arena, p, &i);
        ZZ_CHECK(r != NULL, "invalid pointer");
    }
    ZZ_CHECK(zzi_arena_cell_live(atomic_load(&r->size_plus1[i])), "use after free (the block was already freed)");
    return reg->map.info | ZZ_INFO_CANARY | ZZ_INFO_PACKED;
}

void zzi_arena_stats(zz_arena *a, zz_stats *out)
{
    memset(out, 0, sizeof *out);
    zzi_mutex_lock(&zzi_arenas_lock);
    zzi_lock(&a->lock);
    if (a->growable)
        zzi_arena_grow_rebuild_after_fork(a);
    out->live_blocks = atomic_load_explicit(&a->live_blocks, memory_order_relaxed);
    out->live_bytes = atomic_load_explicit(&a->live_bytes, memory_order_relaxed);
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t k = 0; k < ix->n; k++) {
        out->mapped_bytes += ix->chunks[k]->region.map.len;
        out->locked_bytes += ix->chunks[k]->region.map.locked_len;
    }
    zzi_unlock(&a->lock);
    zzi_arena_cache_count(a, &out->live_blocks, &out->live_bytes);
    pthread_mutex_unlock(&zzi_arenas_lock);
    if (atomic_load(&a->large_live) != 0)
        zzi_block_add_owned_stats(a, out);
}

int zzi_arena_is_live(const zz_arena *a, uint64_t id)
{
    for (const zz_arena *x = arenas; x != NULL; x = x->list_next)
        if (x == a && x->id == id)
            return 1;
    return 0;
}

void zzi_arena_count_live(size_t *blocks, size_t *bytes)
{
    register_fork_hooks();
    zzi_mutex_lock(&zzi_arenas_lock);
    for (zz_arena *a = arenas; a != NULL; a = a->list_next) {
        if (a->growable) { /* in a forked child, the counts are made again first */
            zzi_lock(&a->lock);
            zzi_arena_grow_rebuild_after_fork(a);
            zzi_unlock(&a->lock);
        }
        *blocks += atomic_load_explicit(&a->live_blocks, memory_order_relaxed);
        *bytes += atomic_load_explicit(&a->live_bytes, memory_order_relaxed);
        zzi_arena_cache_count(a, blocks, bytes);
    }
    pthread_mutex_unlock(&zzi_arenas_lock);
}

static void lock_all(void)
{
    pthread_mutex_lock(&zzi_arenas_lock);
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_lock(&a->lock);
}

static void unlock_all(void)
{
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_unlock(&a->lock);
    pthread_mutex_unlock(&zzi_arenas_lock);
}

/* After a fork that ran no handler: makes every arena lock free again (the
 * threads that may have held them do not exist in the child). */
static void reset_locks(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    zzi_arenas_lock = fresh;
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_unlock(&a->lock);
}

/* Fork child, pre: lock_all() held: takes back the cells that the threads'
 * caches held (the other threads do not exist in the child). */
static void after_fork_child(void)
{
    /* a thread of the parent that was growing an arena does not exist here */
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        a->growing = 0;
    zzi_arena_cache_after_fork_child();
}

/* Lock order: the arena list, then each arena (internal.h). */
static const struct zzi_fork_hooks fork_hooks = {
    .before = lock_all,
    .after_parent = unlock_all,
    .child_fixup = after_fork_child,
    .after_child = unlock_all,
    .reset = reset_locks,
};

/* Every path that takes zzi_arenas_lock first calls this (an arena exists
 * only after zz_arena_create, which does). */
static void register_fork_hooks(void)
{
    zzi_fork_register(ZZI_FORK_ARENAS, &fork_hooks);
}
