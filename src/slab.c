/*
 * slab.c - slabs of equal slots and the size classes that hold them: where a
 * new zz_alloc block goes, and what happens to a slot when it is freed (the
 * free-slot cache, bounded per class by block_cache.c: the largest of 1 MiB,
 * the class's live bytes and its recent peak; emptied slabs beyond it are
 * unmapped).  pages.c makes the
 * mappings; block.c puts blocks in the slots.
 */
#include <errno.h>
#include <stdlib.h>

#include "block.h"
#include "block_cache.h"

#define MAX_CLASS_PAGES 16            /* larger blocks get a mapping each  */
#define SLAB_MAX_BYTES (2u << 20)     /* a slab maps at most this much      */
#define SLAB_MIN_SLOTS 4u

struct size_class {
    struct slab *avail;  /* slabs with at least one free slot */
    size_t total_slots;  /* in its slabs (retired ones excepted) */
    size_t live_slots;   /* of those, handed out */
    size_t empty_slabs;
    struct zzi_demand demand; /* what bounds its free-slot cache */
    size_t trimmed_keep, trimmed_total; /* the bound and slots of the last trim walk */
    /* total_slots maps more than ZZI_CACHE_FLOOR_BYTES, below which no
     * bound trims: the thread caches' periodic check reads it without the
     * lock, and takes the lock only when it is set. */
    _Atomic unsigned char beyond_floor;
    uint64_t active_tick; /* class_clock when its slow path last took or freed a slot */
};

/* Counts the slow paths' takes and frees: orders the classes by when they
 * were last used, so that the share's trim takes cold classes' slabs first. */
static uint64_t class_clock;

/* One class table per backend, so a block asked for on secretmem never
 * lands in an anonymous slab. */
static struct size_class classes[2][MAX_CLASS_PAGES + 1];

/* 1 if a slot's guard page of backend table t is locked (charged to
 * RLIMIT_MEMLOCK) like its data: on secretmem, and on the guard-install
 * path; on the mprotect path an anon slot locks its data pages only. */
static int guard_locked(int t)
{
    return t == ZZ_BACKEND_SECRETMEM || zzi_pages_uses_guard_install();
}

/* pre: global lock held.  Class c (slots of stride bytes) gains nslots
 * slots (grows) or loses them. */
static void class_resize(struct size_class *c, size_t stride, size_t nslots, int grows)
{
    c->total_slots = grows ? c->total_slots + nslots : c->total_slots - nslots;
    atomic_store_explicit(&c->beyond_floor, c->total_slots * stride > ZZI_CACHE_FLOOR_BYTES,
                          memory_order_relaxed);
}

/* The class's free slots, in the unit of the bound and of zz_stats'
 * cached_bytes: a slot's data pages and the guard page after it (what a
 * slot adds to a slab's mapping, and to its lock on the guard-install
 * path). */
static size_t class_free_bytes(const struct size_class *c, size_t stride)
{
    return (c->total_slots - c->live_slots) * stride;
}

/* The last blocks of slabs that were unmapped (big blocks, emptied slabs,
 * however they went), the last FREED_RING of them: so a second zz_free of
 * such a pointer is reported as the double free it is, not as a foreign
 * pointer.  Only the fatal path searches it (linearly: its cost does not
 * matter there); an entry is never wrong, since an address in it was freed
 * by this library and is consulted only when no region of ours covers it
 * now. */
#define FREED_RING 4096
static uintptr_t freed_ring[FREED_RING];
static unsigned freed_ring_next;

/* pre: global lock held; every slot of s is free.  Each slot that held a
 * block remembers where that block began (its span is still recorded). */
static void remember_unmapped_blocks(const struct slab *s)
{
    for (size_t i = 0; i < s->nslots; i++) {
        if (atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed) == SLOT_UNUSED)
            continue;
        size_t span = atomic_load_explicit(&s->meta[i].span, memory_order_relaxed);
        freed_ring[freed_ring_next++ % FREED_RING] = (uintptr_t)zzi_block_at(s, i, span);
    }
}

int zzi_was_unmapped_block(uintptr_t p)
{
    for (unsigned i = 0; i < FREED_RING; i++)
        if (p != 0 && freed_ring[i] == p)
            return 1;
    return 0;
}

/* ---- slabs ------------------------------------------------------------------ */

/* The slab and its per-slot arrays in one allocation, widest first. */
static struct slab *slab_struct_new(size_t nslots)
{
    _Static_assert(sizeof(struct slab) % sizeof(uint64_t) == 0 &&
                       sizeof(struct slot_meta) % sizeof(uint64_t) == 0,
                   "each array stays aligned");
    size_t bytes = sizeof(struct slab) +
                   nslots * (2 * sizeof(uint64_t) + sizeof(struct slot_meta) + sizeof(size_t));
    struct slab *s = calloc(1, bytes);
    if (s == NULL)
        return NULL;
    char *at = (char *)(s + 1);
    s->canary = (uint64_t *)(void *)at;
    at += 2 * nslots * sizeof(uint64_t);
    s->meta = (struct slot_meta *)(void *)at;
    at += nslots * sizeof(struct slot_meta);
    s->free_stack = (size_t *)(void *)at;
    return s;
}

/* pre: global lock held.  A new slab of nslots slots of slot_pages pages,
 * registered, every slot free. */
static struct slab *slab_create(size_t slot_pages, size_t nslots, int cls, int backend)
{
    struct slab *s = slab_struct_new(nslots);
    if (s == NULL) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    if (zzi_canary_draw(s->canary, 2 * nslots) != 0) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    if (zzi_pages_map_slab(slot_pages, nslots, backend, &s->region.map) != 0) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    s->region.kind = ZZI_REGION_SLAB;
    s->region.owner = s;
    s->data_len = slot_pages * zzi_page();
    s->stride = s->data_len + zzi_page();
    s->tc_unit = zzi_tcache_unit(s->stride, guard_locked(backend));
    if ((s->stride & (s->stride - 1)) == 0) /* 1, 3, 7, 15 data pages: no division per lookup */
        s->stride_shift = (unsigned)__builtin_ctzl(s->stride);
    s->nslots = s->nfree = nslots;
    s->cls = cls;
    s->table = backend;
    for (size_t i = 0; i < nslots; i++) {
        s->free_stack[i] = nslots - 1 - i; /* hand out low addresses first */
        atomic_init(&s->meta[i].prot, ZZ_READWRITE);
        ZZ_VG_NOACCESS((void *)zzi_slot_data(s, i), s->data_len);
    }
    if (zzi_registry_add(&s->region) != 0) {
        zzi_pages_unmap_slab(&s->region.map);
        free(s);
        return NULL;
    }
    return s;
}

/* Slabs unmapped while thread caches pinned them: their structs stay (the
 * pinning caches read them without the lock) until the last pin goes. */
static struct slab *dead_slabs;

/* pre: global lock held; every slot free (and so already wiped), none
 * cached.  Every way a slab is unmapped comes here, so every block it held
 * is remembered. */
static void slab_destroy(struct slab *s)
{
    remember_unmapped_blocks(s);
    if (s->pins != 0) /* before the unmap: a pinning cache's free stops looking */
        atomic_store_explicit(&s->dead, 1, memory_order_relaxed);
    zzi_registry_remove(&s->region);
    zzi_pages_unmap_slab(&s->region.map);
    if (s->pins != 0)
        ZZI_LIST_PUSH(dead_slabs, s, prev, next);
    else
        free(s);
}

static void avail_push(struct size_class *c, struct slab *s)
{
    ZZI_LIST_PUSH(c->avail, s, prev, next);
}

static void avail_remove(struct size_class *c, struct slab *s)
{
    ZZI_LIST_UNLINK(c->avail, s, prev, next);
}

/* pre: global lock held; s is an empty slab of class c.  Takes it out of the
 * class and unmaps it. */
static void unmap_empty_slab(struct size_class *c, struct slab *s)
{
    avail_remove(c, s);
    c->empty_slabs--;
    class_resize(c, s->stride, s->nslots, 0);
    slab_destroy(s);
}

/* 1 if err from mapping or locking could be cured by giving memory back (the
 * lock limit, the map count, memory): not for a missing or refused feature. */
static int short_of_memory(int err)
{
    return err == ENOMEM || err == EAGAIN;
}

/* pre: global lock held; slot i of s is free (wiped, or never used).  Puts
 * it back on s's free stack and counts it free in its class; unmaps
 * nothing (callers walk the registry). */
static void put_back(struct slab *s, size_t i)
{
    s->free_stack[s->nfree++] = i;
    if (s->retired || s->cls == 0)
        return;
    struct size_class *c = &classes[s->table][s->cls];
    c->live_slots--;
    if (s->nfree == 1)
        avail_push(c, s);
    if (s->nfree == s->nslots)
        c->empty_slabs++;
}

/* pre: global lock held.  Claims every slot of s that a thread's cache
 * holds (block_tcache.c, top: the cache's own claim of it then fails) and
 * puts it back on s. */
static void steal_cached_slots(struct slab *s)
{
    for (size_t i = 0; i < s->nslots; i++) {
        size_t v = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed);
        if (!zzi_slot_cached(v))
            continue;
        /* acquire: the cache's wipe of the slot happened before it cached it */
        if (!atomic_compare_exchange_strong_explicit(&s->meta[i].size_plus1, &v,
                                                     zzi_slot_uncached(v), memory_order_acquire,
                                                     memory_order_relaxed))
            continue; /* its cache took it first: live now */
        zzi_tcache_note_stolen(v, s->tc_unit);
        put_back(s, i);
    }
}

static int steal_from_region(struct zzi_region *r, void *ctx)
{
    struct slab *s = r->owner;
    (void)ctx;
    if (r->kind == ZZI_REGION_SLAB && s->pins != 0) /* only pinned slabs have cached slots */
        steal_cached_slots(s);
    return 0;
}

static int find_empty_retired(struct zzi_region *r, void *ctx)
{
    struct slab *s = r->owner;
    if (r->kind != ZZI_REGION_SLAB || !s->retired || s->nfree != s->nslots)
        return 0;
    *(struct slab **)ctx = s;
    return 1;
}

/* pre: global lock held.  Takes every slot back from every thread's cache
 * (the calling thread's gives its own back), asks every thread to bring
 * its cache up to date at its next call, and unmaps retired slabs left
 * empty. */
static void steal_all_cached(void)
{
    if (!zzi_tcache_any())
        return;
    zzi_tcache_give_back();
    zzi_registry_each(steal_from_region, NULL);
    for (;;) {
        struct slab *s = NULL;
        zzi_registry_each(find_empty_retired, &s);
        if (s == NULL)
            return;
        slab_destroy(s);
    }
}

/* pre: global lock held.  Unmaps class c's empty slabs, pinned ones too,
 * while keep is exceeded (0: all).  Returns 1 if anything was unmapped. */
static int unmap_empty_beyond(struct size_class *c, size_t keep)
{
    int dropped = 0;
    struct slab *next;
    for (struct slab *s = c->avail; s != NULL; s = next) {
        next = s->next;
        if (s->nfree != s->nslots || class_free_bytes(c, s->stride) <= keep)
            continue;
        unmap_empty_slab(c, s);
        dropped = 1;
    }
    return dropped;
}

/* ---- the caches' share of a finite RLIMIT_MEMLOCK ------------------------------ */

/* Under a finite RLIMIT_MEMLOCK (no CAP_IPC_LOCK) the free slots kept for
 * reuse, in the classes and in the threads' caches together, keep at most
 * half the limit locked (zz_stats: cache_locked_bytes <= cache_share_bytes).
 * Counted in locked bytes, the limit's own unit: on the mprotect path a
 * slot locks its data pages only, on the guard-install path its guard page
 * too.  Half, because a burst that comes back must find its slots: an
 * unprivileged process gets the mprotect path, where 8 MiB hold 2,048
 * single-page slots, and a burst of 1,000 x 32 B (4 MiB locked) that maps
 * afresh costs a few hundred microseconds a block, against about 80 ns
 * from the cache; the other half stays for live blocks and for whatever
 * else in the process locks memory (OpenSSL's secure heap, libsodium, the
 * program's own mlock).  The limit (and the capability) is read again at
 * most once per clock tick by the slow paths (it changes with setrlimit,
 * setuid, capset: nothing tells us), at once when a mapping or a lock is
 * refused, and by zz_trim and zz_get_stats; the fast paths make no system
 * call. */
#define SHARE_DIVISOR 2
/* Beyond the share, a new slab locks at most this fraction of it (or one
 * slot): 128 KiB, 32 one-page slots, under an 8 MiB limit. */
#define SHARE_SLAB_FLOOR_DIVISOR 32
static size_t share = SIZE_MAX;   /* SIZE_MAX: no finite limit */
static _Atomic int share_finite;  /* share != SIZE_MAX, for a look without the lock */
static uint64_t share_read_ms = UINT64_MAX;
static size_t share_excused;      /* locked bytes a trim could not give back */

/* pre: global lock held.  Reads the limit again (force, or once per tick). */
static void refresh_share(int force)
{
    uint64_t now = zzi_os_now_ms();
    if (!force && now == share_read_ms)
        return;
    share_read_ms = now;
    size_t limit = zzi_os_memlock_limit();
    share = limit == SIZE_MAX ? SIZE_MAX : limit / SHARE_DIVISOR;
    atomic_store_explicit(&share_finite, share != SIZE_MAX, memory_order_relaxed);
}

/* The bytes a free slot of class k of backend table t keeps locked: its
 * data pages, and its guard page too on the guard-install path (the whole
 * range is locked) and on secretmem (the kernel charges the whole mapping).
 * (Until c54c37e a secretmem slot counted its data page only: 1,010 freed
 * 32-byte secretmem blocks held the whole 8 MiB limit while the caches
 * reported half of it, every new slab of the other backend was refused,
 * and each refusal dropped every cache: zz-bench's 32 B pair cost 6-15 us
 * unprivileged with the zz_alloc and zz_secretmem columns side by side.) */
static size_t slot_locked(int t, int k)
{
    return ((size_t)k + (guard_locked(t) ? 1u : 0u)) * zzi_page();
}

/* pre: global lock held.  What the free slots kept hold locked: the
 * classes' and the threads', each slot counted as slot_locked counts it.
 * (68b0b8d counted a thread's cached slot whole, guard page and all: on the
 * mprotect path eight slots of a freed batch that filled the share exactly
 * made it 32 KiB over, and every round unmapped a slab the next one mapped
 * again.) */
static size_t cached_locked(void)
{
    size_t total, unlocked_guards;
    zzi_tcache_cached(&total, &unlocked_guards);
    total -= unlocked_guards * zzi_page(); /* a slot's stride is its data and one guard page */
    for (int t = 0; t < 2; t++)
        for (int k = 1; k <= MAX_CLASS_PAGES; k++)
            total += (classes[t][k].total_slots - classes[t][k].live_slots) * slot_locked(t, k);
    return total;
}

/* pre: global lock held.  The empty slab the share gives up first, and its
 * class in *cp, or NULL when no slab is empty: one of the class used
 * longest ago (its slow paths' last take or free), the smallest of it in
 * locked bytes.  Until 218fe51 the smallest of any class went first: after
 * a freed burst of secretmem blocks that nothing used again, an anon batch
 * that came back each round lost its own slabs as it freed them (small
 * ones, mapped beyond the share) while the idle secretmem slabs kept the
 * share, and every round mapped the whole batch again. */
static struct slab *coldest_empty_slab(struct size_class **cp)
{
    struct slab *best = NULL;
    size_t best_bytes = SIZE_MAX;
    uint64_t best_tick = UINT64_MAX;
    for (int t = 0; t < 2; t++) {
        for (int k = 1; k <= MAX_CLASS_PAGES; k++) {
            struct size_class *c = &classes[t][k];
            if (c->empty_slabs == 0 || c->active_tick > best_tick)
                continue;
            for (struct slab *s = c->avail; s != NULL; s = s->next) {
                size_t bytes = s->nslots * slot_locked(t, k);
                if (s->nfree != s->nslots)
                    continue;
                if (c->active_tick < best_tick || bytes < best_bytes) {
                    best = s;
                    best_bytes = bytes;
                    best_tick = c->active_tick;
                    *cp = c;
                }
            }
        }
    }
    return best;
}

/* pre: global lock held.  Unmaps empty slabs, the coldest class's smallest
 * first (coldest_empty_slab), until the caches keep no more than the share
 * (or nothing is left to unmap); returns what they keep.  Within a class
 * only the excess goes, in the smallest pieces: 68b0b8d
 * trimmed to an eighth below the share, taking the largest slab when no
 * single one covered the excess, and a live batch a little over the share
 * lost a 2 MiB slab (256 slots) a round, which the next round mapped again.
 * Slabs beyond the share are small (slots_within_share), so what goes is
 * close to the excess. */
static size_t unmap_to_share(size_t total)
{
    while (total > share) {
        struct size_class *c;
        struct slab *s = coldest_empty_slab(&c);
        if (s == NULL)
            break;
        size_t bytes = s->nslots * slot_locked(s->table, s->cls);
        unmap_empty_slab(c, s);
        total = total > bytes ? total - bytes : 0;
    }
    return total;
}

static void steal_all_cached(void);

/* pre: global lock held.  1 if some class has an empty slab. */
static int any_empty_slab(void)
{
    for (int t = 0; t < 2; t++)
        for (int k = 1; k <= MAX_CLASS_PAGES; k++)
            if (classes[t][k].empty_slabs != 0)
                return 1;
    return 0;
}

/* pre: global lock held.  Keeps the caches within their share of a finite
 * limit: empty slabs first, then what threads' caches hold (stolen).  What
 * no trim can give back (free slots beside live blocks) is excused from
 * stealing until the caches grow by an eighth of the share again, so that
 * a fragmented heap does not steal from every thread on every slow path. */
static void keep_share(void)
{
    static int busy; /* a steal gives the caller's cache back, which frees into here */
    if (share == SIZE_MAX || busy)
        return;
    size_t total = cached_locked();
    if (total <= share)
        return;
    if (any_empty_slab())
        total = unmap_to_share(total);
    if (total > share && zzi_tcache_holds_any()) {
        /* the calling thread's own cache first (no other thread is
         * disturbed): its few slots may keep whole slabs from emptying */
        busy = 1;
        zzi_tcache_give_back_own();
        total = unmap_to_share(cached_locked());
        busy = 0;
    }
    if (total <= share) {
        share_excused = 0;
        return;
    }
    if (total <= share_excused + share / 8)
        return;
    busy = 1;
    steal_all_cached();
    total = unmap_to_share(cached_locked());
    share_excused = total > share ? total : 0;
    busy = 0;
}

void zzi_slab_keep_share(void)
{
    keep_share();
}

/* pre: global lock held.  Unmaps every empty slab of every class, giving the
 * caches' locked memory back, the slots of every thread's cache included
 * (stolen).  Called when a new mapping cannot be made or locked (memory
 * cached for one size must never make an allocation of another size fail,
 * nor one thread's idle cache another thread's), and by zz_trim.  Returns 1
 * if anything was unmapped. */
static int drop_cached_slabs(void)
{
    int dropped = 0;
    refresh_share(1);
    steal_all_cached();
    for (int t = 0; t < 2; t++) {
        for (int k = 1; k <= MAX_CLASS_PAGES; k++) {
            zzi_demand_forget(&classes[t][k].demand);
            dropped |= unmap_empty_beyond(&classes[t][k], 0);
        }
    }
    return dropped;
}

int zzi_block_drop_caches(int err)
{
    if (!short_of_memory(err))
        return 0;
    int e = errno;
    zzi_global_lock();
    int dropped = drop_cached_slabs();
    zzi_global_unlock();
    errno = e;
    return dropped;
}

ZZ_API void zz_trim(void)
{
    if (!atomic_load_explicit(&zzi_initialized, memory_order_acquire))
        return; /* nothing was ever mapped */
    zzi_check_fork();
    int e = errno;
    zzi_global_lock();
    drop_cached_slabs();
    zzi_global_unlock();
    errno = e;
}

#ifdef ZZ_FAULT_INJECTION
/* Test-only: lets a fault test start with no cached slab, so that a failure
 * it injects is not retried after dropping caches. */
ZZ_API void zzi_fault_drop_caches(void)
{
    zzi_block_drop_caches(ENOMEM);
}
#endif

/* How far down a class's slabs with room a thread with a cache looks for one
 * no other thread's cache pins. */
#define OWN_SCAN 8
/* The slots of a thread's first slab of a class, mapped only because every
 * slab with room is pinned by other threads' caches: a cache's worth and
 * some live blocks, not the class's next geometric step (2 MiB of 32-byte
 * slots, mapped and unmapped again each time a thread came and went).  A
 * thread that fills it (a burst) gets geometric slabs as before. */
#define OWN_SLAB_SLOTS 16u

/* pre: global lock held.  For a thread whose cache is on: a slab of class c
 * with room that no other thread's cache pins (threads that share a slab
 * write the same cache lines of slot metadata: a pair then costs several
 * times as much), or NULL. */
static struct slab *slab_of_its_own(struct size_class *c)
{
    unsigned k = 0;
    for (struct slab *s = c->avail; s != NULL && k < OWN_SCAN; s = s->next, k++)
        if (s->pins == zzi_tcache_pins(s))
            return s;
    return NULL;
}

/* pre: global lock held.  Under a finite lock limit, the most slots of class
 * cls a new slab may have: as many as fit in what the caches' share has not
 * yet given to the slots mapped (live or free, every class: freed, they are
 * all cached), and at least a 32nd of the share's worth, so
 * that slabs beyond it are small.  A live batch that fits in the share then
 * maps slabs that, freed, fit in it too (geometric steps overshot it by up
 * to a whole 1 MiB-locked slab, which the trim dropped and the next round
 * mapped again), and what a trim drops of a batch beyond the share is a
 * few small slabs, not megabytes for a few KiB of excess. */
static size_t slots_within_share(int t, int cls)
{
    if (share == SIZE_MAX)
        return SIZE_MAX;
    size_t mapped = 0;
    for (int u = 0; u < 2; u++)
        for (int k = 1; k <= MAX_CLASS_PAGES; k++)
            mapped += classes[u][k].total_slots * slot_locked(u, k);
    size_t room = share > mapped ? share - mapped : 0, floor = share / SHARE_SLAB_FLOOR_DIVISOR;
    size_t slots = (room > floor ? room : floor) / slot_locked(t, cls);
    return slots != 0 ? slots : 1;
}

/* pre: global lock held.  A slab of class cls with a free slot, growing the
 * class geometrically; when the kernel refuses, drops the caches of empty
 * slabs and tries again, then halves the new slab (so an unprivileged process
 * uses all of its RLIMIT_MEMLOCK).  A thread whose cache is on gets a slab
 * of its own when one has room (slab_of_its_own), else a new one; if that
 * cannot be mapped, it shares. */
static struct slab *class_slab_with_room(int cls, int backend)
{
    struct size_class *c = &classes[backend][cls];
    int own = c->avail != NULL && zzi_tcache_wants_own(cls);
    if (c->avail != NULL && !own)
        return c->avail;
    if (own) {
        struct slab *s = slab_of_its_own(c);
        if (s != NULL)
            return s;
    }
    size_t stride = (size_t)(cls + 1) * zzi_page();
    /* under a finite lock limit, a slab is at most half the caches' share,
     * so that the share can keep one when its blocks are freed */
    size_t max_bytes = share / 2 < SLAB_MAX_BYTES ? share / 2 : SLAB_MAX_BYTES;
    size_t cap = max_bytes / stride ? max_bytes / stride : 1;
    size_t want = c->total_slots > SLAB_MIN_SLOTS ? c->total_slots : SLAB_MIN_SLOTS;
    if (own && !zzi_tcache_pins_class(backend, cls))
        want = OWN_SLAB_SLOTS; /* the class has room, in slabs that others pin */
    size_t nslots = want < cap ? want : cap;
    size_t fits = slots_within_share(backend, cls);
    if (nslots > fits)
        nslots = fits;
    for (;;) {
        struct slab *s = slab_create((size_t)cls, nslots, cls, backend);
        if (s != NULL) {
            class_resize(c, s->stride, nslots, 1);
            c->empty_slabs++;
            avail_push(c, s);
            /* demand made the class map all of this: a burst that comes back
             * soon finds the whole slab, not its live blocks' share of it */
            zzi_demand_note(&c->demand, c->total_slots * s->stride);
            return s;
        }
        int e = errno;
        if (short_of_memory(e) && drop_cached_slabs()) {
            errno = e;
            continue;
        }
        if (nslots == 1)
            return c->avail; /* NULL, or a slab another thread pins: share it */
        nslots /= 2;
    }
}

/* ---- taking a slot ----------------------------------------------------------- */

/* pre: global lock held.  Takes s out of service: its live blocks stay valid,
 * but it hands out no new ones. */
static void retire(struct size_class *c, struct slab *s)
{
    avail_remove(c, s);
    if (s->nfree == s->nslots)
        c->empty_slabs--;
    class_resize(c, s->stride, s->nslots, 0);
    c->live_slots -= s->nslots - s->nfree;
    s->retired = 1;
    if (s->nfree == s->nslots && s->pins == 0)
        slab_destroy(s);
}

/* May s hand out a block now?  Not if its secret memory was replaced by zero
 * pages in a forked child, nor if it was mapped unlocked under
 * ZZ_LOCK_BEST_EFFORT and the policy is now ZZ_LOCK_REQUIRED. */
static int slab_fit_for_policy(const struct slab *s, int backend)
{
    if (s->region.map.backend != backend)
        return 0;
    return (s->region.map.info & ZZ_INFO_LOCKED) || !zzi_policy_lock_required();
}

/* pre: global lock held.  Slab s of class c is about to hand out one of its
 * free slots. */
static void note_slot_taken(struct size_class *c, struct slab *s)
{
    c->active_tick = ++class_clock;
    if (s->nfree == s->nslots)
        c->empty_slabs--;
    if (s->nfree == 1)
        avail_remove(c, s);
    c->live_slots++;
    zzi_demand_note(&c->demand, c->live_slots * s->stride);
}

size_t zzi_take_more_slots(struct slab *s, size_t *idx, size_t want)
{
    struct size_class *c = &classes[s->table][s->cls];
    size_t got = 0;
    if (s->cls == 0 || s->retired)
        return 0;
    while (got < want && s->nfree > 0) {
        note_slot_taken(c, s);
        idx[got++] = s->free_stack[--s->nfree];
    }
    return got;
}

/* pre: global lock held.  Takes a free slot for a block of span bytes. */
static struct slab *take_slot_on(size_t span, size_t *idx, int backend)
{
    size_t pages = zzi_pages_for(span);
    struct slab *s;
    if (pages <= MAX_CLASS_PAGES) {
        struct size_class *c = &classes[backend][pages];
        for (;;) {
            s = class_slab_with_room((int)pages, backend);
            if (s == NULL)
                return NULL;
            if (zzi_pages_refresh_after_fork(&s->region.map) != 0) {
                /* relocking a slab in a forked child: cached slabs give way */
                int e = errno;
                if (short_of_memory(e) && drop_cached_slabs()) {
                    errno = e;
                    continue;
                }
                return NULL;
            }
            if (slab_fit_for_policy(s, backend))
                break;
            retire(c, s);
        }
        note_slot_taken(c, s);
    } else {
        s = slab_create(pages, 1, 0, backend);
        if (s == NULL && short_of_memory(errno) && drop_cached_slabs())
            s = slab_create(pages, 1, 0, backend);
        if (s == NULL)
            return NULL;
    }
    *idx = s->free_stack[--s->nfree];
    return s;
}

/* Under ZZ_BACKEND_AUTO, a kernel without memfd_secret means anon.  Every
 * slow allocation looks at the lock limit again (once per tick). */
struct slab *zzi_take_slot(size_t span, size_t *idx, int requested)
{
    refresh_share(0);
    keep_share();
    int backend = zzi_policy_resolve(requested);
    struct slab *s = take_slot_on(span, idx, backend);
    if (s == NULL && zzi_pages_fall_back_to_anon(requested, backend, errno))
        s = take_slot_on(span, idx, ZZ_BACKEND_ANON);
    return s;
}

/* ---- giving a slot back ------------------------------------------------------ */

/* The free bytes class c may keep cached now (block_cache.c). */
static size_t class_keep(struct size_class *c, size_t stride)
{
    return zzi_demand_bound(&c->demand, c->live_slots * stride);
}

/* pre: global lock held.  Unmaps class c's empty slabs that nobody pins
 * while the class keeps more free bytes than keep: the bound is the most it
 * keeps, never the least (5c03a46 kept a slab when unmapping it would go
 * below the bound: cached_bytes showed twice cache_bound_bytes). */
static void unmap_beyond(struct size_class *c, size_t stride, size_t keep)
{
    struct slab *next;
    for (struct slab *t = c->avail; t != NULL && class_free_bytes(c, stride) > keep; t = next) {
        next = t->next;
        if (t->nfree == t->nslots && t->pins == 0)
            unmap_empty_slab(c, t);
    }
}

/* pre: global lock held; the class has no live block left.  Unmaps its empty
 * slabs beyond the cache bound now, in the free that emptied the class, not
 * one by one in later unrelated calls: slabs emptied early in a long run of
 * frees were kept while many blocks were still live, and unmapping a big
 * slab can take milliseconds (secretmem pages go back into the kernel's
 * direct map, one TLB flush each). */
static void trim_idle_class(struct size_class *c, size_t stride, size_t keep)
{
    if (c->total_slots * stride <= keep)
        return; /* nothing beyond the bound: the common case, without a walk */
    if (keep >= c->trimmed_keep && c->total_slots == c->trimmed_total)
        return; /* walked at this bound or a lower one, nothing mapped since */
    unmap_beyond(c, stride, keep);
    c->trimmed_keep = keep;
    c->trimmed_total = c->total_slots;
}

/* pre: global lock held; s, of class c, is empty and nobody pins it: unmaps
 * it if the class keeps more than its bound with it, and trims an idle
 * class; then the caches are kept within their share of a finite lock
 * limit.  s may be unmapped on return. */
static void slab_now_idle(struct size_class *c, struct slab *s)
{
    size_t stride = s->stride;
    if (class_free_bytes(c, stride) > ZZI_CACHE_FLOOR_BYTES) { /* else within any bound: a steady pair */
        size_t keep = class_keep(c, stride);
        if (class_free_bytes(c, stride) > keep)
            unmap_empty_slab(c, s);
        if (c->live_slots == 0)
            trim_idle_class(c, stride, keep);
    }
    keep_share();
}

/* pre: global lock held; class cls of table is idle but for what the calling
 * thread's cache holds.  If it maps more than its bound, the cache gives its
 * slots and slabs of the class back, so that the class is trimmed as it
 * would be without the cache (the steady pair, well within the bound, keeps
 * its cache). */
static void give_back_if_over_bound(struct size_class *c, int table, int cls)
{
    size_t stride = ((size_t)cls + 1) * zzi_page();
    if (c->total_slots * stride <= ZZI_CACHE_FLOOR_BYTES)
        return; /* within any bound (the steady pair): no clock read */
    zzi_demand_refresh(&c->demand); /* rare here: let the bound see the clock */
    size_t keep = class_keep(c, stride);
    if (c->total_slots * stride <= keep)
        return;
    /* A trim walk at this bound (or a higher one) found nothing more to
     * unmap (a slab too big to drop without going under the bound), and
     * nothing was mapped since: giving the cache back again would only make
     * the next allocation take the slow path, every TC_CHECK_EVERY frees. */
    if (keep >= c->trimmed_keep && c->total_slots == c->trimmed_total)
        return;
    zzi_tcache_give_back_class(table, cls);
}

void zzi_slab_check_idle(int table, int cls, int grew)
{
    struct size_class *c = &classes[table][cls];
    int limited = grew && atomic_load_explicit(&share_finite, memory_order_relaxed);
    if (!limited && !atomic_load_explicit(&c->beyond_floor, memory_order_relaxed))
        return; /* within every bound (a steady pair): no lock (a stale read only delays a trim) */
    int e = errno; /* zz_free preserves it, and this may unmap */
    zzi_global_lock();
    if (c->live_slots != 0 && c->live_slots == zzi_tcache_held(table, cls))
        give_back_if_over_bound(c, table, cls);
    if (limited)
        keep_share(); /* what the thread's cache took in counts towards the share */
    zzi_global_unlock();
    errno = e;
}

void zzi_release_slot(struct slab *s, size_t i)
{
    s->free_stack[s->nfree++] = i;
    if (s->cls == 0 || (s->retired && s->nfree == s->nslots && s->pins == 0)) {
        slab_destroy(s);
        return;
    }
    if (s->retired)
        return;
    int table = s->table, cls = s->cls; /* s may be unmapped below */
    struct size_class *c = &classes[table][cls];
    c->live_slots--;
    c->active_tick = ++class_clock;
    /* the slab of the slot freed last goes first, so that freed slots come
     * back last-in, first-out across the class (as zeroize.h promises: a
     * write after free is then found by the very next allocation) */
    if (s->nfree == 1) {
        avail_push(c, s);
    } else if (c->avail != s) {
        avail_remove(c, s);
        avail_push(c, s);
    }
    if (s->nfree == s->nslots) {
        c->empty_slabs++;
        if (s->pins == 0)
            slab_now_idle(c, s); /* (which keeps the share) */
        else
            keep_share(); /* s may be unmapped: a pinned slab's struct stays */
    }
    /* Idle but for what this thread's cache holds: that goes back too (its
     * slots return through here), so the class is trimmed as it would be
     * without the cache. */
    if (c->live_slots != 0 && c->live_slots == zzi_tcache_held(table, cls))
        give_back_if_over_bound(c, table, cls);
    else
        keep_share(); /* frees that empty no slab fill the caches too */
}

void zzi_slab_unpin(struct slab *s)
{
    if (--s->pins != 0)
        return;
    if (atomic_load_explicit(&s->dead, memory_order_relaxed)) { /* unmapped meanwhile */
        ZZI_LIST_UNLINK(dead_slabs, s, prev, next);
        free(s);
        return;
    }
    if (s->nfree != s->nslots)
        return;
    if (s->retired) {
        slab_destroy(s);
        return;
    }
    slab_now_idle(&classes[s->table][s->cls], s);
}

/* A slot's state says whether it is free: the index in slot order. */
static size_t rebuild_free_stack(struct slab *s)
{
    size_t nfree = 0;
    for (size_t i = s->nslots; i-- > 0;) { /* low addresses handed out first */
        size_t sp1 = atomic_load_explicit(&s->meta[i].size_plus1, memory_order_relaxed);
        if (zzi_slot_in_use(sp1))
            continue;
        if (zzi_slot_cached(sp1)) /* no thread's cache came along */
            atomic_store_explicit(&s->meta[i].size_plus1, zzi_slot_uncached(sp1), memory_order_relaxed);
        if (sp1 == SLOT_FREEING) { /* taken or freed half-way: wipe the whole slot */
            void *data = (void *)zzi_slot_data(s, i);
            /* a global free may have been giving it write access back: its
             * recorded mode cannot be trusted (block_modes.c settles the rest) */
            ZZ_CHECK(zzi_os_protect(data, s->data_len, ZZ_READWRITE) == 0,
                     "cannot make a half-freed block writable in a forked child");
            atomic_store_explicit(&s->meta[i].prot, ZZ_READWRITE, memory_order_relaxed);
            ZZ_VG_UNDEFINED(data, s->data_len);
            zz_wipe(data, s->data_len);
            ZZ_VG_NOACCESS(data, s->data_len);
            s->meta[i].owner = NULL;
            atomic_store_explicit(&s->meta[i].size_plus1, SLOT_FREED, memory_order_relaxed);
        }
        s->free_stack[nfree++] = i;
    }
    return nfree;
}

void zzi_slab_forget_classes_after_fork(void)
{
    for (int t = 0; t < 2; t++) {
        for (int k = 1; k <= MAX_CLASS_PAGES; k++) {
            struct size_class *c = &classes[t][k];
            c->avail = NULL;
            c->total_slots = c->live_slots = c->empty_slabs = 0;
            c->trimmed_keep = c->trimmed_total = 0;
            atomic_store_explicit(&c->beyond_floor, 0, memory_order_relaxed);
            zzi_demand_forget(&c->demand);
        }
    }
}

/* Nothing of what the slab's class knew is trusted (a dead thread may have
 * been half-way through moving it in its class's list): the class counts it
 * again from its slots' states. */
void zzi_slab_rebuild_after_fork(struct slab *s)
{
    size_t nfree = rebuild_free_stack(s);
    s->pins = 0;
    s->nfree = nfree;
    s->prev = s->next = NULL;
    if (s->cls == 0 || s->retired)
        return; /* a retired slab's class no longer counts it */
    struct size_class *c = &classes[s->table][s->cls];
    class_resize(c, s->stride, s->nslots, 1);
    c->live_slots += s->nslots - nfree;
    if (nfree > 0)
        avail_push(c, s);
    if (nfree == s->nslots)
        c->empty_slabs++;
}

static int find_unkept_empty(struct zzi_region *r, void *ctx)
{
    struct slab *s = r->owner;
    if (r->kind != ZZI_REGION_SLAB || s->nfree != s->nslots || (s->cls != 0 && !s->retired))
        return 0;
    *(struct slab **)ctx = s;
    return 1;
}

void zzi_slab_drop_empty_after_fork(void)
{
    while (dead_slabs != NULL) { /* no cache pins anything in the child */
        struct slab *s = dead_slabs;
        ZZI_LIST_UNLINK(dead_slabs, s, prev, next);
        free(s);
    }
    for (;;) {
        struct slab *s = NULL;
        zzi_registry_each(find_unkept_empty, &s);
        if (s == NULL)
            return;
        slab_destroy(s);
    }
}


/* ---- stats ------------------------------------------------------------------- */

void zzi_block_cache_stats(zz_stats *out)
{
    size_t unused_blocks = 0, unused_bytes = 0, in_threads = 0;
    zzi_global_lock();
    refresh_share(1);
    keep_share(); /* a look like any slow path's: what threads' caches took in since theirs */
    zzi_tcache_stats(&unused_blocks, &unused_bytes, &in_threads);
    /* what threads hold: within their own small bounds */
    out->cached_bytes = out->cache_bound_bytes = in_threads;
    for (int t = 0; t < 2; t++) {
        for (int k = 1; k <= MAX_CLASS_PAGES; k++) {
            struct size_class *c = &classes[t][k];
            if (c->total_slots == 0)
                continue;
            size_t stride = ((size_t)k + 1) * zzi_page();
            out->cached_bytes += class_free_bytes(c, stride);
            zzi_demand_refresh(&c->demand);
            out->cache_bound_bytes += zzi_demand_bound(&c->demand, c->live_slots * stride);
        }
    }
    out->cache_locked_bytes = cached_locked();
    out->cache_share_bytes = share;
    zzi_global_unlock();
}
