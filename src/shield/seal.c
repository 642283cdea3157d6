/*
 * seal.c - shielded objects: seal, open, close, destroy, and the re-seal of
 * every live object when the prekey changes.  keyring.c owns the prekey and
 * the locks; libsodium does the cryptography (XChaCha20-Poly1305).
 *
 * An object is a header (this file's pool: headers are never given back to
 * malloc, so a stale pointer to a destroyed object still finds its state)
 * and a ciphertext in ordinary memory.  Its state moves
 *     SEALED -> OPENING -> OPEN -> CLOSING -> SEALED,   SEALED -> DESTROYED
 * by compare-and-swap, so two threads that misuse one object find out.
 */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "shield.h"

enum { SEALED = 1, OPENING, OPEN, CLOSING, DESTROYED };

#define MAGIC 0x7a7a736869656c64ull /* "zzshield" */
#define QUARANTINE 64u              /* destroyed headers kept before reuse */
#define POOL_CHUNK 64u

struct zz_shielded {
    uint64_t magic;
    _Atomic int state;
    int unopenable;          /* EBADMSG found by a re-key: stays so */
    size_t len;
    unsigned char *ct;       /* len bytes of ciphertext (NULL when len == 0) */
    uint64_t keyring_id;     /* the keyring it is sealed under */
    pid_t sealed_by;
    const void *opened;      /* while OPENING: the block being filled; while OPEN: the one returned */
    unsigned char salt[ZZS_SALT_BYTES];
    unsigned char nonce[ZZS_NONCE_BYTES];
    unsigned char tag[ZZS_TAG_BYTES];
    struct zz_shielded *prev, *next; /* the live list, or the free queue */
};

/* Under the object lock. */
static zz_shielded *live;
static zz_shielded *free_head, *free_tail;
static size_t free_count;

/* ---- the header pool and the live list ---------------------------------------------- */

static zz_shielded *header_take(void)
{
    if (free_count <= QUARANTINE) {
        zz_shielded *chunk = calloc(POOL_CHUNK, sizeof *chunk);
        if (chunk == NULL)
            return NULL;
        for (size_t i = 0; i < POOL_CHUNK; i++) {
            chunk[i].magic = MAGIC;
            atomic_init(&chunk[i].state, DESTROYED);
            chunk[i].next = NULL;
            if (free_tail != NULL)
                free_tail->next = &chunk[i];
            else
                free_head = &chunk[i];
            free_tail = &chunk[i];
        }
        free_count += POOL_CHUNK;
    }
    zz_shielded *h = free_head;
    free_head = h->next;
    if (free_head == NULL)
        free_tail = NULL;
    free_count--;
    h->prev = NULL;
    h->next = live;
    if (live != NULL)
        live->prev = h;
    live = h;
    return h;
}

static void header_give_back(zz_shielded *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        live = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    h->prev = NULL;
    h->next = NULL;
    if (free_tail != NULL)
        free_tail->next = h;
    else
        free_head = h;
    free_tail = h;
    free_count++;
}

/* In a forked child: the threads that were opening or closing an object
 * are gone, so those objects are sealed again.  The block an opener had
 * allocated (recorded in ->opened while OPENING) is freed, wiped: nobody
 * holds it.  A closer's block is the child's to lose (close forgets it
 * before zz_free, so freeing it here could free it twice; it reads zeros
 * after a fork).  Objects left open stay open: the child may close them.
 * pre: the child has one thread. */
void zzs_objects_after_fork(void)
{
    for (zz_shielded *s = live; s != NULL; s = s->next) {
        int st = atomic_load_explicit(&s->state, memory_order_relaxed);
        if (st == OPENING && s->opened != NULL)
            zz_free((void *)(uintptr_t)s->opened); /* allocated, never handed out */
        if (st == OPENING || st == CLOSING) {
            s->opened = NULL;
            atomic_store_explicit(&s->state, SEALED, memory_order_relaxed);
        }
    }
}

/* ---- checks ------------------------------------------------------------------------- */

static void check_object(const zz_shielded *s)
{
    ZZS_CHECK(s != NULL && s->magic == MAGIC, "invalid shielded object");
    ZZS_CHECK(atomic_load_explicit(&s->state, memory_order_acquire) != DESTROYED,
              "shielded object used after destroy");
}

/* ---- the AEAD ------------------------------------------------------------------------- */

/* What the tag authenticates besides the ciphertext: the length, the
 * keyring and the header it belongs to, so a ciphertext cannot be moved to
 * another object or replayed under another prekey. */
struct binding {
    uint64_t len, keyring_id, header;
};

/* libsodium's prototypes declare their buffers nonnull, even for 0 bytes. */
static unsigned char empty[1];
#define NONNULL(p) ((p) != NULL ? (p) : empty)

static void bind(struct binding *b, const zz_shielded *s, uint64_t keyring_id)
{
    b->len = s->len;
    b->keyring_id = keyring_id;
    b->header = (uint64_t)(uintptr_t)s;
}

/* Seals len bytes of src into s->ct under kr with a new salt and nonce.
 * Returns 0, or -1 when the prekey was wiped meanwhile. */
static int seal_under(zz_shielded *s, const struct zzs_keyring *kr, const unsigned char *src)
{
    unsigned char key[ZZS_KEY_BYTES];
    zzs_random(s->salt, sizeof s->salt);
    zzs_random(s->nonce, sizeof s->nonce);
    int rc = zzs_derive(kr, s->salt, key);
    if (rc == 0) {
        struct binding b;
        bind(&b, s, kr->id);
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
            NONNULL(s->ct), s->tag, NULL, NONNULL(src), s->len, (const unsigned char *)&b, sizeof b, NULL,
            s->nonce, key);
        s->keyring_id = kr->id;
    }
    zz_wipe(key, sizeof key);
    zzs_burn_stack();
    return rc;
}

/* Decrypts s under kr into dst.  Returns 0, or -1 when the tag does not
 * verify (then dst holds nothing of the plaintext: libsodium checks the tag
 * before it decrypts) or the prekey is gone. */
static int open_under(const zz_shielded *s, const struct zzs_keyring *kr, unsigned char *dst)
{
    unsigned char key[ZZS_KEY_BYTES];
    int rc = zzs_derive(kr, s->salt, key);
    if (rc == 0) {
        struct binding b;
        bind(&b, s, s->keyring_id);
        rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            NONNULL(dst), NULL, NONNULL(s->ct), s->len, s->tag, (const unsigned char *)&b, sizeof b, s->nonce, key);
    }
    zz_wipe(key, sizeof key);
    zzs_burn_stack();
    return rc == 0 ? 0 : -1;
}

/* ---- seal ------------------------------------------------------------------------------ */

static zz_shielded *seal_copy(const unsigned char *src, size_t n)
{
    unsigned char *ct = NULL;
    if (n > 0 && (ct = malloc(n)) == NULL) {
        zzs_fail(ENOMEM, "no memory for a ciphertext%s", n > ((size_t)1 << 40) ? " (n is too large)" : "");
        return NULL;
    }
    const struct zzs_keyring *kr = zzs_enter_to_seal();
    if (kr == NULL) {
        free(ct);
        return NULL;
    }
    zzs_objects_lock();
    zz_shielded *s = header_take();
    zzs_objects_unlock();
    if (s == NULL) {
        zzs_leave();
        free(ct);
        zzs_fail(ENOMEM, "no memory for a shielded object", NULL);
        return NULL;
    }
    s->len = n;
    s->ct = ct;
    s->unopenable = 0;
    s->opened = NULL;
    s->sealed_by = zzs_os_getpid();
    int rc = seal_under(s, kr, src);
    if (rc == 0)
        atomic_store_explicit(&s->state, SEALED, memory_order_release);
    else {
        zzs_objects_lock();
        header_give_back(s);
        zzs_objects_unlock();
    }
    zzs_leave();
    if (rc != 0) {
        free(ct);
        zzs_fail(ENOKEY, "the shield's prekey was wiped (zz_purge) while sealing", NULL);
        return NULL;
    }
    return s;
}

ZZ_EXPORT zz_shielded *zz_shield_seal(void *secret, size_t n)
{
    if (secret == NULL && n > 0) {
        zzs_fail(EINVAL, "zz_shield_seal: secret is NULL", NULL);
        return NULL;
    }
    zz_shielded *s = seal_copy(secret, n);
    if (s != NULL)
        zz_wipe(secret, n);
    return s;
}

ZZ_EXPORT zz_shielded *zz_shield_seal_block(void *block)
{
    size_t n = zz_size(block); /* fatal for anything but a live zz_alloc block */
    zz_shielded *s = seal_copy(block, n);
    if (s != NULL)
        zz_free(block);
    return s;
}

/* ---- open and close ----------------------------------------------------------------------- */

static void fail_unopenable(const zz_shielded *s)
{
    (void)s;
    zzs_fail(EBADMSG, "the shielded object failed authentication: its ciphertext, its tag "
                      "or the process's prekey was modified in memory (a hardware fault or "
                      "an attack); nothing of it was decrypted",
             NULL);
}

/* Decrypts s into out, under the keyring lock.  Returns 0, or -1 with the
 * failure recorded. */
static int decrypt_into(zz_shielded *s, unsigned char *out)
{
    if (s->unopenable) {
        fail_unopenable(s);
        return -1;
    }
    const struct zzs_keyring *kr = zzs_enter_to_open(s->sealed_by);
    if (kr == NULL)
        return -1;
    int rc = 0;
    if (kr->id != s->keyring_id) { /* a child's keyring is its own: ids differ */
        zzs_leave();
        zzs_fail(ENOKEY, s->sealed_by != zzs_os_getpid()
                             ? "this object was sealed in the parent process: a forked child "
                               "does not inherit the shield's prekey, so it cannot be opened "
                               "here; seal the secret again in the child"
                             : "the prekey this object was sealed under was wiped by zz_purge: "
                               "it can never be opened; destroy it",
                 NULL);
        return -1;
    }
    rc = open_under(s, kr, out);
    int purged = rc != 0 && kr->id == 0;
    zzs_leave();
    if (rc != 0) {
        if (purged)
            zzs_fail(ENOKEY, "the shield's prekey was wiped by zz_purge while opening", NULL);
        else
            fail_unopenable(s);
    }
    return rc;
}

ZZ_EXPORT const void *zz_shield_open(zz_shielded *s)
{
    check_object(s);
    zzs_check_fork(); /* an opener of the parent may have left it OPENING */
    int expected = SEALED;
    if (!atomic_compare_exchange_strong_explicit(&s->state, &expected, OPENING,
                                                 memory_order_acquire, memory_order_relaxed)) {
        ZZS_CHECK(expected != DESTROYED, "shielded object used after destroy");
        zzs_fail(EBUSY, "the shielded object is open already: close it before opening it "
                        "again (one opener at a time; serialise threads that share it)",
                 NULL);
        return NULL;
    }
    /* The block first: in a child whose fork ran no handler, libzeroize's
     * next call repairs its memory, and the prekey is read only after. */
    unsigned char *out = zz_alloc(s->len);
    if (out == NULL) {
        zzs_fail_alloc("cannot allocate the block to open a shielded object into");
        atomic_store_explicit(&s->state, SEALED, memory_order_release);
        return NULL;
    }
    s->opened = out; /* not handed out yet: recorded so that a forked child frees it */
    int rc = decrypt_into(s, out);
    if (rc == 0 && s->len > 0 && zz_protect(out, ZZ_READONLY) != 0) {
        zzs_fail_alloc("cannot make the opened block read-only");
        rc = -1;
    }
    if (rc != 0) {
        int e = errno;
        s->opened = NULL;
        zz_free(out);
        atomic_store_explicit(&s->state, SEALED, memory_order_release);
        errno = e;
        return NULL;
    }
    atomic_store_explicit(&s->state, OPEN, memory_order_release);
    return out;
}

ZZ_EXPORT void zz_shield_close(zz_shielded *s, const void *opened)
{
    int e = errno;
    check_object(s);
    int expected = OPEN;
    ZZS_CHECK(atomic_compare_exchange_strong_explicit(&s->state, &expected, CLOSING,
                                                      memory_order_acquire, memory_order_relaxed),
              expected == DESTROYED ? "shielded object used after destroy"
                                    : "shielded object is not open");
    if (zzs_unlikely(opened != s->opened)) {
        atomic_store_explicit(&s->state, OPEN, memory_order_release);
        zzs_fatal("block was not opened from this shielded object");
    }
    s->opened = NULL;
    zz_free((void *)(uintptr_t)opened); /* wipes it, read-only as it is */
    atomic_store_explicit(&s->state, SEALED, memory_order_release);
    errno = e;
}

/* ---- destroy, size ------------------------------------------------------------------------ */

ZZ_EXPORT void zz_shield_destroy(zz_shielded *s)
{
    if (s == NULL)
        return;
    check_object(s);
    int e = errno;
    zzs_enter_to_destroy(); /* a re-key may be re-sealing it */
    int expected = SEALED;
    if (!atomic_compare_exchange_strong_explicit(&s->state, &expected, DESTROYED,
                                                 memory_order_acq_rel, memory_order_relaxed)) {
        zzs_leave();
        zzs_fatal(expected == DESTROYED ? "shielded object used after destroy"
                                        : "shielded object destroyed while open");
    }
    unsigned char *ct = s->ct;
    size_t n = s->len;
    s->ct = NULL;
    zz_wipe(s->salt, sizeof s->salt);
    zz_wipe(s->nonce, sizeof s->nonce);
    zz_wipe(s->tag, sizeof s->tag);
    zzs_objects_lock();
    header_give_back(s);
    zzs_objects_unlock();
    zzs_leave();
    if (ct != NULL) {
        zz_wipe(ct, n);
        free(ct);
    }
    errno = e;
}

ZZ_EXPORT size_t zz_shield_size(const zz_shielded *s)
{
    check_object(s);
    return s->len;
}

/* ---- re-key ---------------------------------------------------------------------------------- */

/* Called with the keyring lock held for writing: no seal, open or destroy
 * runs, so the live list and every ciphertext hold still. */
int zzs_reseal_all(const struct zzs_keyring *cur, const struct zzs_keyring *next)
{
    size_t longest = 0;
    for (zz_shielded *s = live; s != NULL; s = s->next)
        if (s->keyring_id == cur->id && !s->unopenable && s->len > longest)
            longest = s->len;
    unsigned char *plain = zz_alloc(longest);
    if (plain == NULL) {
        zzs_fail_alloc("cannot allocate the block a re-key decrypts into");
        return -1;
    }
    for (zz_shielded *s = live; s != NULL; s = s->next) {
        if (s->keyring_id != cur->id || s->unopenable)
            continue; /* sealed in a parent, or before a purge: gone for good */
        if (open_under(s, cur, plain) != 0) {
            if (cur->id == 0)
                break; /* a purge wiped the prekey: every object is gone */
            s->unopenable = 1; /* keeps reporting EBADMSG, not ENOKEY */
            continue;
        }
        /* cannot fail: next is ours alone until it is installed */
        (void)seal_under(s, next, plain);
        zz_wipe(plain, s->len);
    }
    zz_free(plain);
    return 0;
}

ZZ_EXPORT int zz_shield_rekey(void)
{
    int e = errno;
    struct zzs_keyring *next = zzs_keyring_new();
    if (next == NULL)
        return -1;
    const struct zzs_keyring *cur = zzs_rekey_lock();
    if (cur != NULL && zzs_reseal_all(cur, next) != 0) {
        e = errno;
        zzs_rekey_finish(NULL);
        zzs_keyring_discard(next);
        errno = e;
        return -1;
    }
    zzs_rekey_finish(next);
    errno = e;
    return 0;
}

/* ---- test hooks (hidden; the tests link the static library) ------------------------- */

int zzs_test_object_key(const zz_shielded *s, unsigned char key[ZZS_KEY_BYTES])
{
    return zzs_derive(zzs_test_keyring_block(), s->salt, key);
}

unsigned char *zzs_test_object_bytes(zz_shielded *s, int which, size_t *len)
{
    switch (which) {
    case 0: *len = s->len; return s->ct;
    case 1: *len = sizeof s->tag; return s->tag;
    case 2: *len = sizeof s->nonce; return s->nonce;
    default: *len = sizeof s->salt; return s->salt;
    }
}
