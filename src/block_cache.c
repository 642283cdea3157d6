/*
 * block_cache.c - the bound of zz_alloc's free-slot cache: a class keeps
 * cached up to the largest of 1 MiB, its live slot bytes and the peak of its
 * slot bytes in use, a peak held for one decay period and then halved every
 * period (default 10 s; ZEROIZE_CACHE_DECAY_MS, zz_set_cache_decay_ms).
 * So a burst of blocks that
 * is freed and comes back within a few periods finds its slots still mapped,
 * guarded, locked and wiped, and makes no system call; memory a burst left
 * behind goes back to the kernel once its demand has faded.  The decay is
 * applied when the class next frees a slab's last block (no timer, no
 * thread).  Whatever the bound, slab.c drops every cached slab at once when
 * a mapping or a lock is refused.
 */
#include <errno.h>
#include <stdlib.h>

#include "block_cache.h"
#include "internal.h"

#define DEFAULT_DECAY_MS 10000u
#define MAX_DECAY_MS (1000u * 3600u * 24u) /* one day */

static _Atomic long decay_ms = -1; /* -1: not read from the environment yet */
static _Atomic unsigned decay_gen;  /* bumped by every zz_set_cache_decay_ms */

/* ZEROIZE_CACHE_DECAY_MS: a decimal number of milliseconds; anything else
 * leaves the default. */
static long decay_from_env(void)
{
    const char *v = zzi_os_getenv("ZEROIZE_CACHE_DECAY_MS");
    if (v == NULL || *v < '0' || *v > '9')
        return DEFAULT_DECAY_MS;
    char *end;
    errno = 0;
    unsigned long ms = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0' || ms > MAX_DECAY_MS)
        return DEFAULT_DECAY_MS;
    return (long)ms;
}

static long current_decay_ms(void)
{
    long ms = atomic_load_explicit(&decay_ms, memory_order_relaxed);
    if (zz_unlikely(ms < 0)) {
        int e = errno;
        long expected = -1;
        atomic_compare_exchange_strong(&decay_ms, &expected, decay_from_env());
        ms = atomic_load(&decay_ms);
        errno = e;
    }
    return ms;
}

ZZ_API int zz_set_cache_decay_ms(unsigned long ms)
{
    if (ms > MAX_DECAY_MS) {
        zzi_fail(ZZ_ERR_ARGUMENT);
        errno = EINVAL;
        return zzi_api_rc(-1);
    }
    atomic_store(&decay_ms, (long)ms);
    atomic_fetch_add(&decay_gen, 1);
    return 0;
}

ZZ_API unsigned long zz_get_cache_decay_ms(void)
{
    return (unsigned long)current_decay_ms();
}

/* peak halved once per whole period elapsed: held in full for the first
 * period, so a burst that comes back at its size within it finds every slot
 * it had (a smooth decay would let a slab go a moment after the burst). */
static size_t decayed(size_t peak, uint64_t elapsed, uint64_t period)
{
    uint64_t halvings = elapsed / period;
    return halvings >= 8 * sizeof(size_t) ? 0 : peak >> halvings;
}

size_t zzi_demand_bound(struct zzi_demand *d, size_t in_use)
{
    long period = current_decay_ms();
    size_t keep = ZZI_CACHE_FLOOR_BYTES > in_use ? ZZI_CACHE_FLOOR_BYTES : in_use;
    if (period == 0) { /* remember nothing */
        d->peak = d->recent = d->decayed = 0;
        return keep;
    }
    unsigned gen = atomic_load_explicit(&decay_gen, memory_order_relaxed);
    if (d->ticks != 0 && d->gen == gen) {
        d->ticks--;
        size_t p = d->recent > d->decayed ? d->recent : d->decayed;
        return p > keep ? p : keep;
    }
    d->ticks = ZZI_DEMAND_TICKS - 1;
    d->gen = gen;
    uint64_t now = zzi_os_now_ms();
    size_t p = now >= d->peak_ms ? decayed(d->peak, now - d->peak_ms, (uint64_t)period) : d->peak;
    if (d->recent >= p) { /* demand came back since we last looked: it is fresh */
        d->peak = d->recent;
        d->peak_ms = now;
        p = d->recent;
    }
    d->recent = in_use;
    d->decayed = p;
    return p > keep ? p : keep;
}

void zzi_demand_forget(struct zzi_demand *d)
{
    d->peak = d->recent = d->decayed = 0;
    d->ticks = 0;
}
