/*
 * internal.h - what the library's files share and nothing else: the export
 * macro, the fatal-check macro, the OS layer's contract and the internal
 * prototypes of each module.  Never installed.
 *
 * Names.  Public names start zz_ / ZZ_ (zeroize.h); every name shared between
 * files inside the library starts zzi_ / ZZI_, whatever its module.
 *
 * Layers.  A file calls only into its own layer or the ones below it, and
 * the modules form no cycle (tools/check_layers.py checks both on the object
 * files, as the ctest src_layers).  Lowest first:
 *   1. base:      fatal.c, memcheck.c, wipe.c
 *   2. OS:        os_posix.c, the only file that makes system calls
 *   3. policy:    policy.c (lock policy, backend, last error), canary.c
 *   4. pages, registry, lifecycle:
 *                 pages.c (guarded, locked mappings; the counters),
 *                 registry.c (address index, purge list and the purge
 *                 protocol, global lock), lifecycle.c (initialisation, fork
 *                 handlers, recovery from a fork that ran none)
 *   5. zz_alloc blocks and caller-owned memory:
 *                 slab.c, block_cache.c (the free-slot cache's bound),
 *                 block_tcache.c (per-thread caches of free slots),
 *                 block.c, block_modes.c (one module: block.h),
 *                 lockref.c
 *   6. arenas:    arena.c, arena_grow.c, arena_fixed.c, arena_cache.c (one
 *                 module: arena.h); a growable arena's large blocks are
 *                 zz_alloc blocks
 *   7. process-wide: purge.c (zz_purge walks the purge list and dispatches by
 *                 region kind), signals.c, process.c (zz_get_stats, zz_info)
 * Above all of them, as a library of its own: src/shield/ (libzeroize-shield)
 * calls only the public API, never a zzi_ function (ctest
 * shield_public_api_only); its lock order is in src/shield/shield.h.
 * Lower layers reach upper ones only through hooks the upper ones register:
 * the fork handlers (lifecycle.c) run what signals.c, the arenas, the thread caches and
 * lockref.c registered with zzi_fork_register.
 *
 * Lock order (take them in this order, never back): lifecycle's fork-hook
 * lock, signals.c's rewrite lock, the arena list lock (zzi_arenas_lock), each
 * arena's lock, lockref.c's lock, the global lock.  The fork handlers take
 * all of them in that order before fork and release them after; zz_purge
 * takes none (it announces itself with zzi_purge_begin instead).
 */
#ifndef ZZ_INTERNAL_H
#define ZZ_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "zeroize.h"

#define ZZ_API ZZ_EXPORT
#define zz_likely(x) __builtin_expect(!!(x), 1)
#define zz_unlikely(x) __builtin_expect(!!(x), 0)

/* Misuse, corruption and impossible OS errors.  Always compiled in: a
 * security check that NDEBUG could remove is not a check. */
#define ZZ_CHECK(cond, msg)                                                  \
    do {                                                                     \
        if (zz_unlikely(!(cond)))                                            \
            zzi_fatal(msg);                                                  \
    } while (0)

_Static_assert(sizeof(void *) == sizeof(uintptr_t), "flat address space");
_Static_assert(ZZ_NOACCESS != ZZ_READONLY && ZZ_READONLY != ZZ_READWRITE,
               "distinct protection modes");

/* Every block starts on a 16-byte boundary and canaries come in 16s. */
#define ZZ_ALIGN 16u
#define ZZ_CANARY_LEN 16u

/* ---- fatal.c ---------------------------------------------------------- */
/* Writes "zeroize: <msg>\n" to stderr with write(2) and aborts.  Uses no
 * stdio, no malloc, no lock: safe after corruption and in signal handlers. */
_Noreturn void zzi_fatal(const char *msg);

/* ---- os_posix.c: the only file that makes system calls ----------------- */
/* Each returns 0 (or a pointer) on success and -1 (or NULL) with errno set;
 * errors that can only mean a bug in this library are fatal.  All preserve
 * nothing but errno's meaning; callers decide policy. */
size_t zzi_os_page_size(void);
extern size_t zzi_page_size_cache; /* 0 until zzi_os_page_size() first ran */
static inline size_t zzi_page(void)
{
    size_t p = zzi_page_size_cache;
    return zz_likely(p != 0) ? p : zzi_os_page_size();
}
void *zzi_os_map(size_t len);                        /* anonymous, named "zeroize" where the kernel can */
void zzi_os_unmap(void *p, size_t len);              /* fatal on failure */
int zzi_os_protect(void *p, size_t len, int zz_mode); /* ZZ_NOACCESS.. */
int zzi_os_guard_install(void *p, size_t len);       /* MADV_GUARD_INSTALL */
int zzi_os_dontdump(void *p, size_t len);
int zzi_os_dodump(void *p, size_t len);
int zzi_os_wipeonfork(void *p, size_t len);
int zzi_os_lock_onfault(void *p, size_t len);        /* mlock2 ONFAULT */
int zzi_os_lock(void *p, size_t len);                /* mlock, populating */
int zzi_os_unlock(void *p, size_t len);
int zzi_os_random(void *buf, size_t len);            /* getrandom, whole */
void *zzi_os_map_secretmem(size_t len);              /* memfd_secret, fd closed */
int zzi_os_dontfork(void *p, size_t len);
int zzi_os_remap_zero(void *p, size_t len);          /* fresh anon pages, MAP_FIXED */
const char *zzi_os_getenv(const char *name);         /* secure_getenv */
int zzi_os_sigaction(int sig, const void *act, void *old);
int zzi_os_sigmask(int how, const void *set, void *old); /* pthread_sigmask */
/* Delivers sig with its default action (the process dies if that is what
 * the default does), leaving the disposition SIG_DFL. */
int zzi_os_raise_default(int sig);
int zzi_os_set_core_limit_zero(void);
int zzi_os_set_nondumpable(void);
void zzi_os_yield(void);
uint64_t zzi_os_now_ms(void);                       /* monotonic, coarse */
/* One mapping of the calling process, as /proc/self/smaps describes it. */
#define ZZI_VMA_LOCKED 0x1u   /* VmFlags "lo": mlock'ed (mlock, mlock2, mlockall) */
#define ZZI_VMA_DONTDUMP 0x2u /* VmFlags "dd": left out of core dumps            */
struct zzi_vma {
    uintptr_t start, end;
    unsigned flags;
};
/* Calls fn for each mapping that intersects [start, end), in address order,
 * until fn returns non-zero (which is returned).  Reads /proc/self/smaps and
 * stops at the first mapping past end: slow (the kernel counts each
 * mapping's resident pages), for the rare paths only.  Returns 0, or -1
 * with errno when smaps cannot be read. */
int zzi_os_each_vma(uintptr_t start, uintptr_t end,
                    int (*fn)(const struct zzi_vma *v, void *ctx), void *ctx);
size_t zzi_os_physical_memory(void);
size_t zzi_os_memlock_limit(void);
size_t zzi_os_max_map_count(void);

#ifdef ZZ_FAULT_INJECTION
/* Test-only: make the nth call (1-based) of the named OS operation fail with
 * err, once.  Names: "map", "protect", "guard", "dontdump", "wipeonfork",
 * "lock", "random".  nth == 0 clears; nth == ZZI_FAULT_EVERY fails every
 * call until cleared (so that a path which retries smaller sizes fails). */
#define ZZI_FAULT_EVERY 0xffffffffu
ZZ_API void zzi_fault_inject(const char *op, unsigned nth, int err);
/* Test-only: fn(op) runs each time an injected fault fires, just before the
 * operation fails: a test makes another thread's step happen at exactly
 * that point (a policy switch in the middle of a mapping).  NULL clears. */
ZZ_API void zzi_fault_on_inject(void (*fn)(const char *op));
/* Test-only: unmaps zz_alloc's cached empty slabs (slab.c). */
ZZ_API void zzi_fault_drop_caches(void);
#endif

/* ---- locks ----------------------------------------------------------------
 * The allocation fast paths hold their lock for tens of nanoseconds; a
 * test-and-test-and-set lock costs one atomic exchange where a pthread mutex
 * costs two locked instructions plus a call.  Waiters spin briefly, then
 * yield the CPU (the holder may be making a system call to map a slab). */
typedef struct {
    _Atomic int held;
} zzi_lock_t;
#define ZZI_LOCK_INIT {0}

static inline void zzi_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The contended path (registry.c): fatal when the calling thread is a
 * program's atfork handler inside the library's fork window (it would wait
 * for itself). */
void zzi_lock_wait(zzi_lock_t *l);
static inline void zzi_lock(zzi_lock_t *l)
{
    if (zz_likely(!atomic_exchange_explicit(&l->held, 1, memory_order_acquire)))
        return;
    zzi_lock_wait(l);
}
/* pthread_mutex_lock with the same check on its contended path. */
void zzi_mutex_lock(pthread_mutex_t *m);
/* The fork handlers mark the window in which they hold every library lock
 * (zzi_fork_window_set, lifecycle.c); zzi_fork_window_check is fatal inside
 * it: "called from an atfork handler during fork". */
void zzi_fork_window_set(int in);
void zzi_fork_window_check(void);

static inline void zzi_unlock(zzi_lock_t *l)
{
    atomic_store_explicit(&l->held, 0, memory_order_release);
}

/* ---- doubly-linked lists ---------------------------------------------------
 * Lists threaded through two pointer fields of the node (prev and next, by
 * name: the node types differ).  Push puts node at the head; unlink takes it
 * out from anywhere and clears its links. */
#define ZZI_LIST_PUSH(head, node, prev, next)                                \
    do {                                                                     \
        (node)->prev = NULL;                                                 \
        (node)->next = (head);                                               \
        if ((head) != NULL)                                                  \
            (head)->prev = (node);                                           \
        (head) = (node);                                                     \
    } while (0)
#define ZZI_LIST_UNLINK(head, node, prev, next)                              \
    do {                                                                     \
        if ((node)->prev != NULL)                                            \
            (node)->prev->next = (node)->next;                               \
        else                                                                 \
            (head) = (node)->next;                                           \
        if ((node)->next != NULL)                                            \
            (node)->next->prev = (node)->prev;                               \
        (node)->prev = (node)->next = NULL;                                  \
    } while (0)

/* ---- policy.c ---------------------------------------------------------- */
/* The failure codes are the public enum zz_error (zeroize.h). */
typedef enum zz_error zzi_failure_t;
/* Records why the calling thread's current call fails, as pending: an
 * internal attempt that fails and is retried with success (a slab mapped again
 * once the caches gave way, ZZ_BACKEND_AUTO falling back to anon) must not
 * change what zz_last_error says.  The public entry point publishes it when
 * it returns failure (zzi_api_ptr, zzi_api_rc). */
void zzi_fail(zzi_failure_t why);
/* ZZ_ERR_UNMAPPED, naming the first unmapped range [start, end). */
void zzi_fail_unmapped(uintptr_t start, uintptr_t end);
/* Makes the pending failure the thread's last one (zz_last_error).  Changes
 * nothing when no failure is pending.  Preserves errno. */
void zzi_fail_publish(void);
/* What a public entry point returns: r, the failure published when r is the
 * failure value (NULL; -1).  Every ZZ_API function that can fail returns
 * through one of these, and only on failure does the thread's last error
 * change: a successful call never changes zz_last_error_code. */
static inline void *zzi_api_ptr(void *r)
{
    if (zz_unlikely(r == NULL))
        zzi_fail_publish();
    return r;
}
static inline int zzi_api_rc(int rc)
{
    if (zz_unlikely(rc != 0))
        zzi_fail_publish();
    return rc;
}
int zzi_policy_lock_required(void);
/* ZZ_BACKEND_ANON or ZZ_BACKEND_SECRETMEM for the next mapping (AUTO resolved:
 * secretmem if the kernel has it). */
int zzi_policy_backend(void);
/* The same for an explicitly requested backend.  Inline, with zz_get_backend's
 * usual case: zz_alloc's fast path asks both on every call. */
extern _Atomic int zzi_backend_choice; /* zz_set_backend's; -1 until read from the environment */
extern _Atomic int zzi_secretmem_unavailable;
static inline int zzi_policy_resolve(int backend)
{
    if (backend != ZZ_BACKEND_AUTO)
        return backend;
    return atomic_load(&zzi_secretmem_unavailable) ? ZZ_BACKEND_ANON : ZZ_BACKEND_SECRETMEM;
}
/* zz_get_backend(), inline once the environment was read. */
static inline int zzi_backend_setting(void)
{
    int b = atomic_load_explicit(&zzi_backend_choice, memory_order_relaxed);
    return zz_likely(b >= 0) ? b : zz_get_backend();
}
/* Records that memfd_secret failed, so AUTO stops trying it. */
void zzi_policy_secretmem_unavailable(void);

/* ---- wipe.c ------------------------------------------------------------ */
/* The compiler may not assume anything about memory at p after this. */
static inline void zzi_barrier(const void *p)
{
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* zz_purge's wipe of a block that another thread may be using at that
 * moment: the race is the documented behaviour (purge.c), so under
 * ThreadSanitizer the stores are made with an instruction it does not
 * instrument, instead of a memset it would report.  Elsewhere zz_wipe. */
#if defined(__SANITIZE_THREAD__) && defined(__x86_64__)
static inline void zzi_purge_wipe(void *p, size_t n)
{
    __asm__ __volatile__("rep stosb" : "+D"(p), "+c"(n) : "a"(0) : "memory");
}
#else
#define zzi_purge_wipe(p, n) zz_wipe((p), (n))
#endif

/* Copies n bytes through general-purpose registers only, at any alignment;
 * the ranges may overlap (as memmove).  memcpy moves data through vector
 * registers, which nothing else overwrites for a long time: a secret copied
 * that way turns up in core dumps (register notes) and on the stack (lazy
 * binding saves vector registers with XSAVE). */
void zzi_copy_secret(void *dst, const void *src, size_t n);

/* ---- pages.c: guarded, locked, dump-excluded runs of slots -------------- */
/* Changes in every forked child (WIPEONFORK zeroed all our pages there). */
extern _Atomic unsigned zzi_fork_generation;
/* A slab: nslots runs of slot_pages data pages, each between guard pages
 * (neighbours share a guard):  [G][data][G][data][G]...[data][G]          */
struct zzi_slab_map {
    uintptr_t base;     /* start of the mapping (the first guard page) */
    size_t len;         /* whole mapping, guard pages included          */
    size_t locked_len;  /* bytes counted against RLIMIT_MEMLOCK          */
    _Atomic unsigned info; /* ZZ_INFO_* actually obtained; atomic: zz_info reads it
                         * without the lock under which a chunk is locked later */
    size_t slot_pages, nslots;
    int backend;        /* ZZ_BACKEND_ANON or ZZ_BACKEND_SECRETMEM */
    int remapped;       /* zero pages mapped in a child: advice to redo */
    unsigned fork_gen;  /* zzi_fork_generation the protections were made in */
};
/* Maps and protects a slab.  pre: slot_pages >= 1, nslots >= 1.
 * Returns 0, or -1 with errno (nothing left mapped). */
int zzi_pages_map_slab(size_t slot_pages, size_t nslots, int backend,
                       struct zzi_slab_map *out);
/* In a forked child (one thread, from the fork handler): secretmem slabs were
 * not inherited (MADV_DONTFORK); maps zero pages in their place so the child
 * reads zeros there, and marks them for a refresh.  Async-signal-safe. */
void zzi_pages_replace_unforked(struct zzi_slab_map *m);
/* In a forked child, locks are not inherited and (with WIPEONFORK) guard
 * markers are not copied: makes them again, once per slab per child.
 * pre: the caller serialises calls for m.  Returns 0, or -1 with errno when
 * the lock policy forbids using the slab unlocked (m->info tells). */
int zzi_pages_refresh_slow(struct zzi_slab_map *m);
static inline int zzi_pages_refresh_after_fork(struct zzi_slab_map *m)
{
    if (zz_likely(m->fork_gen == atomic_load_explicit(&zzi_fork_generation, memory_order_relaxed)))
        return 0;
    return zzi_pages_refresh_slow(m);
}
/* Locks a slab mapped unlocked (under ZZ_LOCK_BEST_EFFORT) now that the
 * policy requires it, or now that there is room.  registered: m is in the
 * registry, and its bytes are added to zzi_counters.locked_bytes (else
 * zzi_registry_add counts them).  pre: the caller serialises calls for m.
 * Returns 0, or -1 with errno. */
int zzi_pages_try_lock(struct zzi_slab_map *m, int registered);
/* Changes whenever every region must be checked again before it hands out
 * memory: in a forked child, and when the lock policy becomes required. */
extern _Atomic unsigned zzi_checks_gen;
/* The AUTO backend's fallback, for every allocator: after mapping on backend
 * tried failed with err, for a request of backend requested: 1 if it must try
 * anonymous memory instead (requested AUTO, tried secretmem, and err says the
 * kernel does not offer it: recorded, so AUTO stops trying), else 0. */
int zzi_pages_fall_back_to_anon(int requested, int tried, int err);
/* Maps a slab on the backend zzi_policy_backend() picks, falling back from
 * secretmem to anon under ZZ_BACKEND_AUTO when the kernel lacks it. */
int zzi_pages_map_slab_auto(size_t slot_pages, size_t nslots, struct zzi_slab_map *out);
/* Unmaps a slab whose slots were all wiped.  Preserves errno. */
void zzi_pages_unmap_slab(const struct zzi_slab_map *m);
/* 1 when guards come from MADV_GUARD_INSTALL, 0 when from mprotect. */
int zzi_pages_uses_guard_install(void);

/* ---- registry.c: every live region, for lookup and for zz_purge ---------- */
enum zzi_region_kind { ZZI_REGION_SLAB = 1, ZZI_REGION_ARENA = 2 };

struct zzi_region {
    _Atomic(struct zzi_region *) next; /* registry list; purge reads it lock-free */
    enum zzi_region_kind kind;
    struct zzi_slab_map map;
    void *owner;                        /* the slab or arena chunk it describes */
};

/* The purge list's head (lock-free; follow r->next).  For zz_purge. */
struct zzi_region *zzi_registry_purge_list(void);
/* A purge announces itself before it reads the list and after it is done:
 * zzi_purge_begin waits for a purge running in another thread and returns
 * nested, 1 when this purge interrupted another one on the same thread (it
 * must then not change page protections: the interrupted purge is mid-way
 * through one; it wipes the blocks in ZZ_READWRITE mode and leaves the
 * others).  Async-signal-safe. */
int zzi_purge_begin(void);
void zzi_purge_end(int nested);
/* Called after unpublishing something zz_purge reads (a region, a fixed
 * arena's run): returns once no purge that could have seen it is running.
 * Sequentially consistent with the purge's own start, so either a purge
 * sees the removal or the remover waits for it. */
void zzi_purge_wait_for_readers(void);
/* Fork child: forgets the purge another thread was running, and starts a
 * new wipe epoch (WIPEONFORK zeroed every canary). */
void zzi_purge_forget_after_fork(void);
/* Fork child, global lock held: no region keeps the locks and guard markers
 * the child did not inherit (see zzi_pages_refresh_after_fork). */
void zzi_registry_forget_inherited_protections(void);
/* Child of a fork that ran no handler, global lock held: the region index
 * and the mapped-bytes count made again from the purge list (a dead thread
 * may have been changing them).  Allocates nothing from malloc. */
void zzi_registry_rebuild_after_fork(void);

/* Thread-local storage read from signal handlers must not be allocated
 * lazily (__tls_get_addr may call malloc): initial-exec. */
#define ZZ_TLS_SIGNAL_SAFE _Thread_local __attribute__((tls_model("initial-exec")))
/* A fork that ran no atfork handler (_Fork(), a raw clone): the fork
 * sentinel is a byte on a MADV_WIPEONFORK page that reads zero in any
 * child, so every call that takes a lock or reads library state, and
 * zz_purge, notices such a fork with one load and recovers (lifecycle.c:
 * trusting nothing a thread that died in the fork may have been changing).
 * It also reads zero in a child of fork() until the library's child handler
 * has run.  NULL when the kernel lacks WIPEONFORK (then only real fork() is
 * handled). */
extern _Atomic(const volatile unsigned char *) zzi_fork_sentinel;
/* Every call that takes a lock or reads library state: the whole recovery,
 * once (lifecycle.c).  Not async-signal-safe. */
void zzi_recover_missed_fork(void);
/* zz_purge's part of it: lock-free, async-signal-safe: forgets the dead
 * threads' purge and maps zero pages where secret memory was not inherited,
 * so that the purge neither spins nor skips an inherited block. */
void zzi_recover_inherited_memory(void);
/* 1 while a child's fork work runs for a fork that ran no handler: a fork
 * hook then allocates and frees nothing from malloc, whose locks a dead
 * thread may have held. */
int zzi_fork_ran_no_handler(void);
static inline int zzi_fork_missed(void)
{
    /* acquire: pairs with the release that publishes the armed byte */
    const volatile unsigned char *s = atomic_load_explicit(&zzi_fork_sentinel, memory_order_acquire);
    return zz_unlikely(s != NULL && *s == 0);
}
static inline void zzi_check_fork(void)
{
    if (zzi_fork_missed())
        zzi_recover_missed_fork();
}

/* pre: global lock held.  Calls fn on every region in address order until
 * it returns non-zero (returned).  fn must not add or remove regions. */
int zzi_registry_each(int (*fn)(struct zzi_region *r, void *ctx), void *ctx);

/* 1 if addr lies in memory this library mapped.  Takes the global lock. */
int zzi_registry_owns(uintptr_t addr);

/* The allocator's global lock (block.c's slabs, the registry's index). */
void zzi_global_lock(void);
void zzi_global_unlock(void);

/* pre: global lock held.  Adds r to the index and the purge list.
 * Returns 0, or -1 with ENOMEM (recorded: ZZ_ERR_NOMEM).  The caller unwinds
 * what it made (a slab unmaps at once; an arena chunk, registered only once
 * its runs are set up, is destroyed with them). */
int zzi_registry_add(struct zzi_region *r);
/* pre: global lock held.  Removes r, then waits until no zz_purge can still
 * be reading it, so the caller may unmap its memory. */
void zzi_registry_remove(struct zzi_region *r);
/* pre: global lock held.  The region whose mapping contains addr, or NULL. */
struct zzi_region *zzi_registry_find(uintptr_t addr);

/* Purge protocol (see purge.c).  The wipe epoch changes whenever memory that
 * held canaries may have been zeroed behind the allocator's back (zz_purge,
 * fork with WIPEONFORK). */
extern _Atomic unsigned zzi_wipe_epoch;
extern _Atomic unsigned zzi_purgers;
/* The epoch, once no purge is running (yields while one is).  Inline: the
 * allocation fast paths read it on every call. */
static inline unsigned zzi_epoch_stable(void)
{
    while (zz_unlikely(atomic_load(&zzi_purgers) != 0))
        zzi_os_yield();
    return atomic_load(&zzi_wipe_epoch);
}
/* 1 if no purge ran or started since zzi_epoch_stable() returned e. */
static inline int zzi_epoch_unchanged(unsigned e)
{
    return atomic_load(&zzi_purgers) == 0 && atomic_load(&zzi_wipe_epoch) == e;
}

/* ---- slab.c, block.c, block_modes.c: zz_alloc blocks ---------------------- */
/* When err (from mapping or locking) means memory is short, unmaps the empty
 * slabs that zz_alloc keeps cached, giving their locked memory back (an arena
 * that cannot grow tries this before failing).  Takes the global lock;
 * preserves errno.  Returns 1 if anything was unmapped. */
int zzi_block_drop_caches(int err);
/* A growable arena's blocks above its runs' largest cell are zz_alloc blocks
 * owned by the arena: zz_free refuses them ("invalid pointer"), and
 * zzi_block_free_for_arena refuses anything else. */
void *zzi_block_alloc_for_arena(size_t n, int backend, zz_arena *owner);
void zzi_block_free_for_arena(void *p, zz_arena *owner);
/* Adds owner's live blocks, their bytes and their mappings to *out. */
void zzi_block_add_owned_stats(const zz_arena *owner, zz_stats *out);
/* Frees every live block of owner (arena teardown). */
void zzi_block_free_all_for_arena(zz_arena *owner);
/* Wipes every live block of a slab region; pre: called from zz_purge. */
void zzi_block_purge_region(struct zzi_region *r, int nested);
/* In a forked child, pre: the global lock held, or (zz_purge) the fork ran
 * no handler and the child's recovery has not run (so no thread of the
 * child can be changing a mode).  A protection change a thread of the
 * parent was making: its slot's pages get its recorded mode again, and the
 * change is forgotten (every purge would skip that slot).  Idempotent and
 * async-signal-safe. */
void zzi_block_modes_after_fork(void);
/* ZZ_INFO_* of the zz_alloc block p (fatal when p is not a live block).
 * pre: global lock held. */
unsigned zzi_block_info_locked(const void *p);
/* Adds the live zz_alloc blocks and their bytes (arenas' large blocks
 * included) to *blocks and *bytes. */
void zzi_block_count_live(size_t *blocks, size_t *bytes);
/* Takes the global lock.  Fills out's cache fields: the bytes of free
 * slots kept mapped for reuse (each slot's data pages and one guard page),
 * the most kept (the sum of the classes' bounds plus what the thread caches
 * hold), what of it is locked, and the share of a finite RLIMIT_MEMLOCK
 * it may keep locked. */
void zzi_block_cache_stats(zz_stats *out);

/* ---- lifecycle.c: initialisation and fork handling -------------------------- */
/* Initialises the library once.  Returns 0, or -1 with errno.  Inline: every
 * allocation asks, and only the first call finds work to do. */
extern _Atomic int zzi_initialized;
int zzi_init_slow(void);
static inline int zzi_init(void)
{
    if (zz_likely(atomic_load_explicit(&zzi_initialized, memory_order_acquire)))
        return 0;
    return zzi_init_slow();
}
/* What a module above lifecycle.c does around a fork.  before takes the
 * module's locks (prepare handler); after_parent releases them; in the child,
 * child_fixup (may be NULL) runs with every lock still held, then
 * after_child releases them; reset frees the locks after a fork that ran no
 * handler (before the handlers' work is done late). */
struct zzi_fork_hooks {
    void (*before)(void);
    void (*after_parent)(void);
    void (*child_fixup)(void);
    void (*after_child)(void);
    void (*reset)(void);
};
/* Ranks in the lock order (see the top of this file): before runs in rank
 * order, the others in reverse; the global lock comes after every rank. */
enum zzi_fork_rank {
    ZZI_FORK_SIGNALS,
    ZZI_FORK_ARENAS,
    ZZI_FORK_LOCKREF,
    ZZI_FORK_BLOCKS, /* zz_alloc's thread caches: no lock of their own, a child fixup */
    ZZI_FORK_RANKS
};
/* Installs h for rank (idempotent; cheap once done).  A module calls it
 * before it first takes a lock of its own, holding no library lock. */
void zzi_fork_register(enum zzi_fork_rank rank, const struct zzi_fork_hooks *h);

/* ---- arena.c ------------------------------------------------------------ */
void zzi_arena_purge_region(struct zzi_region *r);
/* ZZ_INFO_* of arena block addr in region r (fatal when addr is not a live
 * block).  pre: the global lock NOT held (a fixed arena takes its own). */
unsigned zzi_arena_info(struct zzi_region *r, uintptr_t addr);
/* Fills the whole *out (this library's zz_stats) for arena a.
 * pre: a and out not NULL (process.c's zz_arena_stats_sized checked). */
void zzi_arena_stats(zz_arena *a, zz_stats *out);

/* ---- lockref.c ---------------------------------------------------------- */
size_t zzi_lockref_locked_bytes(void);

/* ---- stats (pages.c defines the counters; the registry and the arenas add
 * to them) ---------------------------------------------------------------- */
struct zzi_counters {
    _Atomic size_t locked_bytes, mapped_bytes;
};
extern struct zzi_counters zzi_counters;

/* A counter written only under one lock and read anywhere: a relaxed load and
 * store, no locked read-modify-write on the allocation fast path. */
static inline void zzi_count(_Atomic size_t *c, size_t delta)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}
/* Adds the live blocks and bytes of every arena to *blocks and *bytes. */
void zzi_arena_count_live(size_t *blocks, size_t *bytes);

/* ---- valgrind ------------------------------------------------------------ */
#ifdef ZZ_VALGRIND
#include <valgrind/memcheck.h>
/* Client requests cost a dozen instructions and a stack array each even
 * outside valgrind (and the array makes a function pay for the stack
 * protector): the fast paths test a flag and call out of line (memcheck.c)
 * only when valgrind is there. */
extern int zzi_on_valgrind;
void zzi_vg_noaccess(const void *p, size_t n);
void zzi_vg_undefined(const void *p, size_t n);
void zzi_vg_defined(const void *p, size_t n);
void zzi_vg_malloclike(const void *p, size_t n);
void zzi_vg_freelike(const void *p);
#define ZZ_VG(call)                                                               \
    do {                                                                          \
        if (zz_unlikely(zzi_on_valgrind))                                         \
            call;                                                                 \
    } while (0)
#define ZZ_VG_NOACCESS(p, n) ZZ_VG(zzi_vg_noaccess((p), (n)))
#define ZZ_VG_UNDEFINED(p, n) ZZ_VG(zzi_vg_undefined((p), (n)))
#define ZZ_VG_DEFINED(p, n) ZZ_VG(zzi_vg_defined((p), (n)))
#define ZZ_VG_MALLOCLIKE(p, n) ZZ_VG(zzi_vg_malloclike((p), (n)))
#define ZZ_VG_FREELIKE(p) ZZ_VG(zzi_vg_freelike(p))
#define ZZ_VG_QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define ZZ_VG_QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#define ZZ_VG_DETECT() (zzi_on_valgrind = RUNNING_ON_VALGRIND != 0)
#else
#define ZZ_VG_NOACCESS(p, n) ((void)(p), (void)(n))
#define ZZ_VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#define ZZ_VG_DEFINED(p, n) ((void)(p), (void)(n))
#define ZZ_VG_MALLOCLIKE(p, n) ((void)(p), (void)(n))
#define ZZ_VG_FREELIKE(p) ((void)(p))
#define ZZ_VG_QUIET_BEGIN() ((void)0)
#define ZZ_VG_QUIET_END() ((void)0)
#define ZZ_VG_DETECT() ((void)0)
#endif

#endif /* ZZ_INTERNAL_H */
