/* Must compile with -Wall -Wextra -Werror: every NULL here is one that
 * zeroize.h documents as allowed, so no nonnull attribute may reject it. */
#include <zeroize.h>

int null_allowed(void);
int null_allowed(void)
{
    zz_wipe(NULL, 0);
    zz_free(NULL);
    void *p = zz_realloc(NULL, 16);
    zz_free(p);
    zz_arena_free(NULL, NULL);
    zz_arena_destroy(NULL);
    zz_stats s;
    return zz_equal(NULL, NULL, 0) + zz_is_zero(NULL, 0) + (int)zz_size(NULL) +
           (int)zz_info(NULL) + zz_lock(NULL, 0) + zz_unlock(NULL, 0) +
           zz_unlock_keep(NULL, 0) + zz_arena_stats(NULL, &s) + zz_arena_stats(NULL, NULL) +
           zz_purge_on_signals(NULL, 0) + (zz_arena_alloc(NULL, 1) != NULL);
}
