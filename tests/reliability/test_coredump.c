/*
 * test_coredump.c - a process that dies with secrets in memory must not
 * write them to its core file.
 *
 * A forked child (core dumps enabled: RLIMIT_CORE unlimited, dumpable, in a
 * scratch directory of its own) puts secrets in every kind of memory the
 * library protects, and controls in memory it does not, then aborts.  The
 * parent reads the core file and counts each secret:
 *   must be absent   zz_alloc block; a zz_alloc block in ZZ_NOACCESS mode;
 *                    an arena block; the new block of a zz_realloc (and the
 *                    old one, wiped); a caller buffer under zz_lock
 *   must be present  a malloc buffer; a caller buffer after zz_lock +
 *                    zz_unlock_keep (dumpable again)
 * The controls prove that the dump is complete and the scan works, so the
 * test can fail.
 *
 * Each secret is 64 bytes of a splitmix64 stream whose seed comes from
 * getrandom(2); the child writes it word by word straight into its place and
 * the parent regenerates it while scanning.  No secret is ever printed.
 *
 * Skipped, with the reason, when the kernel pipes core dumps to a program
 * (core_pattern "|..."), writes them to another directory, or the hard
 * RLIMIT_CORE forbids them.
 */
#include <dirent.h>
#include <elf.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "../test_util.h"

#define SECRET_LEN 64

enum where { IN_BLOCK, IN_NOACCESS, IN_ARENA, IN_REALLOC, IN_ZZ_LOCK, IN_MALLOC, IN_UNLOCKED, NPLACES };
static const char *const place_name[NPLACES] = {
    "zz_alloc block", "zz_alloc block (NOACCESS)", "arena block", "zz_realloc'd block",
    "zz_lock'ed buffer", "malloc buffer (control)", "zz_unlock_keep'ed buffer (control)"};
static const int must_be_dumped[NPLACES] = {0, 0, 0, 0, 0, 1, 1};

static uint64_t seeds[NPLACES];

/* ---- the child ---------------------------------------------------------------------- */

static void die_with_secrets(const char *dir)
{
    if (chdir(dir) != 0)
        _exit(10);
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        _exit(11);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);

    unsigned char *block = zz_alloc(SECRET_LEN);
    unsigned char *hidden = zz_alloc(SECRET_LEN);
    zz_arena *arena = zz_arena_create(0);
    unsigned char *cell = arena ? zz_arena_alloc(arena, SECRET_LEN) : NULL;
    unsigned char *moving = zz_alloc(SECRET_LEN);
    unsigned char *heap = malloc(SECRET_LEN);
    size_t pg = tu_page_size();
    unsigned char *pages = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                -1, 0);
    if (!block || !hidden || !cell || !moving || !heap || pages == MAP_FAILED)
        _exit(12);

    tu_fill_secret(block, seeds[IN_BLOCK], SECRET_LEN);
    tu_fill_secret(hidden, seeds[IN_NOACCESS], SECRET_LEN);
    if (zz_protect(hidden, ZZ_NOACCESS) != 0)
        _exit(13);
    tu_fill_secret(cell, seeds[IN_ARENA], SECRET_LEN);
    tu_fill_secret(moving, seeds[IN_REALLOC], SECRET_LEN);
    unsigned char *moved = zz_realloc(moving, 3 * SECRET_LEN); /* old block wiped */
    if (moved == NULL)
        _exit(14);
    tu_fill_secret(heap, seeds[IN_MALLOC], SECRET_LEN);
    /* Caller memory: page 0 stays locked, page 1 is unlocked with its
     * contents kept, and so is dumpable again. */
    if (zz_lock(pages, pg) != 0 || zz_lock(pages + pg, pg) != 0)
        _exit(15);
    tu_fill_secret(pages + 100, seeds[IN_ZZ_LOCK], SECRET_LEN);
    tu_fill_secret(pages + pg + 100, seeds[IN_UNLOCKED], SECRET_LEN);
    if (zz_unlock_keep(pages + pg, pg) != 0)
        _exit(16);
    TU_BARRIER();
    abort();
}

/* ---- the parent ------------------------------------------------------------------------- */

static int read_sysctl(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    if (fgets(buf, (int)n, f) == NULL)
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* The one file the dump left in dir (its name depends on core_pattern and
 * core_uses_pid), read whole into *data.  Returns its size, or -1. */
static ssize_t read_core(const char *dir, unsigned char **data, char *name, size_t name_len)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    char path[4096] = "";
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(name, name_len, "%s", e->d_name);
        break;
    }
    closedir(d);
    if (path[0] == '\0')
        return -1;
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return -1;
    *data = malloc((size_t)st.st_size + 1);
    ssize_t got = 0;
    while (*data != NULL && got < st.st_size) {
        ssize_t r = read(fd, *data + got, (size_t)(st.st_size - got));
        if (r <= 0)
            break;
        got += r;
    }
    close(fd);
    if (getenv("ZZ_KEEP_CORE") == NULL)
        unlink(path);
    else
        fprintf(stderr, "kept %s\n", path);
    return got == st.st_size ? got : -1;
}

/* What part of the core file holds offset i: a note (saved registers) or
 * a memory segment (*addr gets the address). */
static const char *core_region(const unsigned char *core, size_t i, uint64_t *addr)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)(const void *)core;
    for (unsigned k = 0; k < eh->e_phnum; k++) {
        const Elf64_Phdr *ph =
            (const Elf64_Phdr *)(const void *)(core + eh->e_phoff + (size_t)k * eh->e_phentsize);
        if (i >= ph->p_offset && i < ph->p_offset + ph->p_filesz) {
            *addr = ph->p_vaddr + (i - ph->p_offset);
            return ph->p_type == PT_NOTE ? "notes (saved registers)" : "memory";
        }
    }
    *addr = 0;
    return "headers";
}

/* How many times any 16-byte quarter of the secret occurs in the core: a
 * quarter is what one XMM register holds, and the XSAVE layout keeps only
 * 16 bytes of a vector register contiguous.  With `verbose`, says where. */
static size_t count_secret(const unsigned char *core, size_t len, uint64_t seed, int verbose)
{
    unsigned char secret[SECRET_LEN];
    tu_fill_secret(secret, seed, SECRET_LEN);
    size_t hits = 0;
    for (size_t q = 0; q < SECRET_LEN; q += 16) {
        const unsigned char *at = core, *end = core + len;
        while (at < end) {
            const unsigned char *f = memmem(at, (size_t)(end - at), secret + q, 16);
            if (f == NULL)
                break;
            hits++;
            if (verbose) {
                uint64_t addr;
                const char *what = core_region(core, (size_t)(f - core), &addr);
                print_message("    bytes %zu-%zu at core offset %zu: %s, address %#llx\n", q,
                              q + 15, (size_t)(f - core), what, (unsigned long long)addr);
            }
            at = f + 1;
        }
    }
    explicit_bzero(secret, sizeof secret);
    return hits;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Forks the child, reads its core and checks the places in `checked`
 * (a bit mask of enum where). */
static void dump_and_check(unsigned checked)
{
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* AddressSanitizer disables core dumps (disable_coredump=1) */
#endif
    char pattern[512], uses_pid[16] = "?";
    if (read_sysctl("/proc/sys/kernel/core_pattern", pattern, sizeof pattern) != 0) {
        print_message("skipped: cannot read /proc/sys/kernel/core_pattern\n");
        skip();
    }
    read_sysctl("/proc/sys/kernel/core_uses_pid", uses_pid, sizeof uses_pid);
    if (pattern[0] == '|' || strchr(pattern, '/') != NULL) {
        print_message("skipped: core_pattern is \"%s\": dumps do not land in the working "
                      "directory\n", pattern);
        skip();
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (1u << 26)) {
        print_message("skipped: hard RLIMIT_CORE is %llu bytes\n", (unsigned long long)rl.rlim_max);
        skip();
    }
    assert_int_equal(getrandom(seeds, sizeof seeds, 0), (ssize_t)sizeof seeds);
    char dir[] = "/tmp/zz-core-XXXXXX";
    assert_non_null(mkdtemp(dir));

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGABRT, &dfl, NULL);
        die_with_secrets(dir);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
        remove_dir(dir);
        fail_msg("child did not die of SIGABRT (status %#x, exit %d)", status,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    assert_true(WCOREDUMP(status));

    unsigned char *core = NULL;
    char name[256] = "";
    ssize_t len = read_core(dir, &core, name, sizeof name);
    if (getenv("ZZ_KEEP_CORE") == NULL)
        remove_dir(dir);
    assert_true(len > 0);
    print_message("core_pattern \"%s\", core_uses_pid %s: core file \"%s\", %zd bytes\n", pattern,
                  uses_pid, name, len);
    int ok = 1;
    for (int w = 0; w < NPLACES; w++) {
        if (!(checked & (1u << w)))
            continue;
        size_t whole = tu_scan_window(core, (size_t)len, seeds[w], SECRET_LEN);
        size_t quarters = count_secret(core, (size_t)len, seeds[w], 0);
        print_message("  %-36s whole %zu, 16-byte pieces %zu; expected %s\n", place_name[w], whole,
                      quarters, must_be_dumped[w] ? "whole at least once" : "no piece");
        int bad = must_be_dumped[w] ? whole == 0 : quarters != 0;
        if (bad) {
            ok = 0;
            count_secret(core, (size_t)len, seeds[w], 1);
        }
    }
    explicit_bzero(core, (size_t)len);
    free(core);
    explicit_bzero(seeds, sizeof seeds);
    assert_true(ok);
}

#define BIT(w) (1u << (w))

static void test_coredump_secrets_absent_controls_present(void **state)
{
    (void)state;
    dump_and_check(BIT(IN_BLOCK) | BIT(IN_NOACCESS) | BIT(IN_ARENA) | BIT(IN_ZZ_LOCK) |
                   BIT(IN_MALLOC) | BIT(IN_UNLOCKED));
}

/* zz_realloc copies the secret.  A memcpy would leave it in vector
 * registers: the core's register notes hold them, and the first lazily bound
 * PLT call afterwards (glibc's _dl_runtime_resolve saves the vector
 * registers with XSAVEC on the stack) copies them onto the stack.  The first
 * version of the library did exactly that (found by this test). */
static void test_coredump_realloc_leaves_no_copy(void **state)
{
    (void)state;
    dump_and_check(BIT(IN_REALLOC) | BIT(IN_MALLOC));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coredump_secrets_absent_controls_present),
        cmocka_unit_test(test_coredump_realloc_leaves_no_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
