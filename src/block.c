/*
 * block.c - zz_alloc and friends: each block on data pages of its own, between
 * guard pages, packed into slabs of equal-sized slots.  This file owns slots,
 * canaries placement and the free-slot cache; pages.c makes the mappings and
 * registry.c finds a slot's slab from an address.
 *
 * One slot of a slab whose class has k data pages (all block metadata is kept
 * out of band, in struct slab, never next to the block):
 *
 *   guard      data page(s) of the slot                        guard
 *   +-------+-------------------------------------------------+-------+
 *   | ----- | 0 0 0 ... 0 | head canary | block | tail canary | ----- |
 *   +-------+-------------------------------------------------+-------+
 *                          16 bytes      n      span - n
 *                                        ^p
 *   span = n rounded up to the alignment (16), so the block ends within 15
 *   bytes of the next guard page.  The head canary exists only when the block
 *   does not start on the first data byte (there the guard page does its job).
 *
 * A free slot is all zeros: zz_free wipes the block and both canaries, so the
 * next zz_alloc checks it is still zero instead of clearing it.  Freed slots
 * stay mapped, guarded and locked: that is the cache that makes the steady
 * state free of system calls.  Each class caches free slots up to the larger
 * of 1 MiB and its live bytes (see cache_would_stay_full); emptied slabs
 * beyond that are unmapped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_CLASS_PAGES 16            /* larger blocks get a mapping each  */
#define SLAB_MAX_BYTES (2u << 20)     /* a slab maps at most this much      */
#define SLAB_MIN_SLOTS 4u

struct slab {
    struct zzi_region region;
    size_t data_len;  /* bytes of data pages per slot */
    size_t stride;    /* data_len + one guard page */
    size_t nslots, nfree;
    int cls;          /* data pages per slot, or 0 for a one-block mapping */
    int table;        /* the backend whose class table holds it */
    int retired;      /* hands out no new blocks; unmapped once empty */
    struct slab *prev, *next; /* the class's slabs that have a free slot */
    uint64_t *canary;            /* per slot: head canary word, tail canary word */
    zz_arena **owner;            /* per slot: the growable arena of a large arena block */
    size_t *free_stack;
    _Atomic size_t *size_plus1;  /* SLOT_UNUSED, SLOT_FREED, or n + 1 */
    _Atomic size_t *span;        /* the block ends span bytes before data end */
    _Atomic unsigned char *prot; /* ZZ_NOACCESS / ZZ_READONLY / ZZ_READWRITE */
    unsigned char *align_shift;  /* log2 of the alignment the block was asked with */
    unsigned *epoch;             /* zzi_wipe_epoch when the block was made */
};

/* A slot's state in size_plus1: never handed out, freed, or live with n
 * bytes (n + 1: n is at most SIZE_MAX - 3 pages, see alloc_impl), so that a
 * fatal message can tell a double free from a pointer never returned. */
#define SLOT_UNUSED ((size_t)0)
#define SLOT_FREED SIZE_MAX
static inline int slot_live(size_t size_plus1)
{
    return size_plus1 != SLOT_UNUSED && size_plus1 != SLOT_FREED;
}

struct size_class {
    struct slab *avail;  /* slabs with at least one free slot */
    size_t total_slots;  /* in its slabs (retired ones excepted) */
    size_t live_slots;   /* of those, handed out */
    size_t empty_slabs;
};

/* The free-slot cache of a class is kept up to the larger of this and the
 * class's live bytes (so a burst that is freed and comes back finds its slots
 * still mapped, guarded and locked); beyond it, empty slabs are unmapped. */
#define CACHE_MIN_BYTES (1u << 20)

/* One class table per backend, so a block asked for on secretmem never
 * lands in an anonymous slab. */
static struct size_class classes[2][MAX_CLASS_PAGES + 1];
struct zzi_counters zzi_counters;
static _Atomic size_t live_blocks, live_bytes; /* written under the global lock */

/* Blocks whose slab was unmapped when they were freed (big blocks, emptied
 * slabs), the last FREED_RING of them: so a second zz_free of such a pointer
 * is reported as the double free it is, not as a foreign pointer.  Only the
 * fatal path searches it (linearly: its cost does not matter there); an
 * entry is never wrong, since an address in it was freed by this library and
 * is consulted only when no region of ours covers it now. */
#define FREED_RING 4096
static uintptr_t freed_ring[FREED_RING];
static unsigned freed_ring_next;

static void remember_unmapped_block(uintptr_t p)
{
    freed_ring[freed_ring_next++ % FREED_RING] = p;
}

static int was_unmapped_block(uintptr_t p)
{
    for (unsigned i = 0; i < FREED_RING; i++)
        if (p != 0 && freed_ring[i] == p)
            return 1;
    return 0;
}

static _Atomic int initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef ZZ_VALGRIND
int zzi_on_valgrind;
#endif

/* Runs until it succeeds once: a getrandom that fails early in boot is tried
 * again by the next call instead of breaking the library for good. */
static int init_library(void)
{
    static int fork_handlers_registered;
    uint64_t probe; /* the canaries need the kernel's generator: fail early if it does not work */
    if (zzi_canary_draw(&probe, 1) != 0) {
        if (errno == 0)
            errno = EAGAIN;
        return -1;
    }
    ZZ_VG_DETECT();
    zzi_pages_uses_guard_install();
    if (!fork_handlers_registered) {
        zzi_registry_init_fork_handlers();
        fork_handlers_registered = 1;
    }
    return 0;
}

int zzi_init(void)
{
    if (zz_likely(atomic_load_explicit(&initialized, memory_order_acquire)))
        return 0;
    pthread_mutex_lock(&init_lock);
    int rc = 0;
    if (!atomic_load(&initialized)) {
        rc = init_library();
        if (rc == 0)
            atomic_store_explicit(&initialized, 1, memory_order_release);
    }
    int e = errno;
    pthread_mutex_unlock(&init_lock);
    if (rc != 0) {
        zzi_fail(ZZI_FAIL_RANDOM);
        errno = e;
    }
    return rc;
}

/* ---- slot geometry -------------------------------------------------------- */

static inline uintptr_t slot_data(const struct slab *s, size_t i)
{
    return s->region.map.base + zzi_page() + i * s->stride;
}

static inline unsigned char *block_at(const struct slab *s, size_t i, size_t span)
{
    return (unsigned char *)(slot_data(s, i) + s->data_len - span);
}

/* Bytes before the block that hold the head canary (0 or 16). */
static inline size_t head_len(const struct slab *s, size_t span)
{
    return s->data_len - span >= ZZ_CANARY_LEN ? ZZ_CANARY_LEN : 0;
}

/* ---- slabs ------------------------------------------------------------------ */

/* The slab and its per-slot arrays in one allocation, widest first. */
static struct slab *slab_struct_new(size_t nslots)
{
    size_t bytes = sizeof(struct slab) +
                   nslots * (2 * sizeof(uint64_t) + sizeof(zz_arena *) + sizeof(size_t) * 3 +
                             sizeof(unsigned) + 2);
    struct slab *s = calloc(1, bytes);
    if (s == NULL)
        return NULL;
    char *at = (char *)(s + 1);
    s->canary = (uint64_t *)(void *)at;
    at += 2 * nslots * sizeof(uint64_t);
    s->owner = (zz_arena **)(void *)at;
    at += nslots * sizeof(zz_arena *);
    s->free_stack = (size_t *)(void *)at;
    at += nslots * sizeof(size_t);
    s->size_plus1 = (_Atomic size_t *)(void *)at;
    at += nslots * sizeof(size_t);
    s->span = (_Atomic size_t *)(void *)at;
    at += nslots * sizeof(size_t);
    s->epoch = (unsigned *)(void *)at;
    at += nslots * sizeof(unsigned);
    s->prot = (_Atomic unsigned char *)(void *)at;
    at += nslots;
    s->align_shift = (unsigned char *)at;
    return s;
}

/* pre: global lock held.  A new slab of nslots slots of slot_pages pages,
 * registered, every slot free. */
static struct slab *slab_create(size_t slot_pages, size_t nslots, int cls, int backend)
{
    struct slab *s = slab_struct_new(nslots);
    if (s == NULL) {
        zzi_fail(ZZI_FAIL_NOMEM);
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
    s->nslots = s->nfree = nslots;
    s->cls = cls;
    s->table = backend;
    for (size_t i = 0; i < nslots; i++) {
        s->free_stack[i] = nslots - 1 - i; /* hand out low addresses first */
        atomic_init(&s->prot[i], ZZ_READWRITE);
        ZZ_VG_NOACCESS((void *)slot_data(s, i), s->data_len);
    }
    if (zzi_registry_add(&s->region) != 0) {
        zzi_pages_unmap_slab(&s->region.map);
        free(s);
        zzi_fail(ZZI_FAIL_NOMEM);
        return NULL;
    }
    return s;
}

/* pre: global lock held; every slot free (and so already wiped). */
static void slab_destroy(struct slab *s)
{
    zzi_registry_remove(&s->region);
    zzi_pages_unmap_slab(&s->region.map);
    free(s);
}

static void avail_push(struct size_class *c, struct slab *s)
{
    s->prev = NULL;
    s->next = c->avail;
    if (c->avail)
        c->avail->prev = s;
    c->avail = s;
}

static void avail_remove(struct size_class *c, struct slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->avail = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* pre: global lock held; s is an empty slab of class c.  Takes it out of the
 * class and unmaps it. */
static void unmap_empty_slab(struct size_class *c, struct slab *s)
{
    avail_remove(c, s);
    c->empty_slabs--;
    c->total_slots -= s->nslots;
    slab_destroy(s);
}

/* 1 if err from mapping or locking could be cured by giving memory back (the
 * lock limit, the map count, memory): not for a missing or refused feature. */
static int short_of_memory(int err)
{
    return err == ENOMEM || err == EAGAIN;
}

/* pre: global lock held.  Unmaps every empty slab of every class, giving the
 * caches' locked memory back.  Called when a new mapping cannot be made or
 * locked: memory cached for one size must never make an allocation of
 * another size fail.  Returns 1 if anything was unmapped. */
static int drop_cached_slabs(void)
{
    int dropped = 0;
    for (int t = 0; t < 2; t++) {
        for (int k = 1; k <= MAX_CLASS_PAGES; k++) {
            struct size_class *c = &classes[t][k];
            struct slab *next;
            for (struct slab *s = c->avail; s != NULL; s = next) {
                next = s->next;
                if (s->nfree != s->nslots)
                    continue;
                unmap_empty_slab(c, s);
                dropped = 1;
            }
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

#ifdef ZZ_FAULT_INJECTION
/* Test-only: lets a fault test start with no cached slab, so that a failure
 * it injects is not retried after dropping caches. */
ZZ_API void zzi_fault_drop_caches(void)
{
    zzi_block_drop_caches(ENOMEM);
}
#endif

/* pre: global lock held.  A slab of class cls with a free slot, growing the
 * class geometrically; when the kernel refuses, drops the caches of empty
 * slabs and tries again, then halves the new slab (so an unprivileged process
 * uses all of its RLIMIT_MEMLOCK). */
static struct slab *class_slab_with_room(int cls, int backend)
{
    struct size_class *c = &classes[backend][cls];
    if (c->avail != NULL)
        return c->avail;
    size_t stride = (size_t)(cls + 1) * zzi_page();
    size_t cap = SLAB_MAX_BYTES / stride ? SLAB_MAX_BYTES / stride : 1;
    size_t want = c->total_slots > SLAB_MIN_SLOTS ? c->total_slots : SLAB_MIN_SLOTS;
    size_t nslots = want < cap ? want : cap;
    for (;;) {
        struct slab *s = slab_create((size_t)cls, nslots, cls, backend);
        if (s != NULL) {
            c->total_slots += nslots;
            c->empty_slabs++;
            avail_push(c, s);
            return s;
        }
        int e = errno;
        if (short_of_memory(e) && drop_cached_slabs()) {
            errno = e;
            continue;
        }
        if (nslots == 1)
            return NULL;
        nslots /= 2;
    }
}

/* ---- allocation ------------------------------------------------------------- */

static size_t pages_for(size_t span)
{
    size_t page = zzi_page();
    return span == 0 ? 1 : (span + page - 1) / page;
}

/* pre: global lock held.  Takes s out of service: its live blocks stay valid,
 * but it hands out no new ones. */
static void retire(struct size_class *c, struct slab *s)
{
    avail_remove(c, s);
    if (s->nfree == s->nslots)
        c->empty_slabs--;
    c->total_slots -= s->nslots;
    c->live_slots -= s->nslots - s->nfree;
    s->retired = 1;
    if (s->nfree == s->nslots)
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

/* pre: global lock held.  Takes a free slot for a block of span bytes;
 * own_mapping: in a slab of its own (an arena's large block, so that the
 * arena's teardown gives all of its memory back). */
static struct slab *take_slot_on(size_t span, size_t *idx, int backend, int own_mapping)
{
    size_t pages = pages_for(span);
    struct slab *s;
    if (pages <= MAX_CLASS_PAGES && !own_mapping) {
        struct size_class *c = &classes[backend][pages];
        for (;;) {
            s = class_slab_with_room((int)pages, backend);
            if (s == NULL || zzi_pages_refresh_after_fork(&s->region.map) != 0)
                return NULL;
            if (slab_fit_for_policy(s, backend))
                break;
            retire(c, s);
        }
        if (s->nfree == s->nslots)
            c->empty_slabs--;
        if (s->nfree == 1)
            avail_remove(c, s);
        c->live_slots++;
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

/* Under ZZ_BACKEND_AUTO, a kernel without memfd_secret means anon. */
static struct slab *take_slot(size_t span, size_t *idx, int requested, int own_mapping)
{
    int backend = zzi_policy_resolve(requested);
    struct slab *s = take_slot_on(span, idx, backend, own_mapping);
    if (s == NULL && backend == ZZ_BACKEND_SECRETMEM && requested == ZZ_BACKEND_AUTO &&
        zzi_pages_secretmem_refused(errno)) {
        zzi_policy_secretmem_unavailable();
        s = take_slot_on(span, idx, ZZ_BACKEND_ANON, own_mapping);
    }
    return s;
}

static void *alloc_impl(size_t n, size_t align, int backend, zz_arena *owner)
{
    if (zzi_init() != 0)
        return NULL;
    zzi_check_fork();
    if (n > SIZE_MAX - align - 2 * zzi_page()) {
        zzi_fail(ZZI_FAIL_NOMEM);
        errno = ENOMEM;
        return NULL;
    }
    size_t span = (n + align - 1) & ~(align - 1), i;
    zzi_global_lock();
    struct slab *s = take_slot(span, &i, backend, owner != NULL);
    if (s == NULL) {
        int e = errno;
        zzi_global_unlock();
        errno = e;
        return NULL;
    }
    atomic_store_explicit(&s->span[i], span, memory_order_relaxed);
    s->align_shift[i] = (unsigned char)__builtin_ctzl(align);
    s->owner[i] = owner;
    atomic_store_explicit(&s->size_plus1[i], n + 1, memory_order_release);
    zzi_count(&live_blocks, 1);
    zzi_count(&live_bytes, n);
    zzi_global_unlock();

    /* The epoch is read before the canaries are written: a purge that wipes
     * them after this point changes the epoch, so zz_free will know. */
    s->epoch[i] = zzi_epoch_stable();
    unsigned char *p = block_at(s, i, span);
    size_t head = head_len(s, span);
    ZZ_VG_DEFINED(p - head, head + span);
    /* A free slot is all zeros (zz_free wiped it); anything else was written
     * through a stale pointer, and handing it out would break both the
     * zero-fill promise and the secrecy of whatever was written. */
    ZZ_CHECK(zz_is_zero(p - head, head + span), "write after free (a freed block was modified)");
    if (head != 0) /* p is 16-byte aligned: the head canary is one aligned chunk */
        zzi_canary16_write(p - head, s->canary[2 * i]);
    if (n < span && span - n <= 16) /* the usual tail: inside the last aligned chunk */
        zzi_canary16_tail_write(p + span - 16, (unsigned)(n + 16 - span), s->canary[2 * i + 1]);
    else
        zzi_canary_fill(p + n, span - n, s->canary[2 * i + 1]);
    ZZ_VG_NOACCESS(p - head, head + span);
    ZZ_VG_MALLOCLIKE(p, n);
    return p;
}

ZZ_API void *zz_alloc(size_t n)
{
    return alloc_impl(n, ZZ_ALIGN, zz_get_backend(), NULL);
}

void *zzi_block_alloc_for_arena(size_t n, int backend, zz_arena *owner)
{
    return alloc_impl(n, ZZ_ALIGN, backend, owner);
}

ZZ_API void *zz_alloc_backend(size_t n, int backend)
{
    if (backend != ZZ_BACKEND_ANON && backend != ZZ_BACKEND_SECRETMEM &&
        backend != ZZ_BACKEND_AUTO) {
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EINVAL;
        return NULL;
    }
    return alloc_impl(n, ZZ_ALIGN, backend, NULL);
}

ZZ_API void *zz_alloc_aligned(size_t n, size_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 ||
        alignment > zzi_page()) {
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EINVAL;
        return NULL;
    }
    return alloc_impl(n, alignment < ZZ_ALIGN ? ZZ_ALIGN : alignment, zz_get_backend(), NULL);
}

/* ---- finding a block ---------------------------------------------------------- */

/* What the caller does with the block, for the message when it was freed. */
#define FREEING "double free"
#define USING "use after free (the block was already freed)"

/* Any owner (zz_size, zz_info), or exactly this one (NULL: a zz_alloc block). */
#define ANY_OWNER ((const zz_arena *)1)

/* pre: global lock held.  The slab and slot of live block p, a block of
 * `owner`; fatal when p is not a live block's start (freed_msg when it is a
 * freed one) or belongs to another owner (an arena block given to zz_free,
 * or the other way round: "invalid pointer"). */
static struct slab *find_live(const void *p, size_t *idx, const char *freed_msg,
                              const zz_arena *owner)
{
    uintptr_t a = (uintptr_t)p;
    struct zzi_region *r = zzi_registry_find(a);
    ZZ_CHECK(r != NULL || !was_unmapped_block(a), freed_msg);
    ZZ_CHECK(r != NULL && r->kind == ZZI_REGION_SLAB, "invalid pointer");
    struct slab *s = r->owner;
    size_t page = zzi_page(), off = a - s->region.map.base;
    ZZ_CHECK(off >= page, "invalid pointer");
    size_t i = (off - page) / s->stride;
    ZZ_CHECK(i < s->nslots, "invalid pointer");
    size_t state = atomic_load_explicit(&s->size_plus1[i], memory_order_relaxed);
    ZZ_CHECK(state != SLOT_UNUSED, "invalid pointer"); /* never handed out */
    size_t span = atomic_load_explicit(&s->span[i], memory_order_relaxed);
    ZZ_CHECK(a == (uintptr_t)block_at(s, i, span), "invalid pointer");
    ZZ_CHECK(state != SLOT_FREED, freed_msg);
    ZZ_CHECK(owner == ANY_OWNER || s->owner[i] == owner, "invalid pointer");
    *idx = i;
    return s;
}

/* ---- protection changes, safe against a concurrent zz_purge ----------------
 * zz_purge makes a protected block writable, wipes it and restores its mode;
 * a mode change running at the same time could make the purge fault or leave
 * the pages in the wrong mode.  A change (one at a time: the global lock)
 * publishes which slot it changes and goes through two stages:
 *   WAITING:    it does not touch the pages until no purge runs;
 *   COMMITTING: it saw no purge after entering this stage (so any purge that
 *               starts now sees the stage) and is calling mprotect.
 * A purge treats a slot being changed in the WAITING stage as settled in its
 * old mode.  In the COMMITTING stage: if the change belongs to the thread the
 * purge interrupted, the purge wipes and leaves the new mode; otherwise it
 * skips the block (waiting could deadlock: that thread may be stopped in a
 * signal handler that waits for this purge to end). */
enum { CHANGE_IDLE, CHANGE_WAITING, CHANGE_COMMITTING };

static ZZ_TLS_SIGNAL_SAFE char thread_tag; /* its address tells threads apart */
static _Atomic int change_stage;
static _Atomic(struct slab *) change_slab;
static _Atomic size_t change_index;
static _Atomic int change_target;
static _Atomic uintptr_t change_owner;

/* pre: global lock held. */
static int change_protection(struct slab *s, size_t i, int mode)
{
    atomic_store(&change_slab, s);
    atomic_store(&change_index, i);
    atomic_store(&change_target, mode);
    atomic_store(&change_owner, (uintptr_t)&thread_tag);
    for (;;) {
        atomic_store(&change_stage, CHANGE_COMMITTING);
        if (atomic_load(&zzi_purgers) == 0)
            break;
        atomic_store(&change_stage, CHANGE_WAITING);
        while (atomic_load(&zzi_purgers) != 0)
            zzi_os_yield();
    }
    int rc = zzi_os_protect((void *)slot_data(s, i), s->data_len, mode);
    int e = errno;
    if (rc == 0)
        atomic_store(&s->prot[i], (unsigned char)mode);
    atomic_store(&change_stage, CHANGE_IDLE);
    atomic_store(&change_slab, NULL);
    errno = e;
    return rc;
}

static int committing(const struct slab *s, size_t i)
{
    return atomic_load(&change_stage) == CHANGE_COMMITTING && atomic_load(&change_slab) == s &&
           atomic_load(&change_index) == i;
}

/* For a purge: the mode slot i must be left in, *unsure set when its pages
 * may be in another mode right now; or -1 to skip the slot. */
static int mode_for_purge(const struct slab *s, size_t i, int *unsure)
{
    *unsure = 0;
    if (!committing(s, i))
        return atomic_load(&s->prot[i]);
    if (atomic_load(&change_owner) == (uintptr_t)&thread_tag) {
        *unsure = 1; /* our own change, suspended under us: before or after mprotect */
        return atomic_load(&change_target);
    }
    return -1; /* mid-mprotect in another thread (which may be stopped in a
                  signal handler waiting for this purge): skip it */
}

/* ---- freeing ------------------------------------------------------------------- */

/* 1 if the canary bytes at [p, p+n) are word w, or were zeroed (wholly or,
 * when the purge raced with their writing, in part) by a purge or a fork that
 * happened since the block was made (block_epoch != now). */
static int canary_acceptable(const unsigned char *p, size_t n, uint64_t w, unsigned block_epoch,
                             unsigned now)
{
    return zzi_canary_check(p, n, w) || (block_epoch != now && zzi_canary_check_or_zero(p, n, w));
}

static void check_canaries(const struct slab *s, size_t i, const unsigned char *p, size_t n,
                           size_t span)
{
    size_t head = head_len(s, span);
    for (;;) {
        unsigned e = zzi_epoch_stable();
        int head_ok = canary_acceptable(p - head, head, s->canary[2 * i], s->epoch[i], e);
        int tail_ok = canary_acceptable(p + n, span - n, s->canary[2 * i + 1], s->epoch[i], e);
        if (!zzi_epoch_unchanged(e))
            continue; /* a purge ran while we looked: look again */
        ZZ_CHECK(head_ok, "canary corrupted (before block)");
        ZZ_CHECK(tail_ok, "canary corrupted (after block)");
        return;
    }
}

/* Would the class still cache at least its bound of free bytes without s? */
static int cache_would_stay_full(const struct size_class *c, const struct slab *s)
{
    size_t free_bytes = (c->total_slots - c->live_slots) * s->stride;
    size_t keep = c->live_slots * s->stride;
    if (keep < CACHE_MIN_BYTES)
        keep = CACHE_MIN_BYTES;
    return free_bytes >= s->region.map.len && free_bytes - s->region.map.len >= keep;
}

/* pre: global lock held; the class has no live block left.  Unmaps its empty
 * slabs beyond the cache bound now, in the free that emptied the class, not
 * one by one in later unrelated calls: slabs emptied early in a long run of
 * frees were kept while many blocks were still live, and unmapping a big
 * slab can take milliseconds (secretmem pages go back into the kernel's
 * direct map, one TLB flush each). */
static void trim_idle_class(struct size_class *c)
{
    struct slab *next;
    for (struct slab *t = c->avail; t != NULL && c->empty_slabs > 1; t = next) {
        next = t->next;
        if (t->nfree == t->nslots && cache_would_stay_full(c, t))
            unmap_empty_slab(c, t);
    }
}

/* pre: global lock held; slot i is now free and wiped; p was its block. */
static void release_slot(struct slab *s, size_t i, uintptr_t p)
{
    s->free_stack[s->nfree++] = i;
    if (s->cls == 0 || (s->retired && s->nfree == s->nslots)) {
        remember_unmapped_block(p);
        slab_destroy(s);
        return;
    }
    if (s->retired)
        return;
    struct size_class *c = &classes[s->table][s->cls];
    c->live_slots--;
    /* the slab of the slot freed last goes first, so that freed slots come
     * back last-in, first-out across the class (as zeroize.h promises: a
     * write after free is then found by the very next allocation) */
    if (s->nfree == 1) {
        avail_push(c, s);
    } else if (c->avail != s) {
        avail_remove(c, s);
        avail_push(c, s);
    }
    if (s->nfree == s->nslots && ++c->empty_slabs > 1 && cache_would_stay_full(c, s)) {
        remember_unmapped_block(p);
        unmap_empty_slab(c, s);
    }
    if (c->live_slots == 0 && c->empty_slabs > 1)
        trim_idle_class(c);
}

static void free_impl(void *p, const zz_arena *owner)
{
    int saved = errno;
    zzi_check_fork();
    zzi_global_lock();
    size_t i;
    struct slab *s = find_live(p, &i, FREEING, owner);
    size_t n = atomic_load_explicit(&s->size_plus1[i], memory_order_relaxed) - 1;
    size_t span = atomic_load_explicit(&s->span[i], memory_order_relaxed);
    if (atomic_load_explicit(&s->prot[i], memory_order_relaxed) != ZZ_READWRITE)
        ZZ_CHECK(change_protection(s, i, ZZ_READWRITE) == 0,
                 "cannot restore write access to a block being freed (mprotect failed)");
    unsigned char *b = p;
    size_t head = head_len(s, span);
    ZZ_VG_FREELIKE(b);
    ZZ_VG_DEFINED(b - head, head + span);
    check_canaries(s, i, b, n, span);
    zz_wipe(b - head, head + span);
    ZZ_VG_NOACCESS(b - head, head + span);
    atomic_store_explicit(&s->size_plus1[i], SLOT_FREED, memory_order_release);
    s->owner[i] = NULL;
    release_slot(s, i, (uintptr_t)p);
    zzi_count(&live_blocks, (size_t)-1);
    zzi_count(&live_bytes, 0 - n);
    zzi_global_unlock();
    errno = saved;
}

ZZ_API void zz_free(void *p)
{
    if (p != NULL)
        free_impl(p, NULL);
}

void zzi_block_free_for_arena(void *p, zz_arena *owner)
{
    free_impl(p, owner);
}

struct owned_walk {
    const zz_arena *owner;
    void *found;
};

static int find_one_owned(struct zzi_region *r, void *ctx)
{
    struct owned_walk *w = ctx;
    if (r->kind != ZZI_REGION_SLAB)
        return 0;
    const struct slab *s = r->owner;
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->owner[i] == w->owner &&
            slot_live(atomic_load_explicit(&s->size_plus1[i], memory_order_relaxed))) {
            w->found = block_at(s, i, atomic_load_explicit(&s->span[i], memory_order_relaxed));
            return 1;
        }
    }
    return 0;
}

struct owned_stats {
    const zz_arena *owner;
    zz_stats *out;
};

/* An arena's large blocks are one-slot slabs (take_slot_on, own_mapping). */
static int add_owned(struct zzi_region *r, void *ctx)
{
    struct owned_stats *w = ctx;
    const struct slab *s = r->owner;
    if (r->kind != ZZI_REGION_SLAB || s->nslots != 1 || s->owner[0] != w->owner)
        return 0;
    size_t sp1 = atomic_load_explicit(&s->size_plus1[0], memory_order_relaxed);
    if (!slot_live(sp1))
        return 0;
    w->out->live_blocks++;
    w->out->live_bytes += sp1 - 1;
    w->out->mapped_bytes += s->region.map.len;
    w->out->locked_bytes += s->region.map.locked_len;
    return 0;
}

void zzi_block_add_owned_stats(const zz_arena *owner, zz_stats *out)
{
    struct owned_stats w = {owner, out};
    zzi_global_lock();
    zzi_registry_each(add_owned, &w);
    zzi_global_unlock();
}

/* Arena teardown is rare and an arena's large blocks few: one registry walk
 * per block keeps this free of allocation. */
void zzi_block_free_all_for_arena(zz_arena *owner)
{
    for (;;) {
        struct owned_walk w = {owner, NULL};
        zzi_global_lock();
        zzi_registry_each(find_one_owned, &w);
        zzi_global_unlock();
        if (w.found == NULL)
            return;
        free_impl(w.found, owner);
    }
}

/* ---- queries and modes ---------------------------------------------------------- */

ZZ_API size_t zz_size(const void *p)
{
    if (p == NULL)
        return 0;
    size_t i;
    zzi_check_fork();
    zzi_global_lock();
    struct slab *s = find_live(p, &i, USING, ANY_OWNER);
    size_t n = atomic_load_explicit(&s->size_plus1[i], memory_order_relaxed) - 1;
    zzi_global_unlock();
    return n;
}

ZZ_API unsigned zz_info(const void *p)
{
    if (p == NULL)
        return 0;
    zzi_check_fork();
    zzi_global_lock();
    struct zzi_region *r = zzi_registry_find((uintptr_t)p);
    if (r != NULL && r->kind == ZZI_REGION_ARENA) {
        zzi_global_unlock(); /* a fixed arena's lookup takes its lock, which comes first */
        return zzi_arena_info(r, (uintptr_t)p);
    }
    size_t i;
    struct slab *s = find_live(p, &i, USING, ANY_OWNER);
    unsigned info = s->region.map.info | ZZ_INFO_CANARY;
    zzi_global_unlock();
    return info;
}

ZZ_API int zz_protect(void *p, int mode)
{
    if (mode != ZZ_NOACCESS && mode != ZZ_READONLY && mode != ZZ_READWRITE) {
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    zzi_check_fork();
    zzi_global_lock();
    struct zzi_region *r = zzi_registry_find((uintptr_t)p);
    if (r != NULL && r->kind == ZZI_REGION_ARENA) {
        zzi_global_unlock();
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    size_t i;
    struct slab *s = find_live(p, &i, USING, ANY_OWNER);
    if (s->owner[i] != NULL) { /* an arena's large block: arena blocks keep their mode */
        zzi_global_unlock();
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    int rc = change_protection(s, i, mode);
    if (rc != 0)
        zzi_fail(ZZI_FAIL_MAPCOUNT);
    int e = errno;
    zzi_global_unlock();
    errno = e;
    return rc;
}

/* The new block keeps the old one's backend (the table it was asked from: a
 * secretmem block stays in secretmem whatever the process-wide choice) and
 * alignment. */
ZZ_API void *zz_realloc(void *p, size_t n)
{
    if (p == NULL)
        return zz_alloc(n);
    size_t i, old_n, align;
    int backend;
    zzi_check_fork();
    zzi_global_lock();
    struct slab *s = find_live(p, &i, FREEING, NULL); /* realloc frees p */
    old_n = atomic_load_explicit(&s->size_plus1[i], memory_order_relaxed) - 1;
    int readable = atomic_load_explicit(&s->prot[i], memory_order_relaxed) != ZZ_NOACCESS;
    backend = s->table;
    align = (size_t)1 << s->align_shift[i];
    zzi_global_unlock();
    if (!readable) {
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EACCES;
        return NULL;
    }
    void *q = alloc_impl(n, align, backend, NULL);
    if (q == NULL)
        return NULL;
    zzi_copy_secret(q, p, old_n < n ? old_n : n);
    zz_free(p);
    return q;
}

/* ---- purge and fork ---------------------------------------------------------------- */

void zzi_block_purge_region(struct zzi_region *r, int nested)
{
    struct slab *s = r->owner;
    for (size_t i = 0; i < s->nslots; i++) {
        if (!slot_live(atomic_load_explicit(&s->size_plus1[i], memory_order_acquire)))
            continue;
        size_t span = atomic_load_explicit(&s->span[i], memory_order_relaxed);
        if (span > s->data_len)
            continue; /* being reassigned right now */
        uintptr_t data = slot_data(s, i);
        unsigned char *start = block_at(s, i, span) - head_len(s, span);
        int unsure, mode = mode_for_purge(s, i, &unsure);
        if (mode < 0)
            continue; /* another thread is changing its mode right now */
        if (nested && (mode != ZZ_READWRITE || unsure))
            continue; /* the purge we interrupted owns protection changes */
        if ((mode != ZZ_READWRITE || unsure) &&
            zzi_os_protect((void *)data, s->data_len, ZZ_READWRITE) != 0)
            continue;
        zzi_purge_wipe(start, (size_t)(data + s->data_len - (uintptr_t)start));
        if (mode != ZZ_READWRITE)
            zzi_os_protect((void *)data, s->data_len, mode);
    }
}

ZZ_API void zz_get_stats(zz_stats *out)
{
    zzi_check_fork();
    out->live_blocks = atomic_load_explicit(&live_blocks, memory_order_relaxed);
    out->live_bytes = atomic_load_explicit(&live_bytes, memory_order_relaxed);
    zzi_arena_count_live(&out->live_blocks, &out->live_bytes);
    out->locked_bytes = atomic_load(&zzi_counters.locked_bytes) + zzi_lockref_locked_bytes();
    out->mapped_bytes = atomic_load(&zzi_counters.mapped_bytes);
}
