/*
 * registry.c - every region the library has mapped (slabs of zz_alloc slots,
 * arena chunks): a sorted index that maps an address to its region for
 * zz_free and friends, and a list that zz_purge walks without taking a lock,
 * with the protocol its readers follow (one purge at a time, the wipe epoch,
 * waiting for the purges that may have seen a removed region).  It also owns
 * the global lock.  It knows nothing of what a region holds: purge.c walks
 * the list and dispatches by kind.
 *
 * The purge list is changed only under the global lock and read lock-free.
 * A region is unmapped only after it has left the list AND no purge that
 * might have seen it is still running (zzi_purge_wait_for_readers): the
 * unlink and the purge's start are both sequentially consistent, so either
 * the purge never sees the region or the remover waits for that purge (and
 * only that one: a thread purging in a loop cannot starve it).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

/* The global lock has a cache line of its own: whoever takes it writes the
 * line, and the words every fast path reads (zzi_purgers, zzi_wipe_epoch,
 * below) must not share it.  Next to them, a steady pair in one thread
 * missed on its load of zzi_purgers each time another thread took the lock
 * (zz-bench alloc, 2 threads, 32 B: 55 ns of CPU per pair instead of ~30). */
static struct {
    _Alignas(64) zzi_lock_t lock;
} global_lock_line = {ZZI_LOCK_INIT};
#define global_lock (global_lock_line.lock)

static struct zzi_region **index_items; /* sorted by map.base */
static size_t index_len, index_cap;

static _Atomic(struct zzi_region *) purge_list;

_Atomic unsigned zzi_wipe_epoch;
_Atomic unsigned zzi_purgers;

void zzi_global_lock(void)
{
    zzi_lock(&global_lock);
}

/* ---- the fork window ----------------------------------------------------------
 * Set on the forking thread while the fork handlers hold every library lock
 * (lifecycle.c): a program's atfork handler that runs inside that window (one
 * registered before the library's) and calls into the library would wait
 * for a lock its own thread holds, forever.  Such a call finds the lock
 * held, and only then (no cost while a lock is free) this flag: fatal.  In
 * the child it is inherited set until the library's child handler runs. */
static ZZ_TLS_SIGNAL_SAFE int in_fork_window;

void zzi_fork_window_set(int in)
{
    in_fork_window = in;
}

void zzi_fork_window_check(void)
{
    ZZ_CHECK(!in_fork_window, "called from an atfork handler during fork");
}

void zzi_lock_wait(zzi_lock_t *l)
{
    zzi_fork_window_check();
    do {
        for (unsigned spins = 0; atomic_load_explicit(&l->held, memory_order_relaxed); spins++) {
            if (spins < 64)
                zzi_cpu_relax();
            else
                zzi_os_yield();
        }
    } while (atomic_exchange_explicit(&l->held, 1, memory_order_acquire));
}

void zzi_mutex_lock(pthread_mutex_t *m)
{
    if (pthread_mutex_trylock(m) == 0)
        return;
    zzi_fork_window_check();
    ZZ_CHECK(pthread_mutex_lock(m) == 0, "internal: lock failed");
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

/* The index lives in a mapping of its own, not in malloc's heap: in a child
 * whose fork ran no handler, the array a dead thread was growing may be in
 * the middle of realloc, and malloc itself unusable (registry_rebuild). */
static struct zzi_region **index_map(size_t cap)
{
    size_t page = zzi_page(), bytes = (cap * sizeof(struct zzi_region *) + page - 1) & ~(page - 1);
    return zzi_os_map(bytes);
}

static void index_unmap(struct zzi_region **items, size_t cap)
{
    size_t page = zzi_page(), bytes = (cap * sizeof(struct zzi_region *) + page - 1) & ~(page - 1);
    zzi_os_unmap(items, bytes);
}

static int index_reserve(void)
{
    if (index_len < index_cap)
        return 0;
    size_t cap = index_cap ? index_cap * 2 : zzi_page() / sizeof(struct zzi_region *);
    struct zzi_region **n = index_map(cap);
    if (n == NULL) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
        return -1;
    }
    if (index_len > 0)
        memcpy(n, index_items, index_len * sizeof *n);
    struct zzi_region **old = index_items;
    size_t old_cap = index_cap;
    index_items = n;
    index_cap = cap;
    if (old != NULL)
        index_unmap(old, old_cap);
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

/* ---- fork ------------------------------------------------------------------ */

/* mlock is not inherited by a child, and guard markers are not copied into
 * a WIPEONFORK mapping: until a region is refreshed (on its next allocation,
 * zzi_pages_refresh_after_fork), it must not claim them. */
void zzi_registry_forget_inherited_protections(void)
{
    unsigned lost = ZZ_INFO_LOCKED | (zzi_pages_uses_guard_install() ? ZZ_INFO_GUARDED : 0);
    for (size_t i = 0; i < index_len; i++) {
        index_items[i]->map.info &= ~lost;
        index_items[i]->map.locked_len = 0;
    }
    atomic_store(&zzi_counters.locked_bytes, 0);
}

/* Heap sort by map.base, in place: no allocation, n log n (a process may
 * hold 100,000 regions). */
static void sift_down(struct zzi_region **a, size_t at, size_t n)
{
    for (;;) {
        size_t big = at, l = 2 * at + 1, r = l + 1;
        if (l < n && a[l]->map.base > a[big]->map.base)
            big = l;
        if (r < n && a[r]->map.base > a[big]->map.base)
            big = r;
        if (big == at)
            return;
        struct zzi_region *t = a[at];
        a[at] = a[big];
        a[big] = t;
        at = big;
    }
}

static void sort_by_base(struct zzi_region **a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n; end-- > 1;) {
        struct zzi_region *t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

/* A dead thread may have been inserting into the index (a region moved but
 * not yet placed: one twice, one lost), growing it (the array half-copied,
 * the old one unmapped) or removing from it: the index is made again from
 * the purge list, which is whole at every instant, into a new array.  The
 * old one is left mapped: its size may be torn. */
void zzi_registry_rebuild_after_fork(void)
{
    size_t n = 0, mapped = 0;
    for (struct zzi_region *r = atomic_load(&purge_list); r != NULL; r = atomic_load(&r->next)) {
        n++;
        mapped += r->map.len;
    }
    size_t cap = n < 64 ? 64 : n;
    struct zzi_region **items = index_map(cap);
    ZZ_CHECK(items != NULL, "cannot map the region index again in a forked child");
    size_t k = 0;
    for (struct zzi_region *r = atomic_load(&purge_list); r != NULL; r = atomic_load(&r->next))
        items[k++] = r;
    sort_by_base(items, n);
    index_items = items;
    index_len = n;
    index_cap = cap;
    atomic_store(&zzi_counters.mapped_bytes, mapped);
}

/* ---- the purge protocol ------------------------------------------------------ */

/* One purge at a time: two would race on a protected block (one restoring
 * its mode while the other wipes it).  A purge waits for one in another
 * thread, which always finishes; a purge that interrupted a purge on its own
 * thread cannot wait, and leaves protected blocks to it. */
static _Atomic int purge_running;
static ZZ_TLS_SIGNAL_SAFE int purging_here;

/* Odd while a purge runs (one at a time, nested ones inside its window):
 * a remover waits for the purge that may have seen what it removed, never
 * for the ones after it, so a thread that purges in a loop cannot starve
 * it. */
static _Atomic unsigned purge_gen;

void zzi_purge_wait_for_readers(void)
{
    unsigned g = atomic_load(&purge_gen);
    if (g & 1)
        while (atomic_load(&purge_gen) == g)
            zzi_os_yield();
}

/* Taking and giving back the purge (purge_running, purge_gen and
 * purging_here together) with every signal blocked: a purge from a signal
 * handler must find both or neither set.  Until 16d7a29 a signal that came
 * right after the exchange took purge_running, before purging_here was set,
 * ran a purge that waited for purge_running for ever, on the thread that
 * held it (test_purge_nested under ZEROIZE_GUARDS=mprotect: 1 run in 20 to
 * 23 hung, in zzi_purge_begin inside zzi_purge_begin).  Two calls of
 * sigprocmask per purge; purges nested in a purge make none. */
static int block_signals(sigset_t *saved)
{
    sigset_t all;
    sigfillset(&all);
    return zzi_os_sigmask(SIG_BLOCK, &all, saved) == 0;
}

static void restore_signals(int blocked, const sigset_t *saved)
{
    if (blocked)
        zzi_os_sigmask(SIG_SETMASK, saved, NULL);
}

int zzi_purge_begin(void)
{
    int nested = purging_here;
    if (!nested) {
        sigset_t saved;
        int blocked = block_signals(&saved);
        while (atomic_exchange(&purge_running, 1))
            zzi_os_yield();
        atomic_fetch_add(&purge_gen, 1); /* before any region is read */
        purging_here = 1;
        restore_signals(blocked, &saved);
    }
    atomic_fetch_add(&zzi_purgers, 1);
    atomic_fetch_add(&zzi_wipe_epoch, 1);
    return nested;
}

void zzi_purge_end(int nested)
{
    atomic_fetch_add(&zzi_wipe_epoch, 1);
    atomic_fetch_sub(&zzi_purgers, 1);
    if (!nested) {
        sigset_t saved;
        int blocked = block_signals(&saved);
        purging_here = 0;
        atomic_fetch_add(&purge_gen, 1); /* after the last region was read */
        atomic_store(&purge_running, 0);
        restore_signals(blocked, &saved);
    }
}

struct zzi_region *zzi_registry_purge_list(void)
{
    return atomic_load(&purge_list);
}

/* Fork child: a purge that another thread of the parent was running (or
 * waiting to run) does not exist here; the forking thread was in none.
 * WIPEONFORK zeroed every canary: a new epoch. */
void zzi_purge_forget_after_fork(void)
{
    atomic_store(&zzi_purgers, 0);
    atomic_store(&purge_running, 0);
    unsigned g = atomic_load(&purge_gen);
    atomic_store(&purge_gen, g + (g & 1));
    purging_here = 0;
    atomic_fetch_add(&zzi_wipe_epoch, 2);
}
