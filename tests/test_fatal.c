/* The fatal path (issue 11, defect 12): the one line "zeroize: <fault>\n"
 * reaches stderr whole even when write(2) is interrupted by signals (EINTR)
 * while stderr is a full pipe, and the process then dies of SIGABRT.
 *
 * (A short write of a line this short cannot be provoked from user space: a
 * pipe write of at most PIPE_BUF bytes is atomic, and a stream socket sends
 * it as one buffer.  The EINTR case is the one that lost the line.) */
#include <poll.h>
#include <sys/time.h>
#include <time.h>

#include "test_util.h"

static volatile sig_atomic_t alarms;

static void count_alarm(int sig)
{
    (void)sig;
    alarms++;
}

/* Makes stderr (a pipe) full, then misuses the library while a 1 ms timer
 * interrupts every blocking write.  fd is the status pipe: the child writes
 * one byte there once stderr is full, so the parent knows when to start its
 * delay. */
static OPTNONE void child_fatal_into_full_pipe(int ready_fd)
{
    tu_child_prepare();
    int fl = fcntl(STDERR_FILENO, F_GETFL);
    if (fl < 0 || fcntl(STDERR_FILENO, F_SETFL, fl | O_NONBLOCK) != 0)
        _exit(10);
    static const char filler[4096] = { 0 };
    for (;;) {
        ssize_t w = write(STDERR_FILENO, filler, sizeof filler);
        if (w < 0 && errno == EAGAIN)
            break;
        if (w < 0)
            _exit(11);
    }
    for (;;) { /* what still fits in the last page, byte by byte */
        ssize_t w = write(STDERR_FILENO, filler, 1);
        if (w < 0 && errno == EAGAIN)
            break;
        if (w < 0)
            _exit(12);
    }
    if (fcntl(STDERR_FILENO, F_SETFL, fl & ~O_NONBLOCK) != 0)
        _exit(13);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_alarm;
    sa.sa_flags = 0; /* no SA_RESTART: a blocked write returns EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        _exit(14);
    void *p = zz_alloc(32);
    if (p == NULL)
        _exit(15);
    zz_free(p);
    struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
    if (setitimer(ITIMER_REAL, &it, NULL) != 0)
        _exit(16);
    if (write(ready_fd, "r", 1) != 1)
        _exit(17);
    zz_free(p); /* double free: the fatal line blocks on the full pipe */
    _exit(18);
}

static void test_fatal_line_survives_eintr_on_full_pipe(void **state)
{
    (void)state;
    int err[2], ready[2];
    assert_int_equal(pipe(err), 0);
    assert_int_equal(pipe(ready), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(err[0]);
        close(ready[0]);
        if (dup2(err[1], STDERR_FILENO) < 0)
            _exit(9);
        close(err[1]);
        child_fatal_into_full_pipe(ready[1]);
    }
    close(err[1]);
    close(ready[1]);
    char c;
    ssize_t got;
    while ((got = read(ready[0], &c, 1)) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    /* Let the timer interrupt the blocked write many times (old code: the
     * first EINTR loses the line), then drain. */
    struct timespec delay = { 0, 300 * 1000 * 1000 };
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
        ;
    /* Drain until EOF; a child that never finishes is killed after 20 s. */
    static char buf[1 << 17];
    size_t len = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int hung = 0;
    for (;;) {
        struct pollfd pfd = { err[0], POLLIN, 0 };
        int polled = poll(&pfd, 1, 200);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 20) {
            hung = 1;
            kill(pid, SIGKILL);
            break;
        }
        if (polled < 0 && errno == EINTR)
            continue;
        assert_true(polled >= 0);
        if (polled == 0)
            continue;
        ssize_t n = read(err[0], buf + len, sizeof buf - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            if (len == sizeof buf - 1)
                break;
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    close(err[0]);
    buf[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (hung)
        print_error("the child was still running 20 s after stderr was drained: killed\n");
    assert_false(hung);
    size_t filler = 0;
    while (filler < len && buf[filler] == '\0')
        filler++;
    const char *line = buf + filler;
    print_message("child ready %zd, status 0x%x, %zu filler bytes, then \"%s\"\n", got, status,
                  filler, line);
    assert_int_equal(got, 1);
    assert_true(filler >= 4096); /* stderr really was full */
    assert_string_equal(line, "zeroize: double free\n");
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fatal_line_survives_eintr_on_full_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
