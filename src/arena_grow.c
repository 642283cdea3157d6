/*
 * arena_grow.c - growable arenas: chunks cut into a grid of runs of
 * ZZI_ARENA_RUN_BYTES, each run one size class; growth by new chunks; which run a
 * thread takes cells from; and blocks larger than a run's largest cell,
 * which are zz_alloc blocks owned by the arena (a guarded span of their own,
 * with the same canaries, purge and stats).  arena.c owns the cells and the
 * public API, arena_cache.c the per-thread caches that refill from here.
 */
#include <errno.h>
#include <stdlib.h>

#include "arena.h"

#define FIRST_CHUNK_RUNS 4u
#define MAX_CHUNK_RUNS 256u

/* ---- the free lists: runs of a class with a free cell ----------------------- */

static void avail_push(zz_arena *a, struct run *r)
{
    ZZI_LIST_PUSH(a->avail[r->cls], r, prev, next);
}

static void avail_remove(zz_arena *a, struct run *r)
{
    ZZI_LIST_UNLINK(a->avail[r->cls], r, prev, next);
}

void zzi_arena_grow_retire_runs(zz_arena *a, struct chunk *c)
{
    for (size_t i = 0; i < c->runs_used; i++)
        if (c->runs[i]->nfree > 0)
            avail_remove(a, c->runs[i]);
}

/* ---- chunks ------------------------------------------------------------------ */

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

/* A chunk of nruns runs, its grid set up (no run yet), not in the index. */
static struct chunk *grid_chunk_new(zz_arena *a, size_t nruns, int first)
{
    struct chunk *c = zzi_arena_chunk_new(a, nruns * ZZI_ARENA_RUN_BYTES, first);
    if (c == NULL)
        return NULL;
    c->runs = calloc(nruns, sizeof *c->runs);
    if (c->runs == NULL) {
        zzi_arena_chunk_destroy(c);
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    c->nruns = nruns;
    if (zzi_arena_chunk_register(c) != 0) {
        int e = errno;
        zzi_arena_chunk_destroy(c);
        errno = e;
        return NULL;
    }
    return c;
}

/* pre: a->lock held (or a not yet shared).  Publishes an index with c added
 * in address order.  Returns 0, or -1 with ENOMEM (nothing changed). */
static int chunk_insert(zz_arena *a, struct chunk *c)
{
    struct chunk_index *old = atomic_load_explicit(&a->index, memory_order_relaxed);
    size_t n = old ? old->n : 0;
    struct chunk_index *ix = malloc(sizeof *ix + (n + 1) * sizeof(struct chunk *));
    if (ix == NULL) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return -1;
    }
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

/* 1 if a chunk could not be made (c == NULL, errno set) or not locked (best
 * effort) for want of locked memory or memory, where a smaller one might. */
static int refused_for_room(const struct chunk *c)
{
    if (c != NULL)
        return !(c->region.map.info & ZZ_INFO_LOCKED);
    return errno == ENOMEM || errno == EAGAIN;
}

/* A chunk of nruns runs or, when the lock budget (RLIMIT_MEMLOCK) or memory
 * has no room for one, of the largest of nruns/2, nruns/4, ... 1 runs that
 * fits: without it, the last quarter-of-the-arena step that did not fit left
 * up to a fifth of the budget unused (issue 18: 144,925 of a possible
 * ~174,000 32-byte secrets under 8 MiB).  Under ZZ_LOCK_BEST_EFFORT a chunk
 * mapped unlocked is kept only when no smaller one can be locked.  NULL with
 * errno when none can be made. */
static struct chunk *grid_chunk_that_fits(zz_arena *a, size_t nruns, int first)
{
    struct chunk *c = grid_chunk_new(a, nruns, first), *unlocked = NULL;
    while (nruns > 1 && refused_for_room(c)) {
        if (c != NULL && unlocked == NULL)
            unlocked = c; /* best effort: the fallback if nothing smaller locks */
        else if (c != NULL)
            zzi_arena_chunk_destroy(c);
        nruns /= 2;
        c = grid_chunk_new(a, nruns, first);
    }
    if (unlocked != NULL && c != NULL && (c->region.map.info & ZZ_INFO_LOCKED)) {
        zzi_arena_chunk_destroy(unlocked);
        return c;
    }
    if (unlocked != NULL) {
        if (c != NULL)
            zzi_arena_chunk_destroy(c);
        return unlocked;
    }
    return c;
}

struct chunk *zzi_arena_grow_first_chunk(zz_arena *a)
{
    struct chunk *c = grid_chunk_that_fits(a, FIRST_CHUNK_RUNS, 1);
    if (c != NULL && chunk_insert(a, c) != 0) {
        zzi_arena_chunk_destroy(c);
        return NULL;
    }
    return c;
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

/* pre: a->lock held, and held again on return.  Adds a chunk, letting the
 * lock go while the chunk is mapped, guarded and locked (system calls that
 * take tens of microseconds: other threads' refills need not wait for
 * them).  One thread grows an arena at a time; another that needs room
 * meanwhile waits for it.  Returns a chunk with room for a run, or NULL
 * with errno. */
static struct chunk *arena_grow(zz_arena *a)
{
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
    struct chunk *c = grid_chunk_that_fits(a, nruns, 0); /* zz_alloc's cache gives way in there */
    int e = errno;
    zzi_lock(&a->lock);
    a->growing = 0;
    errno = e;
    if (c != NULL && chunk_insert(a, c) != 0) {
        e = errno;
        zzi_arena_chunk_destroy(c);
        errno = e;
        return NULL;
    }
    return c;
}

/* pre: a->lock held.  Sets up a new run for class cls in chunk c. */
static struct run *arena_new_run(zz_arena *a, struct chunk *c, unsigned cls)
{
    size_t span = zzi_arena_class_span(cls), cell = span + ZZ_CANARY_LEN;
    unsigned ncells = (unsigned)((ZZI_ARENA_RUN_BYTES - ZZ_CANARY_LEN) / cell);
    struct run *r = zzi_arena_run_new(c->data + c->runs_used * ZZI_ARENA_RUN_BYTES, span, ncells,
                                ZZI_ARENA_RUN_BYTES, cls);
    if (r == NULL)
        return NULL;
    r->chunk = c;
    c->runs[c->runs_used] = r;
    atomic_store_explicit(&c->runs_used, c->runs_used + 1, memory_order_release);
    avail_push(a, r);
    return r;
}

/* ---- taking and returning free cells (under the arena's lock) ----------- */

/* RLIMIT_MEMLOCK as read at most once per clock tick (zzi_os_now_ms) in
 * the whole process: reading it costs two system calls (getrlimit and
 * capget, 2.4 us), and the decisions below are asked on refills under an
 * arena's lock.  (At 4d9cebd every refill that found no run of its own read
 * it: 3,048 reads in 41 ms of test_arena_threads_mixed_sizes_fit, 10,000 in
 * zz-bench's mixed workload.)  A limit changed at run time is seen a tick
 * later: these choose between sharing and growing, and growth itself still
 * meets the kernel's limit. */
static _Atomic uint64_t limit_tick; /* the tick it was read at, plus 1; 0: never */
static _Atomic size_t limit_seen;

static size_t lock_limit_recent(void)
{
    uint64_t tick = zzi_os_now_ms() + 1;
    if (atomic_load_explicit(&limit_tick, memory_order_acquire) == tick)
        return atomic_load_explicit(&limit_seen, memory_order_relaxed);
    size_t limit = zzi_os_memlock_limit();
    atomic_store_explicit(&limit_seen, limit, memory_order_relaxed);
    atomic_store_explicit(&limit_tick, tick, memory_order_release);
    return limit;
}

/* Growing the arena for a run of one's own spends locked memory to spare
 * threads shared cache lines: worth it only when locked memory is not
 * rationed (no finite RLIMIT_MEMLOCK, or CAP_IPC_LOCK). */
int zzi_arena_lock_budget_unlimited(void)
{
    return lock_limit_recent() == SIZE_MAX;
}

/* Under a finite lock limit, may a thread set up a run of its own (in room
 * a chunk already has) rather than share one with a free cell?  While the
 * arena holds at most an eighth of the limit.  Own runs spare threads
 * shared cache lines, but each is 16 KiB of a chunk per thread and size
 * class: at 34bf41d four threads with blocks of 16 B to 8 KiB (128 classes)
 * filled 8 MiB with a few hundred blocks live, and the arena then failed. */
static int own_run_affordable(const zz_arena *a)
{
    size_t limit = lock_limit_recent();
    return limit == SIZE_MAX || a->total_runs * ZZI_ARENA_RUN_BYTES <= limit / 8;
}

/* How far down a class's list of runs with free cells a thread looks for
 * one it may call its own before it sets up a new one. */
#define OWNER_SCAN 8

/* pre: a->lock held.  A run with a free cell of class cls for owner: its
 * home run, else one of its own or nobody's, else a new one (growing the
 * arena if need be, while own_run_affordable: a run per thread and class
 * costs 16 KiB, sharing one costs every alloc and free a contended cache
 * line of cell states), else the first run with a free cell.  NULL with
 * errno when none.  (Until 4c4d676 an arena under a finite limit never grew
 * for a run of one's own: once a thread's batch had filled the first chunk,
 * the next two threads shared a run, and zz-bench's unprivileged 2-thread
 * pair cost 9x malloc + free.) */
static struct run *pick_run(zz_arena *a, unsigned cls, const void *owner, struct run *home)
{
    if (home != NULL && home->owner == owner && home->nfree > 0 && !home->chunk->retired)
        return home;
    struct run *first = a->avail[cls];
    unsigned k = 0;
    for (struct run *r = first; r != NULL && k < OWNER_SCAN; r = r->next, k++)
        if (r->owner == owner || r->owner == NULL)
            return r;
    if (first != NULL && !own_run_affordable(a))
        return first; /* locked memory is rationed, and the arena has its share */
    struct chunk *c = chunk_with_room(a);
    if (c == NULL && first != NULL && a->growing)
        return first; /* share rather than wait for growth */
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

static unsigned take_cells_locked(zz_arena *a, unsigned cls, struct zzi_arena_cell *out, unsigned want,
                                  const void *owner, struct run **home)
{
    zzi_arena_grow_rebuild_after_fork(a);
    struct run *r;
    do { /* a chunk found unfit is retired: its runs leave the lists */
        r = pick_run(a, cls, owner, home != NULL ? *home : NULL);
        if (r == NULL)
            return 0;
    } while (!zzi_arena_chunk_fit(a, r->chunk));
    zzi_arena_run_refresh(r);
    if (r->owner == NULL)
        r->owner = owner;
    if (home != NULL && r->owner == owner)
        *home = r;
    unsigned got = 0;
    while (got < want && r->nfree > 0)
        out[got++] = (struct zzi_arena_cell){r, r->free_stack[--r->nfree]};
    if (r->nfree == 0)
        avail_remove(a, r);
    return got;
}

unsigned zzi_arena_take_cells(zz_arena *a, unsigned cls, struct zzi_arena_cell *out, unsigned want,
                        const void *owner, struct run **home)
{
    zzi_lock(&a->lock);
    unsigned got = take_cells_locked(a, cls, out, want, owner, home);
    int e = errno;
    zzi_unlock(&a->lock);
    errno = e;
    return got;
}

void zzi_arena_disown(zz_arena *a, const void *owner)
{
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t k = 0; k < ix->n; k++)
        for (size_t ri = 0; ri < ix->chunks[k]->runs_used; ri++)
            if (ix->chunks[k]->runs[ri]->owner == owner)
                ix->chunks[k]->runs[ri]->owner = NULL;
}

void zzi_arena_return_cell(zz_arena *a, struct run *r, unsigned i)
{
    r->free_stack[r->nfree++] = (uint16_t)i;
    if (r->nfree == 1 && !r->chunk->retired)
        avail_push(a, r);
}

int zzi_arena_recheck_cell(zz_arena *a, struct zzi_arena_cell *cell, const void *owner, struct run **home)
{
    zzi_lock(&a->lock);
    zzi_arena_grow_rebuild_after_fork(a);
    int ok = zzi_arena_chunk_fit(a, cell->run->chunk);
    if (!ok) {
        zzi_arena_return_cell(a, cell->run, cell->index);
        ok = take_cells_locked(a, cell->run->cls, cell, 1, owner, home) == 1;
    }
    int e = errno;
    zzi_unlock(&a->lock);
    errno = e;
    return ok ? 0 : -1;
}

void zzi_arena_grow_rebuild_slow(zz_arena *a)
{
    size_t blocks = 0, bytes = 0;
    for (unsigned k = 0; k < ZZI_ARENA_NCLASSES; k++)
        a->avail[k] = NULL;
    const struct chunk_index *ix = atomic_load_explicit(&a->index, memory_order_relaxed);
    for (size_t c = 0; c < ix->n; c++) {
        struct chunk *ch = ix->chunks[c];
        for (size_t ri = 0; ri < ch->runs_used; ri++) {
            struct run *r = ch->runs[ri];
            r->nfree = 0;
            r->owner = NULL;
            r->prev = r->next = NULL;
            for (unsigned i = r->ncells; i-- > 0;) { /* low addresses handed out first */
                uint32_t sp1 = atomic_load_explicit(&r->size_plus1[i], memory_order_relaxed);
                if (zzi_arena_cell_live(sp1)) {
                    blocks++;
                    bytes += sp1 - 1;
                    continue;
                }
                /* free, or freed half-way by a thread that is gone: zero here
                 * (WIPEONFORK, or zero pages in place of secret memory) */
                atomic_store_explicit(&r->size_plus1[i], ZZI_ARENA_CELL_FREE, memory_order_relaxed);
                r->free_stack[r->nfree++] = (uint16_t)i;
            }
            if (r->nfree > 0 && !ch->retired)
                avail_push(a, r);
        }
    }
    atomic_store_explicit(&a->live_blocks, blocks, memory_order_relaxed);
    atomic_store_explicit(&a->live_bytes, bytes, memory_order_relaxed);
    a->rebuilt_gen = atomic_load(&zzi_fork_generation);
}

/* ---- finding a cell from its address, without the lock ------------------------ */

struct run *zzi_arena_grow_find(zz_arena *a, const unsigned char *p, unsigned *cell)
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
    if (lo == 0 || (size_t)(p - ix->chunks[lo - 1]->data) >= ix->chunks[lo - 1]->bytes)
        return NULL;
    struct chunk *c = ix->chunks[lo - 1];
    size_t off = (size_t)(p - c->data), ri = off / ZZI_ARENA_RUN_BYTES;
    ZZ_CHECK(ri < atomic_load_explicit(&c->runs_used, memory_order_acquire), "invalid pointer");
    struct run *r = c->runs[ri];
    uint64_t x = off % ZZI_ARENA_RUN_BYTES - ZZ_CANARY_LEN; /* huge when in_run < 16 */
    uint64_t q = (x * r->reciprocal) >> 32;          /* x / cell, exact for x < 2^32 / cell */
    ZZ_CHECK(x < ZZI_ARENA_RUN_BYTES && q * r->cell == x && q < r->ncells, "invalid pointer");
    *cell = (unsigned)q;
    return r;
}

/* ---- large blocks ------------------------------------------------------------- */

void *zzi_arena_grow_alloc_large(zz_arena *a, size_t n)
{
    void *p = zzi_block_alloc_for_arena(n, a->backend, a);
    if (p != NULL)
        atomic_fetch_add(&a->large_live, 1);
    return p;
}

void zzi_arena_grow_free_large(zz_arena *a, void *p)
{
    zzi_block_free_for_arena(p, a); /* fatal unless p is a's */
    atomic_fetch_sub(&a->large_live, 1);
}
