/* Must not compile with -Werror: zz_protect(NULL, ...) is always a bug. */
#include <zeroize.h>

int protect_nothing(void);
int protect_nothing(void)
{
    return zz_protect(NULL, ZZ_READONLY);
}
