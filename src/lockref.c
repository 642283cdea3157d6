/*
 * lockref.c - zz_lock / zz_unlock on caller-owned memory, with a lock count
 * per page: mlock(2) does not nest, so without the counts unlocking one
 * buffer would unlock every other buffer that shares a page with it.  The
 * counts live in an open-addressing hash table keyed by page address.
 *
 * zz_unlock undoes only what zz_lock did.  When a page's count goes from 0
 * to 1, zz_lock reads the page's mapping in /proc/self/smaps: a page that
 * was already locked (by the caller, another allocator, mlockall) or already
 * left out of core dumps is recorded as such, and the last zz_unlock leaves
 * that state alone.  The limit of this: the state is sampled when the count
 * goes from 0 to 1; someone who locks the page (or sets MADV_DONTDUMP) after
 * that, while our count is held, sees it undone by our last zz_unlock, since
 * the kernel keeps one flag per page, not a count.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

/* What zz_lock changed on a page, so that zz_unlock changes only that. */
#define WE_LOCKED 0x1u
#define WE_DONTDUMP 0x2u

struct entry {
    uintptr_t page; /* 0: empty slot */
    size_t count;
    unsigned ours;  /* WE_LOCKED | WE_DONTDUMP */
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

static struct entry *insert_entry(struct entry *t, size_t cap, const struct entry *e)
{
    size_t i = slot_of(e->page, cap);
    while (t[i].page != 0)
        i = (i + 1) & (cap - 1);
    t[i] = *e;
    return &t[i];
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
            insert_entry(t, cap, &table[i]);
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

/* pre: reserve() made room.  The page's entry, made (count 0) if missing. */
static struct entry *entry_for(uintptr_t page)
{
    struct entry *e = lookup(page);
    if (e == NULL) {
        struct entry fresh = {page, 0, 0};
        e = insert_entry(table, table_cap, &fresh);
        table_used++;
    }
    return e;
}

/* ---- ranges ---------------------------------------------------------------- */

/* The pages spanning [p, p+n): the first one and how many.  EINVAL when
 * p is NULL or the range's end wraps past the top of the address space. */
static int page_span(const void *p, size_t n, uintptr_t *first, size_t *npages)
{
    uintptr_t a = (uintptr_t)p, end, page = zzi_os_page_size();
    if (a == 0 || __builtin_add_overflow(a, n, &end) || end > UINTPTR_MAX - (page - 1)) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return -1;
    }
    *first = a & ~(page - 1);
    *npages = ((end + page - 1) & ~(page - 1)) / page - *first / page;
    return 0;
}

/* A page this call must lock: nobody counts it yet, and it is not one of the
 * library's own (those are locked already and must stay so whatever the
 * caller's zz_unlock does). */
static int page_is_new(uintptr_t pg)
{
    return count_of(pg) == 0 && !zzi_registry_owns(pg);
}

/* ---- reading what the kernel has on the new pages ---------------------------- */

struct survey {
    uintptr_t first, next; /* next: the first new page not yet described */
    size_t npages;
    uintptr_t gap_start, gap_end; /* an unmapped range among the new pages */
};

/* Advances s->next through [v->start, v->end), recording on each new page's
 * entry what the caller had already set there. */
static int survey_vma(const struct zzi_vma *v, void *ctx)
{
    struct survey *s = ctx;
    uintptr_t page = zzi_os_page_size(), end = s->first + s->npages * page;
    for (; s->next < end && s->next < v->end; s->next += page) {
        if (!page_is_new(s->next))
            continue;
        if (s->next < v->start) { /* a new page no mapping covers */
            s->gap_start = s->next;
            s->gap_end = v->start < end ? v->start : end;
            return 1;
        }
        struct entry *e = entry_for(s->next);
        e->ours = (v->flags & ZZI_VMA_LOCKED ? 0 : WE_LOCKED) |
                  (v->flags & ZZI_VMA_DONTDUMP ? 0 : WE_DONTDUMP);
    }
    return 0;
}

/* pre: lock held, reserve(npages) done.  Records, on the entry of each new
 * page, what zz_lock will have to change there.  Returns 0, or -1 with errno
 * (ENOMEM and zz_last_error naming the range when a page is not mapped). */
static int survey_new_pages(uintptr_t first, size_t npages)
{
    uintptr_t page = zzi_os_page_size();
    struct survey s = {first, first, npages, 0, 0};
    size_t k = 0;
    while (k < npages && !page_is_new(first + k * page))
        k++;
    if (k == npages)
        return 0; /* nothing new: no need to read smaps */
    s.next = first + k * page;
    int rc = zzi_os_each_vma(s.next, first + npages * page, survey_vma, &s);
    if (rc < 0) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        return -1;
    }
    if (rc == 0) { /* past the last mapping: any new page left is unmapped */
        for (; s.next < first + npages * page; s.next += page)
            if (page_is_new(s.next)) {
                s.gap_start = s.next;
                s.gap_end = first + npages * page;
                break;
            }
    }
    if (s.gap_end != 0) {
        zzi_fail_unmapped(s.gap_start, s.gap_end);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* ---- applying and undoing ------------------------------------------------------ */

enum change { DO_LOCK, UNDO_LOCK };

/* Calls mlock+MADV_DONTDUMP (DO_LOCK) or munlock+MADV_DODUMP (UNDO_LOCK) on
 * each maximal run of pages in [first, first + npages*page) selected by
 * want(page) whose entry has the matching "ours" bit.  DO_LOCK stops at the
 * first failure; UNDO_LOCK goes on and reports any. */
static int apply(uintptr_t first, size_t npages, enum change how, int (*want)(uintptr_t))
{
    uintptr_t page = zzi_os_page_size();
    int rc = 0;
    for (unsigned bit = WE_LOCKED; bit <= WE_DONTDUMP; bit <<= 1) {
        uintptr_t run = 0;
        for (size_t k = 0; k <= npages; k++) {
            uintptr_t pg = first + k * page;
            int in = 0;
            if (k < npages && want(pg)) {
                const struct entry *e = lookup(pg);
                in = e != NULL && (e->ours & bit);
            }
            if (in && run == 0)
                run = pg;
            if (in || run == 0)
                continue;
            void *p = (void *)run;
            size_t len = pg - run;
            int r;
            if (how == DO_LOCK)
                r = bit == WE_LOCKED ? zzi_os_lock(p, len) : zzi_os_dontdump(p, len);
            else /* each call separately: a failure of one still lets the other run */
                r = bit == WE_LOCKED ? zzi_os_unlock(p, len) : zzi_os_dodump(p, len);
            if (r != 0 && how == DO_LOCK)
                return -1;
            if (r != 0)
                rc = -1;
            run = 0;
        }
    }
    return rc;
}

static int is_new_page(uintptr_t pg)
{
    return page_is_new(pg);
}

/* After a failed zz_lock: takes back whatever it changed on the new pages
 * (undoing a change it never made is harmless: those pages did not have
 * that state before), and clears their marks. */
static void forget_new_pages(uintptr_t first, size_t npages, int changed)
{
    int e = errno;
    if (changed)
        apply(first, npages, UNDO_LOCK, is_new_page);
    for (size_t k = 0; k < npages; k++) {
        struct entry *en = lookup(first + k * zzi_os_page_size());
        if (en != NULL && en->count == 0)
            en->ours = 0;
    }
    errno = e;
}

/* ---- fork ---------------------------------------------------------------- */

/* A child inherits no memory locks: forget the counts, so its zz_unlock
 * wipes and does nothing else. */
static void forget_after_fork(void)
{
    if (!zzi_fork_ran_no_handler())
        free(table); /* else left behind: a dead thread may have held malloc's locks */
    table = NULL;
    table_cap = table_used = 0;
    atomic_store(&locked_pages, 0);
}

/* After a fork that ran no handler: the lock may be held by a thread that
 * does not exist here. */
static void reset_lock(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    lock = fresh;
}

static void lock_for_fork(void)
{
    pthread_mutex_lock(&lock);
}

static void unlock_after_fork(void)
{
    pthread_mutex_unlock(&lock);
}

static const struct zzi_fork_hooks fork_hooks = {
    .before = lock_for_fork,
    .after_parent = unlock_after_fork,
    .child_fixup = forget_after_fork, /* pre: the lock held */
    .after_child = unlock_after_fork,
    .reset = reset_lock,
};

/* Locks the new pages of [first, +npages).  zz_alloc's free-slot cache gives
 * way to the caller's memory: when the kernel refuses the lock for want of
 * locked memory, the cached slabs are unmapped and the lock is tried again. */
static int lock_new_pages(uintptr_t first, size_t npages)
{
    int rc = apply(first, npages, DO_LOCK, is_new_page);
    if (rc != 0 && zzi_block_drop_caches(errno))
        rc = apply(first, npages, DO_LOCK, is_new_page);
    return rc;
}

static int lock_impl(void *p, size_t n)
{
    uintptr_t first, page = zzi_os_page_size();
    size_t npages;
    if (n == 0)
        return 0;
    if (page_span(p, n, &first, &npages) != 0 || zzi_init() != 0)
        return -1;
    zzi_check_fork();
    zzi_fork_register(ZZI_FORK_LOCKREF, &fork_hooks); /* before our lock is first taken */
    zzi_mutex_lock(&lock);
    int rc = reserve(npages);
    if (rc != 0) {
        zzi_fail(ZZ_ERR_NOMEM);
        errno = ENOMEM;
    } else if ((rc = survey_new_pages(first, npages)) != 0) {
        forget_new_pages(first, npages, 0);
    } else if ((rc = lock_new_pages(first, npages)) != 0) {
        zzi_fail(errno == EINVAL ? ZZ_ERR_ARGUMENT : ZZ_ERR_MEMLOCK);
        forget_new_pages(first, npages, 1);
    } else {
        for (size_t k = 0; k < npages; k++) {
            struct entry *e = entry_for(first + k * page);
            if (e->count++ == 0)
                locked_pages++;
        }
    }
    int e = errno;
    pthread_mutex_unlock(&lock);
    errno = e;
    return rc;
}

ZZ_API int zz_lock(void *p, size_t n)
{
    return zzi_api_rc(lock_impl(p, n));
}

/* A page whose count the current zz_unlock is taking to zero, marked by
 * count == 0 with its entry still present (released below). */
static int released_now(uintptr_t pg)
{
    const struct entry *e = lookup(pg);
    return e != NULL && e->count == 0 && e->ours != 0 && !zzi_registry_owns(pg);
}

static int unlock_impl(void *p, size_t n, int wipe)
{
    uintptr_t first, page = zzi_os_page_size();
    size_t npages;
    if (n == 0)
        return 0;
    if (page_span(p, n, &first, &npages) != 0)
        return -1;
    if (wipe)
        zz_wipe(p, n);
    zzi_check_fork();
    zzi_fork_register(ZZI_FORK_LOCKREF, &fork_hooks);
    zzi_mutex_lock(&lock);
    for (size_t k = 0; k < npages; k++) {
        struct entry *e = lookup(first + k * page);
        if (e == NULL || e->count == 0)
            continue; /* zz_lock never counted it: only wiped */
        if (--e->count == 0)
            locked_pages--; /* released below (released_now) */
    }
    int rc = apply(first, npages, UNDO_LOCK, released_now);
    for (size_t k = 0; k < npages; k++) {
        struct entry *e = lookup(first + k * page);
        if (e != NULL && e->count == 0)
            e->ours = 0;
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
    return zzi_api_rc(unlock_impl(p, n, 1));
}

ZZ_API int zz_unlock_keep(void *p, size_t n)
{
    return zzi_api_rc(unlock_impl(p, n, 0));
}

size_t zzi_lockref_locked_bytes(void)
{
    return atomic_load_explicit(&locked_pages, memory_order_relaxed) * zzi_os_page_size();
}
