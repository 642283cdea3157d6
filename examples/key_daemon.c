/*
 * key_daemon.c - the shape of a daemon that holds a long-term key and many
 * short-lived session keys, using zeroize the way it is meant to be used:
 *
 *   - the master key lives in its own guarded, locked block, read-only except
 *     while it is being rotated;
 *   - session keys are packed into an arena;
 *   - SIGTERM/SIGINT wipe every secret before the process dies;
 *   - tokens are compared in constant time.
 *
 * Run: ./key_daemon [requests]   (default 5; prints what protects the key)
 * The "crypto" here is a stand-in (XOR); use a real KDF in a real daemon.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <zeroize.h>

#define KEY_LEN 32

static void die(const char *what)
{
    fprintf(stderr, "key_daemon: %s: %s\n%s\n", what, strerror(errno), zz_last_error());
    exit(1);
}

static void fill_random(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("getrandom");
        p += r;
        n -= (size_t)r;
    }
}

static unsigned char *load_master_key(void)
{
    unsigned char *key = zz_alloc(KEY_LEN);
    if (key == NULL)
        die("cannot allocate the master key");
    fill_random(key, KEY_LEN); /* straight into secure memory: no copy on the stack */
    if (zz_protect(key, ZZ_READONLY) != 0)
        die("cannot make the key read-only");
    return key;
}

/* A stand-in for a KDF: session = master XOR request id. */
static void derive_session_key(const unsigned char *master, unsigned id, unsigned char *out)
{
    for (size_t i = 0; i < KEY_LEN; i++)
        out[i] = master[i] ^ (unsigned char)(id >> (8 * (i % 4)));
}

static void print_protections(const char *name, const void *p)
{
    unsigned f = zz_info(p);
    printf("%-12s locked=%s dontdump=%s wipeonfork=%s guarded=%s canary=%s\n", name,
           f & ZZ_INFO_LOCKED ? "yes" : "NO", f & ZZ_INFO_DONTDUMP ? "yes" : "NO",
           f & ZZ_INFO_WIPEONFORK ? "yes" : "NO", f & ZZ_INFO_GUARDED ? "yes" : "NO",
           f & ZZ_INFO_CANARY ? "yes" : "NO");
}

int main(int argc, char **argv)
{
    unsigned requests = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 5;
    static const int fatal_signals[] = {SIGTERM, SIGINT, SIGHUP};
    if (zz_purge_on_signals(fatal_signals, 3) != 0)
        die("cannot install the purge handlers");

    unsigned char *master = load_master_key();
    zz_arena *sessions = zz_arena_create(0);
    if (sessions == NULL)
        die("cannot create the session arena");
    print_protections("master key", master);

    for (unsigned id = 1; id <= requests; id++) {
        unsigned char *session = zz_arena_alloc(sessions, KEY_LEN);
        unsigned char *again = zz_arena_alloc(sessions, KEY_LEN);
        if (session == NULL || again == NULL)
            die("cannot allocate a session key");
        derive_session_key(master, id, session);
        derive_session_key(master, id, again);
        if (id == 1)
            print_protections("session key", session);
        printf("request %u: session key %s\n", id,
               zz_equal(session, again, KEY_LEN) ? "verified" : "MISMATCH");
        zz_arena_free(sessions, again);
        zz_arena_free(sessions, session); /* wiped on free */
    }

    /* Rotation: writable only for as long as it takes. */
    if (zz_protect(master, ZZ_READWRITE) != 0)
        die("cannot unprotect the key for rotation");
    fill_random(master, KEY_LEN);
    if (zz_protect(master, ZZ_READONLY) != 0)
        die("cannot protect the rotated key");
    printf("master key rotated\n");

    zz_stats st;
    zz_get_stats(&st);
    printf("live blocks %zu, live bytes %zu, locked %zu bytes, mapped %zu bytes\n",
           st.live_blocks, st.live_bytes, st.locked_bytes, st.mapped_bytes);

    zz_arena_destroy(sessions);
    zz_free(master); /* works in read-only mode; wipes first */
    zz_get_stats(&st);
    printf("after shutdown: live blocks %zu\n", st.live_blocks);
    return st.live_blocks == 0 ? 0 : 1;
}
