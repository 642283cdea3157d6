/*
 * ops_arena.c - arena operations of a worker: create, alloc, free and destroy
 * its own arenas (growable and fixed), alloc and free in the arenas all
 * workers share, bursts of every size class then destroy (what a purge must
 * survive), the fixed-arena capacity promise, and blocks handed from one
 * worker to another (frees from another thread).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

struct zs_arena *zs_shared[ZS_SHARED_ARENAS];
static _Atomic unsigned arena_ids;

/* Blocks on their way from one worker to another. */
#define ZS_HANDOFF 8
static pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;
static struct zs_block handoff[ZS_HANDOFF];
static size_t nhandoff;

struct zs_arena *zs_arena_new(size_t capacity, int shared)
{
    struct zs_setting_snap snap;
    zs_settings_read(&snap);
    zz_arena *a = zz_arena_create(capacity);
    int err = errno;
    int policy, backend;
    zs_settings_settle(&snap, &policy, &backend);
    if (a == NULL) {
        char what[64];
        snprintf(what, sizeof what, "zz_arena_create(%zu)", capacity);
        zs_check_clean_failure(what, err);
        if (!zs_cfg.nocap)
            zs_fail("%s failed with errno %d in a process with CAP_IPC_LOCK: %s", what, err,
                    zz_last_error());
        return NULL;
    }
    struct zs_arena *ar = calloc(1, sizeof *ar);
    ZS_CHECK(ar != NULL, "calloc");
    ar->a = a;
    ar->capacity = capacity;
    ar->backend = backend == ZZ_BACKEND_AUTO ? -1 : backend;
    ar->policy = policy;
    ar->shared = shared;
    ar->id = atomic_fetch_add(&arena_ids, 1);
    return ar;
}

static struct zs_arena *pick_arena(struct zs_thread *t)
{
    size_t shared = ZS_ON(ZS_F_SHARED) ? ZS_SHARED_ARENAS : 0;
    size_t n = t->narenas + shared;
    if (n == 0)
        return NULL;
    size_t k = zs_below(&t->rng, n);
    return k < t->narenas ? t->arenas[k] : zs_shared[k - t->narenas]; /* may be NULL */
}

static size_t arena_size(struct zs_thread *t)
{
    uint64_t r = zs_below(&t->rng, 1000);
    if (r < 20)
        return 0;
    if (r < 600)
        return 1 + zs_below(&t->rng, 64);
    if (r < 900)
        return 65 + zs_below(&t->rng, 960);
    if (r < 990 || !ZS_ON(ZS_F_BIG))
        return 1025 + zs_below(&t->rng, 16336 - 1024);
    return 16337 + zs_below(&t->rng, 100000); /* a growable arena's own mapping */
}

static void arena_alloc(struct zs_thread *t)
{
    if (t->nblocks >= ZS_MAX_BLOCKS)
        return;
    struct zs_arena *ar = pick_arena(t);
    if (ar == NULL)
        return;
    size_t n = arena_size(t);
    struct zs_setting_snap snap;
    zs_settings_read(&snap);
    zs_log(t, "zz_arena_alloc(arena%u%s, %zu)", ar->id, ar->capacity ? " fixed" : "", n);
    void *p = zz_arena_alloc(ar->a, n);
    int err = errno;
    int policy, backend;
    zs_settings_settle(&snap, &policy, &backend);
    t->n.arena_ops++;
    if (p == NULL) {
        zs_log(t, "  -> NULL errno %d", err);
        char what[96];
        snprintf(what, sizeof what, "zz_arena_alloc(arena%u, %zu)", ar->id, n);
        zs_check_clean_failure(what, err);
        t->n.clean_failures++;
        /* A fixed arena with no room: ENOMEM.  A growable arena serves any
         * size (large blocks on mappings of their own): only a lock limit
         * may refuse. */
        if (!zs_cfg.nocap && !(err == ENOMEM && ar->capacity > 0))
            zs_fail("%s failed with errno %d in a process with CAP_IPC_LOCK: %s", what, err,
                    zz_last_error());
        return;
    }
    zs_log(t, "  -> %p", p);
    struct zs_block b = { .p = p, .n = n, .align = 16, .kind = ZS_K_ARENA, .mode = ZZ_READWRITE,
                          .backend = ar->backend, .policy = policy, .arena = ar };
    b.expect = n ? calloc(1, n) : NULL;
    ZS_CHECK(n == 0 || b.expect != NULL, "calloc");
    b.fw = zs_purges_done();
    b.settled = zs_purges_started();
    zs_model_check_new(t, &b, "zz_arena_alloc");
    zs_model_add(t, &b);
}

void zs_arena_free_block(struct zs_thread *t, size_t i)
{
    struct zs_block *b = &t->blocks[i];
    if (zs_chance(&t->rng, 500))
        zs_model_check(t, b, "before zz_arena_free");
    zs_log(t, "zz_arena_free(arena%u, %p) n=%zu", b->arena->id, (void *)b->p, b->n);
    zz_arena_free(b->arena->a, b->p);
    zs_model_remove(t, i);
    t->n.arena_ops++;
    t->n.frees++;
}

static void arena_free_random(struct zs_thread *t)
{
    if (t->nblocks == 0)
        return;
    size_t start = zs_below(&t->rng, t->nblocks);
    for (size_t k = 0; k < t->nblocks; k++) {
        size_t i = (start + k) % t->nblocks;
        if (t->blocks[i].kind == ZS_K_ARENA) {
            zs_arena_free_block(t, i);
            return;
        }
    }
}

static void arena_create_own(struct zs_thread *t)
{
    if (t->narenas >= ZS_MAX_ARENAS)
        return;
    static const size_t caps[] = { 4096, 16384, 65536, 262144, 1 << 20 };
    size_t cap = zs_below(&t->rng, 2) || !ZS_ON(ZS_F_FIXED) ? 0 : caps[zs_below(&t->rng, 5)];
    zs_log(t, "zz_arena_create(%zu)", cap);
    struct zs_arena *ar = zs_arena_new(cap, 0);
    t->n.arena_ops++;
    if (ar == NULL) {
        t->n.clean_failures++;
        return;
    }
    zs_log(t, "  -> arena%u backend %d policy %d", ar->id, ar->backend, ar->policy);
    t->arenas[t->narenas++] = ar;
    t->n.arenas_made++;
}

void zs_arena_destroy_own(struct zs_thread *t, size_t k)
{
    struct zs_arena *ar = t->arenas[k];
    for (size_t i = t->nblocks; i-- > 0;)
        if (t->blocks[i].arena == ar) {
            if (zs_chance(&t->rng, 300))
                zs_model_check(t, &t->blocks[i], "before zz_arena_destroy");
            zs_model_remove(t, i);
        }
    zs_log(t, "zz_arena_destroy(arena%u)", ar->id);
    zz_arena_destroy(ar->a);
    free(ar);
    t->arenas[k] = t->arenas[--t->narenas];
    t->n.arena_ops++;
}

/* Issue 11, defect 1: a purge racing the teardown of an arena holding one
 * block of every size class must never touch released memory. */
static void arena_burst(struct zs_thread *t)
{
    size_t cap = zs_below(&t->rng, 3) == 0 || !ZS_ON(ZS_F_FIXED) ? 0 : (size_t)1 << 20;
    zs_log(t, "burst: zz_arena_create(%zu), one block per class, destroy", cap);
    struct zs_arena *ar = zs_arena_new(cap, 0);
    t->n.arena_ops++;
    if (ar == NULL) {
        t->n.clean_failures++;
        return;
    }
    unsigned char *ptrs[64];
    size_t got = 0;
    for (size_t n = 16; n <= 16336 && got < 64; n += 256) {
        ptrs[got] = zz_arena_alloc(ar->a, n);
        if (ptrs[got] == NULL) {
            zs_check_clean_failure("zz_arena_alloc in a burst", errno);
            if (!zs_cfg.nocap)
                zs_fail("zz_arena_alloc(arena%u, %zu) failed in a 1 MiB arena with CAP_IPC_LOCK: "
                        "errno %d, %s", ar->id, n, errno, zz_last_error());
            break;
        }
        unsigned char pat[64];
        zs_pattern(&t->rng, pat, sizeof pat);
        zs_block_fill(ptrs[got], pat, n < sizeof pat ? n : sizeof pat);
        got++;
    }
    if (zs_below(&t->rng, 2))
        for (size_t k = 0; k < got; k += 2)
            zz_arena_free(ar->a, ptrs[k]);
    zs_log(t, "burst: zz_arena_destroy(arena%u) with %zu blocks", ar->id, got);
    zz_arena_destroy(ar->a);
    free(ar);
}

/* The header: capacity = count * (round_up(n, 16) + 16) always holds count
 * blocks of n bytes, for every n (issue 11, defect 10). */
static void arena_capacity(struct zs_thread *t)
{
    size_t n = zs_below(&t->rng, 3) ? 1 + zs_below(&t->rng, 1024) : 1025 + zs_below(&t->rng, 20000);
    size_t count = 1 + zs_below(&t->rng, n > 1024 ? 40 : 300);
    size_t cap = count * (((n + 15) & ~(size_t)15) + 16);
    zs_log(t, "capacity: zz_arena_create(%zu) for %zu blocks of %zu", cap, count, n);
    struct zs_arena *ar = zs_arena_new(cap, 0);
    t->n.arena_ops++;
    if (ar == NULL) {
        t->n.clean_failures++;
        return;
    }
    void **ptrs = calloc(count, sizeof *ptrs);
    ZS_CHECK(ptrs != NULL, "calloc");
    size_t got = 0;
    for (; got < count; got++) {
        ptrs[got] = zz_arena_alloc(ar->a, n);
        if (ptrs[got] == NULL)
            break;
    }
    int err = errno;
    if (got < count) {
        zs_check_clean_failure("zz_arena_alloc in a fixed arena", err);
        /* Only a lock limit may refuse (a fixed arena created under
         * best-effort, now under ZZ_LOCK_REQUIRED): with CAP_IPC_LOCK every
         * block must fit. */
        if (!zs_cfg.nocap)
            zs_fail("a fixed arena of capacity %zu = %zu * (round_up(%zu, 16) + 16) held only %zu "
                    "blocks of %zu bytes (errno %d): the header promises %zu",
                    cap, count, n, got, n, err, count);
    }
    for (size_t k = 0; k < got; k++)
        zz_arena_free(ar->a, ptrs[k]);
    free(ptrs);
    zz_arena_destroy(ar->a);
    free(ar);
}

/* ---- blocks handed from one worker to another ---- */

static void handoff_give(struct zs_thread *t)
{
    if (t->nblocks == 0)
        return;
    size_t i = zs_below(&t->rng, t->nblocks);
    /* not a block of the worker's own arena: that goes when the worker
     * destroys it */
    if (t->blocks[i].arena != NULL && !t->blocks[i].arena->shared)
        return;
    ZS_CHECK(pthread_mutex_lock(&handoff_lock) == 0, "pthread_mutex_lock");
    if (nhandoff < ZS_HANDOFF) {
        zs_log(t, "hand %p (n=%zu) to another worker", (void *)t->blocks[i].p, t->blocks[i].n);
        handoff[nhandoff++] = t->blocks[i];
        t->blocks[i] = t->blocks[--t->nblocks]; /* the model copy travels with it */
    }
    ZS_CHECK(pthread_mutex_unlock(&handoff_lock) == 0, "pthread_mutex_unlock");
}

static void handoff_take(struct zs_thread *t)
{
    if (t->nblocks >= ZS_MAX_BLOCKS)
        return;
    ZS_CHECK(pthread_mutex_lock(&handoff_lock) == 0, "pthread_mutex_lock");
    if (nhandoff > 0) {
        size_t k = zs_below(&t->rng, nhandoff);
        t->blocks[t->nblocks++] = handoff[k];
        handoff[k] = handoff[--nhandoff];
        zs_log(t, "took %p (n=%zu) from another worker", (void *)t->blocks[t->nblocks - 1].p,
               t->blocks[t->nblocks - 1].n);
    }
    ZS_CHECK(pthread_mutex_unlock(&handoff_lock) == 0, "pthread_mutex_unlock");
}

struct zs_block *zs_handoff_blocks(size_t *n)
{
    *n = nhandoff;
    return handoff;
}

void zs_arena_forget_blocks(struct zs_arena *ar)
{
    for (int w = 0; w < zs_cfg.threads; w++) {
        struct zs_thread *t = zs_threads[w];
        for (size_t i = t->nblocks; i-- > 0;)
            if (t->blocks[i].arena == ar)
                zs_model_remove(t, i);
    }
    for (size_t k = nhandoff; k-- > 0;)
        if (handoff[k].arena == ar) {
            free(handoff[k].expect);
            handoff[k] = handoff[--nhandoff];
        }
}

void zs_handoff_drain(struct zs_thread *to)
{
    while (nhandoff > 0 && to->nblocks < ZS_MAX_BLOCKS)
        to->blocks[to->nblocks++] = handoff[--nhandoff];
    while (nhandoff > 0) {
        struct zs_block *b = &handoff[--nhandoff];
        if (b->kind == ZS_K_ARENA)
            zz_arena_free(b->arena->a, b->p);
        else
            zz_free(b->p);
        free(b->expect);
    }
}

int zs_arena_step(struct zs_thread *t, unsigned pick)
{
    if (pick < 380)
        arena_alloc(t);
    else if (pick < 700)
        arena_free_random(t);
    else if (pick < 760)
        arena_create_own(t);
    else if (pick < 800) {
        if (t->narenas > 0)
            zs_arena_destroy_own(t, zs_below(&t->rng, t->narenas));
    } else if (pick < 830)
        arena_burst(t);
    else if (pick < 845) {
        if (ZS_ON(ZS_F_CAPACITY) && ZS_ON(ZS_F_FIXED))
            arena_capacity(t);
    } else if (pick < 920)
        handoff_give(t);
    else
        handoff_take(t);
    return 0;
}
