/*
 * block_tcache.c - per-thread caches of zz_alloc's free slots, so that the
 * steady alloc/free of a thread takes no shared lock and touches no shared
 * cache line.
 *
 * A thread's cache pins a few slabs (s->pins, under the global lock): a
 * pinned slab is never unmapped, so the thread may look a pointer up in it
 * and free the block without the lock.  The cache keeps, per backend and
 * small class, a short stack of that thread's free slots of pinned slabs:
 * wiped, still guarded and locked, counted out of their slab.  zz_free of a
 * block in a slab the thread pins claims the slot with one atomic exchange
 * (block.c: a second free from any thread then aborts), checks and wipes it
 * and pushes it here; zz_alloc pops it (last in, first out: a write after
 * free is found by the thread's next allocation of that class).  Anything
 * else (another thread's block, a full stack, a block in a protection mode)
 * takes the global lock as before.
 *
 * When a cache is brought up to date (the global lock held): every event
 * that makes old slots unfit bumps zzi_checks_gen (a fork, the lock policy
 * becoming ZZ_LOCK_REQUIRED, memory or the lock limit running short, the
 * caches going over their share of a finite RLIMIT_MEMLOCK, zz_trim), and a
 * cache whose generation is old hands out and takes nothing until its
 * thread, on its next slow path, has given everything back.  At thread exit
 * (a pthread key destructor) and in a forked child (for every thread, which
 * no longer exist there) everything goes back.
 *
 * Stealing: a thread that needs locked memory (a mapping or a lock was
 * refused, the caches are over their share of a finite limit, zz_trim)
 * does not wait for the others' next calls: under the global lock it claims
 * every slot any cache holds, with one compare-and-swap of the slot's
 * state (SLOT_CACHED | the cache's address) to SLOT_FREED, and puts it back
 * on its slab (slab.c).  The cache's own fast path claims a slot with the
 * same compare-and-swap before it hands it out (SLOT_CACHED | its address
 * to SLOT_FREEING), so of the two exactly one wins; a cache entry whose
 * swap fails was stolen and is dropped (its bytes were counted in
 * stolen_bytes by the thief).  A slab whose every slot is then free is
 * unmapped even while caches pin it: its struct (the slots' metadata, read
 * by the pinning caches without the lock) stays until the last pin goes,
 * marked dead, so a pinning cache's free no longer looks into it.  An idle
 * or blocked thread therefore pins no memory that another needs.
 *
 * Counts: each cache counts the blocks and bytes its thread allocated minus
 * freed through it, and the slot bytes it holds; zz_get_stats adds them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "slot.h"

#define TC_CLASSES 4 /* classes of 1 to 4 data pages: blocks up to 16 KiB */
#define TC_BIN 8     /* free slots kept per backend and class */
#define TC_PINS 8    /* slabs pinned at once */
/* After one free in this many through the cache, the class is asked (under
 * the global lock) whether it is idle but for this cache and maps more than
 * its bound (whose decay reads the clock there, block_cache.c): then the
 * cache gives the class back, so a steady pair never keeps a burst's memory
 * for good.  Under a finite lock limit the caches' share is looked at then
 * too (slab.c). */
#define TC_CHECK_EVERY 16u

struct tc_bin {
    unsigned n;
    uint32_t slot[TC_BIN];
    struct slab *slab[TC_BIN];
};

/* Cache-line aligned (and so padded to whole lines): a thread writes its
 * counters on every call, and a neighbour in the heap (another thread's
 * cache) must not share their line. */
#define TC_LINE 64
struct tcache {
    _Alignas(TC_LINE) struct tcache *prev, *next; /* every thread's cache, under the global lock */
    size_t tag;                 /* SLOT_CACHED | this cache's address: its slots' state */
    unsigned gen;               /* zzi_checks_gen when brought up to date */
    unsigned npinned, evict_next;
    unsigned frees;             /* through the cache: every TC_CHECK_EVERY-th checks the class */
    unsigned busy;              /* giving slots back: zzi_tcache_held says 0 meanwhile */
    size_t held_at_look;        /* cached at the last TC_CHECK_EVERY-th free */
    struct slab *pinned[TC_PINS];
    struct tc_bin bin[2][TC_CLASSES + 1];
    /* written by the owner only, read by zz_get_stats: relaxed, no RMW.
     * cached: the bytes of the slots cached (below TC_SLOT_ONE) and the
     * number of those whose guard page is not locked (in units of
     * TC_SLOT_ONE), in one counter so that the fast paths pay one add for
     * both: the share of a finite lock limit counts them in locked bytes
     * (slab.c) */
    _Atomic size_t live_blocks, live_bytes, cached;
    /* of those, what other threads stole, in the same units (added by the
     * thief, under the global lock; taken off by the owner as it drops the
     * stale entry) */
    _Atomic size_t stolen_bytes, stolen_slots;
};

/* A bin entry: the slot's index, and whether it was never handed out (the
 * low bit of its cached state). */
#define TC_UNUSED_BIT 0x80000000u
static inline size_t entry_state(const struct tcache *tc, uint32_t e)
{
    return tc->tag | (e >> 31);
}

static ZZ_TLS_SIGNAL_SAFE struct tcache *self;
static ZZ_TLS_SIGNAL_SAFE int exited; /* the thread's cache is gone: no new one */
static struct tcache *all;            /* under the global lock */
static _Atomic int ever_used;         /* a cache was ever made */

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static int exit_key_ok;

/* 1 if the cache may hand out and take slots now. */
static inline int tc_current(const struct tcache *tc)
{
    return tc->gen == atomic_load_explicit(&zzi_checks_gen, memory_order_relaxed);
}

/* An entry of slab s whose claim failed: another thread stole the slot. */
static void entry_lost(struct tcache *tc, const struct slab *s)
{
    atomic_fetch_sub_explicit(&tc->stolen_bytes, s->tc_unit % TC_SLOT_ONE, memory_order_relaxed);
    atomic_fetch_sub_explicit(&tc->stolen_slots, s->tc_unit / TC_SLOT_ONE, memory_order_relaxed);
}

size_t zzi_tcache_unit(size_t stride, int guard_locked)
{
    return stride + (guard_locked ? 0 : TC_SLOT_ONE);
}

/* The cache holds one slot of s more (+1) or less (-1). */
static inline void count_cached(struct tcache *tc, const struct slab *s, int more)
{
    zzi_count(&tc->cached, more > 0 ? s->tc_unit : 0 - s->tc_unit);
}

/* ---- fast paths --------------------------------------------------------------- */

void *zzi_tcache_alloc(size_t n, size_t span, size_t align, int backend)
{
    struct tcache *tc = self;
    size_t pages = zzi_pages_for(span);
    if (tc == NULL || pages > TC_CLASSES || !tc_current(tc))
        return NULL;
    struct tc_bin *b = &tc->bin[zzi_policy_resolve(backend)][pages];
    while (b->n != 0) {
        unsigned k = --b->n;
        struct slab *s = b->slab[k];
        uint32_t e = b->slot[k];
        size_t i = e & ~TC_UNUSED_BIT, cached = entry_state(tc, e);
        count_cached(tc, s, -1);
        /* the claim: fails only when another thread stole the slot */
        if (zz_likely(atomic_compare_exchange_strong_explicit(&s->meta[i].size_plus1, &cached,
                                                              SLOT_FREEING, memory_order_acquire,
                                                              memory_order_relaxed))) {
            zzi_count(&tc->live_blocks, 1);
            zzi_count(&tc->live_bytes, n);
            return zzi_slot_hand_out(s, i, n, span, align, NULL);
        }
        entry_lost(tc, s);
    }
    return NULL;
}

static inline struct slab *pinned_slab_of(const struct tcache *tc, uintptr_t a)
{
    for (unsigned k = 0; k < tc->npinned; k++) {
        struct slab *s = tc->pinned[k];
        if (a - s->region.map.base < s->region.map.len)
            /* a dead slab's range may be another mapping's now */
            return atomic_load_explicit(&s->dead, memory_order_relaxed) ? NULL : s;
    }
    return NULL;
}

int zzi_tcache_free(void *p)
{
    struct tcache *tc = self;
    if (tc == NULL || !tc_current(tc))
        return 0;
    uintptr_t a = (uintptr_t)p;
    struct slab *s = pinned_slab_of(tc, a);
    if (s == NULL)
        return 0;
    size_t i = zzi_slot_of(s, a, ZZI_FREEING, NULL);
    struct tc_bin *b = &tc->bin[s->table][s->cls];
    if (b->n == TC_BIN || atomic_load_explicit(&s->meta[i].prot, memory_order_relaxed) != ZZ_READWRITE)
        return 0; /* the global path keeps the slot, or changes the mode under its lock */
    size_t n = zzi_slot_take_back(s, i, p, tc->tag);
    b->slab[b->n] = s;
    b->slot[b->n] = (uint32_t)i;
    b->n++;
    count_cached(tc, s, 1);
    zzi_count(&tc->live_blocks, (size_t)-1);
    zzi_count(&tc->live_bytes, 0 - n);
    if (zz_unlikely(++tc->frees % TC_CHECK_EVERY == 0)) {
        size_t held = atomic_load_explicit(&tc->cached, memory_order_relaxed);
        zzi_slab_check_idle(s->table, s->cls, held > tc->held_at_look);
        tc->held_at_look = held;
    }
    return 1;
}

/* ---- giving back (global lock held) ---------------------------------------------- */

/* The slot of entry e of slab s goes back to its slab, unless another
 * thread stole it. */
static void give_back_entry(struct tcache *tc, struct slab *s, uint32_t e)
{
    size_t i = e & ~TC_UNUSED_BIT, cached = entry_state(tc, e);
    count_cached(tc, s, -1);
    if (atomic_compare_exchange_strong_explicit(&s->meta[i].size_plus1, &cached,
                                                zzi_slot_uncached(cached), memory_order_acq_rel,
                                                memory_order_relaxed))
        zzi_release_slot(s, i);
    else
        entry_lost(tc, s);
}

/* Every cached slot of slab s (any slab if s is NULL) goes back to its
 * slab.  The bins are set first and the slots released after: a release
 * may come back here (zzi_release_slot asks zzi_tcache_held), and finds
 * the cache busy. */
static void return_slots(struct tcache *tc, const struct slab *s)
{
    tc->busy++;
    for (int t = 0; t < 2; t++) {
        for (int k = 1; k <= TC_CLASSES; k++) {
            struct tc_bin *b = &tc->bin[t][k], out;
            unsigned keep = 0;
            out.n = 0;
            for (unsigned j = 0; j < b->n; j++) {
                int stays = s != NULL && b->slab[j] != s;
                struct tc_bin *to = stays ? b : &out;
                unsigned at = stays ? keep++ : out.n++;
                to->slab[at] = b->slab[j];
                to->slot[at] = b->slot[j];
            }
            b->n = keep;
            for (unsigned j = 0; j < out.n; j++)
                give_back_entry(tc, out.slab[j], out.slot[j]);
        }
    }
    tc->busy--;
}

size_t zzi_tcache_held(int t, int cls)
{
    struct tcache *tc = self;
    if (tc == NULL || tc->busy || cls < 1 || cls > TC_CLASSES)
        return 0;
    return tc->bin[t][cls].n;
}

void zzi_tcache_give_back_class(int t, int cls)
{
    struct tcache *tc = self;
    struct tc_bin *b = &tc->bin[t][cls], out = *b;
    tc->busy++;
    b->n = 0;
    for (unsigned j = 0; j < out.n; j++)
        give_back_entry(tc, out.slab[j], out.slot[j]);
    unsigned keep = 0;
    for (unsigned k = 0; k < tc->npinned; k++) {
        struct slab *s = tc->pinned[k];
        if (s->table == t && s->cls == cls)
            zzi_slab_unpin(s);
        else
            tc->pinned[keep++] = s;
    }
    tc->npinned = keep;
    tc->busy--;
}

static void unpin_all(struct tcache *tc)
{
    for (unsigned k = 0; k < tc->npinned; k++)
        zzi_slab_unpin(tc->pinned[k]);
    tc->npinned = 0;
}

static void give_back_all(struct tcache *tc)
{
    tc->busy++;
    return_slots(tc, NULL);
    unpin_all(tc);
    tc->busy--;
}

/* Brings the cache up to date: what it held under an older generation
 * goes back (and the pins of slabs unmapped meanwhile). */
static void bring_up_to_date(struct tcache *tc)
{
    unsigned gen = atomic_load(&zzi_checks_gen); /* before: a later bump is seen next time */
    if (tc->gen == gen)
        return;
    give_back_all(tc);
    tc->gen = gen;
}

void zzi_tcache_give_back(void)
{
    if (!atomic_load_explicit(&ever_used, memory_order_relaxed))
        return;
    atomic_fetch_add(&zzi_checks_gen, 1); /* the other threads give back at their next call */
    if (self != NULL && !self->busy)
        give_back_all(self);
}

int zzi_tcache_holds_any(void)
{
    return self != NULL && !self->busy && self->npinned != 0;
}

void zzi_tcache_give_back_own(void)
{
    if (self != NULL && !self->busy)
        give_back_all(self);
}

int zzi_tcache_any(void)
{
    return atomic_load_explicit(&ever_used, memory_order_relaxed);
}

void zzi_tcache_note_stolen(size_t state, size_t unit)
{
    struct tcache *tc = (struct tcache *)(uintptr_t)(state & ~(SLOT_CACHED | SLOT_CACHED_UNUSED));
    atomic_fetch_add_explicit(&tc->stolen_bytes, unit % TC_SLOT_ONE, memory_order_relaxed);
    atomic_fetch_add_explicit(&tc->stolen_slots, unit / TC_SLOT_ONE, memory_order_relaxed);
}

/* ---- set-up, refill, thread exit ----------------------------------------------------- */

static void thread_exit(void *arg)
{
    struct tcache *tc = arg;
    zzi_global_lock();
    give_back_all(tc);
    zzi_block_count_add(atomic_load_explicit(&tc->live_blocks, memory_order_relaxed),
                        atomic_load_explicit(&tc->live_bytes, memory_order_relaxed));
    ZZI_LIST_UNLINK(all, tc, prev, next);
    zzi_global_unlock();
    self = NULL;
    exited = 1;
    free(tc);
}

static void make_exit_key(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

static void fork_child_fixup(void);
static void fork_nothing(void)
{
}
static const struct zzi_fork_hooks fork_hooks = {fork_nothing, fork_nothing, fork_child_fixup,
                                                 fork_nothing, fork_nothing};

void zzi_blocks_register_fork_hook(void)
{
    zzi_fork_register(ZZI_FORK_BLOCKS, &fork_hooks);
}

void zzi_tcache_prepare(void)
{
    if (zz_likely(self != NULL) || exited)
        return;
    zzi_fork_register(ZZI_FORK_BLOCKS, &fork_hooks); /* no library lock held here */
    pthread_once(&exit_key_once, make_exit_key);
    if (!exit_key_ok)
        return; /* no way to give the slots back at thread exit: no cache */
    int e = errno;
    struct tcache *tc = aligned_alloc(TC_LINE, sizeof *tc);
    errno = e;
    if (tc == NULL)
        return; /* the global path serves this thread */
    memset(tc, 0, sizeof *tc);
    tc->tag = SLOT_CACHED | (uintptr_t)tc;
    tc->gen = atomic_load(&zzi_checks_gen) - 1; /* up to date at the first refill */
    if (((uintptr_t)tc & (SLOT_CACHED | (TC_LINE - 1))) != 0 ||
        pthread_setspecific(exit_key, tc) != 0) { /* (an address the slot state cannot hold) */
        free(tc);
        errno = e;
        return;
    }
    zzi_global_lock();
    ZZI_LIST_PUSH(all, tc, prev, next);
    zzi_global_unlock();
    atomic_store(&ever_used, 1);
    self = tc;
}

/* Pins s, letting go of the longest-pinned slab if all places are taken. */
static void pin(struct tcache *tc, struct slab *s)
{
    for (unsigned k = 0; k < tc->npinned; k++)
        if (tc->pinned[k] == s)
            return;
    unsigned at = tc->npinned;
    if (at == TC_PINS) {
        at = tc->evict_next++ % TC_PINS;
        struct slab *old = tc->pinned[at];
        tc->busy++;
        return_slots(tc, old);
        zzi_slab_unpin(old);
        tc->busy--;
    } else {
        tc->npinned++;
    }
    tc->pinned[at] = s;
    s->pins++;
}

void zzi_tcache_sync(void)
{
    if (self != NULL)
        bring_up_to_date(self);
}

void zzi_tcache_refill(struct slab *s)
{
    struct tcache *tc = self;
    if (tc == NULL)
        return;
    bring_up_to_date(tc);
    if (s->cls == 0 || s->cls > TC_CLASSES || s->retired)
        return;
    pin(tc, s);
    /* Half a stack of the same slab's free slots: the next allocations take
     * no lock, and threads' slots (and so the slot metadata they write)
     * fall in different cache lines. */
    struct tc_bin *b = &tc->bin[s->table][s->cls];
    size_t idx[TC_BIN / 2];
    size_t want = b->n < TC_BIN / 2 ? TC_BIN / 2 - b->n : 0;
    if (want > s->nfree / 2)
        want = s->nfree / 2; /* leave the slab's room to others (a new slab costs a mapping) */
    size_t got = zzi_take_more_slots(s, idx, want);
    for (size_t j = got; j-- > 0;) { /* the lowest address on top */
        size_t was = atomic_load_explicit(&s->meta[idx[j]].size_plus1, memory_order_relaxed);
        uint32_t unused = was == SLOT_UNUSED ? TC_UNUSED_BIT : 0;
        atomic_store_explicit(&s->meta[idx[j]].size_plus1, entry_state(tc, unused),
                              memory_order_relaxed); /* published by the global lock */
        b->slab[b->n] = s;
        b->slot[b->n++] = (uint32_t)idx[j] | unused;
        count_cached(tc, s, 1);
    }
}

int zzi_tcache_wants_own(int cls)
{
    const struct tcache *tc = self;
    return tc != NULL && cls <= TC_CLASSES && tc_current(tc);
}

int zzi_tcache_pins_class(int t, int cls)
{
    const struct tcache *tc = self;
    if (tc == NULL)
        return 0;
    for (unsigned k = 0; k < tc->npinned; k++)
        if (tc->pinned[k]->table == t && tc->pinned[k]->cls == cls)
            return 1;
    return 0;
}

unsigned zzi_tcache_pins(const struct slab *s)
{
    const struct tcache *tc = self;
    if (tc == NULL)
        return 0;
    for (unsigned k = 0; k < tc->npinned; k++)
        if (tc->pinned[k] == s)
            return 1;
    return 0;
}

/* ---- stats ----------------------------------------------------------------------- */

/* What tc caches: bytes and slots, less what other threads stole (a
 * moment's skew between the owner's count and the thief's: never below 0). */
static void cache_holds(const struct tcache *tc, size_t *bytes, size_t *slots)
{
    size_t held = atomic_load_explicit(&tc->cached, memory_order_relaxed);
    size_t stolen = atomic_load_explicit(&tc->stolen_bytes, memory_order_relaxed);
    size_t n_stolen = atomic_load_explicit(&tc->stolen_slots, memory_order_relaxed);
    size_t b = held & (TC_SLOT_ONE - 1), n = held / TC_SLOT_ONE;
    *bytes += b > stolen ? b - stolen : 0;
    *slots += n > n_stolen ? n - n_stolen : 0;
}

void zzi_tcache_stats(size_t *live_blocks, size_t *live_bytes, size_t *cached_bytes)
{
    size_t slots = 0;
    for (const struct tcache *tc = all; tc != NULL; tc = tc->next) {
        *live_blocks += atomic_load_explicit(&tc->live_blocks, memory_order_relaxed);
        *live_bytes += atomic_load_explicit(&tc->live_bytes, memory_order_relaxed);
        cache_holds(tc, cached_bytes, &slots);
    }
}

void zzi_tcache_cached(size_t *bytes, size_t *slots)
{
    *bytes = *slots = 0;
    for (const struct tcache *tc = all; tc != NULL; tc = tc->next)
        cache_holds(tc, bytes, slots);
}

/* ---- fork ------------------------------------------------------------------------ */

static int rebuild_region(struct zzi_region *r, void *ctx)
{
    (void)ctx;
    if (r->kind == ZZI_REGION_SLAB)
        zzi_slab_rebuild_after_fork(r->owner);
    return 0;
}

/* Global lock held; the child has one thread.  The other threads' caches
 * are gone with them, and any of them may have been half-way through a fast
 * path (or, after a fork that ran no handler, through a slow one): every
 * class forgets its slabs, every slab's free slots are rebuilt from the
 * slots' states and it goes back to its class, the live counts are
 * recounted, every cache emptied.  After a fork that ran no handler the
 * other threads' caches are left behind (free takes malloc's locks, which a
 * dead thread may have held), and so are empty slabs nothing keeps. */
static void fork_child_fixup(void)
{
    int missed = zzi_fork_ran_no_handler();
    struct tcache *next;
    for (struct tcache *tc = all; tc != NULL && !missed; tc = next) {
        next = tc->next;
        if (tc != self)
            free(tc);
    }
    all = NULL;
    zzi_slab_forget_classes_after_fork();
    zzi_registry_each(rebuild_region, NULL);
    if (!missed)
        zzi_slab_drop_empty_after_fork();
    zzi_block_recount_after_fork();
    zzi_block_modes_after_fork();
    struct tcache *tc = self;
    if (tc == NULL)
        return;
    memset(tc, 0, sizeof *tc);
    tc->tag = SLOT_CACHED | (uintptr_t)tc;
    tc->gen = atomic_load(&zzi_checks_gen) - 1;
    ZZI_LIST_PUSH(all, tc, prev, next);
}
