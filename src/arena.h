/*
 * arena.h - what the arena files share, and nothing else: arena.c (the
 * public API, cells and their canaries, purge, info, stats, fork),
 * arena_grow.c (growable arenas: chunks cut into runs of 16 KiB, growth,
 * large blocks), arena_fixed.c (fixed arenas: one chunk used as a heap of
 * runs of any length) and arena_cache.c (per-thread caches of free cells for
 * growable arenas).  The layout diagrams are at the top of arena.c and
 * arena_fixed.c.
 */
#ifndef ZZ_ARENA_H
#define ZZ_ARENA_H

#include <pthread.h>

#include "canary.h"

#define ZZI_ARENA_RUN_BYTES (16u << 10)
/* Growable arenas' size classes: spans of 16..1024 bytes in steps of 16
 * (exact: a 32-byte secret costs 48 bytes), then steps of 64 to 4 KiB and of
 * 256 beyond, so no class wastes more than 1/16 of a block. */
#define ZZI_ARENA_SMALL_CLASSES 64u  /* 16 .. 1024 */
#define ZZI_ARENA_MEDIUM_CLASSES 48u /* 1088 .. 4096 */
#define ZZI_ARENA_LARGE_CLASSES 48u  /* 4352 .. 16384, the last one capped at ZZI_ARENA_MAX_BLOCK */
#define ZZI_ARENA_NCLASSES (ZZI_ARENA_SMALL_CLASSES + ZZI_ARENA_MEDIUM_CLASSES + ZZI_ARENA_LARGE_CLASSES)
/* The largest block a run of a growable arena holds; larger ones are
 * zz_alloc blocks owned by the arena (arena_grow.c). */
#define ZZI_ARENA_MAX_BLOCK (ZZI_ARENA_RUN_BYTES - 3 * ZZ_CANARY_LEN)
/* The largest block of a fixed arena (a cell's size is 32 bits). */
#define ZZI_ARENA_FIXED_MAX_BLOCK ((size_t)UINT32_MAX - 4096u)

/* A cell's state in run.size_plus1: free, being freed (wiped but not yet
 * back on a free list: still wiped by zz_purge, refused by a second free),
 * or live with n bytes (n + 1). */
#define ZZI_ARENA_CELL_FREE 0u
#define ZZI_ARENA_CELL_FREEING UINT32_MAX

static inline int zzi_arena_cell_live(uint32_t size_plus1)
{
    return size_plus1 != ZZI_ARENA_CELL_FREE && size_plus1 != ZZI_ARENA_CELL_FREEING;
}

struct chunk;

/* A run: ncells cells of one span, each a 16-byte head canary and the block,
 * then a trailing canary up to the run's end.  The first block of fields
 * never changes after the run is published (lock-free readers use them). */
struct run {
    unsigned char *start;
    size_t length;                 /* bytes, trailing canary included */
    uint32_t cell, span, ncells;
    uint32_t reciprocal;           /* floor(2^32 / cell) + 1: offset / cell by a multiply */
    unsigned cls;                  /* growable: size class; fixed: see arena_fixed.c */
    struct chunk *chunk;
    /* Canary words (canary.c): cell i's head 2i and tail 2i+1, the run's
     * trailing canary 2*ncells (so cell i's block is followed by word 2i+2). */
    const uint64_t *canary;
    _Atomic uint32_t *size_plus1;  /* per cell: ZZI_ARENA_CELL_FREE, ZZI_ARENA_CELL_FREEING or n + 1 */
    unsigned *epoch;               /* per cell: zzi_wipe_epoch when it was handed out */
    _Atomic unsigned fork_gen;     /* zzi_fork_generation when canaries were written */
    /* Under the arena's lock, and on other cache lines than the fields the
     * lock-free paths read, so refills do not slow down other threads: */
    char pad[64];
    struct run *prev, *next;       /* the class's runs with a free cell */
    const void *owner;             /* the thread cache that refills from it, or NULL */
    unsigned nfree;
    unsigned slot;                 /* fixed arenas: its index in the heap's run table */
    uint16_t *free_stack;
};

struct zzi_arena_heap;

struct chunk {
    struct zzi_region region;
    _Atomic unsigned checked_gen; /* zzi_checks_gen when last found fit (zzi_arena_chunk_fit) */
    int retired;                  /* hands out no cells: unfit for the arena's promises */
    int registered;               /* in the registry: zz_purge may read it */
    struct zz_arena *arena;
    unsigned char *data;
    size_t bytes;                 /* of data, between the guard pages */
    /* growable arenas: a grid of runs of ZZI_ARENA_RUN_BYTES */
    size_t nruns;
    _Atomic size_t runs_used; /* runs[0..runs_used) are set up; lock-free readers use it */
    struct run **runs;
    /* fixed arenas: runs of any length, anywhere (arena_fixed.c) */
    struct zzi_arena_heap *heap;
};

/* The arena's chunks sorted by address, immutable once published: a lookup
 * reads it without the lock.  Adding a chunk publishes a new one; the old
 * ones are kept (a reader may still hold one) until the arena is destroyed. */
struct chunk_index {
    struct chunk_index *retired_next;
    size_t n;
    struct chunk *chunks[];
};

struct zz_arena {
    zzi_lock_t lock;
    int growable;
    int growing;              /* a thread is adding a chunk (lock let go meanwhile) */
    uint64_t id;              /* unique for the process's lifetime */
    _Atomic(struct chunk_index *) index;
    struct chunk_index *retired;
    struct zz_arena *list_prev, *list_next; /* under zzi_arenas_lock */
    int backend;              /* of its first chunk; later chunks follow it */
    int has_retired;          /* a chunk was retired (zzi_arena_chunk_fit) */
    size_t total_runs;        /* in all chunks (growable) */
    _Atomic size_t live_blocks, live_bytes; /* written under lock */
    _Atomic size_t large_live; /* growable: live zz_alloc blocks it owns */
    unsigned rebuilt_gen;     /* growable: zzi_fork_generation its free lists were made in */
    struct run *avail[ZZI_ARENA_NCLASSES]; /* growable: runs with a free cell, per class */
};

/* A free cell, taken off its run's free stack. */
struct zzi_arena_cell {
    struct run *run;
    unsigned index;
};

/* Guards the list of arenas and arena_cache.c's list of thread caches. */
extern pthread_mutex_t zzi_arenas_lock;

static inline unsigned zzi_arena_class_of(size_t n)
{
    size_t span = n == 0 ? 16 : (n + 15) & ~(size_t)15;
    if (span <= 1024)
        return (unsigned)(span / 16 - 1);
    if (span <= 4096)
        return ZZI_ARENA_SMALL_CLASSES + (unsigned)((span - 1024 + 63) / 64) - 1;
    return ZZI_ARENA_SMALL_CLASSES + ZZI_ARENA_MEDIUM_CLASSES + (unsigned)((span - 4096 + 255) / 256) - 1;
}

/* The block bytes of class c's cells (the last class is capped). */
static inline size_t zzi_arena_class_span(unsigned c)
{
    size_t span;
    if (c < ZZI_ARENA_SMALL_CLASSES)
        span = (c + 1) * 16u;
    else if (c < ZZI_ARENA_SMALL_CLASSES + ZZI_ARENA_MEDIUM_CLASSES)
        span = 1024 + (c - ZZI_ARENA_SMALL_CLASSES + 1) * 64u;
    else
        span = 4096 + (c - ZZI_ARENA_SMALL_CLASSES - ZZI_ARENA_MEDIUM_CLASSES + 1) * 256u;
    return span > ZZI_ARENA_MAX_BLOCK ? ZZI_ARENA_MAX_BLOCK : span;
}

static inline unsigned char *zzi_arena_cell_block(const struct run *r, unsigned i)
{
    return r->start + (size_t)i * r->cell + ZZ_CANARY_LEN;
}

/* 1 when the chunk of run r was found fit since the last event that calls
 * for a new look (fork, the lock policy becoming required): the per-thread
 * caches hand out their cells only then, else they ask zzi_arena_recheck_cell. */
static inline int zzi_arena_run_checked(const struct run *r)
{
    return atomic_load_explicit(&r->chunk->checked_gen, memory_order_acquire) ==
           atomic_load_explicit(&zzi_checks_gen, memory_order_relaxed);
}

/* ---- arena.c ---------------------------------------------------------- */
/* A run of ncells cells of `span` bytes at start, `length` bytes long, its
 * canaries drawn and written.  NULL with errno. */
struct run *zzi_arena_run_new(unsigned char *start, size_t span, unsigned ncells, size_t length,
                        unsigned cls);
/* pre: the arena's lock held.  In a forked child WIPEONFORK zeroed the run,
 * canaries and all: writes them again before the run is used. */
void zzi_arena_run_refresh(struct run *r);
/* Maps a chunk of `bytes` for a (the first on the process-wide backend,
 * later ones on a's), not yet registered.  NULL with errno. */
struct chunk *zzi_arena_chunk_new(zz_arena *a, size_t bytes, int first);
/* Puts c, whose runs array or heap is set up, where zz_purge and lookups
 * see it: only then, so that a purge never reads a half-made chunk.
 * Returns 0, or -1 with errno. */
int zzi_arena_chunk_register(struct chunk *c);
/* Takes the chunk out of the registry (waiting out any zz_purge), frees its
 * runs, wipes it whole and unmaps it. */
void zzi_arena_chunk_destroy(struct chunk *c);
/* pre: a->lock held.  1 if chunk c may hand out cells now (see arena.c);
 * otherwise retires it (calling retire_runs) and returns 0. */
int zzi_arena_chunk_fit(zz_arena *a, struct chunk *c);
/* Adds to the arena's live counters (deltas may be "negative"); with_lock:
 * takes the lock (else the caller holds it). */
void zzi_arena_add_live(zz_arena *a, size_t blocks, size_t bytes, int with_lock);

/* ---- arena_grow.c: growable arenas ---------------------------------- */
struct chunk *zzi_arena_grow_first_chunk(zz_arena *a);
/* Takes up to want (>= 1) free cells of class cls, all from one run, under
 * the arena's lock, adding a run (and growing the arena) when needed.  owner
 * (a thread cache, or NULL) gets runs of its own where it can: threads that
 * share a run share cache lines (neighbouring cells and their metadata).
 * *home (if home is not NULL) is the owner's run to try first, and is set
 * to the run used when that is the owner's.  Returns how many, or 0 with
 * errno (ENOMEM: full, or no memory). */
unsigned zzi_arena_take_cells(zz_arena *a, unsigned cls, struct zzi_arena_cell *out, unsigned want,
                        const void *owner, struct run **home);
/* For a cell a thread cache is about to hand out whose chunk was not checked
 * since a fork or a policy change: keeps it if the chunk is fit, else gives
 * it back and takes another cell under the lock (owner's runs first).
 * Returns 0, or -1 with errno. */
int zzi_arena_recheck_cell(zz_arena *a, struct zzi_arena_cell *cell, const void *owner, struct run **home);
/* 1 when locked memory is not rationed (no finite RLIMIT_MEMLOCK, or
 * CAP_IPC_LOCK): then a thread's bins hold more.  The limit as read at most
 * once per clock tick (a read is two system calls). */
int zzi_arena_lock_budget_unlimited(void);
/* pre: the arena's lock held.  Forgets owner's claim on its runs. */
void zzi_arena_disown(zz_arena *a, const void *owner);
/* pre: the arena's lock held.  Puts wiped free cell i of r back on its run. */
void zzi_arena_return_cell(zz_arena *a, struct run *r, unsigned i);
/* pre: the arena's lock held.  Takes chunk c's runs off the free lists. */
void zzi_arena_grow_retire_runs(zz_arena *a, struct chunk *c);
/* pre: the arena's lock held.  In a forked child, before anything else uses
 * a growable arena: threads of the parent may have been between taking a
 * cell off a list and handing it out, or in the middle of a lock-free free
 * (ZZI_ARENA_CELL_FREEING), when the fork happened; such cells would be lost and
 * counted live forever.  Rebuilds the free lists and live counts from the
 * cells' states (the truth), once per fork. */
void zzi_arena_grow_rebuild_slow(zz_arena *a);
static inline void zzi_arena_grow_rebuild_after_fork(zz_arena *a)
{
    if (zz_unlikely(a->rebuilt_gen != atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed)))
        zzi_arena_grow_rebuild_slow(a);
}
/* The run and cell of block p, without the lock; NULL when p lies outside
 * every chunk (a large block, or foreign); fatal when p is inside a chunk
 * but not the start of a cell's block. */
struct run *zzi_arena_grow_find(zz_arena *a, const unsigned char *p, unsigned *cell);
/* Blocks above ZZI_ARENA_MAX_BLOCK: zz_alloc blocks the arena owns. */
void *zzi_arena_grow_alloc_large(zz_arena *a, size_t n);
void zzi_arena_grow_free_large(zz_arena *a, void *p);

/* ---- arena_fixed.c: fixed arenas ------------------------------------- */
/* Bytes to map for a fixed arena that promises `capacity` (see the header:
 * count * (round_up(n, 16) + 16) holds count blocks of n bytes). */
size_t zzi_arena_fixed_bytes(size_t capacity);
/* Sets up chunk c (all of a fixed arena's memory) as an empty heap.
 * Returns 0, or -1 with errno. */
int zzi_arena_fixed_init(struct chunk *c);
/* A free cell for a block of n bytes, under the arena's lock; counted live.
 * Returns 0, or -1 with errno (ENOMEM: full). */
int zzi_arena_fixed_take(zz_arena *a, size_t n, struct zzi_arena_cell *out);
/* pre: the arena's lock held.  The run and cell of block p; fatal when p is
 * not the start of a cell's block (freed_msg when it was one of the last
 * large blocks freed). */
struct run *zzi_arena_fixed_find(struct chunk *c, const unsigned char *p, unsigned *cell,
                                 const char *freed_msg);
/* pre: the arena's lock held.  Puts wiped free cell i of r back; a run left
 * empty may go back to the heap. */
void zzi_arena_fixed_return_cell(zz_arena *a, struct run *r, unsigned i);
/* pre: the arena's lock held.  Takes c's runs off the free lists. */
void zzi_arena_fixed_retire_runs(struct chunk *c);
/* Calls fn on every run of c: lock-free, for zz_purge (runs are freed only
 * once no purge can be reading them). */
void zzi_arena_fixed_each_run(struct chunk *c, void (*fn)(struct run *r));
/* Frees the heap's runs and bookkeeping (the chunk left the registry). */
void zzi_arena_fixed_free(struct chunk *c);

/* ---- arena_cache.c: per-thread caches of free cells, growable arenas only */
/* A free cell of class cls for the calling thread, counted as live with n
 * bytes.  Returns 0, or -1 with errno. */
int zzi_arena_cache_take(zz_arena *a, unsigned cls, size_t n, struct zzi_arena_cell *out);
/* Gives back cell i of r (wiped, ZZI_ARENA_CELL_FREE) that held n bytes. */
void zzi_arena_cache_put(zz_arena *a, struct run *r, unsigned i, size_t n);
/* pre: zzi_arenas_lock held.  Adds the live counts the threads hold for a. */
void zzi_arena_cache_count(const zz_arena *a, size_t *blocks, size_t *bytes);
/* Fork child, pre: zzi_arenas_lock and every arena's lock held: gives every
 * cached cell back to its arena and drops the other threads' caches. */
void zzi_arena_cache_after_fork_child(void);
/* pre: zzi_arenas_lock held.  1 if a is a live arena with this id. */
int zzi_arena_is_live(const zz_arena *a, uint64_t id);

#endif /* ZZ_ARENA_H */
