/*
 * block_cache.h - how many free bytes a zz_alloc size class keeps cached:
 * the demand it remembers (block_cache.c).  slab.c asks it whenever a slab
 * has emptied and could be unmapped.
 */
#ifndef ZZ_BLOCK_CACHE_H
#define ZZ_BLOCK_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* A class's demand: the most slot bytes it had in use lately. */
struct zzi_demand {
    size_t peak;      /* slot bytes in use at the remembered peak           */
    uint64_t peak_ms; /* when that peak was last seen (zzi_os_now_ms)        */
    size_t recent;    /* the most in use since the bound was last computed  */
    size_t decayed;   /* the peak as decayed when the clock was last read   */
    unsigned ticks;   /* bounds left before the clock is read again         */
    unsigned gen;     /* the decay setting's generation it was computed for */
};

/* The floor: a class always keeps this much cached (1 MiB). */
#define ZZI_CACHE_FLOOR_BYTES ((size_t)1 << 20)

/* pre: global lock held.  Called as a slot is handed out (in_use: the
 * class's slot bytes now in use) and as demand maps a slab (in_use: every
 * slot of the class).  No clock read: this is the fast path. */
static inline void zzi_demand_note(struct zzi_demand *d, size_t in_use)
{
    if (in_use > d->recent)
        d->recent = in_use;
}

/* pre: global lock held.  The free bytes the class may keep cached now: the
 * largest of the floor, in_use (its live slot bytes) and its peak decayed
 * by the time since it was seen (halved every decay period).  The clock is
 * read once every ZZI_DEMAND_TICKS calls (or after the decay setting
 * changed): a steady alloc/free pair that empties a slab each time pays no
 * clock read; new demand counts at once, decay a few frees late. */
#define ZZI_DEMAND_TICKS 16u
size_t zzi_demand_bound(struct zzi_demand *d, size_t in_use);

/* The next zzi_demand_bound reads the clock (for stats: an exact figure). */
static inline void zzi_demand_refresh(struct zzi_demand *d)
{
    d->ticks = 0;
}

/* pre: global lock held.  Forgets the peak (memory or the lock limit ran
 * short: the caches give way). */
void zzi_demand_forget(struct zzi_demand *d);

#endif /* ZZ_BLOCK_CACHE_H */
