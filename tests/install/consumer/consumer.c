/* A program that uses the installed library the way a user would. */
#include <stdio.h>
#include <string.h>
#include <zeroize.h>

int main(void)
{
    unsigned char *key = zz_alloc(32);
    if (key == NULL) {
        fprintf(stderr, "zz_alloc: %s\n", zz_last_error());
        return 1;
    }
    memset(key, 0xA5, 32);
    int ok = (zz_info(key) & ZZ_INFO_GUARDED) && zz_size(key) == 32;
    zz_free(key);
    printf("consumer %s (zeroize %s)\n", ok ? "ok" : "FAILED", zz_version());
    return ok ? 0 : 1;
}
