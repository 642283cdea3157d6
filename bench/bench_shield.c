/*
 * bench_shield.c - zz-bench shield: what a shielded secret costs
 * (libzeroize-shield, issue 21), side by side in one process, the
 * measurements taking turns in every repetition:
 *   - open + read + close of a 32-byte secret, against a zz_alloc + memcpy +
 *     zz_free pair and the prekey hash (BLAKE2b over the 16 KiB prekey, as
 *     every open does), reported on its own;
 *   - the same pair with the block made read-only (zz_protect), which is
 *     what an open does besides the cryptography: two protection changes;
 *   - seal of 1 MiB against libsodium's XChaCha20-Poly1305 on a plain,
 *     pre-faulted buffer.
 * Targets (issue 21): open+close <= 10 x pair + one prekey hash; seal of
 * 1 MiB <= 1.5 x the AEAD alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zeroize_shield.h>

#include "bench.h"

#define SMALL 32
#define BIG ((size_t)1 << 20)

static double ns_per(uint64_t t0, uint64_t t1, uint64_t n)
{
    return (double)(t1 - t0) / (double)n;
}

static double time_pair(uint64_t n)
{
    static const unsigned char src[SMALL] = { 1, 2, 3 };
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *p = zz_alloc(SMALL);
        memcpy(p, src, SMALL);
        zb_barrier(p);
        zz_free(p);
    }
    return ns_per(t0, zb_clock_ns(), n);
}

static double time_readonly_pair(uint64_t n)
{
    static const unsigned char src[SMALL] = { 1, 2, 3 };
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        unsigned char *p = zz_alloc(SMALL);
        memcpy(p, src, SMALL);
        if (zz_protect(p, ZZ_READONLY) != 0)
            abort();
        zb_barrier(p);
        zz_free(p);
    }
    return ns_per(t0, zb_clock_ns(), n);
}

static double time_prekey_hash(const unsigned char *prekey, uint64_t n)
{
    static const unsigned char salt[16], personal[16];
    unsigned char key[32];
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        crypto_generichash_blake2b_salt_personal(key, sizeof key, prekey, ZZ_SHIELD_PREKEY_BYTES,
                                                 NULL, 0, salt, personal);
        zb_barrier(key);
    }
    double r = ns_per(t0, zb_clock_ns(), n);
    sodium_memzero(key, sizeof key);
    return r;
}

static double time_open_close(zz_shielded *s, uint64_t n)
{
    volatile unsigned char sink = 0;
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *p = zz_shield_open(s);
        if (p == NULL)
            abort();
        sink ^= p[SMALL - 1];
        zz_shield_close(s, p);
    }
    (void)sink;
    return ns_per(t0, zb_clock_ns(), n);
}

/* ns per MiB: seal of a filled source (refilled, untimed, for each). */
static double time_seal(unsigned char *src, uint64_t n)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        memset(src, (int)(i + 1), BIG);
        uint64_t t0 = zb_clock_ns();
        zz_shielded *s = zz_shield_seal(src, BIG);
        total += zb_clock_ns() - t0;
        if (s == NULL)
            abort();
        zz_shield_destroy(s);
    }
    return (double)total / (double)n;
}

static double time_aead(const unsigned char *src, unsigned char *dst, uint64_t n)
{
    static const unsigned char key[32] = { 7 }, nonce[24] = { 9 };
    unsigned char tag[16];
    uint64_t t0 = zb_clock_ns();
    for (uint64_t i = 0; i < n; i++) {
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(dst, tag, NULL, src, BIG, NULL, 0,
                                                            NULL, nonce, key);
        zb_barrier(dst);
    }
    return ns_per(t0, zb_clock_ns(), n);
}

enum { PAIR, RO_PAIR, HASH, OPEN, SEAL, AEAD, NCOLS };

static const struct {
    const char *column, *description;
} cols[NCOLS] = {
    {"zz_alloc pair", "zz_alloc(32) + memcpy + zz_free"},
    {"read-only pair", "zz_alloc(32) + memcpy + zz_protect(ZZ_READONLY) + zz_free"},
    {"prekey hash", "BLAKE2b-256 over the 16 KiB prekey (libsodium), as each open and seal does"},
    {"open+close", "zz_shield_open + read + zz_shield_close of a 32-byte secret"},
    {"seal 1 MiB", "zz_shield_seal of 1 MiB (ciphertext allocated, source wiped)"},
    {"AEAD 1 MiB", "crypto_aead_xchacha20poly1305_ietf_encrypt_detached of 1 MiB, plain buffers"},
};

static void print_table(void)
{
    zb_table *t = zb_table_new(3);
    zb_table_header(t, 0, "measurement");
    zb_table_header(t, 1, "ns");
    zb_table_header(t, 2, "what");
    for (int c = 0; c < NCOLS; c++) {
        const zb_summary *s = zb_lookup("shield", "shield", "32 B", cols[c].column, "ns");
        if (s == NULL)
            s = zb_lookup("shield", "shield", "1 MiB", cols[c].column, "ns");
        char cell[64] = "-";
        if (s != NULL)
            zb_format_summary(cell, sizeof cell, *s, 0);
        zb_table_cell(t, c, 0, cols[c].column);
        zb_table_cell(t, c, 1, cell);
        zb_table_cell(t, c, 2, cols[c].description);
    }
    zb_table_print(stdout, t);
    zb_table_free(t);
}

static void add_targets(void)
{
    zb_target_inputs_clear();
    const zb_summary *pair = zb_lookup("shield", "shield", "32 B", cols[PAIR].column, "ns");
    const zb_summary *hash = zb_lookup("shield", "shield", "32 B", cols[HASH].column, "ns");
    const zb_summary *open = zb_lookup("shield", "shield", "32 B", cols[OPEN].column, "ns");
    if (pair && hash && open)
        zb_target("shield", "open+close 32 B vs 10 x zz_alloc pair + prekey hash",
                  open->median / (10 * pair->median + hash->median),
                  open->q1 / (10 * pair->q3 + hash->q3), 1.0, 1,
                  "open+close <= 10 x pair + 1 prekey hash");
    const zb_summary *seal = zb_lookup("shield", "shield", "1 MiB", cols[SEAL].column, "ns");
    const zb_summary *aead = zb_lookup("shield", "shield", "1 MiB", cols[AEAD].column, "ns");
    if (seal && aead)
        zb_target("shield", "seal 1 MiB vs XChaCha20-Poly1305 on a plain buffer",
                  seal->median / aead->median, seal->q1 / aead->q3, 1.5, 1, "<= 1.5 x");
}

int zb_run_shield(const zb_options *opt)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "zz-bench: shield: sodium_init failed\n");
        return -1;
    }
    int reps = opt->reps;
    uint64_t small_n = opt->quick ? 50 : 400, pair_n = opt->quick ? 5000 : 40000;
    uint64_t big_n = opt->quick ? 2 : 8;
    unsigned char *src = malloc(BIG), *dst = malloc(BIG), *prekey = zz_alloc(ZZ_SHIELD_PREKEY_BYTES);
    unsigned char secret[SMALL];
    memset(secret, 0x5a, sizeof secret);
    zz_shielded *s = zz_shield_seal(secret, sizeof secret);
    if (src == NULL || dst == NULL || prekey == NULL || s == NULL) {
        fprintf(stderr, "zz-bench: shield: setup failed: %s %s\n", strerror(errno),
                zz_shield_last_error());
        return -1;
    }
    randombytes_buf(prekey, ZZ_SHIELD_PREKEY_BYTES);
    memset(src, 1, BIG);
    memset(dst, 0, BIG);
    double *v = calloc((size_t)reps * NCOLS, sizeof *v);
    if (v == NULL)
        return -1;
    fprintf(stderr, "zz-bench: shield: %d reps\n", reps);
    time_pair(pair_n / 10); /* warm up: slabs, thread cache, page faults */
    time_open_close(s, 4);
    for (int r = 0; r < reps; r++) {
        v[PAIR * reps + r] = time_pair(pair_n);
        v[RO_PAIR * reps + r] = time_readonly_pair(small_n);
        v[HASH * reps + r] = time_prekey_hash(prekey, small_n);
        v[OPEN * reps + r] = time_open_close(s, small_n);
        v[SEAL * reps + r] = time_seal(src, big_n);
        v[AEAD * reps + r] = time_aead(src, dst, big_n);
    }
    for (int c = 0; c < NCOLS; c++) {
        zb_declare_column("shield", cols[c].column, cols[c].description);
        int big = c == SEAL || c == AEAD;
        zb_record("shield", "shield", big ? "1 MiB" : "32 B", big ? (double)BIG : SMALL,
                  cols[c].column, "ns", "ns", zb_summarize(&v[c * reps], reps));
    }
    zz_shield_destroy(s);
    zz_free(prekey);
    free(src);
    free(dst);
    free(v);

    printf("## shield\n\n");
    printf("Shielded secrets (libzeroize-shield): each figure is the median of %d repetitions, "
           "the measurements taking turns in each, ± as in the other tables.  Clock: %s.  An "
           "open derives its key from the whole prekey (no derived key is cached), decrypts, and "
           "makes the block read-only; a close makes it writable again to wipe it: the read-only "
           "pair row shows what those two protection changes cost on this machine.\n\n",
           reps, zb_clock_is_cpu() ? "CPU time of the thread" : "wall time");
    print_table();
    add_targets();
    zb_print_targets(stdout, "shield");
    zb_print_notes(stdout, "shield");
    return 0;
}
