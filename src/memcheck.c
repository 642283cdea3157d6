/*
 * memcheck.c - valgrind memcheck client requests, out of line.  The
 * allocation paths call these only when running under valgrind (internal.h's
 * ZZ_VG_* macros test zzi_on_valgrind first), so the requests' argument
 * arrays never sit in the fast paths' stack frames.
 */
#include "internal.h"

#ifdef ZZ_VALGRIND
int zzi_on_valgrind;

void zzi_vg_noaccess(const void *p, size_t n)
{
    VALGRIND_MAKE_MEM_NOACCESS(p, n);
}

void zzi_vg_undefined(const void *p, size_t n)
{
    VALGRIND_MAKE_MEM_UNDEFINED(p, n);
}

void zzi_vg_defined(const void *p, size_t n)
{
    VALGRIND_MAKE_MEM_DEFINED(p, n);
}

void zzi_vg_malloclike(const void *p, size_t n)
{
    VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, 1);
}

void zzi_vg_freelike(const void *p)
{
    VALGRIND_FREELIKE_BLOCK(p, 0);
}
#else
typedef int zzi_memcheck_not_built; /* ISO C wants something in a file */
#endif
