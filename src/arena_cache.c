/*
 * arena_cache.c - per-thread caches of free cells for growable arenas, so a
 * thread that allocates and frees secrets takes no lock and shares no cache
 * line with other threads in the common case (the idea behind glibc's tcache
 * and mimalloc's thread-local heaps).  Fixed arenas do not use it: their
 * capacity must stay available to every thread (see arena.c).
 *
 * A cache never holds a secret: its cells were checked and wiped by
 * zz_arena_free before they came here, and are checked to be still zero
 * when handed out.  zz_purge and zz_arena_destroy treat them as the free
 * cells they are.
 *
 * Bounds: per thread, SLOTS arenas; per arena and size class, a bin of about
 * BIN_BYTES of cells (2 to BIN_MAX; at most 8 when RLIMIT_MEMLOCK rations
 * locked memory).  A bin is refilled with half its size
 * under the arena's lock when empty and gives half back when full.
 *
 * Lifetimes: a slot names its arena by address and id, so a slot left by a
 * destroyed arena is never mistaken for a new one at the same address; it is
 * emptied (without touching the dead arena) when the slot is reused or the
 * thread exits.  A thread's cache goes back to its arenas when the thread
 * exits, and in a forked child the caches of threads that do not exist there
 * go back too.  The slots' live counts are summed by zz_get_stats.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define SLOTS 4u
#define BIN_BYTES 4096u
#define BIN_MAX 32u

/* Runs and cell indexes in separate arrays: a struct of both would be
 * copied with one 16-byte load right after two 8-byte stores, which the CPU
 * cannot forward (a stall that cost more than the rest of zz_arena_free). */
struct bin {
    unsigned count, cap;
    struct run *home;   /* the run this thread refills from (see zzi_arena_take_cells) */
    uint16_t *index;
    struct run *run[];
};

struct slot {
    zz_arena *arena;               /* NULL when unused; set under zzi_arenas_lock */
    uint64_t id;
    _Atomic size_t blocks, bytes;  /* live blocks this thread added (wrapping sums) */
    struct bin *bins[ZZI_ARENA_NCLASSES];
};

struct tcache {
    struct tcache *prev, *next;    /* under zzi_arenas_lock */
    unsigned next_victim;
    struct slot slots[SLOTS];
};

/* initial-exec: reaching it is one instruction, on every alloc and free. */
static _Thread_local struct tcache *mine __attribute__((tls_model("initial-exec")));
static struct tcache *all; /* under zzi_arenas_lock */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_ok;

/* pre: the arena's lock held.  Gives the bin's cells [from, from+n) back. */
static void bin_return(zz_arena *a, const struct bin *b, unsigned from, unsigned n)
{
    for (unsigned k = from; k < from + n; k++)
        zzi_arena_return_cell(a, b->run[k], b->index[k]);
}

/* ---- slots ---------------------------------------------------------------- */

/* pre: zzi_arenas_lock held (and, when !with_lock, the arena's lock).  Gives
 * the slot's cells and live counts back to its arena if that still exists,
 * and leaves the slot unused. */
static void slot_release(struct slot *s, const struct tcache *t, int with_lock)
{
    zz_arena *a = s->arena;
    if (a != NULL && zzi_arena_is_live(a, s->id)) {
        if (with_lock)
            zzi_lock(&a->lock);
        for (unsigned c = 0; c < ZZI_ARENA_NCLASSES; c++)
            if (s->bins[c] != NULL)
                bin_return(a, s->bins[c], 0, s->bins[c]->count);
        zzi_arena_add_live(a, atomic_load(&s->blocks), atomic_load(&s->bytes), 0);
        zzi_arena_disown(a, t);
        if (with_lock)
            zzi_unlock(&a->lock);
    }
    for (unsigned c = 0; c < ZZI_ARENA_NCLASSES; c++)
        if (s->bins[c] != NULL) {
            s->bins[c]->count = 0;
            s->bins[c]->home = NULL;
        }
    s->arena = NULL;
    s->id = 0;
    atomic_store(&s->blocks, 0);
    atomic_store(&s->bytes, 0);
}

static void free_bins(struct slot *s)
{
    for (unsigned c = 0; c < ZZI_ARENA_NCLASSES; c++) {
        free(s->bins[c]);
        s->bins[c] = NULL;
    }
}

/* pre: zzi_arenas_lock held. */
static void unlink_tcache(struct tcache *t)
{
    ZZI_LIST_UNLINK(all, t, prev, next);
}

/* Thread exit (pthread key destructor): everything goes back. */
static void thread_exit(void *arg)
{
    struct tcache *t = arg;
    zzi_mutex_lock(&zzi_arenas_lock);
    for (unsigned k = 0; k < SLOTS; k++) {
        slot_release(&t->slots[k], t, 1);
        free_bins(&t->slots[k]);
    }
    unlink_tcache(t);
    pthread_mutex_unlock(&zzi_arenas_lock);
    if (mine == t)
        mine = NULL;
    free(t);
}

static void make_exit_key(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

/* The calling thread's cache, made on first use; NULL when out of memory. */
static struct tcache *tcache_create(void)
{
    pthread_once(&key_once, make_exit_key);
    if (!exit_key_ok)
        return NULL;
    struct tcache *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    if (pthread_setspecific(exit_key, t) != 0) {
        free(t);
        return NULL;
    }
    zzi_mutex_lock(&zzi_arenas_lock);
    ZZI_LIST_PUSH(all, t, prev, next);
    pthread_mutex_unlock(&zzi_arenas_lock);
    mine = t;
    return t;
}

/* A slot of the calling thread's cache for a: an unused one, one left by a
 * destroyed arena, or else the next victim in turn, whose cells go back. */
static struct slot *slot_claim(zz_arena *a)
{
    int saved = errno; /* zz_arena_free keeps errno */
    struct tcache *t = mine != NULL ? mine : tcache_create();
    errno = saved;
    if (t == NULL)
        return NULL;
    zzi_mutex_lock(&zzi_arenas_lock);
    struct slot *s = NULL;
    for (unsigned k = 0; k < SLOTS && s == NULL; k++)
        if (t->slots[k].arena == NULL || !zzi_arena_is_live(t->slots[k].arena, t->slots[k].id))
            s = &t->slots[k];
    if (s == NULL)
        s = &t->slots[t->next_victim++ % SLOTS];
    slot_release(s, t, 1);
    s->arena = a;
    s->id = a->id;
    pthread_mutex_unlock(&zzi_arenas_lock);
    return s;
}

static inline struct slot *slot_for(zz_arena *a)
{
    struct tcache *t = mine;
    if (zz_likely(t != NULL))
        for (unsigned k = 0; k < SLOTS; k++)
            if (t->slots[k].arena == a && t->slots[k].id == a->id)
                return &t->slots[k];
    return slot_claim(a);
}

/* ---- bins ----------------------------------------------------------------- */

/* Under a finite RLIMIT_MEMLOCK a bin holds at most 8 cells: cells one
 * thread keeps are cells another thread must grow the arena (and lock
 * memory) for, but 8 cells of a class are at most 8 x 272 bytes, and a bin
 * of 2 took the arena's lock every second call: unprivileged (uid 65534,
 * 8 MiB), zz-bench alloc --sizes 32,256 --columns zz_arena,malloc, AMD EPYC,
 * 2 threads sharing one arena 176 / 166 ns of CPU per pair with 2 cells,
 * 60 / 87 with 8 (1 thread: 20-25).  Threads still share runs there (a run
 * of one's own would lock 16 KiB more per thread and class). */
static unsigned bin_capacity(unsigned cls)
{
    size_t cap = BIN_BYTES / (zzi_arena_class_span(cls) + ZZ_CANARY_LEN);
    if (cap > 8 && !zzi_arena_lock_budget_unlimited())
        cap = 8;
    return cap < 2 ? 2 : cap > BIN_MAX ? BIN_MAX : (unsigned)cap;
}

/* The slot's bin for class cls, made on first use; NULL when out of memory. */
static inline struct bin *bin_of(struct slot *s, unsigned cls)
{
    struct bin *b = s->bins[cls];
    if (zz_likely(b != NULL))
        return b;
    unsigned cap = bin_capacity(cls);
    int saved = errno; /* zz_arena_free keeps errno */
    b = malloc(sizeof *b + cap * (sizeof b->run[0] + sizeof b->index[0]));
    errno = saved;
    if (b != NULL) {
        b->count = 0;
        b->cap = cap;
        b->home = NULL;
        b->index = (uint16_t *)(void *)(b->run + cap);
        s->bins[cls] = b;
    }
    return b;
}

/* Gives the older half of a full bin back to the arena. */
static void bin_spill(zz_arena *a, struct bin *b)
{
    unsigned half = b->cap / 2, keep = b->count - half;
    zzi_lock(&a->lock);
    bin_return(a, b, 0, half);
    zzi_unlock(&a->lock);
    memmove(b->run, b->run + half, keep * sizeof b->run[0]);
    memmove(b->index, b->index + half, keep * sizeof b->index[0]);
    b->count = keep;
}

/* Refills an empty bin with up to half its capacity.  Returns how many. */
static unsigned bin_refill(zz_arena *a, struct bin *b, unsigned cls)
{
    struct zzi_arena_cell cells[BIN_MAX];
    unsigned got = zzi_arena_take_cells(a, cls, cells, (b->cap + 1) / 2, mine, &b->home);
    for (unsigned k = 0; k < got; k++) {
        b->run[k] = cells[k].run;
        b->index[k] = (uint16_t)cells[k].index;
    }
    b->count = got;
    return got;
}

/* ---- the interface to arena.c ------------------------------------------- */

int zzi_arena_cache_take(zz_arena *a, unsigned cls, size_t n, struct zzi_arena_cell *out)
{
    struct slot *s = slot_for(a);
    struct bin *b = s != NULL ? bin_of(s, cls) : NULL;
    if (b != NULL) {
        if (zz_unlikely(b->count == 0) && bin_refill(a, b, cls) == 0)
            return -1;
        b->count--;
        out->run = b->run[b->count];
        out->index = b->index[b->count];
        /* after a fork or a policy change, the cell's chunk must be found
         * fit again before it hands out anything */
        if (zz_unlikely(!zzi_arena_run_checked(out->run)) && zzi_arena_recheck_cell(a, out, mine, &b->home) != 0)
            return -1;
    } else if (zzi_arena_take_cells(a, cls, out, 1, NULL, NULL) == 0) {
        return -1;
    }
    if (s != NULL) {
        zzi_count(&s->blocks, 1);
        zzi_count(&s->bytes, n);
    } else {
        zzi_arena_add_live(a, 1, n, 1);
    }
    return 0;
}

void zzi_arena_cache_put(zz_arena *a, struct run *r, unsigned i, size_t n)
{
    struct slot *s = slot_for(a);
    struct bin *b = s != NULL ? bin_of(s, r->cls) : NULL;
    if (b != NULL) {
        if (zz_unlikely(b->count == b->cap))
            bin_spill(a, b);
        b->run[b->count] = r;
        b->index[b->count] = (uint16_t)i;
        b->count++;
    } else {
        zzi_lock(&a->lock);
        zzi_arena_return_cell(a, r, i);
        zzi_unlock(&a->lock);
    }
    if (s != NULL) {
        zzi_count(&s->blocks, (size_t)-1);
        zzi_count(&s->bytes, 0 - n);
    } else {
        zzi_arena_add_live(a, (size_t)-1, 0 - n, 1);
    }
}

void zzi_arena_cache_count(const zz_arena *a, size_t *blocks, size_t *bytes)
{
    for (const struct tcache *t = all; t != NULL; t = t->next)
        for (unsigned k = 0; k < SLOTS; k++)
            if (t->slots[k].arena == a && t->slots[k].id == a->id) {
                *blocks += atomic_load_explicit(&t->slots[k].blocks, memory_order_relaxed);
                *bytes += atomic_load_explicit(&t->slots[k].bytes, memory_order_relaxed);
            }
}

void zzi_arena_cache_after_fork_child(void)
{
    struct tcache *next;
    for (struct tcache *t = all; t != NULL; t = next) {
        next = t->next;
        for (unsigned k = 0; k < SLOTS; k++)
            slot_release(&t->slots[k], t, 0);
        if (t != mine) {
            unlink_tcache(t);
            if (zzi_fork_ran_no_handler())
                continue; /* left behind: a dead thread may have held malloc's locks */
            for (unsigned k = 0; k < SLOTS; k++)
                free_bins(&t->slots[k]);
            free(t);
        }
    }
}
