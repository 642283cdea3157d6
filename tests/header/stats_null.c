/* Must not compile with -Werror: zz_get_stats has nowhere to write. */
#include <zeroize.h>

void stats_nowhere(void);
void stats_nowhere(void)
{
    zz_get_stats(NULL);
}
