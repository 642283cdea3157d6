/*
 * registry.c - every region the library has mapped (slabs of zz_alloc slots,
 * arena chunks): a sorted index that maps an address to its region for
 * zz_free and friends, and a list that zz_purge walks without taking a lock.
 * It also owns the global lock and the fork handlers.
 *
 * The purge list is changed only under the global lock and read lock-free.
 * A region is unmapped only after it has left the list AND no purge that
 * might have seen it is still running (zzi_purge_wait_for_readers): the
 * unlink and the purge's start are both sequentially consistent, so either
 * the purge never sees the region or the remover waits for that purge (and
 * only that one: a thread purging in a loop cannot starve it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static zzi_lock_t global_lock = ZZI_LOCK_INIT;

static struct zzi_region **index_items; /* sorted by map.base */
static size_t index_len, index_cap;

static _Atomic(struct zzi_region *) purge_list;

_Atomic unsigned zzi_wipe_epoch;
_Atomic unsigned zzi_purgers;
_Atomic unsigned zzi_fork_generation;

void zzi_global_lock(void)
{
    zzi_lock(&global_lock);
}

void zzi_global_unlock(void)
{
    zzi_unlock(&global_lock);
}

/* First index whose region starts at or after addr. */
static size_t lower_bound(uintptr_t addr)
{
    size_t lo = 0, hi = index_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (index_items[mid]->map.base < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int index_reserve(void)
{
    if (index_len < index_cap)
        return 0;
    size_t cap = index_cap ? index_cap * 2 : 64;
    struct zzi_region **n = realloc(index_items, cap * sizeof *n);
    if (n == NULL) {
        errno = ENOMEM;
        return -1;
    }
    index_items = n;
    index_cap = cap;
    return 0;
}

int zzi_registry_add(struct zzi_region *r)
{
    if (index_reserve() != 0)
        return -1;
    size_t at = lower_bound(r->map.base);
    memmove(&index_items[at + 1], &index_items[at], (index_len - at) * sizeof *index_items);
    index_items[at] = r;
    index_len++;

    atomic_store_explicit(&r->next, atomic_load_explicit(&purge_list, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&purge_list, r, memory_order_release);
    atomic_fetch_add_explicit(&zzi_counters.mapped_bytes, r->map.len, memory_order_relaxed);
    atomic_fetch_add_explicit(&zzi_counters.locked_bytes, r->map.locked_len,
                              memory_order_relaxed);
    return 0;
}

static void unlink_from_purge_list(struct zzi_region *r)
{
    _Atomic(struct zzi_region *) *link = &purge_list;
    for (;;) {
        struct zzi_region *cur = atomic_load_explicit(link, memory_order_relaxed);
        ZZ_CHECK(cur != NULL, "internal: region missing from the purge list");
        if (cur == r) {
            atomic_store(link, atomic_load_explicit(&r->next, memory_order_relaxed));
            return;
        }
        link = &cur->next;
    }
}

void zzi_registry_remove(struct zzi_region *r)
{
    size_t at = lower_bound(r->map.base);
    ZZ_CHECK(at < index_len && index_items[at] == r, "internal: region missing from the index");
    memmove(&index_items[at], &index_items[at + 1], (index_len - at - 1) * sizeof *index_items);
    index_len--;

    unlink_from_purge_list(r);
    zzi_purge_wait_for_readers();
    atomic_fetch_sub_explicit(&zzi_counters.mapped_bytes, r->map.len, memory_order_relaxed);
    atomic_fetch_sub_explicit(&zzi_counters.locked_bytes, r->map.locked_len,
                              memory_order_relaxed);
}

struct zzi_region *zzi_registry_find(uintptr_t addr)
{
    size_t at = lower_bound(addr + 1); /* first region starting after addr */
    if (at == 0)
        return NULL;
    struct zzi_region *r = index_items[at - 1];
    return addr - r->map.base < r->map.len ? r : NULL;
}

int zzi_registry_each(int (*fn)(struct zzi_region *r, void *ctx), void *ctx)
{
    for (size_t i = 0; i < index_len; i++) {
        int rc = fn(index_items[i], ctx);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int zzi_registry_owns(uintptr_t addr)
{
    zzi_global_lock();
    int owned = zzi_registry_find(addr) != NULL;
    zzi_global_unlock();
    return owned;
}

/* ---- purge walk (called by purge.c, possibly from a signal handler) ----- */

void zzi_registry_purge_all(int nested)
{
    /* After a fork that ran no handler, secret memory is not mapped here
     * (MADV_DONTFORK) and the rest reads zero (WIPEONFORK): skip it, since
     * recovering is not async-signal-safe. */
    int missed = zzi_fork_missed();
    for (struct zzi_region *r = atomic_load(&purge_list); r != NULL;
         r = atomic_load(&r->next)) {
        if (missed && r->map.backend == ZZ_BACKEND_SECRETMEM)
            continue;
        if (r->kind == ZZI_REGION_SLAB)
            zzi_block_purge_region(r, nested);
        else
            zzi_arena_purge_region(r);
    }
}

/* ---- fork ----------------------------------------------------------------- */

/* Lock order everywhere: signal chains, arena list, each arena, lockref,
 * global. */
static void before_fork(void)
{
    zzi_signals_before_fork();
    zzi_arena_lock_all();
    zzi_lockref_lock_all();
    zzi_global_lock();
}

static void after_fork_parent(void)
{
    zzi_global_unlock();
    zzi_lockref_unlock_all();
    zzi_arena_unlock_all();
    zzi_signals_after_fork_parent();
}

/* mlock is not inherited by a child, and guard markers are not copied into
 * a WIPEONFORK mapping: until a region is refreshed (on its next allocation,
 * zzi_pages_refresh_after_fork), it must not claim them. */
static void forget_inherited_protections(void)
{
    unsigned lost = ZZ_INFO_LOCKED | (zzi_pages_uses_guard_install() ? ZZ_INFO_GUARDED : 0);
    for (size_t i = 0; i < index_len; i++) {
        zzi_pages_replace_unforked(&index_items[i]->map);
        index_items[i]->map.info &= ~lost;
        index_items[i]->map.locked_len = 0;
    }
    atomic_store(&zzi_counters.locked_bytes, 0);
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
    atomic_store(&zzi_purgers, 0);
    zzi_purge_after_fork_child();
    atomic_fetch_add(&zzi_wipe_epoch, 2);
    atomic_fetch_add(&zzi_fork_generation, 1);
    atomic_fetch_add(&zzi_checks_gen, 1);
    forget_inherited_protections();
    zzi_lockref_forget_after_fork();
    zzi_arena_after_fork_child();
    zzi_global_unlock();
    zzi_lockref_unlock_all();
    zzi_arena_unlock_all();
    zzi_signals_after_fork_child();
}

void zzi_registry_init_fork_handlers(void)
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
        zzi_unlock(&global_lock);
        zzi_signals_reset_lock();
        zzi_lockref_reset_lock();
        zzi_arena_reset_locks();
        before_fork();
        after_fork_child();
        errno = e;
    }
    zzi_unlock(&recovering);
}
