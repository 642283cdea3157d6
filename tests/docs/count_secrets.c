/*
 * count_secrets.c - how many live 32-byte secrets one process can hold: the
 * figures of docs/LIMITS.md's "How many secrets fit" table.
 *
 *   count_secrets alloc|secretmem|arena [CAP]
 *
 * Allocates 32-byte blocks (zz_alloc, zz_alloc_backend(.., SECRETMEM), or
 * zz_arena_alloc from one growable arena) until a call fails or CAP blocks
 * (default 200,000) are live, then prints one line: the count, why it stopped,
 * the VMAs the process had before the first block and after the last, and
 * VmLck, then frees every block.  Run it under ZEROIZE_GUARDS=... and under a
 * lock limit as the table says (tests/docs/limits_table.sh runs every row).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zeroize.h>

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    if (f == NULL)
        return -1;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static long vmlck_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmLck: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    const char *kind = argc > 1 ? argv[1] : "alloc";
    long cap = argc > 2 ? atol(argv[2]) : 200000;
    zz_arena *arena = NULL;
    long before, n = 0;
    int err = 0;
    void **blocks = cap > 0 ? malloc((size_t)cap * sizeof *blocks) : NULL;

    if (blocks == NULL) {
        printf("%s: CAP must be a positive count that fits in memory\n", kind);
        return 1;
    }
    before = count_maps();
    if (strcmp(kind, "arena") == 0 && (arena = zz_arena_create(0)) == NULL) {
        printf("%s: zz_arena_create failed: %s\n", kind, zz_last_error());
        free(blocks);
        return 1;
    }
    for (; n < cap; n++) {
        void *p = strcmp(kind, "secretmem") == 0 ? zz_alloc_backend(32, ZZ_BACKEND_SECRETMEM)
                  : arena != NULL                ? zz_arena_alloc(arena, 32)
                                                 : zz_alloc(32);
        if (p == NULL) {
            err = errno;
            break;
        }
        memset(p, 0x5a, 32);
        blocks[n] = p;
    }
    printf("%s: %ld live blocks, stopped by %s; VMAs before %ld, after %ld; VmLck %ld kB\n", kind, n,
           n == cap ? "the cap" : strerror(err), before, count_maps(), vmlck_kib());
    while (n-- > 0) {
        if (arena != NULL)
            zz_arena_free(arena, blocks[n]);
        else
            zz_free(blocks[n]);
    }
    zz_arena_destroy(arena);
    free(blocks);
    return 0;
}
