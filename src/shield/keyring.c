/*
 * keyring.c - the process's prekey (16 KiB in a zz_alloc block), the locks
 * that guard it and the objects, how a forked child and a purge are noticed,
 * and the derivation of an object's key.  The objects themselves (seal,
 * open, re-seal) are seal.c's.
 *
 * Noticing that the prekey is gone, without a lock: `alive` is a word in a
 * small zz_alloc block of its own (anonymous memory, MADV_WIPEONFORK), set
 * to 1 when a prekey is drawn and never freed.  It reads 0 in any child,
 * whether or not its fork ran the atfork handlers, and after zz_purge.  A
 * child whose fork ran no handler (_Fork) may have inherited our locks held
 * by a thread that does not exist there; so while `alive` reads 0, opening
 * takes no lock at all, and the paths that must lock first make the locks
 * new when the process is not the one that last set them up.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>

#include "shield.h"

/* The keyring lock: a reader (seal, open, destroy) passes through `writer`
 * for an instant to count itself in `readers`, so readers run side by side;
 * a writer (a re-key, drawing a prekey) holds `writer`, which stops new
 * readers, and waits for `readers` to drain.  Unlike glibc's rwlock, whose
 * unlock goes by thread id (which the forking thread does not keep in the
 * child), the thread that forked can let it go in the child. */
static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned readers;
static pthread_mutex_t objects_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static pid_t locks_pid;             /* the process whose locks these are */
static _Atomic int repairing;       /* one thread of a _Fork child repairs */

static struct zzs_keyring *keyring; /* under the keyring lock */
static _Atomic(volatile uint64_t *) alive;
static int sodium_failed;           /* sodium_init() failed (set once, in setup) */

static _Atomic unsigned long interval_ms;
static _Atomic uint64_t last_rekey_ms;

static const unsigned char personal[16] = { 'z', 'e', 'r', 'o', 'i', 'z', 'e', '.',
                                            's', 'h', 'i', 'e', 'l', 'd', '.', '1' };

/* ---- locks and fork ------------------------------------------------------------- */

static void read_lock(void)
{
    ZZS_CHECK(pthread_mutex_lock(&writer) == 0, "cannot take the keyring lock");
    atomic_fetch_add_explicit(&readers, 1, memory_order_acquire);
    pthread_mutex_unlock(&writer);
}

static void read_unlock(void)
{
    atomic_fetch_sub_explicit(&readers, 1, memory_order_release);
}

static void write_lock(void)
{
    ZZS_CHECK(pthread_mutex_lock(&writer) == 0, "cannot take the keyring lock");
    while (atomic_load_explicit(&readers, memory_order_acquire) != 0)
        sched_yield();
}

static void write_unlock(void)
{
    pthread_mutex_unlock(&writer);
}

/* After a fork that ran no handler: the locks as if new. */
static void init_locks(void)
{
    ZZS_CHECK(pthread_mutex_init(&writer, NULL) == 0, "cannot initialise a lock");
    atomic_store(&readers, 0);
    ZZS_CHECK(pthread_mutex_init(&objects_lock, NULL) == 0, "cannot initialise a lock");
    __atomic_store_n(&locks_pid, zzs_os_getpid(), __ATOMIC_RELEASE);
}

static void before_fork(void)
{
    write_lock();
    pthread_mutex_lock(&objects_lock);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&objects_lock);
    write_unlock();
}

/* The forking thread holds both locks in the child too, and lets them go
 * (no reader is left: the prepare handler waited for them).  The prekey now
 * reads zero; the next seal draws a new one. */
static void after_fork_child(void)
{
    zzs_objects_after_fork();
    pthread_mutex_unlock(&objects_lock);
    write_unlock();
    __atomic_store_n(&locks_pid, zzs_os_getpid(), __ATOMIC_RELEASE);
}

static void setup(void)
{
    sodium_failed = sodium_init() < 0;
    __atomic_store_n(&locks_pid, zzs_os_getpid(), __ATOMIC_RELEASE);
    ZZS_CHECK(pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0,
              "cannot register fork handlers");
}

/* The sentinel is read without a lock and written (to 1) under the write
 * lock, and by zz_purge (to 0) at any time: atomic accesses. */
static int prekey_alive(void)
{
    volatile uint64_t *a = atomic_load_explicit(&alive, memory_order_acquire);
    return a != NULL && __atomic_load_n(a, __ATOMIC_ACQUIRE) != 0;
}

/* In a child whose fork ran no handler, our locks may be held by threads
 * that were not copied: make them new.  Only while the prekey reads 0 (it
 * does in every child until the child draws its own), so a process that
 * never forked pays one load. */
static void repair_locks_after_fork(void)
{
    if (prekey_alive())
        return;
    pid_t me = zzs_os_getpid();
    if (__atomic_load_n(&locks_pid, __ATOMIC_ACQUIRE) == me)
        return;
    int expected = 0;
    if (atomic_compare_exchange_strong(&repairing, &expected, 1)) {
        if (__atomic_load_n(&locks_pid, __ATOMIC_ACQUIRE) != me) {
            init_locks();
            zzs_objects_after_fork();
        }
        atomic_store(&repairing, 0);
    } else {
        while (atomic_load(&repairing) != 0)
            sched_yield();
    }
}

void zzs_check_fork(void)
{
    pthread_once(&setup_once, setup);
    repair_locks_after_fork();
}

static void enter_read(void)
{
    pthread_once(&setup_once, setup);
    repair_locks_after_fork();
    read_lock();
}

void zzs_leave(void)
{
    read_unlock();
}

void zzs_objects_lock(void)
{
    pthread_mutex_lock(&objects_lock);
}

void zzs_objects_unlock(void)
{
    pthread_mutex_unlock(&objects_lock);
}

/* ---- keyrings ------------------------------------------------------------------- */

void zzs_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

static int check_sodium(void)
{
    pthread_once(&setup_once, setup);
    if (sodium_failed) {
        zzs_fail(EIO, "libsodium failed to initialise (sodium_init)", NULL);
        return -1;
    }
    return 0;
}

struct zzs_keyring *zzs_keyring_new(void)
{
    if (check_sodium() != 0)
        return NULL;
    struct zzs_keyring *kr = zz_alloc(sizeof *kr);
    if (kr == NULL) {
        zzs_fail_alloc("cannot allocate the shield's prekey (16 KiB, locked)");
        return NULL;
    }
    zzs_random(kr->prekey, sizeof kr->prekey);
    do
        zzs_random(&kr->id, sizeof kr->id);
    while (kr->id == 0);
    return kr;
}

void zzs_keyring_discard(struct zzs_keyring *kr)
{
    zz_free(kr);
}

/* Installs kr (keyring lock held for writing), freeing the one it replaces. */
static void install(struct zzs_keyring *kr)
{
    struct zzs_keyring *old = keyring;
    keyring = kr;
    __atomic_store_n(atomic_load_explicit(&alive, memory_order_relaxed), 1, __ATOMIC_RELEASE);
    atomic_store_explicit(&last_rekey_ms, zzs_os_now_ms(), memory_order_relaxed);
    zz_free(old); /* wipes it; zeros after a fork or purge are accepted */
}

/* The first seal, or the first after a purge or in a forked child: draws a
 * prekey.  Returns 0, or -1 with the failure recorded. */
static int arm(void)
{
    pthread_once(&setup_once, setup);
    repair_locks_after_fork();
    write_lock();
    int rc = 0;
    if (prekey_alive() && keyring != NULL && keyring->id != 0)
        goto out; /* another thread drew it */
    if (atomic_load_explicit(&alive, memory_order_relaxed) == NULL) {
        /* anonymous whatever the backend: it must read 0 in a child, and
         * WIPEONFORK does that for anonymous memory alone */
        uint64_t *a = zz_alloc_backend(sizeof *a, ZZ_BACKEND_ANON);
        if (a == NULL) {
            zzs_fail_alloc("cannot allocate the shield's fork sentinel");
            rc = -1;
            goto out;
        }
        atomic_store_explicit(&alive, a, memory_order_release);
    }
    struct zzs_keyring *kr = zzs_keyring_new();
    if (kr == NULL) {
        rc = -1;
        goto out;
    }
    install(kr);
out:
    write_unlock();
    return rc;
}

static void rekey_if_due(void)
{
    if (zzs_unlikely(zzs_rekey_due()))
        (void)zz_shield_rekey(); /* on failure: tried again at the next call */
}

const struct zzs_keyring *zzs_enter_to_seal(void)
{
    if (!prekey_alive() && arm() != 0)
        return NULL;
    rekey_if_due();
    enter_read();
    if (keyring == NULL || keyring->id == 0) { /* purged since arm() */
        zzs_leave();
        zzs_fail(ENOKEY, "the shield's prekey was wiped (zz_purge) while sealing", NULL);
        return NULL;
    }
    return keyring;
}

const struct zzs_keyring *zzs_enter_to_open(pid_t sealed_by)
{
    if (!prekey_alive()) {
        if (sealed_by != zzs_os_getpid())
            zzs_fail(ENOKEY, "this object was sealed in the parent process: a forked child "
                             "does not inherit the shield's prekey (it reads zeros), so the "
                             "object cannot be opened here; seal the secret again in the child",
                     NULL);
        else
            zzs_fail(ENOKEY, "the shield's prekey was wiped by zz_purge: objects sealed "
                             "before the purge can never be opened; destroy them",
                     NULL);
        return NULL;
    }
    rekey_if_due();
    enter_read();
    return keyring;
}

void zzs_enter_to_destroy(void)
{
    enter_read();
}

/* ---- derivation ------------------------------------------------------------------ */

int zzs_derive(const struct zzs_keyring *kr, const unsigned char salt[ZZS_SALT_BYTES],
               unsigned char key[ZZS_KEY_BYTES])
{
    if (kr == NULL || kr->id == 0)
        return -1;
    crypto_generichash_blake2b_salt_personal(key, ZZS_KEY_BYTES, kr->prekey, sizeof kr->prekey,
                                             NULL, 0, salt, personal);
    return kr->id == 0 ? -1 : 0; /* a purge ran meanwhile: the key is of zeros */
}

__attribute__((noinline)) void zzs_burn_stack(void)
{
    unsigned char scratch[4096];
    zz_wipe(scratch, sizeof scratch);
    __asm__ __volatile__("" : : "r"(scratch) : "memory");
}

/* ---- re-keying ------------------------------------------------------------------- */

const struct zzs_keyring *zzs_rekey_lock(void)
{
    pthread_once(&setup_once, setup);
    repair_locks_after_fork();
    write_lock();
    if (!prekey_alive() || keyring == NULL || keyring->id == 0)
        return NULL;
    return keyring;
}

void zzs_rekey_finish(struct zzs_keyring *replacement)
{
    if (replacement != NULL && atomic_load_explicit(&alive, memory_order_relaxed) == NULL)
        zz_free(replacement); /* nothing was ever sealed: the first seal draws one */
    else if (replacement != NULL)
        install(replacement); /* also after a purge or fork: a fresh prekey */
    write_unlock();
}

int zzs_rekey_due(void)
{
    unsigned long every = atomic_load_explicit(&interval_ms, memory_order_relaxed);
    if (every == 0 || !prekey_alive())
        return 0;
    uint64_t last = atomic_load_explicit(&last_rekey_ms, memory_order_relaxed);
    return zzs_os_now_ms() - last >= every;
}

ZZ_EXPORT int zz_shield_set_rekey_interval_ms(unsigned long ms)
{
    if (ms > 86400000ul) {
        zzs_fail(EINVAL, "the re-key interval is at most one day (86400000 ms)", NULL);
        return -1;
    }
    atomic_store(&interval_ms, ms);
    return 0;
}

ZZ_EXPORT unsigned long zz_shield_get_rekey_interval_ms(void)
{
    return atomic_load(&interval_ms);
}

/* ---- test hooks (hidden; the tests link the static library) ---------------------- */

const void *zzs_test_keyring_block(void)
{
    return keyring;
}

void zzs_test_hold_keyring_lock(int hold)
{
    pthread_once(&setup_once, setup);
    if (hold)
        write_lock();
    else
        write_unlock();
}
