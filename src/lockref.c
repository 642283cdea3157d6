/*
 * lockref.c - zz_lock / zz_unlock on caller-owned memory, with a lock count
 * per page: mlock(2) does not nest, so without the counts unlocking one
 * buffer would unlock every other buffer that shares a page with it.  The
 * counts live in an open-addressing hash table keyed by page address.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

struct entry {
    uintptr_t page; /* 0: empty slot */
    size_t count;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table;
static size_t table_cap, table_used; /* cap is a power of two */
static _Atomic size_t locked_pages;

static size_t slot_of(uintptr_t page, size_t cap)
{
    uint64_t h = (uint64_t)page * 0x9E3779B97F4A7C15u;
    return (size_t)(h >> 17) & (cap - 1);
}

static struct entry *lookup(uintptr_t page)
{
    if (table_cap == 0)
        return NULL;
    for (size_t i = slot_of(page, table_cap);; i = (i + 1) & (table_cap - 1)) {
        if (table[i].page == page)
            return &table[i];
        if (table[i].page == 0)
            return NULL;
    }
}

static void insert_entry(struct entry *t, size_t cap, uintptr_t page, size_t count)
{
    size_t i = slot_of(page, cap);
    while (t[i].page != 0)
        i = (i + 1) & (cap - 1);
    t[i].page = page;
    t[i].count = count;
}

/* Rebuilds the table with room for `need` live entries (dropping the pages
 * whose count fell to zero). */
static int rehash(size_t need)
{
    size_t cap = 64;
    while (cap < need * 2)
        cap *= 2;
    struct entry *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return -1;
    size_t used = 0;
    for (size_t i = 0; i < table_cap; i++) {
        if (table[i].page != 0 && table[i].count != 0) {
            insert_entry(t, cap, table[i].page, table[i].count);
            used++;
        }
    }
    free(table);
    table = t;
    table_cap = cap;
    table_used = used;
    return 0;
}

static int reserve(size_t more)
{
    if ((table_used + more) * 2 <= table_cap)
        return 0;
    return rehash(locked_pages + more);
}

static size_t count_of(uintptr_t page)
{
    struct entry *e = lookup(page);
    return e ? e->count : 0;
}

static void add_count(uintptr_t page, long delta)
{
    struct entry *e = lookup(page);
    if (e == NULL) {
        insert_entry(table, table_cap, page, 0);
        table_used++;
        e = lookup(page);
    }
    e->count = (size_t)((long)e->count + delta);
}

/* Locks (or unlocks) every maximal run of pages in [first, last] whose count
 * is zero.  On a lock failure, undoes the runs it locked and returns -1. */
static int apply_to_uncounted(uintptr_t first, uintptr_t last, int do_lock)
{
    size_t page = zzi_os_page_size();
    uintptr_t run = 0;
    int rc = 0;
    for (uintptr_t pg = first;; pg += page) {
        /* Pages of this library's own blocks are locked already, and must
         * stay locked whatever the caller's zz_unlock does: never touch them. */
        int boundary = pg > last || count_of(pg) != 0 || zzi_registry_owns(pg);
        if (boundary && run != 0) {
            size_t len = pg - run;
            if (do_lock) {
                if (zzi_os_lock((void *)run, len) != 0 || zzi_os_dontdump((void *)run, len) != 0) {
                    int e = errno;
                    zzi_os_unlock((void *)run, len);
                    if (run > first)
                        apply_to_uncounted(first, run - page, 0);
                    errno = e;
                    return -1;
                }
            } else {
                /* Each call separately: a failure of one still lets the other run. */
                if (zzi_os_unlock((void *)run, len) != 0)
                    rc = -1;
                if (zzi_os_dodump((void *)run, len) != 0)
                    rc = -1;
            }
            run = 0;
        } else if (!boundary && run == 0) {
            run = pg;
        }
        if (pg > last)
            break;
    }
    return rc;
}

/* The pages spanning [p, p+n), or -1 with EINVAL if p + n overflows. */
static int page_span(const void *p, size_t n, uintptr_t *first, uintptr_t *last)
{
    uintptr_t a = (uintptr_t)p, end;
    if (__builtin_add_overflow(a, n - 1, &end) || a == 0) {
        zzi_fail(ZZI_FAIL_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    size_t page = zzi_os_page_size();
    *first = a & ~(page - 1);
    *last = end & ~(page - 1);
    return 0;
}

ZZ_API int zz_lock(void *p, size_t n)
{
    uintptr_t first, last;
    if (n == 0)
        return 0;
    if (page_span(p, n, &first, &last) != 0)
        return -1;
    size_t page = zzi_os_page_size(), npages = (last - first) / page + 1;
    ZZ_CHECK(pthread_mutex_lock(&lock) == 0, "internal: lock failed");
    int rc = reserve(npages);
    if (rc == 0 && (rc = apply_to_uncounted(first, last, 1)) != 0) {
        zzi_fail(errno == EINVAL ? ZZI_FAIL_ARGUMENT : ZZI_FAIL_MEMLOCK);
    } else if (rc == 0) {
        for (uintptr_t pg = first; pg <= last; pg += page) {
            if (count_of(pg) == 0)
                locked_pages++;
            add_count(pg, +1);
        }
    } else {
        zzi_fail(ZZI_FAIL_NOMEM);
        errno = ENOMEM;
    }
    int e = errno;
    pthread_mutex_unlock(&lock);
    errno = e;
    return rc;
}

/* Unlocks [run, run+len): munlock and MADV_DODUMP, each checked. */
static int release_run(uintptr_t run, size_t len)
{
    int rc = 0;
    if (zzi_os_unlock((void *)run, len) != 0)
        rc = -1;
    if (zzi_os_dodump((void *)run, len) != 0)
        rc = -1;
    return rc;
}

static int unlock_impl(void *p, size_t n, int wipe)
{
    uintptr_t first, last;
    if (n == 0)
        return 0;
    if (page_span(p, n, &first, &last) != 0)
        return -1;
    if (wipe)
        zz_wipe(p, n);
    size_t page = zzi_os_page_size();
    int rc = 0;
    uintptr_t run = 0;
    ZZ_CHECK(pthread_mutex_lock(&lock) == 0, "internal: lock failed");
    for (uintptr_t pg = first;; pg += page) {
        /* Only pages whose count this call takes to zero are unlocked; pages
         * zz_lock never counted are left as they are. */
        size_t c = pg <= last ? count_of(pg) : 0;
        if (c != 0) {
            add_count(pg, -1);
            if (c == 1)
                locked_pages--;
        }
        int release = c == 1 && !zzi_registry_owns(pg);
        if (release && run == 0) {
            run = pg;
        } else if (!release && run != 0) {
            rc |= release_run(run, pg - run);
            run = 0;
        }
        if (pg >= last && run == 0)
            break;
    }
    if (locked_pages * 4 < table_used && table_used > 64)
        rehash(locked_pages);
    int e = errno;
    pthread_mutex_unlock(&lock);
    errno = e;
    return rc;
}

ZZ_API int zz_unlock(void *p, size_t n)
{
    return unlock_impl(p, n, 1);
}

ZZ_API int zz_unlock_keep(void *p, size_t n)
{
    return unlock_impl(p, n, 0);
}

size_t zzi_lockref_locked_bytes(void)
{
    return atomic_load_explicit(&locked_pages, memory_order_relaxed) * zzi_os_page_size();
}

/* A child inherits no memory locks: forget the counts, so its zz_unlock
 * wipes and does nothing else. */
void zzi_lockref_forget_after_fork(void)
{
    free(table);
    table = NULL;
    table_cap = table_used = 0;
    atomic_store(&locked_pages, 0);
}

void zzi_lockref_lock_all(void)
{
    pthread_mutex_lock(&lock);
}

void zzi_lockref_unlock_all(void)
{
    pthread_mutex_unlock(&lock);
}
