/*
 * lifecycle.c - the library's process-wide life: initialisation, once, on
 * the first call that needs it, and fork handling (the atfork handlers, and
 * the same work done late in a child whose fork ran no handler).
 *
 * It sits below the allocators, which call zzi_init and zzi_check_fork, so
 * it calls none of them: what the registry and the pages need after a fork
 * it does itself; the modules above (signal chains, arenas, zz_lock's
 * counts) each register their fork hooks (zzi_fork_register) before they
 * first take a lock of their own.  The hooks run in the lock order that
 * internal.h gives.  The handlers are registered when the library is loaded;
 * a fork that ran none (_Fork) is recovered from in two parts, the first
 * lock-free for zz_purge (see "a fork that ran no handler" below).
 */
#include <errno.h>
#include <pthread.h>

#include "canary.h"

/* ---- fork hooks ------------------------------------------------------------ */

/* Guards the hook table; held from before fork to after it, so a module
 * never registers between a fork's prepare handler and the fork. */
static zzi_lock_t hooks_lock = ZZI_LOCK_INIT;
static const struct zzi_fork_hooks *_Atomic hooks[ZZI_FORK_RANKS];

void zzi_fork_register(enum zzi_fork_rank rank, const struct zzi_fork_hooks *h)
{
    if (zz_likely(atomic_load_explicit(&hooks[rank], memory_order_acquire) == h))
        return;
    zzi_lock(&hooks_lock);
    atomic_store_explicit(&hooks[rank], h, memory_order_release);
    zzi_unlock(&hooks_lock);
}

static const struct zzi_fork_hooks *hook(int rank)
{
    return atomic_load_explicit(&hooks[rank], memory_order_relaxed);
}

/* ---- fork handlers ---------------------------------------------------------- */

static void before_fork(void)
{
    zzi_lock(&hooks_lock);
    for (int r = 0; r < ZZI_FORK_RANKS; r++)
        if (hook(r) != NULL)
            hook(r)->before();
    zzi_global_lock();
    zzi_fork_window_set(1);
}

static void after_fork_parent(void)
{
    zzi_fork_window_set(0);
    zzi_global_unlock();
    for (int r = ZZI_FORK_RANKS - 1; r >= 0; r--)
        if (hook(r) != NULL)
            hook(r)->after_parent();
    zzi_unlock(&hooks_lock);
}

/* The fork sentinel: a page of ours that MADV_WIPEONFORK zeroes in every
 * child, whatever made it.  Byte DONE reads 1 until a child's fork work is
 * done (the one load every entry point makes, zzi_fork_missed); byte MEMORY
 * says how far the lock-free part of a missed fork's recovery got; and the
 * lock that serialises the rest lives there too, so that every child starts
 * with it free (a static one could be inherited held). */
enum { SENTINEL_DONE = 0, SENTINEL_MEMORY = 1, SENTINEL_LOCK = 64 };
enum { MEMORY_UNTOUCHED = 0, MEMORY_CLAIMED = 1, MEMORY_PRESENT = 2 };
static unsigned char *sentinel_page;
_Atomic(const volatile unsigned char *) zzi_fork_sentinel;

static _Atomic unsigned char *memory_stage(void)
{
    return (_Atomic unsigned char *)(void *)(sentinel_page + SENTINEL_MEMORY);
}

/* Maps the fork sentinel (see internal.h); without WIPEONFORK there is none. */
static void arm_fork_sentinel(void)
{
    size_t page = zzi_os_page_size();
    unsigned char *p = zzi_os_map(page);
    if (p == NULL)
        return;
    if (zzi_os_wipeonfork(p, page) != 0) {
        zzi_os_unmap(p, page);
        return;
    }
    p[SENTINEL_MEMORY] = MEMORY_PRESENT;
    p[SENTINEL_DONE] = 1;
    sentinel_page = p;
    atomic_store_explicit(&zzi_fork_sentinel, p, memory_order_release);
}

/* Secret memory (memfd_secret) is MADV_DONTFORK: not inherited.  Zero pages
 * take its place, so the child reads zeros where its blocks were.  Walks
 * the purge list: lock-free, async-signal-safe. */
static void map_inherited_memory(void)
{
    for (struct zzi_region *r = zzi_registry_purge_list(); r != NULL; r = atomic_load(&r->next))
        zzi_pages_replace_unforked(&r->map);
}

/* 1 while the fork work runs for a fork that ran no handler. */
static int missed_fork_recovery;

int zzi_fork_ran_no_handler(void)
{
    return missed_fork_recovery;
}

/* The child has one thread; pre: before_fork's locks held (by the handler,
 * or taken again by the recovery).  WIPEONFORK zeroed every block, canaries
 * included: the new epoch tells zz_free to accept zeroed canaries on blocks
 * allocated before the fork.  A purge that was running in another thread of
 * the parent will never finish here, so it is forgotten (after a missed
 * fork, the lock-free part of the recovery did that). */
static void fork_work_in_child(int missed)
{
    zzi_fork_window_set(0);
    missed_fork_recovery = missed;
    if (!missed) {
        zzi_purge_forget_after_fork();
        map_inherited_memory();
    }
    if (sentinel_page != NULL) { /* zeroed by WIPEONFORK: this fork is handled */
        atomic_store(memory_stage(), MEMORY_PRESENT);
        atomic_store((_Atomic unsigned char *)(void *)(sentinel_page + SENTINEL_DONE), 1);
    }
    atomic_fetch_add(&zzi_fork_generation, 1);
    atomic_fetch_add(&zzi_checks_gen, 1);
    if (missed)
        zzi_registry_rebuild_after_fork();
    zzi_registry_forget_inherited_protections();
    for (int r = ZZI_FORK_RANKS - 1; r >= 0; r--)
        if (hook(r) != NULL && hook(r)->child_fixup != NULL)
            hook(r)->child_fixup();
    missed_fork_recovery = 0;
    zzi_global_unlock();
    for (int r = ZZI_FORK_RANKS - 1; r >= 0; r--)
        if (hook(r) != NULL)
            hook(r)->after_child();
    zzi_unlock(&hooks_lock);
}

static void after_fork_child(void)
{
    fork_work_in_child(0);
}

static _Atomic int handlers_registered;

static int register_fork_handlers(void)
{
    static zzi_lock_t registering = ZZI_LOCK_INIT;
    int rc = 0;
    zzi_lock(&registering);
    if (!atomic_load(&handlers_registered)) {
        rc = pthread_atfork(before_fork, after_fork_parent, after_fork_child);
        if (rc == 0)
            atomic_store(&handlers_registered, 1);
    }
    zzi_unlock(&registering);
    return rc;
}

/* The handlers are registered when the library is loaded, before main (and
 * so before any handler the program registers there): glibc runs prepare
 * handlers in reverse order of registration and the others in order, so a
 * program's handler then runs outside the window in which ours hold the
 * library's locks, and may call the library (issue 19: a program's prepare
 * handler that freed a block deadlocked fork when ours were registered at
 * the first call).  A handler registered earlier still (a constructor that
 * runs first) runs inside the window: its calls that need a lock are fatal
 * (zzi_fork_window_check) instead of hanging. */
__attribute__((constructor)) static void register_at_load(void)
{
    (void)register_fork_handlers(); /* on failure, init_library tries again */
}

/* ---- a fork that ran no handler ------------------------------------------------ */
/* _Fork(), a raw clone(): any library lock may have been held by a thread
 * that does not exist in the child, and whatever it guards may be
 * half-updated.  The recovery trusts only what is valid at every instant:
 * the purge list (built for lock-free readers), the immutable geometry of
 * each region and slab on it (set before it is published), and each slot's
 * state (one atomic word).  Everything else is rebuilt from those: the
 * region index, the size classes, free slots and counts, the thread caches
 * (registry.c, the blocks' fork hook).  It takes no malloc and frees
 * nothing (a dead thread may have held malloc's locks too): what cannot be
 * rebuilt from them (the index's old array, other threads' caches, slabs a
 * dead thread was making or unmapping) is left behind, wiped, in the child.
 *
 * It runs in two parts.  The first is lock-free and async-signal-safe, for
 * zz_purge (which may run in a signal handler, and must neither wait for a
 * purge that will never end nor skip an inherited secret): it forgets the
 * dead threads' purge and maps zero pages where the child did not inherit
 * secret memory (MADV_DONTFORK).  The second, for every call that takes a
 * lock or reads library state, does the first if need be and then the fork
 * handler's work, once, under a lock that lives on the sentinel page. */

void zzi_recover_inherited_memory(void)
{
    if (sentinel_page == NULL)
        return;
    _Atomic unsigned char *stage = memory_stage();
    /* Before the claim: a purge from a signal that interrupts the claimer
     * must not spin on the dead threads' purge either.  Nothing in the
     * child has begun a purge while the stage is untouched. */
    if (atomic_load(stage) == MEMORY_UNTOUCHED)
        zzi_purge_forget_after_fork();
    unsigned char untouched = MEMORY_UNTOUCHED;
    if (!atomic_compare_exchange_strong(stage, &untouched, MEMORY_CLAIMED))
        return; /* done, or under way in a frame this one interrupted */
    map_inherited_memory();
    atomic_store(stage, MEMORY_PRESENT);
}

void zzi_recover_missed_fork(void)
{
    if (sentinel_page == NULL)
        return;
    /* In a child of fork(), a program's child handler that runs before ours */
    zzi_fork_window_check();
    zzi_recover_inherited_memory();
    while (atomic_load(memory_stage()) != MEMORY_PRESENT)
        zzi_os_yield(); /* another thread of the child is mapping it */
    zzi_lock_t *recovering = (zzi_lock_t *)(void *)(sentinel_page + SENTINEL_LOCK);
    zzi_lock(recovering);
    if (sentinel_page[SENTINEL_DONE] == 0) {
        int e = errno;
        zzi_global_unlock();
        zzi_unlock(&hooks_lock);
        for (int r = 0; r < ZZI_FORK_RANKS; r++)
            if (hook(r) != NULL)
                hook(r)->reset();
        before_fork();
        fork_work_in_child(1);
        errno = e;
    }
    zzi_unlock(recovering);
}

/* ---- initialisation ----------------------------------------------------------- */

_Atomic int zzi_initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* Runs until it succeeds once: a getrandom that fails early in boot is tried
 * again by the next call instead of breaking the library for good. */
static int init_library(void)
{
    uint64_t probe; /* the canaries need the kernel's generator: fail early if it does not work */
    if (zzi_canary_draw(&probe, 1) != 0) {
        if (errno == 0)
            errno = EAGAIN;
        return -1;
    }
    ZZ_VG_DETECT();
    zzi_pages_uses_guard_install();
    ZZ_CHECK(register_fork_handlers() == 0, "cannot register fork handlers");
    if (atomic_load_explicit(&zzi_fork_sentinel, memory_order_relaxed) == NULL)
        arm_fork_sentinel();
    return 0;
}

int zzi_init_slow(void)
{
    pthread_mutex_lock(&init_lock);
    int rc = 0;
    if (!atomic_load(&zzi_initialized)) {
        rc = init_library();
        if (rc == 0)
            atomic_store_explicit(&zzi_initialized, 1, memory_order_release);
    }
    int e = errno;
    pthread_mutex_unlock(&init_lock);
    if (rc != 0) {
        zzi_fail(ZZ_ERR_RANDOM);
        errno = e;
    }
    return rc;
}
