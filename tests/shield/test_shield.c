/* libzeroize-shield (issue 21): sealed objects hold no plaintext and no key
 * anywhere in memory; opened, the plaintext is in the read-only block only;
 * closed, it is gone again.  Any flipped bit of the prekey, the ciphertext,
 * its tag, nonce or salt makes open fail with nothing returned.  Purge, fork
 * (fork() and _Fork(), with our lock held by a thread that the child does
 * not have), secretmem, re-keying (by call and by interval), an
 * unprivileged process, and every misuse: the fatal ones die with their
 * exact line ("misuse" group). */
#include "test_util.h"
#include "test_memscan.h"
#include "zeroize_shield.h"

/* The library's test hooks (hidden symbols of the static library). */
const void *zzs_test_keyring_block(void);
void zzs_test_hold_keyring_lock(int hold);
int zzs_test_object_key(const zz_shielded *s, unsigned char key[32]);
unsigned char *zzs_test_object_bytes(zz_shielded *s, int which, size_t *len);

enum { CT, TAG, NONCE, SALT };

static const unsigned char *prekey_of(const void *keyring)
{
    return (const unsigned char *)keyring + 8;
}

/* A fresh object holding len bytes of seed's stream (the source is wiped by
 * the seal, so no copy is left behind). */
static zz_shielded *seal_seeded(uint64_t seed, size_t len)
{
    unsigned char *src = zz_alloc(len);
    assert_non_null(src);
    tu_fill_secret(src, seed, len);
    zz_shielded *s = zz_shield_seal(src, len);
    assert_non_null(s);
    assert_true(zz_is_zero(src, len));
    zz_free(src);
    return s;
}

static size_t live_blocks(void)
{
    zz_stats st;
    zz_get_stats(&st);
    return st.live_blocks;
}

/* ---- scanning for bytes the test has to hold (a derived key, a prekey) ----------
 * The needle lives on a page of its own, which the scan skips, as it skips
 * its own window; everything else is read through /proc/self/mem. */
struct needle {
    unsigned char *page;
    size_t len;
};

static struct needle needle_new(void)
{
    struct needle n;
    n.page = mmap(NULL, tu_page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(n.page != MAP_FAILED);
    n.len = 0;
    return n;
}

static void needle_free(struct needle *n)
{
    explicit_bzero(n->page, tu_page_size());
    munmap(n->page, tu_page_size());
}

struct needle_scan {
    int fd;
    unsigned char *buf;
    size_t win;
    uintptr_t skip[2][2]; /* [start, end) of the needle's page and the window */
    size_t hits;
};

static void scan_segment(struct needle_scan *sc, const struct needle *n, uintptr_t at, uintptr_t end)
{
    size_t pg = tu_page_size();
    while (at < end) {
        size_t want = end - at < sc->win ? (size_t)(end - at) : sc->win;
        ssize_t got = pread(sc->fd, sc->buf, want, (off_t)at);
        if (got <= 0) {
            at = (at & ~(uintptr_t)(pg - 1)) + pg; /* unreadable page */
            continue;
        }
        for (size_t i = 0; i + n->len <= (size_t)got;) {
            unsigned char *c = memmem(sc->buf + i, (size_t)got - i, n->page, n->len);
            if (c == NULL)
                break;
            sc->hits++;
            i = (size_t)(c - sc->buf) + 1;
        }
        /* overlap by len - 1 so that no occurrence straddles two reads */
        at += (size_t)got > n->len ? (size_t)got - (n->len - 1) : (size_t)got;
    }
}

/* The resident runs of [s, e) (no swap here: a page that is not resident
 * holds nothing; sanitizer shadow mappings are mostly not). */
static void scan_resident(struct needle_scan *sc, const struct needle *n, uintptr_t s, uintptr_t e)
{
    static unsigned char vec[1 << 16];
    size_t pg = tu_page_size();
    for (uintptr_t c = s; c < e;) {
        size_t len = e - c < sizeof vec * pg ? (size_t)(e - c) : sizeof vec * pg;
        if (mincore((void *)c, len, vec) != 0) {
            scan_segment(sc, n, c, c + len);
            c += len;
            continue;
        }
        size_t pages = len / pg;
        for (size_t i = 0; i < pages;) {
            size_t j = i;
            while (j < pages && (vec[j] & 1))
                j++;
            if (j > i)
                scan_segment(sc, n, c + i * pg, c + j * pg);
            i = j + 1;
        }
        c += len;
    }
}

/* [s, e) less the skipped ranges (each lies inside one mapping or outside). */
static void scan_mapping(struct needle_scan *sc, const struct needle *n, uintptr_t s, uintptr_t e)
{
    for (int k = 0; k < 2; k++) {
        uintptr_t a = sc->skip[k][0], b = sc->skip[k][1];
        if (a >= s && b <= e) {
            scan_mapping(sc, n, s, a);
            scan_mapping(sc, n, b, e);
            return;
        }
    }
    scan_resident(sc, n, s, e);
}

static size_t scan_for_needle(const struct needle *n)
{
    struct needle_scan sc;
    sc.fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    sc.win = (size_t)1 << 20;
    sc.buf = mmap(NULL, sc.win, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_true(sc.fd >= 0 && maps != NULL && sc.buf != MAP_FAILED);
    sc.skip[0][0] = (uintptr_t)n->page;
    sc.skip[0][1] = (uintptr_t)n->page + tu_page_size();
    sc.skip[1][0] = (uintptr_t)sc.buf;
    sc.skip[1][1] = (uintptr_t)sc.buf + sc.win;
    sc.hits = 0;
    static uintptr_t ranges[16384][2];
    size_t count = 0;
    char line[512];
    while (count < 16384 && fgets(line, sizeof line, maps) != NULL) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && e - s <= TU_SCAN_MAX_MAPPING) {
            ranges[count][0] = s;
            ranges[count][1] = e;
            count++;
        }
    }
    fclose(maps);
    for (size_t r = 0; r < count; r++)
        scan_mapping(&sc, n, ranges[r][0], ranges[r][1]);
    explicit_bzero(sc.buf, sc.win);
    munmap(sc.buf, sc.win);
    close(sc.fd);
    return sc.hits;
}

/* ---- the basics -------------------------------------------------------------------- */

static void test_shield_roundtrip(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0001;
    zz_shielded *s = seal_seeded(seed, 64);
    assert_int_equal(zz_shield_size(s), 64);
    for (int round = 0; round < 3; round++) {
        const unsigned char *p = zz_shield_open(s);
        assert_non_null(p);
        assert_int_equal(zz_size(p), 64);
        assert_true(tu_scan_match_at(p, seed, 64));
        unsigned info = zz_info(p);
        assert_true(info & ZZ_INFO_GUARDED);
        assert_true(info & ZZ_INFO_DONTDUMP);
        assert_true(info & ZZ_INFO_WIPEONFORK);
        assert_true(info & ZZ_INFO_CANARY);
        if (tu_mlock_reaches_kernel())
            assert_true(info & ZZ_INFO_LOCKED);
        zz_shield_close(s, p);
    }
    zz_shield_destroy(s);
    zz_shield_destroy(NULL);
}

static void test_shield_seal_block_frees_the_block(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0002;
    unsigned char *block = zz_alloc(48);
    assert_non_null(block);
    tu_fill_secret(block, seed, 48);
    size_t before = live_blocks();
    zz_shielded *s = zz_shield_seal_block(block);
    assert_non_null(s);
    assert_int_equal(live_blocks(), before - 1);
    const unsigned char *p = zz_shield_open(s);
    assert_non_null(p);
    assert_true(tu_scan_match_at(p, seed, 48));
    zz_shield_close(s, p);
    zz_shield_destroy(s);
}

static void test_shield_empty_secret(void **state)
{
    (void)state;
    zz_shielded *s = zz_shield_seal(NULL, 0);
    assert_non_null(s);
    assert_int_equal(zz_shield_size(s), 0);
    const void *p = zz_shield_open(s);
    assert_non_null(p);
    zz_shield_close(s, p);
    zz_shield_destroy(s);
}

static void test_shield_bad_arguments(void **state)
{
    (void)state;
    errno = 0;
    assert_null(zz_shield_seal(NULL, 5));
    assert_int_equal(errno, EINVAL);
    assert_non_null(strstr(zz_shield_last_error(), "NULL"));
    assert_int_equal(zz_shield_set_rekey_interval_ms(86400001ul), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(zz_shield_get_rekey_interval_ms(), 0);
}

/* A second open while open: EBUSY, and the first open is untouched. */
static void test_shield_open_twice_is_ebusy(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0003;
    zz_shielded *s = seal_seeded(seed, 32);
    const unsigned char *p = zz_shield_open(s);
    assert_non_null(p);
    size_t blocks = live_blocks();
    errno = 0;
    assert_null(zz_shield_open(s));
    assert_int_equal(errno, EBUSY);
    assert_non_null(strstr(zz_shield_last_error(), "open already"));
    assert_int_equal(live_blocks(), blocks);
    assert_true(tu_scan_match_at(p, seed, 32));
    zz_shield_close(s, p);
    zz_shield_destroy(s);
}

/* ---- secrecy: /proc/self/mem ------------------------------------------------------------- */

static void test_shield_memory_scan(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0004;
    const size_t len = 64;
    zz_shielded *s = seal_seeded(seed, len);
    struct needle key = needle_new();
    key.len = 32;
    assert_int_equal(zzs_test_object_key(s, key.page), 0);
    /* sealed: neither the plaintext nor the key it is sealed under */
    assert_int_equal(tu_scan_memory(seed, len, NULL), 0);
    assert_int_equal(scan_for_needle(&key), 0);
    /* open: the plaintext in the opened block only, still no key */
    const unsigned char *p = zz_shield_open(s);
    assert_non_null(p);
    assert_int_equal(tu_scan_memory(seed, len, NULL), 1);
    assert_true(tu_scan_match_at(p, seed, len));
    assert_int_equal(scan_for_needle(&key), 0);
    /* closed: gone again */
    zz_shield_close(s, p);
    assert_int_equal(tu_scan_memory(seed, len, NULL), 0);
    assert_int_equal(scan_for_needle(&key), 0);
    needle_free(&key);
    zz_shield_destroy(s);
}

/* ---- tampering: every single bit ----------------------------------------------------------- */

/* Flips each bit of [p, p+n) in turn (every stride-th bit): open must fail
 * with EBADMSG, allocate nothing, and work again once the bit is back. */
static void flip_each_bit(zz_shielded *s, unsigned char *p, size_t n, size_t stride, uint64_t seed)
{
    size_t blocks = live_blocks();
    for (size_t bit = 0; bit < n * 8; bit += stride) {
        p[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        errno = 0;
        const void *o = zz_shield_open(s);
        p[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        if (o != NULL || errno != EBADMSG) {
            print_error("bit %zu: open gave %p, errno %d\n", bit, o, errno);
            fail();
        }
        assert_int_equal(live_blocks(), blocks);
    }
    assert_non_null(strstr(zz_shield_last_error(), "failed authentication"));
    const unsigned char *o = zz_shield_open(s);
    assert_non_null(o);
    assert_true(tu_scan_match_at(o, seed, zz_shield_size(s)));
    zz_shield_close(s, o);
}

static void test_shield_any_flipped_bit_fails(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0005;
    zz_shielded *s = seal_seeded(seed, 32);
    static const int parts[] = { CT, TAG, NONCE, SALT };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t n;
        unsigned char *p = zzs_test_object_bytes(s, parts[i], &n);
        flip_each_bit(s, p, n, 1, seed);
    }
    /* every bit of the 16 KiB prekey (each open hashes it: a few seconds;
     * under valgrind or a sanitizer one bit in 61) */
    unsigned char *prekey = (unsigned char *)(uintptr_t)prekey_of(zzs_test_keyring_block());
    flip_each_bit(s, prekey, ZZ_SHIELD_PREKEY_BYTES, TU_ON_VALGRIND() || TU_SANITIZED ? 61 : 1, seed);
    zz_shield_destroy(s);
}

/* ---- purge ------------------------------------------------------------------------------------ */

static void test_shield_purge_wipes_prekey_and_open_blocks(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0006;
    zz_shielded *sealed = seal_seeded(seed, 32);
    zz_shielded *opened = seal_seeded(seed + 1, 32);
    const unsigned char *p = zz_shield_open(opened);
    assert_non_null(p);
    const void *kr = zzs_test_keyring_block();
    zz_purge();
    assert_true(zz_is_zero(kr, 8 + ZZ_SHIELD_PREKEY_BYTES));
    assert_true(zz_is_zero(p, 32));
    assert_int_equal(tu_scan_memory(seed + 1, 32, NULL), 0);
    errno = 0;
    assert_null(zz_shield_open(sealed));
    assert_int_equal(errno, ENOKEY);
    assert_non_null(strstr(zz_shield_last_error(), "zz_purge"));
    zz_shield_close(opened, p); /* an open block still closes */
    assert_null(zz_shield_open(opened));
    assert_int_equal(errno, ENOKEY);
    /* a seal after the purge draws a new prekey */
    zz_shielded *fresh = seal_seeded(seed + 2, 32);
    assert_ptr_not_equal(zzs_test_keyring_block(), NULL);
    const unsigned char *q = zz_shield_open(fresh);
    assert_non_null(q);
    assert_true(tu_scan_match_at(q, seed + 2, 32));
    zz_shield_close(fresh, q);
    assert_int_equal(zz_shield_rekey(), 0); /* the dead ones stay dead */
    assert_null(zz_shield_open(sealed));
    assert_int_equal(errno, ENOKEY);
    q = zz_shield_open(fresh);
    assert_non_null(q);
    zz_shield_close(fresh, q);
    zz_shield_destroy(sealed);
    zz_shield_destroy(opened);
    zz_shield_destroy(fresh);
}

/* ---- fork ------------------------------------------------------------------------------------- */

struct forked {
    zz_shielded *sealed, *opened;
    const unsigned char *open_block;
    const void *keyring;
    uint64_t seed;
};

static void child_after_fork(struct forked *f)
{
    /* first: after _Fork, the library's first call in the child maps zero
     * pages where secret memory was (the open allocates before it reads) */
    errno = 0;
    child_check(zz_shield_open(f->sealed) == NULL && errno == ENOKEY);
    child_check(strstr(zz_shield_last_error(), "parent process") != NULL);
    child_check(zz_is_zero(f->keyring, 8 + ZZ_SHIELD_PREKEY_BYTES)); /* the prekey reads zeros */
    child_check(zz_is_zero(f->open_block, 32));                       /* so does an open block */
    zz_shield_close(f->opened, f->open_block);
    child_check(zz_shield_open(f->opened) == NULL && errno == ENOKEY);
    /* the child seals and opens its own */
    unsigned char *src = zz_alloc(32);
    child_check(src != NULL);
    tu_fill_secret(src, f->seed + 7, 32);
    zz_shielded *mine = zz_shield_seal(src, 32);
    child_check(mine != NULL);
    const unsigned char *p = zz_shield_open(mine);
    child_check(p != NULL && tu_scan_match_at(p, f->seed + 7, 32));
    zz_shield_close(mine, p);
    child_check(zz_shield_rekey() == 0);
    p = zz_shield_open(mine);
    child_check(p != NULL && tu_scan_match_at(p, f->seed + 7, 32));
    zz_shield_close(mine, p);
    zz_shield_destroy(mine);
    zz_shield_destroy(f->sealed);
    zz_shield_destroy(f->opened);
    zz_free(src);
}

static void child_after_fork_fn(void *arg)
{
    child_after_fork(arg);
}

static void fork_setup(struct forked *f, uint64_t seed)
{
    f->seed = seed;
    f->sealed = seal_seeded(seed, 32);
    f->opened = seal_seeded(seed + 1, 32);
    f->open_block = zz_shield_open(f->opened);
    assert_non_null(f->open_block);
    f->keyring = zzs_test_keyring_block();
}

static void fork_check_parent(struct forked *f)
{
    assert_true(tu_scan_match_at(f->open_block, f->seed + 1, 32));
    zz_shield_close(f->opened, f->open_block);
    const unsigned char *p = zz_shield_open(f->sealed);
    assert_non_null(p);
    assert_true(tu_scan_match_at(p, f->seed, 32));
    zz_shield_close(f->sealed, p);
    zz_shield_destroy(f->sealed);
    zz_shield_destroy(f->opened);
}

static void test_shield_fork(void **state)
{
    (void)state;
    struct forked f;
    fork_setup(&f, 0x5eed0010);
    expect_child_ok(child_after_fork_fn, &f);
    fork_check_parent(&f);
}

/* _Fork() runs no atfork handler; the parent's re-key thread holds the
 * keyring lock at that moment, and the child has no such thread: opening
 * there must fail at once and sealing must not wait for the lock. */
static pthread_mutex_t holder_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t holder_cv = PTHREAD_COND_INITIALIZER;
static int holder_state; /* 1: holds the lock, 2: told to let go */

static void *lock_holder(void *arg)
{
    (void)arg;
    zzs_test_hold_keyring_lock(1);
    pthread_mutex_lock(&holder_mu);
    holder_state = 1;
    pthread_cond_broadcast(&holder_cv);
    while (holder_state != 2)
        pthread_cond_wait(&holder_cv, &holder_mu);
    pthread_mutex_unlock(&holder_mu);
    zzs_test_hold_keyring_lock(0);
    return NULL;
}

static void run_underscore_fork(struct forked *f, int with_holder)
{
    pthread_t t;
    if (with_holder) {
        holder_state = 0;
        assert_int_equal(pthread_create(&t, NULL, lock_holder, NULL), 0);
        pthread_mutex_lock(&holder_mu);
        while (holder_state != 1)
            pthread_cond_wait(&holder_cv, &holder_mu);
        pthread_mutex_unlock(&holder_mu);
    }
    fflush(NULL);
    pid_t pid = _Fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tu_child_prepare();
        alarm(20); /* a hang is a failure, not a stuck test */
        child_after_fork(f);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (with_holder) {
        pthread_mutex_lock(&holder_mu);
        holder_state = 2;
        pthread_cond_broadcast(&holder_cv);
        pthread_mutex_unlock(&holder_mu);
        pthread_join(t, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("the _Fork child ended with status 0x%x\n", status);
        fail();
    }
}

static void test_shield_underscore_fork(void **state)
{
    (void)state;
    struct forked f;
    fork_setup(&f, 0x5eed0020);
    run_underscore_fork(&f, 0);
    fork_check_parent(&f);
}

static void test_shield_underscore_fork_lock_held(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__)
    /* TSan cannot follow a lock made new in a child whose fork ran no
     * handler, while a thread it does not have holds it ("double lock") */
    skip();
#endif
    struct forked f;
    fork_setup(&f, 0x5eed0030);
    run_underscore_fork(&f, 1);
    fork_check_parent(&f);
}

/* A fork while another thread is half-way through an open (it waits for the
 * keyring lock a re-key holds): in the child that thread is gone, and its
 * object must not stay "being opened" forever: it can be destroyed (it
 * aborted with "destroyed while open" before) and opening it says ENOKEY. */
static zz_shielded *half_opened;

static void *open_blocked(void *arg)
{
    (void)arg;
    const void *p = zz_shield_open(half_opened);
    if (p != NULL)
        zz_shield_close(half_opened, p);
    return NULL;
}

static void test_shield_fork_while_another_thread_opens(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__)
    skip(); /* the lock a thread the child lacks holds: see the test above */
#endif
    half_opened = seal_seeded(0x5eed0050, 32);
    zz_stats before;
    zz_get_stats(&before);
    zzs_test_hold_keyring_lock(1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_blocked, NULL), 0);
    struct timespec pause = { 0, 100 * 1000 * 1000 };
    nanosleep(&pause, NULL); /* the opener now waits for the lock */
    fflush(NULL);
    pid_t pid = _Fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tu_child_prepare();
        alarm(20);
        errno = 0;
        if (zz_shield_open(half_opened) != NULL || errno != ENOKEY)
            _exit(2);
        zz_shield_destroy(half_opened);
        /* the block the vanished opener had allocated went back too */
        zz_stats after;
        zz_get_stats(&after);
        if (after.live_blocks > before.live_blocks)
            _exit(3);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    zzs_test_hold_keyring_lock(0);
    pthread_join(t, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("the _Fork child ended with status 0x%x\n", status);
        fail();
    }
    zz_shield_destroy(half_opened);
}

/* ---- secretmem -------------------------------------------------------------------------------- */

static int secretmem_available(void)
{
    void *p = zz_alloc_backend(1, ZZ_BACKEND_SECRETMEM);
    if (p == NULL)
        return 0;
    zz_free(p);
    return 1;
}

static void test_shield_secretmem_prekey_and_blocks(void **state)
{
    (void)state;
    if (!secretmem_available())
        skip();
    assert_int_equal(zz_set_backend(ZZ_BACKEND_SECRETMEM), 0);
    assert_int_equal(zz_shield_rekey(), 0); /* the prekey moves to secret memory */
    assert_true(zz_info(zzs_test_keyring_block()) & ZZ_INFO_SECRETMEM);
    struct forked f;
    fork_setup(&f, 0x5eed0040);
    assert_true(zz_info(f.open_block) & ZZ_INFO_SECRETMEM);
    assert_true(zz_info(zzs_test_keyring_block()) & ZZ_INFO_SECRETMEM);
    expect_child_ok(child_after_fork_fn, &f);
    run_underscore_fork(&f, 0);
    fork_check_parent(&f);
    assert_int_equal(zz_set_backend(ZZ_BACKEND_ANON), 0);
    assert_int_equal(zz_shield_rekey(), 0);
    assert_false(zz_info(zzs_test_keyring_block()) & ZZ_INFO_SECRETMEM);
}

/* ---- re-keying -------------------------------------------------------------------------------- */

static void test_shield_rekey_reseals_everything(void **state)
{
    (void)state;
    enum { N = 8 };
    zz_shielded *s[N];
    unsigned char old_tag[N][16];
    for (int i = 0; i < N; i++) {
        s[i] = seal_seeded(0x5eed0100 + (uint64_t)i, 16 + 16 * (size_t)i);
        size_t n;
        memcpy(old_tag[i], zzs_test_object_bytes(s[i], TAG, &n), 16);
    }
    const unsigned char *held = zz_shield_open(s[3]); /* stays open across the re-key */
    assert_non_null(held);
    /* a sample of the old prekey, to look for once it is replaced */
    struct needle old = needle_new();
    old.len = 64;
    memcpy(old.page, prekey_of(zzs_test_keyring_block()) + 4096, old.len);
    assert_int_equal(scan_for_needle(&old), 1);
    assert_int_equal(zz_shield_rekey(), 0);
    assert_int_equal(scan_for_needle(&old), 0); /* the old prekey is gone from memory */
    needle_free(&old);
    assert_true(tu_scan_match_at(held, 0x5eed0100 + 3, 64));
    zz_shield_close(s[3], held);
    for (int i = 0; i < N; i++) {
        size_t n;
        assert_memory_not_equal(old_tag[i], zzs_test_object_bytes(s[i], TAG, &n), 16);
        const unsigned char *p = zz_shield_open(s[i]);
        assert_non_null(p);
        assert_true(tu_scan_match_at(p, 0x5eed0100 + (uint64_t)i, 16 + 16 * (size_t)i));
        zz_shield_close(s[i], p);
        zz_shield_destroy(s[i]);
    }
}

/* A tampered object stays unopenable (EBADMSG) through a re-key, and the
 * others are re-sealed. */
static void test_shield_rekey_keeps_tampered_objects_failing(void **state)
{
    (void)state;
    zz_shielded *bad = seal_seeded(0x5eed0200, 32);
    zz_shielded *good = seal_seeded(0x5eed0201, 32);
    size_t n;
    zzs_test_object_bytes(bad, CT, &n)[5] ^= 0x10;
    assert_int_equal(zz_shield_rekey(), 0);
    zzs_test_object_bytes(bad, CT, &n)[5] ^= 0x10; /* even restored: it was judged */
    errno = 0;
    assert_null(zz_shield_open(bad));
    assert_int_equal(errno, EBADMSG);
    const unsigned char *p = zz_shield_open(good);
    assert_non_null(p);
    assert_true(tu_scan_match_at(p, 0x5eed0201, 32));
    zz_shield_close(good, p);
    zz_shield_destroy(bad);
    zz_shield_destroy(good);
}

static void test_shield_rekey_interval(void **state)
{
    (void)state;
    zz_shielded *s = seal_seeded(0x5eed0300, 32);
    const void *before = zzs_test_keyring_block();
    uint64_t id_before;
    memcpy(&id_before, before, 8);
    assert_int_equal(zz_shield_set_rekey_interval_ms(1), 0);
    assert_int_equal(zz_shield_get_rekey_interval_ms(), 1);
    struct timespec pause = { 0, 30 * 1000 * 1000 };
    nanosleep(&pause, NULL);
    const unsigned char *p = zz_shield_open(s); /* re-keys first */
    assert_non_null(p);
    assert_true(tu_scan_match_at(p, 0x5eed0300, 32));
    zz_shield_close(s, p);
    uint64_t id_after;
    memcpy(&id_after, zzs_test_keyring_block(), 8);
    assert_true(id_after != id_before);
    assert_int_equal(zz_shield_set_rekey_interval_ms(0), 0);
    zz_shield_destroy(s);
}

/* ---- unprivileged -------------------------------------------------------------------------------- */

static void child_unprivileged(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(8u << 20) == 0);
    zz_shielded *s = zz_shield_seal((unsigned char[16]){ 1, 2, 3 }, 16);
    child_check(s != NULL);
    const unsigned char *p = zz_shield_open(s);
    child_check(p != NULL && p[2] == 3);
    child_check(zz_info(p) & ZZ_INFO_LOCKED);
    zz_shield_close(s, p);
    zz_shield_destroy(s);
}

static void test_shield_unprivileged(void **state)
{
    (void)state;
    expect_child_ok(child_unprivileged, NULL);
}

/* Locked memory too small for the prekey: the seal fails with the
 * library's errno and says why; the source is untouched. */
static void child_memlock_too_small(void *arg)
{
    (void)arg;
    child_check(tu_drop_ipc_lock(16384) == 0);
    unsigned char src[16] = { 9, 9, 9 };
    errno = 0;
    zz_shielded *s = zz_shield_seal(src, sizeof src);
    child_check(s == NULL && (errno == EAGAIN || errno == ENOMEM || errno == EPERM));
    child_check(strstr(zz_shield_last_error(), "prekey") != NULL);
    child_check(src[0] == 9 && src[2] == 9);
}

static void test_shield_memlock_too_small(void **state)
{
    (void)state;
    expect_child_ok(child_memlock_too_small, NULL);
}

/* ---- misuse (fatal) -------------------------------------------------------------------------------- */

static void close_not_open(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    zz_shield_close(s, NULL);
}

static void close_twice(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    const void *p = zz_shield_open(s);
    zz_shield_close(s, p);
    zz_shield_close(s, p);
}

static void close_foreign_block(void *arg)
{
    (void)arg;
    zz_shielded *a = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    zz_shielded *b = zz_shield_seal((unsigned char[8]){ 2 }, 8);
    const void *pa = zz_shield_open(a);
    const void *pb = zz_shield_open(b);
    (void)pb;
    zz_shield_close(b, pa);
}

static void open_after_destroy(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    zz_shield_destroy(s);
    const void *p = zz_shield_open(s);
    (void)p;
}

static void destroy_twice(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    zz_shield_destroy(s);
    zz_shield_destroy(s);
}

static void destroy_while_open(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    const void *p = zz_shield_open(s);
    (void)p;
    zz_shield_destroy(s);
}

static void open_foreign_pointer(void *arg)
{
    (void)arg;
    static uint64_t not_an_object[16];
    const void *p = zz_shield_open((zz_shielded *)(void *)not_an_object);
    (void)p;
}

static void size_after_destroy(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    zz_shield_destroy(s);
    (void)zz_shield_size(s);
}

static OPTNONE void write_to_opened(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    unsigned char *p = (unsigned char *)(uintptr_t)zz_shield_open(s);
    VWRITE(p, 7);
}

static void free_opened_then_close(void *arg)
{
    (void)arg;
    zz_shielded *s = zz_shield_seal((unsigned char[8]){ 1 }, 8);
    const void *p = zz_shield_open(s);
    zz_free((void *)(uintptr_t)p);
    zz_shield_close(s, p);
}

static void test_shield_misuse_is_fatal(void **state)
{
    (void)state;
    expect_fatal(close_not_open, NULL, "zeroize: shielded object is not open");
    expect_fatal(close_twice, NULL, "zeroize: shielded object is not open");
    expect_fatal(close_foreign_block, NULL, "zeroize: block was not opened from this shielded object");
    expect_fatal(open_after_destroy, NULL, "zeroize: shielded object used after destroy");
    expect_fatal(destroy_twice, NULL, "zeroize: shielded object used after destroy");
    expect_fatal(size_after_destroy, NULL, "zeroize: shielded object used after destroy");
    expect_fatal(destroy_while_open, NULL, "zeroize: shielded object destroyed while open");
    expect_fatal(open_foreign_pointer, NULL, "zeroize: invalid shielded object");
    expect_fatal(free_opened_then_close, NULL, "zeroize: double free");
    expect_segv(write_to_opened, NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shield_roundtrip),
        cmocka_unit_test(test_shield_seal_block_frees_the_block),
        cmocka_unit_test(test_shield_empty_secret),
        cmocka_unit_test(test_shield_bad_arguments),
        cmocka_unit_test(test_shield_open_twice_is_ebusy),
        cmocka_unit_test(test_shield_memory_scan),
        cmocka_unit_test(test_shield_any_flipped_bit_fails),
        cmocka_unit_test(test_shield_fork),
        cmocka_unit_test(test_shield_underscore_fork),
        cmocka_unit_test(test_shield_underscore_fork_lock_held),
        cmocka_unit_test(test_shield_fork_while_another_thread_opens),
        cmocka_unit_test(test_shield_rekey_reseals_everything),
        cmocka_unit_test(test_shield_rekey_keeps_tampered_objects_failing),
        cmocka_unit_test(test_shield_rekey_interval),
        cmocka_unit_test(test_shield_unprivileged),
        cmocka_unit_test(test_shield_memlock_too_small),
        cmocka_unit_test(test_shield_secretmem_prekey_and_blocks),
        /* last: it leaves every object sealed before it unopenable */
        cmocka_unit_test(test_shield_purge_wipes_prekey_and_open_blocks),
    };
    const struct CMUnitTest misuse[] = {
        cmocka_unit_test(test_shield_misuse_is_fatal),
    };
    if (argc > 1 && strcmp(argv[1], "misuse") == 0)
        return cmocka_run_group_tests(misuse, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
