/* The memfd_secret backend: blocks flagged ZZ_INFO_SECRETMEM, out of reach of
 * /proc/PID/mem, process_vm_readv, O_DIRECT and vmsplice while read(2) and
 * write(2) still work; canaries and guards as on anon memory; fork children
 * read zeros; ZEROIZE_BACKEND read at first use; under a seccomp filter that
 * refuses memfd_secret, ZZ_BACKEND_AUTO falls back to anon and
 * ZZ_BACKEND_SECRETMEM fails with the kernel's errno.
 *
 * Fresh-process cases (environment, seccomp, memlock) re-execute this program
 * with "--child <case>" so the library starts from scratch there.
 * `test_secretmem scale` keeps 100,000 secrets in secret memory (slow). */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <dirent.h>
#include <stddef.h>
#include <sys/uio.h>

#include "test_util.h"

static int have_secretmem;

/* Per test: skip without memfd_secret; otherwise start on ZZ_BACKEND_SECRETMEM
 * and leave on ZZ_BACKEND_ANON. */
static int use_secretmem(void **state)
{
    (void)state;
    if (have_secretmem)
        assert_int_equal(zz_set_backend(ZZ_BACKEND_SECRETMEM), 0);
    return 0;
}

static int back_to_anon(void **state)
{
    (void)state;
    return zz_set_backend(ZZ_BACKEND_ANON);
}

#define REQUIRE_SECRETMEM()                                                                        \
    do {                                                                                           \
        if (!have_secretmem) {                                                                     \
            print_message("memfd_secret is not available on this kernel: skipped\n");             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static const unsigned SECRET_FLAGS = ZZ_INFO_SECRETMEM | ZZ_INFO_LOCKED | ZZ_INFO_GUARDED |
                                     ZZ_INFO_DONTDUMP | ZZ_INFO_CANARY;

/* ---- backend selection ------------------------------------------------------ */

static void test_set_backend_rejects_unknown(void **state)
{
    (void)state;
    int before = zz_get_backend();
    static const int bad[] = { 7, -1, 3, 1000 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_int_equal(zz_set_backend(bad[i]), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(zz_get_backend(), before);
    }
    static const int good[] = { ZZ_BACKEND_AUTO, ZZ_BACKEND_SECRETMEM, ZZ_BACKEND_ANON };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(zz_set_backend(good[i]), 0);
        assert_int_equal(zz_get_backend(), good[i]);
    }
}

/* ---- flags, contents, canaries --------------------------------------------------- */

static void test_blocks_live_in_secret_memory(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    static const size_t sizes[] = { 0, 1, 32, 4096, 5000, 70000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = zz_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal(zz_info(p) & SECRET_FLAGS, SECRET_FLAGS);
        assert_true(zz_is_zero(p, sizes[i]));
        memset(p, 0x5E, sizes[i]);
        zz_free(p);
    }
    unsigned char *al = zz_alloc_aligned(100, 512);
    assert_non_null(al);
    assert_int_equal((uintptr_t)al % 512, 0);
    assert_int_equal(zz_info(al) & SECRET_FLAGS, SECRET_FLAGS);
    zz_free(al);
    unsigned char *grow = zz_realloc(NULL, 10);
    assert_non_null(grow);
    grow = zz_realloc(grow, 9000);
    assert_non_null(grow);
    assert_int_equal(zz_info(grow) & SECRET_FLAGS, SECRET_FLAGS);
    zz_free(grow);
}

/* An arena keeps the backend it was created with, also in chunks it adds
 * after zz_set_backend(ZZ_BACKEND_ANON). */
static void test_arena_keeps_its_backend(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    assert_int_equal(zz_set_backend(ZZ_BACKEND_ANON), 0);
    enum { COUNT = 4000 }; /* 4000 * 48 bytes: more than the first chunk */
    void **p = calloc(COUNT, sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < COUNT; i++) {
        p[i] = zz_arena_alloc(a, 32);
        assert_non_null(p[i]);
        assert_int_equal(zz_info(p[i]) & SECRET_FLAGS, SECRET_FLAGS);
    }
    void *anon = zz_alloc(32);
    assert_non_null(anon);
    assert_int_equal(zz_info(anon) & ZZ_INFO_SECRETMEM, 0);
    zz_free(anon);
    for (size_t i = 0; i < COUNT; i++)
        zz_arena_free(a, p[i]);
    free(p);
    zz_arena_destroy(a);
}

struct bad_write {
    size_t n;
    ptrdiff_t offset;
};

/* 50000 bytes: a size class no other test in this program uses, so the child
 * maps a fresh secretmem slab for it. */
static OPTNONE void child_secret_overflow(void *arg)
{
    const struct bad_write *w = arg;
    child_check(zz_set_backend(ZZ_BACKEND_SECRETMEM) == 0);
    unsigned char *p = zz_alloc(w->n);
    child_check(p != NULL);
    child_check(zz_info(p) & ZZ_INFO_SECRETMEM);
    VWRITE(p + w->offset, VREAD(p + w->offset) ^ 0x42); /* never the byte already there */
    zz_free(p);
}

static void test_canaries_and_guards_on_secret_memory(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    static struct bad_write after = { 49999, 49999 }, before = { 49999, -1 },
                            guard = { 50000, 50000 };
    expect_fatal(child_secret_overflow, &after, "zeroize: canary corrupted (after block)");
    expect_fatal(child_secret_overflow, &before, "zeroize: canary corrupted (before block)");
    expect_segv(child_secret_overflow, &guard);
}

/* zz_alloc_backend picks the backend per block, whatever the process-wide
 * choice. */
static void test_alloc_backend_per_block(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    assert_int_equal(zz_set_backend(ZZ_BACKEND_ANON), 0);
    unsigned char *s = zz_alloc_backend(40, ZZ_BACKEND_SECRETMEM);
    unsigned char *au = zz_alloc_backend(40, ZZ_BACKEND_AUTO);
    assert_non_null(s);
    assert_non_null(au);
    assert_int_equal(zz_info(s) & SECRET_FLAGS, SECRET_FLAGS);
    assert_int_equal(zz_info(au) & SECRET_FLAGS, SECRET_FLAGS); /* the kernel has it */
    assert_int_equal(zz_set_backend(ZZ_BACKEND_SECRETMEM), 0);
    unsigned char *an = zz_alloc_backend(40, ZZ_BACKEND_ANON);
    assert_non_null(an);
    assert_int_equal(zz_info(an) & ZZ_INFO_SECRETMEM, 0);
    assert_int_equal(zz_get_backend(), ZZ_BACKEND_SECRETMEM); /* unchanged */
    errno = 0;
    assert_null(zz_alloc_backend(40, 7));
    assert_int_equal(errno, EINVAL);
    assert_true(zz_is_zero(s, 40) && zz_is_zero(an, 40));
    zz_free(s);
    zz_free(au);
    zz_free(an);
}

/* zz_purge reaches secret memory in every mode. */
static void test_purge_wipes_secret_memory(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    unsigned char *rw = zz_alloc(64), *hidden = zz_alloc(64);
    zz_arena *a = zz_arena_create(0);
    assert_non_null(rw);
    assert_non_null(hidden);
    assert_non_null(a);
    unsigned char *ab = zz_arena_alloc(a, 64);
    assert_non_null(ab);
    memset(rw, 0x31, 64);
    memset(hidden, 0x32, 64);
    memset(ab, 0x33, 64);
    assert_int_equal(zz_protect(hidden, ZZ_NOACCESS), 0);
    zz_purge();
    assert_true(zz_is_zero(rw, 64));
    assert_true(zz_is_zero(ab, 64));
    assert_int_equal(zz_protect(hidden, ZZ_READONLY), 0);
    assert_true(zz_is_zero(hidden, 64));
    zz_free(rw);
    zz_free(hidden);
    zz_arena_free(a, ab);
    zz_arena_destroy(a);
}

/* ---- what the kernel can and cannot do with these pages --------------------------- */

static void test_kernel_cannot_reach_secret_memory(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    unsigned char *sec = zz_alloc(64);
    assert_non_null(sec);
    assert_int_equal(zz_set_backend(ZZ_BACKEND_ANON), 0);
    unsigned char *anon = zz_alloc(64);
    assert_non_null(anon);
    assert_int_equal(zz_info(sec) & ZZ_INFO_SECRETMEM, ZZ_INFO_SECRETMEM);
    assert_int_equal(zz_info(anon) & ZZ_INFO_SECRETMEM, 0);
    memset(sec, 0x5A, 64);
    memset(anon, 0x5B, 64);

    unsigned char buf[64];
    int mem = open("/proc/self/mem", O_RDONLY);
    assert_true(mem >= 0);
    errno = 0;
    assert_int_equal(pread(mem, buf, sizeof buf, (off_t)(uintptr_t)sec), -1);
    assert_int_equal(errno, EIO);
    assert_int_equal(pread(mem, buf, sizeof buf, (off_t)(uintptr_t)anon), (ssize_t)sizeof buf);
    assert_memory_equal(buf, anon, sizeof buf);
    close(mem);

    struct iovec local = { buf, sizeof buf }, remote = { sec, sizeof buf };
    errno = 0;
    assert_int_equal(process_vm_readv(getpid(), &local, 1, &remote, 1, 0), -1);
    assert_int_equal(errno, EFAULT);
    remote.iov_base = anon;
    assert_int_equal(process_vm_readv(getpid(), &local, 1, &remote, 1, 0), (ssize_t)sizeof buf);

    /* so a whole-memory scan finds a secret in anon memory but not here */
    const uint64_t seed = 0x5EC2E7AE1ull;
    tu_fill_secret(sec, seed, 64);
    tu_fill_secret(anon, seed + 1, 64);
    assert_int_equal(tu_scan_memory(seed, 64, NULL), 0);
    assert_int_equal(tu_scan_memory(seed + 1, 64, NULL), 1);
    zz_free(sec);
    zz_free(anon);
}

static void test_read_and_write_through_a_pipe(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    enum { N = 3000 };
    unsigned char *src = zz_alloc(N), *dst = zz_alloc(N);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < N; i++)
        src[i] = (unsigned char)(i * 7 + 1);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], src, N), N); /* kernel copies out of secret memory */
    assert_int_equal(read(fds[0], dst, N), N);  /* and into it */
    assert_memory_equal(src, dst, N);
    close(fds[0]);
    close(fds[1]);
    zz_free(src);
    zz_free(dst);
}

/* O_DIRECT and vmsplice need to pin the pages, which secret memory refuses.
 * Measured on Linux 6.18: both fail with EFAULT (anon memory works). */
static void test_odirect_and_vmsplice_refused(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    size_t page = tu_page_size();
    unsigned char *sec = zz_alloc_aligned(page, page);
    assert_non_null(sec);
    assert_int_equal(zz_set_backend(ZZ_BACKEND_ANON), 0);
    unsigned char *anon = zz_alloc_aligned(page, page);
    assert_non_null(anon);
    memset(sec, 0x11, page);
    memset(anon, 0x22, page);

    char path[] = "zz_odirect_XXXXXX"; /* in the build tree: tmpfs has no O_DIRECT */
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, anon, page), (ssize_t)page);
    close(fd);
    fd = open(path, O_RDWR | O_DIRECT);
    unlink(path);
    if (fd < 0) {
        print_message("O_DIRECT not supported here (errno %d): only vmsplice is checked\n", errno);
    } else {
        errno = 0;
        ssize_t r = pread(fd, sec, page, 0);
        int e = errno;
        print_message("O_DIRECT read into secret memory: %zd, errno %d (%s)\n", r, e, strerror(e));
        assert_int_equal(r, -1);
        assert_int_equal(e, EFAULT);
        errno = 0;
        r = pwrite(fd, sec, page, 0);
        e = errno;
        print_message("O_DIRECT write from secret memory: %zd, errno %d (%s)\n", r, e, strerror(e));
        assert_int_equal(r, -1);
        assert_int_equal(e, EFAULT);
        assert_int_equal(pread(fd, anon, page, 0), (ssize_t)page); /* control */
        close(fd);
    }
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct iovec v = { sec, page };
    errno = 0;
    ssize_t r = vmsplice(p[1], &v, 1, 0);
    int e = errno;
    print_message("vmsplice from secret memory: %zd, errno %d (%s)\n", r, e, strerror(e));
    assert_int_equal(r, -1);
    assert_int_equal(e, EFAULT);
    v.iov_base = anon;
    assert_int_equal(vmsplice(p[1], &v, 1, 0), (ssize_t)page); /* control */
    close(p[0]);
    close(p[1]);
    zz_free(sec);
    zz_free(anon);
}

/* ---- fork ------------------------------------------------------------------------- */

struct forked {
    unsigned char *blk, *big;
    zz_arena *arena;
    unsigned char *ab;
};

static void child_after_fork(void *arg)
{
    struct forked *f = arg;
    child_check(zz_is_zero(f->blk, 64));
    child_check(zz_is_zero(f->big, 9000));
    child_check(zz_is_zero(f->ab, 32));
    /* documented: no longer secret memory in the child */
    child_check((zz_info(f->blk) & ZZ_INFO_SECRETMEM) == 0);
    memset(f->blk, 0x66, 64);
    zz_free(f->blk);
    zz_free(f->big);
    zz_arena_free(f->arena, f->ab);
    unsigned char *q = zz_alloc(64);
    child_check(q != NULL && zz_is_zero(q, 64));
    memset(q, 0x67, 64);
    zz_free(q);
    unsigned char *qa = zz_arena_alloc(f->arena, 32);
    child_check(qa != NULL && zz_is_zero(qa, 32));
    zz_arena_free(f->arena, qa);
    zz_arena_destroy(f->arena);
}

static void test_fork_child_reads_zeros(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    struct forked f;
    f.blk = zz_alloc(64);
    f.big = zz_alloc(9000);
    f.arena = zz_arena_create(0);
    assert_non_null(f.blk);
    assert_non_null(f.big);
    assert_non_null(f.arena);
    f.ab = zz_arena_alloc(f.arena, 32);
    assert_non_null(f.ab);
    memset(f.blk, 0xA1, 64);
    memset(f.big, 0xA2, 9000);
    memset(f.ab, 0xA3, 32);
    struct tu_child_result r;
    assert_int_equal(tu_run_child(child_after_fork, &f, &r), 0);
    if (!r.exited || r.exit_code != 0 || r.err_len != 0) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail();
    }
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(f.blk[i], 0xA1);
    for (size_t i = 0; i < 9000; i++)
        assert_int_equal(f.big[i], 0xA2);
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(f.ab[i], 0xA3);
    assert_int_equal(zz_info(f.blk) & SECRET_FLAGS, SECRET_FLAGS);
    zz_free(f.blk);
    zz_free(f.big);
    zz_arena_free(f.arena, f.ab);
    zz_arena_destroy(f.arena);
}

/* ZZ_INFO_WIPEONFORK on a secretmem block (issue 19, item 6c).  The flag
 * promises what a forked child sees, not which advice is set: secret memory
 * refuses MADV_WIPEONFORK, so its pages are MADV_DONTFORK (smaps "dc", no
 * "wf"), and a child sees zeros in their place: at once after fork(), from
 * its first call into the library after a fork that ran no atfork handler
 * (_Fork); before that call the pages are absent and a read faults.  In no
 * child is the parent's byte readable. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_UNDERSCORE_FORK 1
#else
#define HAVE_UNDERSCORE_FORK 0
#endif

/* In a _Fork child: reads the first byte of p before (calls_library 0) or
 * after (1) a call into the library.  Exits 0 on a zero, 3 on the parent's
 * byte; a fault kills it (SIGSEGV). */
static OPTNONE void read_after_raw_fork(const unsigned char *p, int calls_library)
{
    if (calls_library)
        zz_free(zz_alloc(1)); /* any entry point notices the missed fork */
    _exit(VREAD(p) == 0 ? 0 : 3);
}

static void child_wipeonfork_means_zeros(void *arg)
{
    (void)arg;
    unsigned char *p = zz_alloc(64);
    child_check(p != NULL);
    memset(p, 0xB7, 64);
    unsigned info = zz_info(p);
    child_check((info & (ZZ_INFO_SECRETMEM | ZZ_INFO_WIPEONFORK)) ==
                (ZZ_INFO_SECRETMEM | ZZ_INFO_WIPEONFORK));
    struct tu_vma v;
    child_check(tu_smaps_vma(p, &v) == 0);
    child_check(tu_has_flag(v.vmflags, "dc") && !tu_has_flag(v.vmflags, "wf"));
    pid_t pid = fork();
    child_check(pid >= 0);
    if (pid == 0)
        _exit(zz_is_zero(p, 64) ? 0 : 3);
    int status;
    child_check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
#if HAVE_UNDERSCORE_FORK
    for (int calls_library = 0; calls_library <= 1; calls_library++) {
        pid = _Fork();
        child_check(pid >= 0);
        if (pid == 0) {
            signal(SIGSEGV, SIG_DFL);
            read_after_raw_fork(p, calls_library);
        }
        child_check(waitpid(pid, &status, 0) == pid);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
            !(!calls_library && WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV))
            fprintf(stderr, "_Fork child (library called first: %d) ended with status 0x%x\n",
                    calls_library, status);
        child_check(WIFEXITED(status) ? WEXITSTATUS(status) == 0
                                      : !calls_library && WTERMSIG(status) == SIGSEGV);
    }
#endif
    for (size_t i = 0; i < 64; i++)
        child_check(p[i] == 0xB7);
    zz_free(p);
}

static void test_fork_wipeonfork_flag_means_child_sees_zeros(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    expect_child_ok(child_wipeonfork_means_zeros, NULL);
}

/* In a child, a block asked for on ZZ_BACKEND_SECRETMEM must still be secret
 * memory ("nothing silently falls back"), also when its size class has a
 * slab inherited from the parent (now plain zero pages). */
static void child_new_blocks_are_secret(void *arg)
{
    (void)arg;
    child_check(zz_get_backend() == ZZ_BACKEND_SECRETMEM);
    unsigned char *q = zz_alloc(64);
    child_check(q != NULL);
    unsigned info = zz_info(q);
    if (!(info & ZZ_INFO_SECRETMEM))
        fprintf(stderr, "zz_alloc(64) in the child: zz_info 0x%x, no ZZ_INFO_SECRETMEM\n", info);
    child_check(info & ZZ_INFO_SECRETMEM);
    zz_free(q);
}

static void test_fork_child_new_blocks_are_secret(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    unsigned char *p = zz_alloc(64); /* the class now has a slab with free slots */
    assert_non_null(p);
    expect_child_ok(child_new_blocks_are_secret, NULL);
    zz_free(p);
}

/* ---- cells a child gets from its thread cache (issue 11, defect 2) ------------------- */
/* On 53bd339, a child that freed an inherited block of a secretmem arena and
 * allocated again got the cell from its thread cache, on the plain zero page
 * the fork handler had mapped: no secret memory, no dd/wf, and a grandchild
 * read the secret the child wrote there.  A block handed out in the child
 * must be secret memory, or the call must fail. */

enum { SF_LIVE = 4, SF_FREED = 4 };
struct secret_fork {
    zz_arena *arena;
    unsigned char *live[SF_LIVE];
};

static int proc_mem_refuses(const void *p)
{
    unsigned char buf[32];
    int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (mem < 0)
        return 0;
    errno = 0;
    ssize_t got = pread(mem, buf, sizeof buf, (off_t)(uintptr_t)p);
    int e = errno;
    close(mem);
    return got < 0 && (e == EIO || e == EFAULT);
}

static OPTNONE void child_secret_cells_after_fork(void *arg)
{
    struct secret_fork *f = arg;
    zz_arena_free(f->arena, f->live[0]);
    int served = 0;
    for (int k = 0; k < SF_FREED + 2; k++) {
        errno = 0;
        unsigned char *q = zz_arena_alloc(f->arena, 32);
        if (q == NULL) {
            child_check(errno != 0);
            continue;
        }
        served++;
        child_check(zz_is_zero(q, 32));
        memset(q, 0xC9, 32); /* the child's secret */
        fflush(NULL);
        pid_t pid = fork();
        child_check(pid >= 0);
        if (pid == 0) {
            int secret = 0, other = 0;
            for (size_t i = 0; i < 32; i++) {
                unsigned char b = VREAD(q + i);
                secret += b == 0xC9;
                other += b != 0 && b != 0xC9;
            }
            _exit(secret ? 3 : other ? 4 : 0);
        }
        int status;
        child_check(waitpid(pid, &status, 0) == pid);
        int ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                 (WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS));
        if (!ok)
            fprintf(stderr, "cell %d: the grandchild %s (status 0x%x)\n", k,
                    WIFEXITED(status) && WEXITSTATUS(status) == 3 ? "read the child's secret"
                                                                 : "did not read zeros",
                    status);
        child_check(ok);
        unsigned info = zz_info(q);
        if (!(info & ZZ_INFO_SECRETMEM) || !proc_mem_refuses(q))
            fprintf(stderr, "cell %d in the child: zz_info 0x%x, /proc/self/mem %s\n", k, info,
                    proc_mem_refuses(q) ? "refused" : "reads it");
        child_check(info & ZZ_INFO_SECRETMEM);
        child_check(proc_mem_refuses(q));
    }
    fprintf(stderr, "%d of %d cells served in the child\n", served, SF_FREED + 2);
}

static void test_fork_arena_cached_cells_stay_secret(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    struct secret_fork f;
    f.arena = zz_arena_create(0);
    assert_non_null(f.arena);
    unsigned char *freed[SF_FREED];
    for (int i = 0; i < SF_LIVE; i++) {
        f.live[i] = zz_arena_alloc(f.arena, 32);
        assert_non_null(f.live[i]);
        memset(f.live[i], 0x90 + i, 32);
    }
    for (int i = 0; i < SF_FREED; i++) {
        freed[i] = zz_arena_alloc(f.arena, 32);
        assert_non_null(freed[i]);
    }
    for (int i = 0; i < SF_FREED; i++) /* into this thread's cache */
        zz_arena_free(f.arena, freed[i]);
    struct tu_child_result r;
    assert_int_equal(tu_run_child(child_secret_cells_after_fork, &f, &r), 0);
    print_message("%s", r.err);
    if (!r.exited || r.exit_code != 0) {
        tu_describe_child(&r, __FILE__, __LINE__);
        fail();
    }
    for (int i = 0; i < SF_LIVE; i++) {
        for (size_t k = 0; k < 32; k++)
            assert_int_equal(f.live[i][k], 0x90 + i);
        zz_arena_free(f.arena, f.live[i]);
    }
    zz_arena_destroy(f.arena);
}

/* ---- fresh processes: environment, seccomp, memlock --------------------------------- */

static char self_path[4096];

/* Forks, optionally installs a seccomp filter, sets ZEROIZE_BACKEND, and
 * re-executes this program as "--child <name> <arg>".  Returns its status. */
static int run_fresh(const char *name, const char *arg, const char *env_backend, int seccomp_errno)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (env_backend != NULL)
            setenv("ZEROIZE_BACKEND", env_backend, 1);
        else
            unsetenv("ZEROIZE_BACKEND");
        if (seccomp_errno != 0) {
#if defined(__x86_64__) && defined(SYS_memfd_secret)
            struct sock_filter code[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_memfd_secret, 0, 1),
                BPF_STMT(BPF_RET | BPF_K,
                         SECCOMP_RET_ERRNO | ((unsigned)seccomp_errno & SECCOMP_RET_DATA)),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            };
            struct sock_fprog prog = { sizeof code / sizeof code[0], code };
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
                prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
                _exit(120);
#else
            _exit(121);
#endif
        }
        char *argv[] = { self_path, (char *)(uintptr_t)"--child", (char *)(uintptr_t)name,
                         (char *)(uintptr_t)arg, NULL };
        execv(self_path, argv);
        _exit(122);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void assert_fresh_ok(int status, const char *what)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        print_error("fresh process for %s ended with status 0x%x (exit code 120+: set-up "
                    "failed; else the line of the failed check)\n",
                    what, status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* --child env <expected backend> */
static int child_env(const char *expected)
{
    int want = atoi(expected);
    child_check(zz_get_backend() == want);
    void *p = zz_alloc(32);
    child_check(p != NULL);
    int secret = (zz_info(p) & ZZ_INFO_SECRETMEM) != 0;
    child_check(secret == (want != ZZ_BACKEND_ANON));
    zz_free(p);
    return 0;
}

static void test_environment_sets_initial_backend(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    static const struct {
        const char *value;
        const char *expected;
    } cases[] = { { "secretmem", "1" }, { "auto", "2" }, { "anon", "0" }, { NULL, "0" } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_fresh_ok(run_fresh("env", cases[i].expected, cases[i].value, 0),
                        cases[i].value ? cases[i].value : "(unset)");
}

/* --child seccomp <errno>: memfd_secret fails with that errno here. */
static int child_seccomp(const char *err)
{
    int want = atoi(err);
    errno = 0;
    child_check(syscall(SYS_memfd_secret, 0) == -1 && errno == want); /* the filter works */
    /* AUTO: falls back to anon, and says so */
    child_check(zz_set_backend(ZZ_BACKEND_AUTO) == 0);
    unsigned char *p = zz_alloc(32);
    child_check(p != NULL);
    child_check((zz_info(p) & ZZ_INFO_SECRETMEM) == 0);
    child_check(zz_info(p) & ZZ_INFO_LOCKED);
    zz_arena *a = zz_arena_create(0);
    child_check(a != NULL);
    void *ab = zz_arena_alloc(a, 32);
    child_check(ab != NULL && (zz_info(ab) & ZZ_INFO_SECRETMEM) == 0);
    child_check(zz_last_error_code() == ZZ_ERR_NONE); /* AUTO's fallback is no failure */
    /* SECRETMEM: no silent fallback */
    child_check(zz_set_backend(ZZ_BACKEND_SECRETMEM) == 0);
    static const size_t sizes[] = { 32, 5000, 70000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        child_check(zz_alloc(sizes[i]) == NULL);
        child_check(errno == want);
        child_check(strstr(zz_last_error(), "memfd_secret") != NULL);
    }
    errno = 0;
    child_check(zz_arena_create(0) == NULL);
    child_check(errno == want);
    child_check(strstr(zz_last_error(), "memfd_secret") != NULL);
    /* the existing anon blocks still work */
    memset(p, 1, 32);
    zz_free(p);
    zz_arena_free(a, ab);
    zz_arena_destroy(a);
    return 0;
}

static void test_seccomp_refusal(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
#if !defined(__x86_64__)
    skip();
#endif
    static const int errs[] = { ENOSYS, EPERM };
    for (size_t i = 0; i < 2; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", errs[i]);
        int status = run_fresh("seccomp", arg, "anon", errs[i]);
        assert_fresh_ok(status, errs[i] == ENOSYS ? "seccomp ENOSYS" : "seccomp EPERM");
    }
}

/* --child memlock: without CAP_IPC_LOCK and with a small RLIMIT_MEMLOCK,
 * secret memory runs out with a memlock error, not a silent fallback. */
static int child_memlock(void)
{
    child_check(tu_drop_ipc_lock(256 * 1024) == 0);
    child_check(zz_set_backend(ZZ_BACKEND_SECRETMEM) == 0);
    void *held[200];
    size_t got = 0;
    for (; got < 200; got++) {
        errno = 0;
        held[got] = zz_alloc(4096);
        if (held[got] == NULL)
            break;
        child_check(zz_info(held[got]) & ZZ_INFO_SECRETMEM);
    }
    child_check(got < 200); /* 200 pages + guards exceed 256 KiB */
    child_check(errno == EAGAIN || errno == ENOMEM || errno == EPERM);
    child_check(strstr(zz_last_error(), "RLIMIT_MEMLOCK") != NULL);
    child_check(zz_last_error_code() == ZZ_ERR_SECRETMEM_LIMIT);
    fprintf(stderr, "memlock 256 KiB: %zu secretmem blocks of 4096 bytes, then errno %d\n", got,
            errno);
    for (size_t i = 0; i < got; i++)
        zz_free(held[i]);
    return 0;
}

/* --child memlock-hint <limit>: secret memory refused for the lock limit
 * (issue 11, defect 11).  zz_last_error must point at RLIMIT_MEMLOCK and
 * `ulimit -l`, and must not suggest ZEROIZE_LOCK=best-effort (53bd339 did),
 * which cannot help: secret memory is always locked. */
static int suggests_best_effort(const char *msg)
{
    if (strstr(msg, "ZEROIZE_LOCK=best-effort") == NULL &&
        strstr(msg, "ZZ_LOCK_BEST_EFFORT") == NULL)
        return 0;
    /* named only to say it does not help */
    return strstr(msg, "cannot help") == NULL && strstr(msg, "does not help") == NULL &&
           strstr(msg, "will not help") == NULL;
}

static void check_limit_message(const char *what, int err)
{
    const char *msg = zz_last_error();
    int ok = (err == EAGAIN || err == ENOMEM) && strstr(msg, "RLIMIT_MEMLOCK") != NULL &&
             strstr(msg, "ulimit -l") != NULL && !suggests_best_effort(msg);
    if (!ok)
        fprintf(stderr, "%s: errno %d, zz_last_error() \"%s\"\n", what, err, msg);
    child_check(err == EAGAIN || err == ENOMEM);
    child_check(strstr(msg, "RLIMIT_MEMLOCK") != NULL);
    child_check(strstr(msg, "ulimit -l") != NULL);
    child_check(!suggests_best_effort(msg));
}

static int child_memlock_hint(const char *limit)
{
    child_check(tu_drop_ipc_lock((rlim_t)strtoul(limit, NULL, 10)) == 0);
    child_check(zz_set_backend(ZZ_BACKEND_SECRETMEM) == 0);
    enum { MAX = 256 };
    void *held[MAX];
    size_t got = 0;
    int err = 0;
    for (; got < MAX; got++) {
        errno = 0;
        held[got] = zz_alloc(4096);
        if (held[got] == NULL) {
            err = errno;
            break;
        }
    }
    child_check(got < MAX);
    check_limit_message("zz_alloc", err);
    errno = 0;
    zz_arena *a = zz_arena_create(0);
    if (a == NULL) {
        check_limit_message("zz_arena_create", errno);
    } else {
        void *p = NULL;
        for (size_t i = 0; i < 100000 && (p = zz_arena_alloc(a, 1024)) != NULL; i++)
            ;
        child_check(p == NULL);
        check_limit_message("zz_arena_alloc", errno);
        zz_arena_destroy(a);
    }
    for (size_t i = 0; i < got; i++)
        zz_free(held[i]);
    return 0;
}

static void test_memlock_hint_is_the_lock_limit(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    assert_fresh_ok(run_fresh("memlock-hint", "0", NULL, 0), "memlock-hint 0");
    assert_fresh_ok(run_fresh("memlock-hint", "131072", NULL, 0), "memlock-hint 131072");
}

static void test_memlock_limit_applies(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    assert_fresh_ok(run_fresh("memlock", "-", NULL, 0), "memlock");
}

/* ---- scale (slow group) ---------------------------------------------------------------- */

/* Open descriptors of this process (what /proc/self/fd lists). */
static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void test_100k_secrets_bounded_fds(void **state)
{
    (void)state;
    REQUIRE_SECRETMEM();
    enum { COUNT = 100000 };
    long fds0 = count_fds(), vmas0 = tu_count_vmas();
    zz_arena *a = zz_arena_create(0);
    assert_non_null(a);
    void **p = calloc(COUNT, sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < COUNT; i++) {
        p[i] = zz_arena_alloc(a, 32);
        assert_non_null(p[i]);
        memset(p[i], 0x7A, 32);
    }
    assert_int_equal(zz_info(p[COUNT - 1]) & ZZ_INFO_SECRETMEM, ZZ_INFO_SECRETMEM);
    long fds1 = count_fds();
    print_message("100000 arena secrets in secret memory: fds %ld -> %ld, VMAs %ld -> %ld, "
                  "VmLck %ld kB\n",
                  fds0, fds1, vmas0, tu_count_vmas(), tu_status_kb("VmLck"));
    assert_true(fds1 <= fds0 + 3);
    for (size_t i = 0; i < COUNT; i++)
        zz_arena_free(a, p[i]);
    zz_arena_destroy(a);

    /* zz_alloc: one slot per block, two VMAs per slot (PROT_NONE guards), so
     * vm.max_map_count ends it first; it must end with ENOMEM. */
    size_t got = 0;
    for (; got < COUNT; got++) {
        errno = 0;
        p[got] = zz_alloc(32);
        if (p[got] == NULL)
            break;
    }
    int e = errno;
    long fds2 = count_fds();
    print_message("zz_alloc(32) on secret memory: %zu live blocks%s (errno %d), fds %ld, VMAs %ld\n",
                  got, got < COUNT ? " before failing" : "", e, fds2, tu_count_vmas());
    assert_true(fds2 <= fds0 + 3);
    assert_true(got >= 10000);
    if (got < COUNT) {
        assert_int_equal(e, ENOMEM);
        assert_non_null(strstr(zz_last_error(), "max_map_count"));
    }
    for (size_t i = 0; i < got; i++)
        zz_free(p[i]);
    free(p);
}

int main(int argc, char **argv)
{
    have_secretmem = tu_have_secretmem();
    if (argc > 3 && strcmp(argv[1], "--child") == 0) {
        if (strcmp(argv[2], "env") == 0)
            return child_env(argv[3]);
        if (strcmp(argv[2], "seccomp") == 0)
            return child_seccomp(argv[3]);
        if (strcmp(argv[2], "memlock") == 0)
            return child_memlock();
        if (strcmp(argv[2], "memlock-hint") == 0)
            return child_memlock_hint(argv[3]);
        return 125;
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        return 1;
    self_path[n] = '\0';
    if (!have_secretmem)
        print_message("memfd_secret is not available: secretmem tests will be skipped\n");

#define T(f) cmocka_unit_test_setup_teardown(f, use_secretmem, back_to_anon)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_backend_rejects_unknown),
        T(test_canaries_and_guards_on_secret_memory), /* first: its size class is unused */
        T(test_blocks_live_in_secret_memory),
        T(test_arena_keeps_its_backend),
        T(test_alloc_backend_per_block),
        T(test_purge_wipes_secret_memory),
        T(test_kernel_cannot_reach_secret_memory),
        T(test_read_and_write_through_a_pipe),
        T(test_odirect_and_vmsplice_refused),
        T(test_fork_child_reads_zeros),
        T(test_fork_wipeonfork_flag_means_child_sees_zeros),
        T(test_fork_child_new_blocks_are_secret),
        T(test_environment_sets_initial_backend),
        T(test_seccomp_refusal),
        T(test_memlock_limit_applies),
        T(test_fork_arena_cached_cells_stay_secret),
        T(test_memlock_hint_is_the_lock_limit),
    };
    const struct CMUnitTest scale[] = {
        T(test_100k_secrets_bounded_fds),
    };
#undef T
    if (argc > 1 && strcmp(argv[1], "scale") == 0)
        return cmocka_run_group_tests_name("secretmem_scale", scale, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
