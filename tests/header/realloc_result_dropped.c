/* Must not compile with -Werror: zz_realloc frees p on success, so a call
 * that drops its result loses the block (warn_unused_result). */
#include <zeroize.h>

void drop(void *p);
void drop(void *p)
{
    zz_realloc(p, 64);
}
