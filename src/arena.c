/*
 * arena.c - zz_arena_*: many small secrets packed into a few guarded, locked
 * chunks.  All metadata (free lists, sizes) is kept outside the chunks, so a
 * write out of bounds can never redirect the allocator.  This file owns
 * chunks, runs and cells and the arena's lock; arena_cache.c keeps the
 * per-thread caches of free cells that let growable arenas skip the lock.
 *
 * A chunk is one slab of pages.c (a single slot between guard pages), cut
 * into runs of ZZA_RUN_BYTES; each run serves one size class and is a row of
 * cells, every cell a head canary followed by the block:
 *
 *   guard | run: [canary|block][canary|block] ... [canary|block][canary] | run ... | guard
 *                 16     span                                   trailing
 *
 * A block's overflow meets the next cell's head canary (or the run's trailing
 * canary); an underflow meets its own head canary.  Head canaries are written
 * once, when the run is set up, and stay in place while cells come and go;
 * only [p, p+span) is wiped on free.  A 32-byte secret thus costs 48 bytes.
 *
 * A free cell is all zeros, so handing one out only checks that it still is
 * (a write after free otherwise).  Freeing needs no lock: the cell is found
 * from the address through an immutable index of chunks, and one atomic
 * exchange of its size both claims it and catches a second free.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define FIRST_CHUNK_RUNS 4u
#define MAX_CHUNK_RUNS 256u

pthread_mutex_t zzi_arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static zz_arena *arenas; /* under zzi_arenas_lock */
static uint64_t last_arena_id;

/* ---- runs --------------------------------------------------------------- */

static void write_run_canaries(struct run *r)
{
    for (unsigned i = 0; i < r->ncells; i++)
        zzi_canary16_write(r->start + (size_t)i * r->cell, r->canary[2 * i]);
    unsigned char *tail = r->start + (size_t)r->ncells * r->cell;
    zzi_canary_fill(tail, (size_t)(r->start + ZZA_RUN_BYTES - tail), r->canary[2 * r->ncells]);
}

/* Writes the tail canary of cell i, block p of n bytes: the bytes [n, span)
 * left over by the size class.  A zero-size block has none: its bytes stay
 * zero (and are checked to be), so it shows no canary to whoever holds it. */
static inline void write_tail_canary(const struct run *r, unsigned i, unsigned char *p, size_t n)
{
    size_t span = r->span;
    if (n == 0 || n == span)
        return;
    if (span - n <= 16) /* the usual case: one aligned chunk, word masks */
        zzi_canary16_tail_write(p + span - 16, (unsigned)(n + 16 - span), r->canary[2 * i + 1]);
    else /* classes above 1 KiB step by 64 or 256 bytes */
        zzi_canary_fill(p + n, span - n, r->canary[2 * i + 1]);
}

static int is_live(uint32_t size_plus1)
{
    return size_plus1 != ZZA_CELL_FREE && size_plus1 != ZZA_CELL_FREEING;
}

/* pre: a->lock held.  In a forked child WIPEONFORK zeroed the run, canaries
 * and all: writes them again (and the partial-tail canaries of live blocks)
 * before the run is used. */
static void refresh_after_fork(struct run *r)
{
    unsigned now = atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed);
    if (zz_likely(atomic_load_explicit(&r->fork_gen, memory_order_relaxed) == now))
        return;
    ZZ_VG_QUIET_BEGIN();
    write_run_canaries(r);
    for (unsigned i = 0; i < r->ncells; i++) {
        uint32_t sp1 = atomic_load_explicit(&r->size_plus1[i], memory_order_relaxed);
        if (is_live(sp1))
            write_tail_canary(r, i, zza_cell_block(r, i), sp1 - 1);
    }
    ZZ_VG_QUIET_END();
    atomic_store_explicit(&r->fork_gen, now, memory_order_release);
}

static struct run *run_new(unsigned char *start, unsigned cls)
{
    size_t span = zza_class_span(cls);
    unsigned cell = (unsigned)(span + ZZ_CANARY_LEN);
    unsigned ncells = (unsigned)((ZZA_RUN_BYTES - ZZ_CANARY_LEN) / cell);
    size_t words = 2 * (size_t)ncells + 1;
    struct run *r = calloc(1, sizeof *r + words * sizeof(uint64_t) +
                                  ncells * (sizeof(uint16_t) + sizeof(uint32_t) + sizeof(unsigned)));
    if (r == NULL) {
        zzi_fail(ZZI_FAIL_NOMEM);
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
    r->cls = cls;
    r->cell = cell;
    r->span = (uint32_t)span;
    r->reciprocal = (uint32_t)((UINT64_C(1) << 32) / cell + 1);
    r->ncells = r->nfree = ncells;
    for (unsigned i = 0; i < ncells; i++)
        r->free_stack[i] = (uint16_t)(ncells - 1 - i);
    ZZ_VG_UNDEFINED(start, ZZA_RUN_BYTES);
    write_run_canaries(r);
    ZZ_VG_NOACCESS(start, ZZA_RUN_BYTES);
    atomic_store_explicit(&r->fork_gen, atomic_load(&zzi_fork_generation), memory_order_relaxed);
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

/* Maps a chunk of nruns runs for a (without a's lock: it only reads the
 * backend, fixed by the first chunk) and registers it. */
static struct chunk *chunk_new(zz_arena *a, size_t nruns, int first)
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
    size_t pages = nruns * ZZA_RUN_BYTES / zzi_page();
    int rc = first ? zzi_pages_map_slab_auto(pages, 1, &c->region.map)
                   : zzi_pages_map_slab(pages, 1, a->backend, &c->region.map);
    if (rc != 0) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    c->region.kind = ZZI_REGION_ARENA;
    c->region.owner = c;
    atomic_init(&c->checked_gen, atomic_load(&zzi_checks_gen));
    c->data = (unsigned char *)c->region.map.base + zzi_page();
    if (first)
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

/* pre: a->lock held (or a not yet shared).  Publishes an index with c added
 * in address order.  Returns 0, or -1 (no memory: nothing changed). */
static int chunk_insert(zz_arena *a, struct chunk *c)
{
    struct chunk_index *old = atomic_load_explicit(&a->index, memory_order_relaxed);
    size_t n = old ? old->n : 0;
    struct chunk_index *ix = malloc(sizeof *ix + (n + 1) * sizeof(struct chunk *));
    if (ix == NULL)
        return -1;
    ix->retired_next = NULL;
    ix->n = n + 1;
    size_t at = 0;
    for (; at < n && old->chunks[at]->data < c->data; at++)
        ix->chunks[at] = old->chunks[at];
    ix->chunks[at] = c;
    for (; at < n; at++)
        ix->chunks[at + 1] = old->chunks[at];
    atomic_store_explicit(&a->index, ix, memory_order_release);
    if (old) {
        old->retired_next = a->retired;
        a->retired = old;
    }
    a->total_runs += c->nruns;
    return 0;
}

/* Wipes a chunk whole (canaries too) and unmaps it.  The chunk leaves the
 * registry first, which waits until no zz_purge can still be walking it: only
 * then may its runs be freed (a purge reads them). */
static void chunk_destroy(struct chunk *c)
{
    zzi_global_lock();
    zzi_registry_remove(&c->region);
    zzi_global_unlock();
    for (size_t i = 0; i < c->runs_used; i++)
        free(c->runs[i]);
    ZZ_VG_UNDEFINED(c->data, c->nruns * ZZA_RUN_BYTES);
    zz_wipe(c->data, c->nruns * ZZA_RUN_BYTES);
    zzi_pages_unmap_slab(&c->region.map);
    free(c);
}

/* pre: a->lock held.  A chunk with room for another run, or NULL. */
static struct chunk *chunk_with_room(const zz_arena *a)
{
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t i = 0; i < ix->n; i++)
        if (!ix->chunks[i]->retired && ix->chunks[i]->runs_used < ix->chunks[i]->nruns)
            return ix->chunks[i];
    return NULL;
}

/* pre: a->lock held, and held again on return.  Adds a chunk to a growable
 * arena, letting the lock go while the chunk is mapped, guarded and locked
 * (system calls that take tens of microseconds: other threads' refills need
 * not wait for them).  One thread grows an arena at a time; another that
 * needs room meanwhile waits for it.  Returns a chunk with room for a run,
 * or NULL with errno. */
static struct chunk *arena_grow(zz_arena *a)
{
    if (!a->growable) {
        zzi_fail(a->has_retired ? ZZI_FAIL_ARENA_UNFIT : ZZI_FAIL_ARENA_FULL);
        errno = ENOMEM;
        return NULL;
    }
    while (a->growing) {
        zzi_unlock(&a->lock);
        zzi_os_yield();
        zzi_lock(&a->lock);
        struct chunk *room = chunk_with_room(a);
        if (room != NULL)
            return room;
    }
    a->growing = 1;
    size_t nruns = growth_runs(a->total_runs);
    zzi_unlock(&a->lock);
    struct chunk *c = chunk_new(a, nruns, 0);
    if (c == NULL && zzi_block_drop_caches(errno)) /* zz_alloc's cached slabs were in the way */
        c = chunk_new(a, nruns, 0);
    int e = errno;
    zzi_lock(&a->lock);
    a->growing = 0;
    errno = e;
    if (c != NULL && chunk_insert(a, c) != 0) {
        chunk_destroy(c);
        zzi_fail(ZZI_FAIL_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    return c;
}

/* pre: a->lock held.  Sets up a new run for class cls in chunk c. */
static struct run *arena_new_run(zz_arena *a, struct chunk *c, unsigned cls)
{
    struct run *r = run_new(c->data + c->runs_used * ZZA_RUN_BYTES, cls);
    if (r == NULL)
        return NULL;
    r->chunk = c;
    c->runs[c->runs_used] = r;
    atomic_store_explicit(&c->runs_used, c->runs_used + 1, memory_order_release);
    avail_push(a, r);
    return r;
}

/* ---- taking and returning free cells (under the arena's lock) ----------- */

/* Growing the arena for a run of one's own spends locked memory to spare
 * threads shared cache lines: worth it only when locked memory is not
 * rationed (no finite RLIMIT_MEMLOCK, or CAP_IPC_LOCK).  Asked only when the
 * arena would grow, which is rare: it costs two system calls. */
int zza_lock_budget_unlimited(void)
{
    return zzi_os_memlock_limit() == SIZE_MAX;
}

/* How far down a class's list of runs with free cells a thread looks for
 * one it may call its own before it sets up a new one. */
#define OWNER_SCAN 8

/* pre: a->lock held.  A run with a free cell of class cls for owner: its
 * home run, else one of its own or nobody's, else a new one (growing the
 * arena if need be and locked memory is not rationed: a run per thread and
 * class costs 16 KiB, sharing one costs every access a contended cache
 * line), else the first run with a free cell.  NULL with errno when none. */
static struct run *pick_run(zz_arena *a, unsigned cls, const void *owner, struct run *home)
{
    if (home != NULL && home->owner == owner && home->nfree > 0 && !home->chunk->retired)
        return home;
    struct run *first = a->avail[cls];
    unsigned k = 0;
    for (struct run *r = first; r != NULL && k < OWNER_SCAN; r = r->next, k++)
        if (r->owner == owner || r->owner == NULL)
            return r;
    struct chunk *c = chunk_with_room(a);
    if (c == NULL && first != NULL && (a->growing || !zza_lock_budget_unlimited()))
        return first; /* share rather than wait for, or spend rationed memory on, growth */
    if (c == NULL) {
        int e = errno;
        c = arena_grow(a); /* lets the lock go: the lists may have changed */
        if (c == NULL && (first = a->avail[cls]) != NULL) {
            errno = e;
            return first;
        }
        if (c == NULL)
            return NULL;
    }
    return arena_new_run(a, c, cls);
}

/* pre: a->lock held.  Takes chunk c out of service: its runs hand out no
 * more cells (their live blocks stay valid and can be freed). */
static void chunk_retire(zz_arena *a, struct chunk *c)
{
    c->retired = 1;
    a->has_retired = 1;
    for (size_t i = 0; i < c->runs_used; i++)
        if (c->runs[i]->nfree > 0)
            avail_remove(a, c->runs[i]);
}

/* pre: a->lock held.  1 if chunk c may hand out cells now: refreshed after a
 * fork (locks and guards made again), still on the arena's backend (a
 * forked child's secret memory is replaced by anonymous zero pages), and
 * locked if the policy requires it (locking it now if it was mapped under
 * ZZ_LOCK_BEST_EFFORT).  Otherwise retires it and returns 0. */
static int chunk_fit(zz_arena *a, struct chunk *c)
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
               zzi_pages_try_lock(m) == 0);
    errno = e;
    if (!fit) {
        chunk_retire(a, c);
        return 0;
    }
    atomic_store_explicit(&c->checked_gen, gen, memory_order_release);
    return 1;
}

static unsigned take_cells_locked(zz_arena *a, unsigned cls, struct zza_cell *out, unsigned want,
                                  const void *owner, struct run **home)
{
    struct run *r;
    do { /* a chunk found unfit is retired: its runs leave the lists */
        r = pick_run(a, cls, owner, home != NULL ? *home : NULL);
        if (r == NULL)
            return 0;
    } while (!chunk_fit(a, r->chunk));
    refresh_after_fork(r);
    if (r->owner == NULL)
        r->owner = owner;
    if (home != NULL && r->owner == owner)
        *home = r;
    unsigned got = 0;
    while (got < want && r->nfree > 0)
        out[got++] = (struct zza_cell){r, r->free_stack[--r->nfree]};
    if (r->nfree == 0)
        avail_remove(a, r);
    return got;
}

unsigned zza_take_cells(zz_arena *a, unsigned cls, struct zza_cell *out, unsigned want,
                        const void *owner, struct run **home)
{
    zzi_lock(&a->lock);
    unsigned got = take_cells_locked(a, cls, out, want, owner, home);
    int e = errno;
    zzi_unlock(&a->lock);
    errno = e;
    return got;
}

void zza_disown(zz_arena *a, const void *owner)
{
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t k = 0; k < ix->n; k++)
        for (size_t ri = 0; ri < ix->chunks[k]->runs_used; ri++)
            if (ix->chunks[k]->runs[ri]->owner == owner)
                ix->chunks[k]->runs[ri]->owner = NULL;
}

void zza_return_cell(zz_arena *a, struct run *r, unsigned i)
{
    r->free_stack[r->nfree++] = (uint16_t)i;
    if (r->nfree == 1 && !r->chunk->retired)
        avail_push(a, r);
}

int zza_recheck_cell(zz_arena *a, struct zza_cell *cell, const void *owner, struct run **home)
{
    zzi_lock(&a->lock);
    int ok = chunk_fit(a, cell->run->chunk);
    if (!ok) {
        zza_return_cell(a, cell->run, cell->index);
        ok = take_cells_locked(a, cell->run->cls, cell, 1, owner, home) == 1;
    }
    int e = errno;
    zzi_unlock(&a->lock);
    errno = e;
    return ok ? 0 : -1;
}

void zza_count_live(zz_arena *a, size_t blocks, size_t bytes, int with_lock)
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
    unsigned char *p = zza_cell_block(r, i);
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

/* The run and cell of block p of arena a, without the lock; fatal when p is
 * not the start of a cell's block. */
static struct run *find_cell(zz_arena *a, const unsigned char *p, unsigned *cell)
{
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_acquire);
    size_t lo = 0, hi = ix->n;
    while (lo < hi) { /* the last chunk whose data starts at or before p */
        size_t mid = lo + (hi - lo) / 2;
        if (ix->chunks[mid]->data <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    ZZ_CHECK(lo > 0, "invalid pointer");
    struct chunk *c = ix->chunks[lo - 1];
    size_t off = (size_t)(p - c->data), ri = off / ZZA_RUN_BYTES;
    ZZ_CHECK(ri < atomic_load_explicit(&c->runs_used, memory_order_acquire), "invalid pointer");
    struct run *r = c->runs[ri];
    uint64_t x = off % ZZA_RUN_BYTES - ZZ_CANARY_LEN; /* huge when in_run < 16 */
    uint64_t q = (x * r->reciprocal) >> 32;          /* x / cell, exact for x < 2^32 / cell */
    ZZ_CHECK(x < ZZA_RUN_BYTES && q * r->cell == x && q < r->ncells, "invalid pointer");
    *cell = (unsigned)q;
    return r;
}

/* 1 if the n bytes at p are canary word w, or (when a purge or a fork may
 * have zeroed them since the block was made) canary or zero byte by byte. */
static int tail_acceptable(const unsigned char *p, size_t n, uint64_t w, unsigned block_epoch,
                           unsigned now)
{
    return zzi_canary_check(p, n, w) || (block_epoch != now && zzi_canary_check_or_zero(p, n, w));
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
__attribute__((noinline)) static void check_cell_slow(const struct run *r, unsigned i, const unsigned char *p, size_t n)
{
    size_t span = r->span;
    for (;;) {
        unsigned e = zzi_epoch_stable();
        int head_ok = zzi_canary16_intact(p - ZZ_CANARY_LEN, r->canary[2 * i]);
        int tail_ok = zzi_canary16_intact(p + span, r->canary[2 * i + 2]) &&
                      (n == span || (n == 0 && zzi_is_zero_small(p, span)) ||
                       (n > 0 && tail_acceptable(p + n, span - n, r->canary[2 * i + 1], r->epoch[i], e)));
        if (!zzi_epoch_unchanged(e))
            continue;
        ZZ_CHECK(head_ok, "canary corrupted (before block)");
        ZZ_CHECK(tail_ok, "canary corrupted (after block)");
        return;
    }
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
        atomic_store_explicit(&r->size_plus1[i], ZZA_CELL_FREEING, memory_order_relaxed);
    } else {
        sp1 = atomic_exchange_explicit(&r->size_plus1[i], ZZA_CELL_FREEING, memory_order_acq_rel);
    }
    ZZ_CHECK(is_live(sp1), "double free");
    size_t n = sp1 - 1, span = r->span;
    ZZ_VG_FREELIKE(p);
    ZZ_VG_DEFINED(p - ZZ_CANARY_LEN, span + 2 * ZZ_CANARY_LEN);
    check_cell(r, i, p, n);
    memset(p, 0, span);
    zzi_barrier(p);
    ZZ_VG_NOACCESS(p - ZZ_CANARY_LEN, span + 2 * ZZ_CANARY_LEN);
    atomic_store_explicit(&r->size_plus1[i], ZZA_CELL_FREE, memory_order_release);
    return n;
}

/* ---- public API ------------------------------------------------------------ */

/* Runs for a fixed arena of `capacity` bytes, counting round_up(n,16) + 16
 * per block: each run loses its 16-byte trailing canary and up to one cell
 * at its end (at most 1/16 of it for blocks up to 1 KiB), and a block size
 * that straddles run boundaries needs one more: 9/8 and two runs cover it. */
static size_t fixed_arena_runs(size_t capacity)
{
    size_t usable = ZZA_RUN_BYTES - ZZ_CANARY_LEN;
    return (capacity / 8 * 9 + capacity % 8 * 2 + usable - 1) / usable + 2;
}

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

ZZ_API zz_arena *zz_arena_create(size_t capacity)
{
    if (zzi_init() != 0)
        return NULL;
    zzi_check_fork();
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
    struct chunk *c = chunk_new(a, nruns, 1);
    if (c == NULL || chunk_insert(a, c) != 0) {
        int e = c ? ENOMEM : errno;
        if (c)
            chunk_destroy(c);
        free(a);
        errno = e;
        return NULL;
    }
    pthread_mutex_lock(&zzi_arenas_lock);
    a->id = ++last_arena_id;
    a->list_next = arenas;
    if (arenas)
        arenas->list_prev = a;
    arenas = a;
    pthread_mutex_unlock(&zzi_arenas_lock);
    return a;
}

/* A fixed arena takes the lock for every block, so that every byte of its
 * capacity stays available to every thread (no cell sits in a thread's
 * cache while another thread is told the arena is full). */
static int take_fixed(zz_arena *a, unsigned cls, size_t n, struct zza_cell *out)
{
    zzi_lock(&a->lock);
    unsigned got = take_cells_locked(a, cls, out, 1, NULL, NULL);
    int e = errno;
    if (got == 1) {
        zzi_count(&a->live_blocks, 1);
        zzi_count(&a->live_bytes, n);
    }
    zzi_unlock(&a->lock);
    errno = e;
    return got == 1 ? 0 : -1;
}

ZZ_API void *zz_arena_alloc(zz_arena *a, size_t n)
{
    if (zz_unlikely(a == NULL || n > ZZA_MAX_BLOCK)) {
        zzi_fail(a == NULL ? ZZI_FAIL_ARGUMENT : ZZI_FAIL_ARENA_BLOCK);
        errno = a == NULL ? EINVAL : ENOMEM;
        return NULL;
    }
    zzi_check_fork();
    unsigned cls = zza_class_of(n);
    struct zza_cell c;
    int rc = a->growable ? zzi_arena_cache_take(a, cls, n, &c) : take_fixed(a, cls, n, &c);
    if (rc != 0)
        return NULL;
    return cell_hand_out(c.run, c.index, n);
}

static inline int run_is_stale(const struct run *r)
{
    return atomic_load_explicit(&r->fork_gen, memory_order_acquire) !=
           atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed);
}

ZZ_API void zz_arena_free(zz_arena *a, void *p)
{
    if (p == NULL)
        return;
    ZZ_CHECK(a != NULL, "invalid pointer");
    zzi_check_fork();
    unsigned i; /* errno: nothing here sets it; arena_cache.c keeps it on its slow paths */
    struct run *r = find_cell(a, p, &i);
    if (!a->growable) {
        zzi_lock(&a->lock);
        refresh_after_fork(r);
        size_t n = cell_take_back(r, i, p, 1);
        zza_return_cell(a, r, i);
        zzi_count(&a->live_blocks, (size_t)-1);
        zzi_count(&a->live_bytes, 0 - n);
        zzi_unlock(&a->lock);
        return;
    }
    if (zz_unlikely(run_is_stale(r))) {
        zzi_lock(&a->lock);
        refresh_after_fork(r);
        zzi_unlock(&a->lock);
    }
    size_t n = cell_take_back(r, i, p, 0);
    zzi_arena_cache_put(a, r, i, n);
}

/* Checks every cell's canaries (live ones fully) before the chunks go. */
static void check_all_cells(struct chunk *c)
{
    for (size_t ri = 0; ri < c->runs_used; ri++) {
        struct run *r = c->runs[ri];
        refresh_after_fork(r);
        for (unsigned i = 0; i < r->ncells; i++) {
            uint32_t sp1 = atomic_load(&r->size_plus1[i]);
            unsigned char *p = zza_cell_block(r, i);
            ZZ_VG_DEFINED(p - ZZ_CANARY_LEN, r->span + 2 * ZZ_CANARY_LEN);
            if (is_live(sp1)) {
                check_cell(r, i, p, sp1 - 1);
                ZZ_VG_FREELIKE(p);
            } else {
                ZZ_CHECK(zzi_canary16_intact(p - ZZ_CANARY_LEN, r->canary[2 * i]),
                         "canary corrupted (before block)");
            }
        }
    }
}

ZZ_API void zz_arena_destroy(zz_arena *a)
{
    if (a == NULL)
        return;
    zzi_check_fork();
    pthread_mutex_lock(&zzi_arenas_lock);
    if (a->list_prev)
        a->list_prev->list_next = a->list_next;
    else
        arenas = a->list_next;
    if (a->list_next)
        a->list_next->list_prev = a->list_prev;
    pthread_mutex_unlock(&zzi_arenas_lock);

    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t k = 0; k < ix->n; k++) {
        check_all_cells(ix->chunks[k]);
        chunk_destroy(ix->chunks[k]);
    }
    free_indexes(a);
    free(a);
}

/* ---- purge, info, stats, fork ----------------------------------------------- */

void zzi_arena_purge_region(struct zzi_region *reg)
{
    struct chunk *c = reg->owner;
    size_t used = atomic_load_explicit(&c->runs_used, memory_order_acquire);
    for (size_t ri = 0; ri < used; ri++) {
        struct run *r = c->runs[ri];
        for (unsigned i = 0; i < r->ncells; i++)
            if (atomic_load_explicit(&r->size_plus1[i], memory_order_acquire) != ZZA_CELL_FREE)
                zz_wipe(zza_cell_block(r, i), r->span);
    }
}

unsigned zzi_arena_info(struct zzi_region *reg, uintptr_t addr)
{
    struct chunk *c = reg->owner;
    uintptr_t data = (uintptr_t)c->data;
    ZZ_CHECK(addr >= data && addr < data + c->runs_used * ZZA_RUN_BYTES, "invalid pointer");
    struct run *r = c->runs[(addr - data) / ZZA_RUN_BYTES];
    size_t in_run = (addr - data) % ZZA_RUN_BYTES;
    ZZ_CHECK(in_run >= ZZ_CANARY_LEN && (in_run - ZZ_CANARY_LEN) % r->cell == 0 &&
                 (in_run - ZZ_CANARY_LEN) / r->cell < r->ncells,
             "invalid pointer");
    ZZ_CHECK(is_live(atomic_load(&r->size_plus1[(in_run - ZZ_CANARY_LEN) / r->cell])),
             "invalid pointer");
    return reg->map.info | ZZ_INFO_CANARY;
}

int zza_is_live(const zz_arena *a, uint64_t id)
{
    for (const zz_arena *x = arenas; x != NULL; x = x->list_next)
        if (x == a && x->id == id)
            return 1;
    return 0;
}

void zzi_arena_count_live(size_t *blocks, size_t *bytes)
{
    pthread_mutex_lock(&zzi_arenas_lock);
    for (zz_arena *a = arenas; a != NULL; a = a->list_next) {
        *blocks += atomic_load_explicit(&a->live_blocks, memory_order_relaxed);
        *bytes += atomic_load_explicit(&a->live_bytes, memory_order_relaxed);
        zzi_arena_cache_count(a, blocks, bytes);
    }
    pthread_mutex_unlock(&zzi_arenas_lock);
}

void zzi_arena_lock_all(void)
{
    pthread_mutex_lock(&zzi_arenas_lock);
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_lock(&a->lock);
}

void zzi_arena_unlock_all(void)
{
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_unlock(&a->lock);
    pthread_mutex_unlock(&zzi_arenas_lock);
}

void zzi_arena_reset_locks(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    zzi_arenas_lock = fresh;
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        zzi_unlock(&a->lock);
}

void zzi_arena_after_fork_child(void)
{
    /* a thread of the parent that was growing an arena does not exist here */
    for (zz_arena *a = arenas; a != NULL; a = a->list_next)
        a->growing = 0;
    zzi_arena_cache_after_fork_child();
}
