/*
 * zeroize_shield.h - shielded secrets: kept encrypted in memory, opened into
 * a guarded, locked, read-only zz_alloc block only while in use.
 *
 * Library: libzeroize-shield (pkg-config zeroize-shield; CMake target
 * zeroize::zeroize_shield), built when libsodium is found.  It links
 * libzeroize and libsodium; libzeroize itself depends on nothing.
 *
 * Why.  Guard pages, mlock, MADV_DONTDUMP and MADV_WIPEONFORK stop
 * overflows, swap, core dumps and children.  They do not stop reads that
 * bypass the page tables: speculative-execution leaks (Spectre, MDS),
 * Rowhammer and RAMBleed, cold boot, or a partial read through another bug.
 * A shielded secret is ciphertext except between zz_shield_open and
 * zz_shield_close, so most of the time there is nothing to read but
 * ciphertext and the prekey, and the prekey is useful only whole.
 *
 * The construction (docs/DESIGN.md, "Shielded secrets", says why):
 *   - one per-process prekey of ZZ_SHIELD_PREKEY_BYTES (16 KiB) random
 *     bytes in a zz_alloc block (guarded, locked, MADV_DONTDUMP,
 *     MADV_WIPEONFORK; in memfd_secret memory under ZZ_BACKEND_SECRETMEM);
 *   - each object has its own random 16-byte salt and 24-byte nonce, drawn
 *     again at every seal and re-seal;
 *   - its key is BLAKE2b-256 of the whole prekey, with the object's salt
 *     (and a fixed personalisation), derived for each seal and each open and
 *     wiped right after: no derived key is ever kept.  An attacker who reads
 *     memory must read all 16 KiB of the prekey without one bit error, and
 *     a key that leaks during one open opens that object only;
 *   - the secret is sealed with XChaCha20-Poly1305 (libsodium), the
 *     object's length and identity bound as associated data.  Ciphertexts
 *     live in ordinary memory: a sealed object costs no locked memory.
 *
 * Cost: every seal and open hashes the 16 KiB prekey (zz-bench shield
 * reports it), and an open changes the block's protection twice (read-only
 * after the decryption, writable again to wipe it at close).
 *
 * Errors: as in zeroize.h, a resource failure or an unusable object returns
 * NULL or -1 with errno (and zz_shield_last_error() says what and how to
 * fix it, for a person); misuse that can only come from a bug is fatal:
 * one line "zeroize: <fault>" on stderr, then abort().
 *
 * Fork: a child reads zeros for the prekey (the block is WIPEONFORK), so
 * objects sealed before the fork cannot be opened there: zz_shield_open
 * fails with ENOKEY ("sealed in the parent process...").  The child may
 * destroy them, and may seal and open new ones (under a prekey of its own).
 * This holds after fork() and after _Fork() (which runs no atfork handler).
 *
 * zz_purge wipes the prekey and every open block (they are zz_alloc blocks):
 * afterwards the objects sealed before cannot be opened (ENOKEY) - the
 * secrets are gone, which is what a purge is for - and objects sealed
 * after the purge use a new prekey.
 *
 * Threads: every function is thread-safe.  Threads may open different
 * objects at once; re-keying waits for the opens and seals under way.  One
 * object is opened by one caller at a time: a second zz_shield_open of an
 * object that is open fails with EBUSY (serialise the users of one object,
 * or seal one object per thread).  Not async-signal-safe (zz_purge is).
 */
#ifndef ZEROIZE_SHIELD_H
#define ZEROIZE_SHIELD_H

#include <stddef.h>

#include "zeroize.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Shielded secrets                                            zz_shield(3) */
/* ------------------------------------------------------------------------ */

/* The prekey's size: at least 16 KiB, as OpenSSH's. */
#define ZZ_SHIELD_PREKEY_BYTES 16384u

typedef struct zz_shielded zz_shielded;

/* Seals n bytes at secret into a new shielded object, then wipes the n
 * bytes at secret (zz_wipe).  n == 0 makes an object of 0 bytes (secret may
 * then be NULL).  The first seal in a process draws the prekey.
 * Returns NULL with errno on failure, and then secret is untouched:
 *   EINVAL   secret is NULL and n > 0
 *   ENOMEM   no memory for the object or its ciphertext (n too large)
 *   EAGAIN, EPERM, ENOMEM, ENOSYS   the prekey's zz_alloc block failed (the
 *            lock policy, RLIMIT_MEMLOCK, the backend: see zz_last_error())
 *   EIO      libsodium failed to initialise */
ZZ_EXPORT ZZ_WARN_UNUSED zz_shielded *zz_shield_seal(void *secret, size_t n);

/* Seals a live zz_alloc block (zz_alloc, zz_alloc_aligned, zz_realloc,
 * zz_alloc_backend) and frees it (zz_free wipes it): the secret moves from
 * plaintext to ciphertext with no other copy made.  Returns the object, or
 * NULL with errno as zz_shield_seal (the block is then untouched and still
 * the caller's).  The block must be readable: one in ZZ_NOACCESS mode
 * faults (SIGSEGV).  A pointer that is not a live zz_alloc block is fatal,
 * as in zz_free. */
ZZ_EXPORT ZZ_WARN_UNUSED ZZ_NONNULL(1) zz_shielded *zz_shield_seal_block(void *block);

/* Opens the object: decrypts it into a new zz_alloc block of
 * zz_shield_size(s) bytes (guarded, locked, MADV_DONTDUMP, WIPEONFORK, on
 * the current backend) and makes the block read-only (zz_protect): a write
 * through it faults.  The block stays valid until zz_shield_close(s, p);
 * never zz_free it yourself.  The plaintext exists only in that block while
 * the object is open.
 * Returns the block, or NULL with errno (the object is then still sealed and
 * unchanged, and nothing of the plaintext was written anywhere):
 *   EBUSY    the object is open already (a second open, from this thread
 *            or another): close it first
 *   EBADMSG  authentication failed: the ciphertext, its tag, or the
 *            process's prekey was modified (a fault or an attack); nothing
 *            of the plaintext is returned
 *   ENOKEY   the prekey the object was sealed under is gone: the object was
 *            sealed in the parent of this forked child, or zz_purge wiped
 *            the prekey (zz_shield_last_error() says which).  It can never
 *            be opened again; destroy it.
 *   ENOMEM, EAGAIN, EPERM   the block could not be allocated or protected
 *            (see zz_last_error())
 * A pointer that is not a live shielded object is fatal:
 *   "zeroize: invalid shielded object"            (NULL, or never sealed)
 *   "zeroize: shielded object used after destroy" */
ZZ_EXPORT ZZ_WARN_UNUSED ZZ_NONNULL(1) const void *zz_shield_open(zz_shielded *s);

/* Closes what zz_shield_open(s) returned: wipes and frees the block (the
 * plaintext is gone; a read through a stale pointer faults or reads zero).
 * The object stays sealed and can be opened again.  Preserves errno.
 * Fatal:
 *   "zeroize: shielded object is not open"        s is not open (never
 *                                                  opened, closed twice)
 *   "zeroize: block was not opened from this shielded object"
 *   "zeroize: invalid shielded object", "... used after destroy" as above */
ZZ_EXPORT ZZ_NONNULL(1) void zz_shield_close(zz_shielded *s, const void *opened);

/* Destroys the object: wipes and frees its ciphertext.  NULL is a no-op.
 * Fatal: "zeroize: shielded object destroyed while open" (close it first),
 * "zeroize: shielded object used after destroy" (a second destroy),
 * "zeroize: invalid shielded object".  A destroyed object's memory is
 * reused only after 64 other objects were destroyed, so a stale pointer is
 * caught until then. */
ZZ_EXPORT void zz_shield_destroy(zz_shielded *s);

/* The size of the secret, as sealed.  Fatal on an invalid or destroyed
 * object, as zz_shield_open. */
ZZ_EXPORT ZZ_NONNULL(1) size_t zz_shield_size(const zz_shielded *s);

/* Draws a new prekey and re-seals every live object under it (each with a
 * new salt and nonce), then wipes and frees the old prekey, so a prekey
 * that leaks slowly goes stale.  Open objects stay open: their blocks are
 * not touched.  Objects that can no longer be opened (ENOKEY, EBADMSG) stay
 * as they are.  Waits for seals and opens under way, and they wait for it.
 * Returns 0, or -1 with errno (ENOMEM and the other zz_alloc errors: then
 * nothing changed, every object is still sealed under the old prekey). */
ZZ_EXPORT int zz_shield_rekey(void);

/* Re-keys automatically: when at least ms milliseconds have passed since
 * the last re-key, the next zz_shield_seal or zz_shield_open re-keys first
 * (there is no timer thread; an automatic re-key that fails is tried again
 * at the next call, and the call goes on under the old prekey).  0, the
 * default, turns it off.  Returns 0, or -1 with EINVAL above one day. */
ZZ_EXPORT int zz_shield_set_rekey_interval_ms(unsigned long ms);

/* The interval set by zz_shield_set_rekey_interval_ms. */
ZZ_EXPORT unsigned long zz_shield_get_rekey_interval_ms(void);

/* A sentence, for a person, on why the calling thread's last failed
 * zz_shield_* call failed and what to do; "" when none failed.  For the
 * zz_alloc failures it repeats zz_last_error(). */
ZZ_EXPORT const char *zz_shield_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* ZEROIZE_SHIELD_H */
