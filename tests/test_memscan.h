/*
 * test_memscan.h - scan the whole address space through /proc/self/mem for a
 * secret generated from a seed, without ever holding a copy of that secret.
 * Included by test_util.h (needs its tu_prng_next and tu_page_size).
 */
#ifndef ZZ_TEST_MEMSCAN_H
#define ZZ_TEST_MEMSCAN_H

/* ------------------------------------------------------------------------ */
/* Whole-address-space scan through /proc/self/mem                          */
/* ------------------------------------------------------------------------ */

#define TU_SCAN_BUF (1u << 20)
#define TU_SCAN_MAX_MAPPING ((uintptr_t)64 << 30) /* larger ones are sanitizer shadow */

struct tu_scan {
    int memfd;
    unsigned char *buf;      /* our own window; excluded from the scan */
    unsigned char *vec;      /* mincore vector */
    size_t vec_len;
    uint64_t seed;
    size_t len;              /* secret length, multiple of 8, >= 8 */
    size_t hits;
    size_t bytes_scanned;
};

/* Does the secret start at buf[i]?  Regenerates it word by word. */
static TU_UNUSED int tu_scan_match_at(const unsigned char *p, uint64_t seed, size_t len)
{
    uint64_t s = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t want = tu_prng_next(&s), have;
        memcpy(&have, p + i, 8);
        if (have != want)
            return 0;
    }
    return 1;
}

/* Counts occurrences of the secret in n bytes of the window.  memmem finds
 * candidates by the first 8 bytes (fast, also under valgrind); the rest is
 * regenerated for each candidate. */
static TU_UNUSED size_t tu_scan_window(const unsigned char *w, size_t n, uint64_t seed, size_t len)
{
    if (n < len)
        return 0;
    uint64_t s = seed;
    unsigned char first[8];
    uint64_t w0 = tu_prng_next(&s);
    memcpy(first, &w0, 8);
    size_t hits = 0;
    for (size_t i = 0; i + len <= n;) {
        const unsigned char *c = memmem(w + i, n - i, first, 8);
        if (c == NULL || (size_t)(c - w) + len > n)
            break;
        if (tu_scan_match_at(c, seed, len))
            hits++;
        i = (size_t)(c - w) + 1;
    }
    explicit_bzero(first, sizeof first);
    return hits;
}

/* Scans [start, end): a resident run of pages.  Reads through /proc/self/mem
 * in windows that overlap by len-1 bytes so no occurrence straddles two. */
static TU_UNUSED void tu_scan_run(struct tu_scan *sc, uintptr_t start, uintptr_t end)
{
    size_t pg = tu_page_size();
    uintptr_t at = start;
    while (at < end) {
        size_t want = end - at < TU_SCAN_BUF ? (size_t)(end - at) : TU_SCAN_BUF;
        ssize_t got = pread(sc->memfd, sc->buf, want, (off_t)at);
        if (got <= 0) {
            /* unreadable page (guard region, vvar...): skip it */
            at = (at & ~(uintptr_t)(pg - 1)) + pg;
            continue;
        }
        sc->hits += tu_scan_window(sc->buf, (size_t)got, sc->seed, sc->len);
        sc->bytes_scanned += (size_t)got;
        explicit_bzero(sc->buf, (size_t)got);
        if ((size_t)got < sc->len || at + (size_t)got >= end)
            at += (size_t)got;
        else
            at += (size_t)got - (sc->len - 1);
    }
}

/* Scans one mapping, skipping pages that are not resident (no swap here, so
 * a non-resident anonymous page holds nothing) and our own window. */
static TU_UNUSED void tu_scan_mapping(struct tu_scan *sc, uintptr_t start, uintptr_t end)
{
    size_t pg = tu_page_size();
    uintptr_t bs = (uintptr_t)sc->buf, be = bs + TU_SCAN_BUF;
    if (start < be && end > bs) {            /* cut our window out */
        if (start < bs)
            tu_scan_mapping(sc, start, bs);
        if (end > be)
            tu_scan_mapping(sc, be, end);
        return;
    }
    for (uintptr_t c = start; c < end;) {
        size_t span = sc->vec_len * pg;
        size_t n = end - c < span ? (size_t)(end - c) : span;
        if (mincore((void *)c, n, sc->vec) != 0) {
            tu_scan_run(sc, c, c + n);   /* cannot tell: read it all */
            c += n;
            continue;
        }
        size_t pages = n / pg;
        for (size_t i = 0; i < pages;) {
            if (!(sc->vec[i] & 1)) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < pages && (sc->vec[j] & 1))
                j++;
            tu_scan_run(sc, c + i * pg, c + j * pg);
            i = j;
        }
        c += n;
    }
}

/* Counts how many times the len-byte secret of `seed` occurs anywhere in the
 * process's memory (every mapping, readable or not: /proc/self/mem reads
 * PROT_NONE pages too).  Returns (size_t)-1 if the scan could not run. */
static TU_UNUSED size_t tu_scan_memory(uint64_t seed, size_t len, size_t *bytes_scanned)
{
    struct tu_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.seed = seed;
    sc.len = len;
    sc.memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (sc.memfd < 0)
        return (size_t)-1;
    sc.buf = mmap(NULL, TU_SCAN_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    sc.vec_len = 1u << 20;
    sc.vec = mmap(NULL, sc.vec_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FILE *maps = fopen("/proc/self/maps", "r");
    /* Snapshot the list first: scanning allocates nothing, but fopen did. */
    size_t cap = 8192, n = 0;
    uintptr_t(*ranges)[2] = malloc(cap * sizeof *ranges);
    if (sc.buf == MAP_FAILED || sc.vec == MAP_FAILED || maps == NULL || ranges == NULL) {
        close(sc.memfd);
        if (maps != NULL)
            fclose(maps);
        free(ranges);
        return (size_t)-1;
    }
    char line[512];
    while (fgets(line, sizeof line, maps) != NULL) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) != 2)
            continue;
        if (n == cap) {
            void *bigger = realloc(ranges, 2 * cap * sizeof *ranges);
            if (bigger == NULL)
                break;
            ranges = bigger;
            cap *= 2;
        }
        ranges[n][0] = s;
        ranges[n][1] = e;
        n++;
    }
    fclose(maps);
    for (size_t i = 0; i < n; i++) {
        if (ranges[i][1] - ranges[i][0] > TU_SCAN_MAX_MAPPING)
            continue;
        tu_scan_mapping(&sc, ranges[i][0], ranges[i][1]);
    }
    free(ranges);
    munmap(sc.buf, TU_SCAN_BUF);
    munmap(sc.vec, sc.vec_len);
    close(sc.memfd);
    if (bytes_scanned != NULL)
        *bytes_scanned = sc.bytes_scanned;
    return sc.hits;
}

#endif /* ZZ_TEST_MEMSCAN_H */
