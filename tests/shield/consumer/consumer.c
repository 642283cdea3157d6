/* A program outside the tree, built against the installed libzeroize-shield. */
#include <stdio.h>
#include <zeroize_shield.h>

int main(void)
{
    unsigned char key[4] = { 1, 2, 3, 4 };
    zz_shielded *s = zz_shield_seal(key, sizeof key);
    const unsigned char *p = s != NULL ? zz_shield_open(s) : NULL;
    if (p == NULL || p[3] != 4 || key[3] != 0)
        return 1;
    zz_shield_close(s, p);
    zz_shield_destroy(s);
    printf("shield consumer ok\n");
    return 0;
}
