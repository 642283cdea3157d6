/*
 * arena_fixed.c - fixed arenas: all memory mapped, locked and guarded up
 * front in one chunk, used as a heap of runs of any length.  A run holds
 * cells of exactly one span (the request rounded up to 16 bytes), as many
 * as fit in 16 KiB, or one when the span is larger; it takes exactly
 * ncells * (span + 16) + 16 bytes from the heap:
 *
 *   guard | [c|block][c|block]...[c|block][c] [c|block][c] ...  holes ... | guard
 *           run of k cells of one span         run of one large cell
 *
 * So count blocks of n bytes need count * (round_up(n, 16) + 16) bytes plus
 * one partly used run and 16 bytes per run, which the reserve covers for
 * every n (zzi_arena_fixed_bytes), and an empty arena serves any block that fits.
 *
 * Bookkeeping is out of band and under the arena's lock: holes (free space,
 * zero-filled, sorted and merged), a page map to find a run from an address
 * (every run is longer than two pages, so at most one run starts inside any
 * page), and a table of runs that zz_purge walks without the lock (a run
 * leaves the table, and is freed only once no purge can be reading it).
 * Runs of one cell go back to the heap when the cell is freed; runs of many
 * stay for reuse until an allocation finds no room.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* Runs of many cells: spans up to this (a cell of 8,176 bytes or less fits
 * twice in a run); larger spans get runs of one cell. */
#define MULTI_MAX_SPAN 8160u
#define MULTI_CLASSES (MULTI_MAX_SPAN / 16u)
/* Every run is longer than this (see the top of this file). */
#define MIN_RUN_BYTES 8200u

struct hole {
    size_t off, len;
};

/* The blocks of the last RELEASED_RING runs of one cell that went back to
 * the heap (a block larger than MULTI_MAX_SPAN: its free releases its run),
 * so that a second zz_arena_free of such a pointer is reported as the double
 * free it is: with no run there, it said "invalid pointer" (zz-stress's
 * misuse child, a 37809-byte block of a fixed arena, seed 33).  As slab.c's
 * freed_ring: searched on the fatal path only, where no run holds p now. */
#define RELEASED_RING 64

struct zzi_arena_heap {
    size_t npages;
    struct run **page_first;        /* the run covering each page's first byte */
    struct run **page_inside;       /* a run that starts inside the page, after its first byte */
    _Atomic(struct run *) *table;   /* every run; zz_purge reads [0, used) without the lock */
    _Atomic size_t used;
    size_t table_cap;
    unsigned *free_slots;           /* table indexes left by released runs */
    size_t nfree_slots;
    struct hole *holes;             /* sorted by offset, never adjacent */
    size_t nholes, holes_cap;
    struct run *avail[MULTI_CLASSES]; /* runs of many cells with a free one, per span */
    uintptr_t released[RELEASED_RING];
    unsigned released_next;
};

size_t zzi_arena_fixed_bytes(size_t capacity)
{
    /* 9/8 of the capacity plus two 16 KiB runs: the 16 bytes each run adds
     * and one partly used run for any single block size, and room for a mix
     * of sizes, as the header promises. */
    size_t page = zzi_page(), extra = capacity / 8 + 2 * ZZI_ARENA_RUN_BYTES, bytes;
    if (__builtin_add_overflow(capacity, extra, &bytes) || bytes > SIZE_MAX - page)
        return 0;
    return (bytes + page - 1) & ~(page - 1);
}

int zzi_arena_fixed_init(struct chunk *c)
{
    struct zzi_arena_heap *h = calloc(1, sizeof *h);
    if (h == NULL)
        goto nomem;
    h->npages = c->bytes / zzi_page();
    h->table_cap = c->bytes / MIN_RUN_BYTES + 1;
    h->holes_cap = h->table_cap + 1; /* holes lie between runs: never more */
    h->page_first = calloc(h->npages, sizeof *h->page_first);
    h->page_inside = calloc(h->npages, sizeof *h->page_inside);
    h->table = calloc(h->table_cap, sizeof *h->table);
    h->free_slots = calloc(h->table_cap, sizeof *h->free_slots);
    h->holes = calloc(h->holes_cap, sizeof *h->holes);
    if (!h->page_first || !h->page_inside || !h->table || !h->free_slots || !h->holes) {
        c->heap = h;
        zzi_arena_fixed_free(c);
        goto nomem;
    }
    h->holes[0] = (struct hole){0, c->bytes};
    h->nholes = 1;
    c->heap = h;
    return 0;
nomem:
    zzi_fail(ZZ_ERR_NOMEM);
    errno = ENOMEM;
    return -1;
}

/* ---- holes -------------------------------------------------------------------- */

/* The smallest hole that holds len bytes (best fit keeps big holes whole for
 * big blocks); takes len from its start.  Returns the offset, or SIZE_MAX. */
static size_t hole_take(struct zzi_arena_heap *h, size_t len)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < h->nholes; i++)
        if (h->holes[i].len >= len && (best == SIZE_MAX || h->holes[i].len < h->holes[best].len))
            best = i;
    if (best == SIZE_MAX)
        return SIZE_MAX;
    size_t off = h->holes[best].off;
    h->holes[best].off += len;
    h->holes[best].len -= len;
    if (h->holes[best].len == 0) {
        memmove(&h->holes[best], &h->holes[best + 1], (h->nholes - best - 1) * sizeof *h->holes);
        h->nholes--;
    }
    return off;
}

/* Gives [off, off+len) back, merged with the holes on either side. */
static void hole_give(struct zzi_arena_heap *h, size_t off, size_t len)
{
    size_t at = 0;
    while (at < h->nholes && h->holes[at].off < off)
        at++;
    int join_prev = at > 0 && h->holes[at - 1].off + h->holes[at - 1].len == off;
    int join_next = at < h->nholes && off + len == h->holes[at].off;
    if (join_prev && join_next) {
        h->holes[at - 1].len += len + h->holes[at].len;
        memmove(&h->holes[at], &h->holes[at + 1], (h->nholes - at - 1) * sizeof *h->holes);
        h->nholes--;
    } else if (join_prev) {
        h->holes[at - 1].len += len;
    } else if (join_next) {
        h->holes[at].off = off;
        h->holes[at].len += len;
    } else {
        ZZ_CHECK(h->nholes < h->holes_cap, "internal: fixed arena hole table full");
        memmove(&h->holes[at + 1], &h->holes[at], (h->nholes - at) * sizeof *h->holes);
        h->holes[at] = (struct hole){off, len};
        h->nholes++;
    }
}

/* ---- the page map -------------------------------------------------------------- */

/* Points the pages of r at r (or, with NULL, clears what pointed at r). */
static void map_run(struct zzi_arena_heap *h, const struct chunk *c, struct run *r, struct run *value)
{
    size_t page = zzi_page(), off = (size_t)(r->start - c->data);
    size_t first = off / page, last = (off + r->length - 1) / page;
    if (off % page == 0)
        h->page_first[first] = value;
    else
        h->page_inside[first] = value;
    for (size_t pg = first + 1; pg <= last; pg++)
        h->page_first[pg] = value;
}

static int run_holds(const struct run *r, const unsigned char *p)
{
    return r != NULL && p >= r->start && (size_t)(p - r->start) < r->length;
}

static int was_released(const struct zzi_arena_heap *h, const unsigned char *p)
{
    for (unsigned i = 0; i < RELEASED_RING; i++)
        if (h->released[i] == (uintptr_t)p)
            return 1;
    return 0;
}

struct run *zzi_arena_fixed_find(struct chunk *c, const unsigned char *p, unsigned *cell,
                                 const char *freed_msg)
{
    struct zzi_arena_heap *h = c->heap;
    ZZ_CHECK(p >= c->data && (size_t)(p - c->data) < c->bytes, "invalid pointer");
    size_t pg = (size_t)(p - c->data) / zzi_page();
    struct run *r = h->page_first[pg];
    if (!run_holds(r, p))
        r = h->page_inside[pg];
    ZZ_CHECK(run_holds(r, p) || !was_released(h, p), freed_msg);
    ZZ_CHECK(run_holds(r, p), "invalid pointer");
    size_t x = (size_t)(p - r->start);
    ZZ_CHECK(x >= ZZ_CANARY_LEN && (x - ZZ_CANARY_LEN) % r->cell == 0 &&
                 (x - ZZ_CANARY_LEN) / r->cell < r->ncells,
             "invalid pointer");
    *cell = (unsigned)((x - ZZ_CANARY_LEN) / r->cell);
    return r;
}

/* ---- runs ------------------------------------------------------------------------ */

static void avail_push(struct zzi_arena_heap *h, struct run *r)
{
    ZZI_LIST_PUSH(h->avail[r->cls], r, prev, next);
}

static void avail_remove(struct zzi_arena_heap *h, struct run *r)
{
    ZZI_LIST_UNLINK(h->avail[r->cls], r, prev, next);
}

static int multi(const struct run *r)
{
    return r->ncells > 1;
}

/* A new run for blocks of `span` bytes, from the holes.  NULL with errno
 * (ENOMEM when no hole is large enough). */
static struct run *run_add(struct chunk *c, size_t span)
{
    struct zzi_arena_heap *h = c->heap;
    size_t cell = span + ZZ_CANARY_LEN;
    unsigned ncells = span <= MULTI_MAX_SPAN ? (unsigned)((ZZI_ARENA_RUN_BYTES - ZZ_CANARY_LEN) / cell) : 1;
    size_t length = ncells * cell + ZZ_CANARY_LEN;
    size_t off = hole_take(h, length);
    if (off == SIZE_MAX) {
        zzi_fail(c->retired ? ZZ_ERR_ARENA_UNFIT : ZZ_ERR_ARENA_FULL);
        errno = ENOMEM;
        return NULL;
    }
    unsigned cls = span <= MULTI_MAX_SPAN ? (unsigned)(span / 16 - 1) : 0;
    struct run *r = zzi_arena_run_new(c->data + off, span, ncells, length, cls);
    if (r == NULL) {
        int e = errno;
        hole_give(h, off, length);
        errno = e;
        return NULL;
    }
    r->chunk = c;
    map_run(h, c, r, r);
    size_t slot = h->nfree_slots > 0 ? h->free_slots[--h->nfree_slots] : atomic_load(&h->used);
    ZZ_CHECK(slot < h->table_cap, "internal: fixed arena run table full");
    r->slot = (unsigned)slot;
    atomic_store_explicit(&h->table[slot], r, memory_order_release);
    if (slot == atomic_load(&h->used))
        atomic_store_explicit(&h->used, slot + 1, memory_order_release);
    if (multi(r))
        avail_push(h, r);
    return r;
}

/* pre: every cell of r is free (and wiped).  Gives r's bytes back to the
 * heap, zeroed (its canaries), and frees r once no zz_purge can still be
 * reading it. */
static void run_release(struct chunk *c, struct run *r)
{
    struct zzi_arena_heap *h = c->heap;
    if (multi(r) && r->nfree > 0)
        avail_remove(h, r);
    atomic_store(&h->table[r->slot], NULL);
    h->free_slots[h->nfree_slots++] = r->slot;
    if (!multi(r))
        h->released[h->released_next++ % RELEASED_RING] = (uintptr_t)zzi_arena_cell_block(r, 0);
    map_run(h, c, r, NULL);
    zzi_purge_wait_for_readers(); /* a purge may have read the table before */
    size_t off = (size_t)(r->start - c->data), length = r->length;
    ZZ_VG_UNDEFINED(r->start, length);
    zz_wipe(r->start, length);
    ZZ_VG_NOACCESS(r->start, length);
    free(r);
    hole_give(h, off, length);
}

/* Runs of many cells that are wholly free go back to the heap, so that a
 * block of another size can have their room.  Returns 1 if any went. */
static int reclaim_empty_runs(struct chunk *c)
{
    struct zzi_arena_heap *h = c->heap;
    int any = 0;
    size_t used = atomic_load(&h->used);
    for (size_t k = 0; k < used; k++) {
        struct run *r = atomic_load_explicit(&h->table[k], memory_order_relaxed);
        if (r != NULL && multi(r) && r->nfree == r->ncells) {
            run_release(c, r);
            any = 1;
        }
    }
    return any;
}

/* ---- the arena's calls ----------------------------------------------------------- */

int zzi_arena_fixed_take(zz_arena *a, size_t n, struct zzi_arena_cell *out)
{
    size_t span = n == 0 ? 16 : (n + 15) & ~(size_t)15;
    zzi_lock(&a->lock);
    struct chunk *c = atomic_load_explicit(&a->index, memory_order_relaxed)->chunks[0];
    struct zzi_arena_heap *h = c->heap;
    struct run *r = NULL;
    if (!zzi_arena_chunk_fit(a, c)) {
        zzi_fail(ZZ_ERR_ARENA_UNFIT);
        errno = ENOMEM;
    } else if (span <= MULTI_MAX_SPAN && (r = h->avail[span / 16 - 1]) != NULL) {
        /* a run of this span with a free cell */
    } else if ((r = run_add(c, span)) == NULL && errno == ENOMEM && reclaim_empty_runs(c)) {
        r = run_add(c, span);
    }
    if (r != NULL) {
        zzi_arena_run_refresh(r);
        *out = (struct zzi_arena_cell){r, r->free_stack[--r->nfree]};
        if (multi(r) && r->nfree == 0)
            avail_remove(h, r);
        zzi_count(&a->live_blocks, 1);
        zzi_count(&a->live_bytes, n);
    }
    int e = errno;
    zzi_unlock(&a->lock);
    errno = e;
    return r != NULL ? 0 : -1;
}

void zzi_arena_fixed_return_cell(zz_arena *a, struct run *r, unsigned i)
{
    (void)a;
    r->free_stack[r->nfree++] = (uint16_t)i;
    if (!multi(r))
        run_release(r->chunk, r);
    else if (r->nfree == 1 && !r->chunk->retired)
        avail_push(r->chunk->heap, r);
}

void zzi_arena_fixed_retire_runs(struct chunk *c)
{
    struct zzi_arena_heap *h = c->heap;
    for (unsigned k = 0; k < MULTI_CLASSES; k++)
        while (h->avail[k] != NULL)
            avail_remove(h, h->avail[k]);
}

void zzi_arena_fixed_each_run(struct chunk *c, void (*fn)(struct run *r))
{
    struct zzi_arena_heap *h = c->heap;
    /* sequentially consistent loads: they pair with run_release's store of
     * NULL (zzi_purge_wait_for_readers) */
    size_t used = atomic_load(&h->used);
    for (size_t k = 0; k < used; k++) {
        struct run *r = atomic_load(&h->table[k]);
        if (r != NULL)
            fn(r);
    }
}

void zzi_arena_fixed_free(struct chunk *c)
{
    struct zzi_arena_heap *h = c->heap;
    if (h == NULL)
        return;
    if (h->table != NULL)
        for (size_t k = 0; k < atomic_load(&h->used); k++)
            free(atomic_load(&h->table[k]));
    free(h->page_first);
    free(h->page_inside);
    free(h->table);
    free(h->free_slots);
    free(h->holes);
    free(h);
    c->heap = NULL;
}
