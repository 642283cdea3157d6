/*
 * profile.c - the unprivileged profile: `zz-bench alloc --unprivileged` (and
 * `zz-bench all`) runs the alloc tables again in a child process that gives
 * up what a normal user lacks: CAP_IPC_LOCK (from every set), an unlimited
 * RLIMIT_MEMLOCK (8 MiB, Debian's default for a login) and, when started as
 * root, root itself (uid and gid 65534).  The child prints its own tables and
 * sends every figure back through a pipe, so the parent's JSON holds both
 * profiles, each entry naming its own.
 */
#include "bench.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNPRIVILEGED_MEMLOCK ((rlim_t)8 << 20)
#define UNPRIVILEGED_ID 65534 /* nobody / nogroup */

static int capabilities(struct __user_cap_data_struct data[2])
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    memset(data, 0, 2 * sizeof(*data));
    return (int)syscall(SYS_capget, &hdr, data);
}

static int has_ipc_lock(void)
{
    struct __user_cap_data_struct data[2];
    if (capabilities(data) != 0)
        return -1;
    return (data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32))) != 0;
}

/* Drops CAP_IPC_LOCK from the effective, permitted and inheritable sets (and
 * the ambient and bounding sets where allowed). */
static int drop_ipc_lock(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (capabilities(data) != 0)
        return -1;
    unsigned bit = 1u << (CAP_IPC_LOCK % 32), idx = CAP_IPC_LOCK / 32;
    data[idx].effective &= ~bit;
    data[idx].permitted &= ~bit;
    data[idx].inheritable &= ~bit;
    if (syscall(SYS_capset, &hdr, data) != 0)
        return -1;
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_IPC_LOCK, 0, 0);
    return 0;
}

/* In the child: give up the privileges, then check that they are gone.
 * Prints why and returns -1 when something could not be given up. */
static int become_unprivileged(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return -1;
    rlim_t limit = rl.rlim_max < UNPRIVILEGED_MEMLOCK ? rl.rlim_max : UNPRIVILEGED_MEMLOCK;
    rl.rlim_cur = rl.rlim_max = limit;
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
        perror("zz-bench: unprivileged: setrlimit(RLIMIT_MEMLOCK)");
        return -1;
    }
    if (geteuid() == 0) {
        /* from the bounding set first (needs CAP_SETPCAP), then root itself:
         * setuid from root to another user clears every capability set */
        if (prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) != 0 || setgroups(0, NULL) != 0 ||
            setgid(UNPRIVILEGED_ID) != 0 || setuid(UNPRIVILEGED_ID) != 0) {
            perror("zz-bench: unprivileged: giving up root");
            return -1;
        }
    } else if (drop_ipc_lock() != 0) {
        perror("zz-bench: unprivileged: dropping CAP_IPC_LOCK");
        return -1;
    }
    if (has_ipc_lock() != 0 || geteuid() == 0) {
        fprintf(stderr, "zz-bench: unprivileged: CAP_IPC_LOCK or root is still there\n");
        return -1;
    }
    return 0;
}

const char *zb_profile_description(void)
{
    static char text[160];
    struct rlimit rl;
    char limit[32] = "unlimited";
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        zb_format_size(limit, sizeof(limit), (size_t)rl.rlim_cur);
    int ipc = has_ipc_lock();
    snprintf(text, sizeof(text), "%s: uid %u, %s, RLIMIT_MEMLOCK %s", zb_profile(), (unsigned)geteuid(),
             ipc > 0 ? "with CAP_IPC_LOCK" : "without CAP_IPC_LOCK", limit);
    return text;
}

int zb_run_alloc_unprivileged(char **options, int noptions)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("zz-bench: pipe");
        return -1;
    }
    char fd_text[16], self[4096], entry[] = "_alloc-unprivileged";
    snprintf(fd_text, sizeof(fd_text), "%d", fds[1]);
    snprintf(self, sizeof(self), "%s", zb_self_path());
    char **argv = calloc((size_t)noptions + 4, sizeof(*argv));
    if (!argv)
        return -1;
    argv[0] = self;
    argv[1] = entry;
    argv[2] = fd_text;
    for (int i = 0; i < noptions; i++)
        argv[3 + i] = options[i]; /* --unprivileged among them means nothing to the child */
    fflush(NULL); /* the child writes its tables to the same stdout */
    zb_load_hand_over();
    pid_t pid = fork();
    if (pid < 0) {
        perror("zz-bench: fork");
        free(argv);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        zb_unpin_before_exec();
        execv(argv[0], argv);
        perror("zz-bench: exec");
        _exit(127);
    }
    free(argv);
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    const char *saved = zb_profile();
    char previous[32];
    snprintf(previous, sizeof(previous), "%s", saved);
    zb_set_profile("unprivileged");
    int loaded = in ? zb_results_load(in) : -1;
    if (in)
        fclose(in);
    else
        close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    zb_load_resume_after_child();
    zb_set_profile(previous);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || loaded <= 0) {
        fprintf(stderr, "zz-bench: the unprivileged alloc run failed (status %d, %d entries)\n", status,
                loaded);
        return -1;
    }
    return 0;
}

int zb_alloc_unprivileged_child(int fd, const zb_options *opt)
{
    FILE *out = fdopen(fd, "w");
    if (!out || become_unprivileged() != 0)
        return 1;
    zb_set_profile("unprivileged");
    zb_load_start();
    int rc = zb_run_alloc(opt);
    fflush(stdout);
    zb_results_dump(out);
    if (fclose(out) != 0)
        return 1;
    return rc != 0;
}
