/* Run under valgrind by valgrind_uaf.sh.
 *   clean: ordinary use of the library; memcheck must report nothing.
 *   uaf:   reads a freed block whose slot the library keeps in its cache;
 *          memcheck must report it (the library marks cached slots
 *          inaccessible for memcheck).  A native fault is caught and turned
 *          into exit 3, so valgrind's --error-exitcode still decides. */
#include "test_util.h"

#include <setjmp.h>
#include <valgrind/memcheck.h>

static sigjmp_buf fault_jump;

static void on_fault(int sig)
{
    (void)sig;
    siglongjmp(fault_jump, 1);
}

static int run_clean(void)
{
    for (size_t n = 0; n < 5000; n += 97) {
        unsigned char *p = zz_alloc(n);
        if (p == NULL)
            return 2;
        memset(p, 0x55, n);
        p = zz_realloc(p, n + 50);
        if (p == NULL)
            return 2;
        zz_free(p);
    }
    unsigned char key[64];
    memset(key, 1, sizeof key);
    if (zz_lock(key, sizeof key) != 0 || zz_unlock(key, sizeof key) != 0)
        return 2;
    unsigned char *p = zz_alloc(100);
    if (p == NULL || zz_protect(p, ZZ_READONLY) != 0 || zz_protect(p, ZZ_READWRITE) != 0)
        return 2;
    zz_free(p);
    return 0;
}

OPTNONE static int run_uaf(void)
{
    unsigned char *p = zz_alloc(64);
    if (p == NULL)
        return 2;
    memset(p, 0x42, 64);
    zz_free(p);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigaction(SIGSEGV, &sa, NULL);
    if (sigsetjmp(fault_jump, 1) != 0)
        return 3;
    unsigned char v = VREAD(p + 10);   /* the use after free */
    /* still cached: the next block of that size reuses the slot (LIFO) */
    unsigned char *q = zz_alloc(64);
    int reused = q == p;
    zz_free(q);
    if (!RUNNING_ON_VALGRIND)
        printf("not under valgrind: read %#x, slot %sreused\n", v, reused ? "" : "not ");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "clean") == 0)
        return run_clean();
    if (argc == 2 && strcmp(argv[1], "uaf") == 0)
        return run_uaf();
    fprintf(stderr, "usage: %s clean|uaf\n", argv[0]);
    return 2;
}
