/* valgrind_uaf_helper drive VALGRIND SUPPRESSIONS
 *   runs itself twice under VALGRIND (memcheck) and passes when
 *   clean: ordinary use of the library; memcheck must report nothing.
 *   uaf:   reads a freed block whose slot the library keeps in its cache;
 *          memcheck must report it (the library marks cached slots
 *          inaccessible for memcheck).  A native fault is caught and turned
 *          into exit 3, so valgrind's --error-exitcode still decides.
 * Exits 77 (skipped) when VALGRIND cannot be run.  Written in C rather than
 * shell so that `ctest -T memcheck`, which wraps the driver itself in
 * valgrind, checks only code of ours. */
#include "test_util.h"

#include <setjmp.h>
#include <valgrind/memcheck.h>

static sigjmp_buf fault_jump;

static void on_fault(int sig)
{
    (void)sig;
    siglongjmp(fault_jump, 1);
}

static int run_clean(void)
{
    for (size_t n = 0; n < 5000; n += 97) {
        unsigned char *p = zz_alloc(n);
        if (p == NULL)
            return 2;
        memset(p, 0x55, n);
        p = zz_realloc(p, n + 50);
        if (p == NULL)
            return 2;
        zz_free(p);
    }
    unsigned char key[64];
    memset(key, 1, sizeof key);
    if (zz_lock(key, sizeof key) != 0 || zz_unlock(key, sizeof key) != 0)
        return 2;
    unsigned char *p = zz_alloc(100);
    if (p == NULL || zz_protect(p, ZZ_READONLY) != 0 || zz_protect(p, ZZ_READWRITE) != 0)
        return 2;
    zz_free(p);
    return 0;
}

OPTNONE static int run_uaf(void)
{
    unsigned char *p = zz_alloc(64);
    if (p == NULL)
        return 2;
    memset(p, 0x42, 64);
    zz_free(p);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigaction(SIGSEGV, &sa, NULL);
    if (sigsetjmp(fault_jump, 1) != 0)
        return 3;
    unsigned char v = VREAD(p + 10);   /* the use after free */
    /* still cached: the next block of that size reuses the slot (LIFO) */
    unsigned char *q = zz_alloc(64);
    int reused = q == p;
    zz_free(q);
    /* The driver checks this line: the slot read after free was cached. */
    printf("read %#x after free; slot %s\n", v, reused ? "reused" : "not reused");
    return 0;
}

/* Runs VALGRIND on this program in the given mode; returns its exit status
 * (or -1) and leaves its output (stdout and stderr) in out. */
static int run_under_valgrind(const char *vg, const char *supp, const char *mode, int leaks,
                              char *out, size_t outsz)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return -1;
    self[len] = '\0';
    char supp_opt[4200];
    snprintf(supp_opt, sizeof supp_opt, "--suppressions=%s", supp);
    char *args[] = { (char *)(uintptr_t)vg, (char *)(uintptr_t)"-q",
                     (char *)(uintptr_t)"--error-exitcode=99",
                     (char *)(uintptr_t)(leaks ? "--leak-check=full" : "--leak-check=no"),
                     supp_opt, self, (char *)(uintptr_t)mode, NULL };
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execvp(vg, args);
        _exit(77);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t got;
    while (used + 1 < outsz && (got = read(fds[0], out + used, outsz - 1 - used)) > 0)
        used += (size_t)got;
    out[used] = '\0';
    char sink[256];
    while (read(fds[0], sink, sizeof sink) > 0) {
    }
    close(fds[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int drive(const char *vg, const char *supp)
{
    static char out[1 << 16];
    int rc = run_under_valgrind(vg, supp, "clean", 1, out, sizeof out);
    if (rc == 77) {
        printf("cannot run %s: skipped\n", vg);
        return 77;
    }
    if (rc != 0 && (strstr(out, "unhandled dwarf2") != NULL || strstr(out, "debuginfo") != NULL)) {
        /* e.g. clang 14's DWARF 5 under valgrind 3.19: valgrind gives up */
        printf("valgrind cannot read this build's debug info: skipped\n");
        return 77;
    }
    if (rc != 0) {
        printf("%s\nFAIL: memcheck on ordinary use exited %d (want 0)\n", out, rc);
        return 1;
    }
    rc = run_under_valgrind(vg, supp, "uaf", 0, out, sizeof out);
    /* The inner report is printed only on failure: ctest -T memcheck reads
     * this program's output too and would count it as our own defect. */
    if (rc != 99) {
        printf("%s\nFAIL: a use after free exited %d under memcheck (want 99: error reported)\n",
               out, rc);
        return 1;
    }
    if (strstr(out, "; slot reused") == NULL) {
        printf("%s\nFAIL: the freed slot was not handed out again (not cached)\n", out);
        return 1;
    }
    if (strstr(out, "Invalid read of size 1") == NULL) {
        printf("%s\nFAIL: memcheck did not report the invalid read\n", out);
        return 1;
    }
    printf("ok: memcheck reports a read of a freed, cached block\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "drive") == 0)
        return drive(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "clean") == 0)
        return run_clean();
    if (argc == 2 && strcmp(argv[1], "uaf") == 0)
        return run_uaf();
    fprintf(stderr, "usage: %s drive VALGRIND SUPPRESSIONS | clean | uaf\n", argv[0]);
    return 2;
}
