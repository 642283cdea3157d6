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
 * internal.h gives.
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
}

static void after_fork_parent(void)
{
    zzi_global_unlock();
    for (int r = ZZI_FORK_RANKS - 1; r >= 0; r--)
        if (hook(r) != NULL)
            hook(r)->after_parent();
    zzi_unlock(&hooks_lock);
}

static unsigned char *sentinel_page;
_Atomic(const volatile unsigned char *) zzi_fork_sentinel;

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
    p[0] = 1;
    sentinel_page = p;
    atomic_store_explicit(&zzi_fork_sentinel, p, memory_order_release);
}

/* The child has one thread.  WIPEONFORK zeroed every block, canaries
 * included: the new epoch tells zz_free to accept zeroed canaries on blocks
 * allocated before the fork.  A purge that was running in another thread of
 * the parent will never finish here, so it is forgotten. */
static void after_fork_child(void)
{
    if (sentinel_page != NULL)
        sentinel_page[0] = 1; /* zeroed by WIPEONFORK: this fork is handled */
    zzi_purge_forget_after_fork();
    atomic_fetch_add(&zzi_fork_generation, 1);
    atomic_fetch_add(&zzi_checks_gen, 1);
    zzi_registry_forget_inherited_protections();
    for (int r = ZZI_FORK_RANKS - 1; r >= 0; r--)
        if (hook(r) != NULL && hook(r)->child_fixup != NULL)
            hook(r)->child_fixup();
    zzi_global_unlock();
    for (int r = ZZI_FORK_RANKS - 1; r >= 0; r--)
        if (hook(r) != NULL)
            hook(r)->after_child();
    zzi_unlock(&hooks_lock);
}

static void init_fork_handlers(void)
{
    ZZ_CHECK(pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0,
             "cannot register fork handlers");
    arm_fork_sentinel();
}

/* In a child made by a fork that ran no handler: the library's locks may be
 * held by threads that do not exist here, secret memory was not inherited,
 * locks were not, and WIPEONFORK zeroed the blocks.  Does what the fork
 * handlers would have done, once (two threads the child started may notice
 * together). */
void zzi_recover_missed_fork(void)
{
    static zzi_lock_t recovering = ZZI_LOCK_INIT;
    if (sentinel_page == NULL)
        return;
    zzi_lock(&recovering);
    if (sentinel_page[0] == 0) {
        int e = errno;
        zzi_global_unlock();
        zzi_unlock(&hooks_lock);
        for (int r = 0; r < ZZI_FORK_RANKS; r++)
            if (hook(r) != NULL)
                hook(r)->reset();
        before_fork();
        after_fork_child();
        errno = e;
    }
    zzi_unlock(&recovering);
}

/* ---- initialisation ----------------------------------------------------------- */

_Atomic int zzi_initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

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
        init_fork_handlers();
        fork_handlers_registered = 1;
    }
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
