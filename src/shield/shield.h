/*
 * shield.h - what the files of libzeroize-shield share.  Never installed.
 *
 * The shield is a library of its own on top of libzeroize: it calls only
 * libzeroize's public API (zeroize.h; the ctest shield_public_api_only
 * checks the object files with nm) and libsodium.  Its files, lowest first:
 *   os.c       the fatal path, the few system calls (getpid, the clock),
 *              the last error's text
 *   keyring.c  the prekey block, its locks, the fork and purge checks, key
 *              derivation
 *   seal.c     the objects: seal, open, close, destroy, re-key
 *
 * Names: public zz_shield_* (zeroize_shield.h); shared between these files
 * zzs_*; file-local static.
 *
 * Lock order (take them in this order, never back): keyring.c's keyring
 * lock (a reader-writer lock: seals, opens and destroys read, a re-key and
 * the first seal write), then keyring.c's object lock (the list of live
 * objects and the pool of headers), then whatever libzeroize takes inside
 * zz_alloc, zz_protect and zz_free.  zz_shield_close takes no lock of ours.
 * The atfork handlers take both locks in that order before a fork.
 */
#ifndef ZZS_SHIELD_H
#define ZZS_SHIELD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "zeroize_shield.h"

#define ZZS_SALT_BYTES 16u
#define ZZS_NONCE_BYTES 24u
#define ZZS_TAG_BYTES 16u
#define ZZS_KEY_BYTES 32u

#define zzs_unlikely(x) __builtin_expect(!!(x), 0)

/* ---- os.c ------------------------------------------------------------------ */
/* Writes "zeroize: <msg>\n" to stderr with write(2) and aborts: no stdio, no
 * malloc, no lock. */
_Noreturn void zzs_fatal(const char *msg);
#define ZZS_CHECK(cond, msg)                                                 \
    do {                                                                     \
        if (zzs_unlikely(!(cond)))                                           \
            zzs_fatal(msg);                                                  \
    } while (0)
pid_t zzs_os_getpid(void);
uint64_t zzs_os_now_ms(void); /* monotonic, coarse */
/* Records why the calling thread's call failed (zz_shield_last_error) and
 * sets errno to err.  what may contain one "%s", filled with detail. */
void zzs_fail(int err, const char *what, const char *detail);
/* zzs_fail for a failed zz_alloc/zz_protect: keeps errno, quotes
 * zz_last_error(). */
void zzs_fail_alloc(const char *what);

/* ---- keyring.c -------------------------------------------------------------- */
/* The prekey and the id of this keyring (random, never 0 while the block
 * holds a prekey: a forked child and zz_purge read 0).  Lives in one
 * zz_alloc block. */
struct zzs_keyring {
    uint64_t id;
    unsigned char prekey[ZZ_SHIELD_PREKEY_BYTES];
};

/* Takes the keyring lock for reading, drawing the first prekey (or a new one
 * after a purge, or in a forked child) when there is none.  Returns the
 * current keyring, or NULL with the failure recorded (no lock held).
 * Runs a re-key first when the interval asks for one. */
const struct zzs_keyring *zzs_enter_to_seal(void);
/* Takes the keyring lock for reading to open: returns the keyring, or NULL
 * with ENOKEY recorded when the process's prekey is gone (a forked child,
 * a purge; no lock is taken then, so a child whose fork ran no handler
 * never waits for a lock a vanished thread held).  pid: the process that
 * sealed the object, for the message.  Runs a due re-key first. */
const struct zzs_keyring *zzs_enter_to_open(pid_t sealed_by);
/* Takes the keyring lock for reading for a destroy (repairs the locks
 * first in a child whose fork ran no handler). */
void zzs_enter_to_destroy(void);
/* In a child whose fork ran no handler, makes the locks new and seals
 * again what the parent's threads were opening (see keyring.c); one load
 * otherwise.  Called first by zz_shield_open. */
void zzs_check_fork(void);
/* Drops the lock any zzs_enter_* took. */
void zzs_leave(void);

/* The object lock, inside the keyring lock. */
void zzs_objects_lock(void);
void zzs_objects_unlock(void);

/* Derives an object's key: BLAKE2b-256 over the whole prekey, with the salt
 * and the shield's personalisation.  Returns 0, or -1 when the keyring was
 * wiped meanwhile (a purge).  The caller wipes key. */
int zzs_derive(const struct zzs_keyring *kr, const unsigned char salt[ZZS_SALT_BYTES],
               unsigned char key[ZZS_KEY_BYTES]);
/* Random bytes from libsodium (the kernel's generator). */
void zzs_random(void *buf, size_t n);
/* Overwrites the stack below the caller's frame, where libsodium's
 * functions kept their state (hash chaining values, cipher state). */
void zzs_burn_stack(void);

/* Re-key, in three steps: a new keyring (its block allocated and filled
 * before any lock, NULL with the failure recorded); then, with the keyring
 * lock held for writing, the current keyring (NULL when the prekey is gone:
 * nothing to re-seal); then zzs_rekey_finish installs the new keyring
 * (NULL: keeps the old), frees the one it replaces and drops the lock. */
struct zzs_keyring *zzs_keyring_new(void);
const struct zzs_keyring *zzs_rekey_lock(void);
void zzs_rekey_finish(struct zzs_keyring *replacement);
/* A keyring from zzs_keyring_new that was not installed. */
void zzs_keyring_discard(struct zzs_keyring *kr);
/* Whether the interval asks for a re-key now (reads the clock only when an
 * interval is set). */
int zzs_rekey_due(void);

/* ---- seal.c (called by keyring.c's fork handling too) --- */
/* In a forked child (one thread), objects that a thread of the parent was
 * opening or closing are sealed again.  Called by the atfork child handler,
 * and by the first call that repairs the locks after a fork that ran no
 * handler. */
void zzs_objects_after_fork(void);
/* ---- seal.c ------------------------------------------------------------------- */
/* Re-seals every live object under next (called with the keyring lock held
 * for writing).  Returns 0, or -1 with the failure recorded (then nothing
 * changed). */
int zzs_reseal_all(const struct zzs_keyring *cur, const struct zzs_keyring *next);

/* ---- test hooks (hidden: in the static library for the tests, never
 * exported by the shared one) ---------------------------------------------- */
/* The current keyring's block (its prekey follows the 8-byte id), or NULL. */
const void *zzs_test_keyring_block(void);
/* Takes (hold != 0) or drops the keyring lock for writing, as a re-key would. */
void zzs_test_hold_keyring_lock(int hold);
/* The key the object is sealed under now (derived as an open would). */
int zzs_test_object_key(const zz_shielded *s, unsigned char key[ZZS_KEY_BYTES]);
/* The object's bytes: 0 ciphertext, 1 tag, 2 nonce, 3 salt. */
unsigned char *zzs_test_object_bytes(zz_shielded *s, int which, size_t *len);

#endif /* ZZS_SHIELD_H */
