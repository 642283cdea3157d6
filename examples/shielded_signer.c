/*
 * shielded_signer.c - a daemon that keeps its Ed25519 signing key shielded
 * (libzeroize-shield) and opens it only for the moment it signs a request:
 *
 *   - the key pair is made straight into a guarded, locked zz_alloc block,
 *     which zz_shield_seal_block turns into ciphertext (and frees);
 *   - each request opens the key into a read-only block, signs, and closes
 *     it: between requests no plaintext of the key is anywhere in memory;
 *   - a re-key every 1000 ms (checked as requests come) re-seals the key
 *     under a fresh prekey, so a prekey leaking slowly goes stale;
 *   - SIGTERM/SIGINT purge every secret (the prekey included) first.
 *
 * Run: ./shielded_signer [requests]   (default 5)
 * Signatures are Ed25519 (libsodium's crypto_sign), checked against the
 * public key, which is not secret.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zeroize_shield.h>

static void die(const char *what)
{
    fprintf(stderr, "shielded_signer: %s: %s\n%s\n", what, strerror(errno),
            zz_shield_last_error()[0] ? zz_shield_last_error() : zz_last_error());
    exit(1);
}

/* Makes a key pair, the secret half in a zz_alloc block, and seals it. */
static zz_shielded *make_signing_key(unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
    unsigned char *sk = zz_alloc(crypto_sign_SECRETKEYBYTES);
    if (sk == NULL)
        die("zz_alloc");
    crypto_sign_keypair(pk, sk);
    zz_shielded *key = zz_shield_seal_block(sk); /* frees sk: only ciphertext is left */
    if (key == NULL)
        die("zz_shield_seal_block");
    return key;
}

/* One request: open the key, sign, close.  Returns 0 if the signature
 * verifies. */
static int handle_request(zz_shielded *key, const unsigned char *pk, const char *request,
                          unsigned char sig[crypto_sign_BYTES])
{
    const unsigned char *sk = zz_shield_open(key);
    if (sk == NULL)
        die("zz_shield_open");
    crypto_sign_detached(sig, NULL, (const unsigned char *)request, strlen(request), sk);
    zz_shield_close(key, sk); /* the plaintext key is wiped here */
    return crypto_sign_verify_detached(sig, (const unsigned char *)request, strlen(request), pk);
}

int main(int argc, char **argv)
{
    int requests = argc > 1 ? atoi(argv[1]) : 5;
    if (sodium_init() < 0)
        die("sodium_init");
    static const int sigs[] = { SIGTERM, SIGINT };
    if (zz_purge_on_signals(sigs, 2) != 0)
        die("zz_purge_on_signals");
    if (zz_shield_set_rekey_interval_ms(1000) != 0)
        die("zz_shield_set_rekey_interval_ms");

    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    zz_shielded *key = make_signing_key(pk);
    printf("signing key: %zu bytes, sealed (ciphertext only until a request opens it)\n",
           zz_shield_size(key));

    int good = 0;
    for (int i = 0; i < requests; i++) {
        char request[64];
        unsigned char sig[crypto_sign_BYTES];
        snprintf(request, sizeof request, "request %d", i + 1);
        if (handle_request(key, pk, request, sig) == 0)
            good++;
        printf("%s: signed, signature %02x%02x%02x%02x... verifies: %s\n", request, sig[0],
               sig[1], sig[2], sig[3], good == i + 1 ? "yes" : "NO");
        if (i == requests / 2 && zz_shield_rekey() != 0) /* also on demand */
            die("zz_shield_rekey");
    }
    zz_shield_destroy(key);
    zz_stats st;
    zz_get_stats(&st);
    printf("%d of %d signatures verified; after shutdown: live blocks %zu (the prekey and its fork sentinel)\n", good,
           requests, st.live_blocks);
    return good == requests ? 0 : 1;
}
