/*
 * fuzz_shield.h - the shielded-secret operations of fuzz_ops.c (issue 21),
 * included by it when built with libzeroize-shield (ZZ_FUZZ_SHIELD): seal
 * (from a caller buffer, or a live zz_alloc block of the model), open,
 * close, destroy and re-key, against a model of what each object holds, what
 * its open block must read (read-only, guarded, the plaintext; zeros after a
 * purge) and which opens must fail (EBUSY while open, ENOKEY after a purge).
 * The shield's own blocks (the prekey and its fork sentinel, the open
 * blocks) count in zz_get_stats, and check_all adds them.  Never misuses the
 * API: a close only of what is open, a destroy only after a close.
 */
#include "zeroize_shield.h"

#define MAX_SHIELDED 8

struct shielded {
    zz_shielded *s;              /* NULL: slot unused */
    size_t n;
    unsigned char *shadow;       /* the secret as sealed */
    const unsigned char *open;   /* the open block, or NULL */
    int open_zeroed;             /* a purge ran while open: the block reads zeros */
    int dead;                    /* a purge wiped its prekey: ENOKEY for good */
    int secret;                  /* the open block is in secretmem (unreadable by pread) */
};

static struct shielded SH[MAX_SHIELDED];
static int shield_armed; /* the process has its prekey block and sentinel (never freed) */

static struct shielded *shielded_pick(struct input *in, int live)
{
    int start = u8(in) % MAX_SHIELDED;
    for (int k = 0; k < MAX_SHIELDED; k++) {
        struct shielded *x = &SH[(start + k) % MAX_SHIELDED];
        if ((x->s != NULL) == live)
            return x;
    }
    return NULL;
}

static void shielded_keep(struct shielded *x, zz_shielded *s, unsigned char *shadow, size_t n)
{
    CHECK(zz_shield_size(s) == n, "zz_shield_size %zu, sealed %zu", zz_shield_size(s), n);
    x->s = s;
    x->n = n;
    x->shadow = shadow;
    x->open = NULL;
    x->open_zeroed = x->dead = 0;
    shield_armed = 1;
}

static void op_shield_seal(struct input *in)
{
    struct shielded *x = shielded_pick(in, 0);
    size_t n = pick_size(in) % 4097;
    if (x == NULL)
        return;
    unsigned char *src = malloc(n + 1), *shadow = malloc(n + 1);
    CHECK(src != NULL && shadow != NULL, "malloc");
    fill_random(src, n);
    memcpy(shadow, src, n);
    zz_shielded *s = zz_shield_seal(src, n);
    CHECK(s != NULL, "zz_shield_seal(%zu) failed: %s", n, zz_shield_last_error());
    CHECK(zz_is_zero(src, n), "zz_shield_seal left its source unwiped");
    free(src);
    shielded_keep(x, s, shadow, n);
}

/* Seals a live, readable zz_alloc block of the model, which is freed. */
static void op_shield_seal_block(struct input *in)
{
    struct shielded *x = shielded_pick(in, 0);
    struct block *b = live_block(in);
    if (x == NULL || b == NULL || b->mode == ZZ_NOACCESS)
        return;
    zz_shielded *s = zz_shield_seal_block(b->p);
    CHECK(s != NULL, "zz_shield_seal_block(%zu) failed: %s", b->n, zz_shield_last_error());
    check_stale(b->p, b->n, b->secret, "sealed block");
    unsigned char *shadow = b->shadow;
    size_t n = b->n;
    b->shadow = NULL;
    block_forget(b);
    shielded_keep(x, s, shadow, n);
}

static void op_shield_open(struct input *in)
{
    struct shielded *x = shielded_pick(in, 1);
    if (x == NULL)
        return;
    errno = 0;
    const unsigned char *p = zz_shield_open(x->s);
    if (x->open != NULL) {
        expect_error(p, EBUSY, "zz_shield_open of an open object");
        return;
    }
    if (x->dead) {
        expect_error(p, ENOKEY, "zz_shield_open after a purge");
        return;
    }
    CHECK(p != NULL, "zz_shield_open failed: %s", zz_shield_last_error());
    CHECK(zz_size(p) == x->n, "open block of %zu bytes, sealed %zu", zz_size(p), x->n);
    unsigned want = ZZ_INFO_GUARDED | ZZ_INFO_CANARY | ZZ_INFO_DONTDUMP | ZZ_INFO_WIPEONFORK;
    CHECK((zz_info(p) & want) == want, "open block zz_info %#x", zz_info(p));
    if (x->n > 0)
        CHECK(!can_access(p, 1), "open block is writable");
    x->open = p;
    x->open_zeroed = 0;
    x->secret = (zz_info(p) & ZZ_INFO_SECRETMEM) != 0;
}

static void shield_close(struct shielded *x)
{
    errno = 4242;
    zz_shield_close(x->s, x->open);
    CHECK(errno == 4242, "zz_shield_close changed errno to %d", errno);
    check_stale(x->open, x->n, x->secret, "closed block"); /* via /proc/self/mem */
    x->open = NULL;
}

static void op_shield_close(struct input *in)
{
    struct shielded *x = shielded_pick(in, 1);
    if (x != NULL && x->open != NULL)
        shield_close(x);
}

static void shield_destroy(struct shielded *x)
{
    if (x->open != NULL)
        shield_close(x);
    zz_shield_destroy(x->s);
    free(x->shadow);
    memset(x, 0, sizeof *x);
}

static void op_shield_destroy(struct input *in)
{
    struct shielded *x = shielded_pick(in, 1);
    if (x != NULL)
        shield_destroy(x);
}

static void op_shield_rekey(void)
{
    CHECK(zz_shield_rekey() == 0, "zz_shield_rekey failed: %s", zz_shield_last_error());
}

/* After zz_purge: every prekey is gone, every open block reads zeros. */
static void shield_after_purge(void)
{
    for (int i = 0; i < MAX_SHIELDED; i++) {
        if (SH[i].s == NULL)
            continue;
        SH[i].dead = 1;
        if (SH[i].open != NULL)
            SH[i].open_zeroed = 1;
    }
}

/* Checks every open block, and adds the shield's blocks to the counts. */
static void shield_check(size_t *blocks, size_t *bytes)
{
    if (shield_armed) {
        *blocks += 2; /* the prekey block (its id and 16 KiB) and the sentinel word */
        *bytes += 8 + ZZ_SHIELD_PREKEY_BYTES + 8;
    }
    for (int i = 0; i < MAX_SHIELDED; i++) {
        struct shielded *x = &SH[i];
        if (x->s == NULL || x->open == NULL)
            continue;
        if (x->open_zeroed)
            CHECK(zz_is_zero(x->open, x->n), "open block not wiped by the purge");
        else
            CHECK(x->n == 0 || memcmp(x->open, x->shadow, x->n) == 0,
                  "open block differs from the sealed secret");
        *blocks += 1;
        *bytes += x->n;
    }
}

static void shield_teardown(void)
{
    for (int i = 0; i < MAX_SHIELDED; i++)
        if (SH[i].s != NULL)
            shield_destroy(&SH[i]);
}
