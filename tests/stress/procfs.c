/*
 * procfs.c - what the kernel says about our memory: the VMA of an address in
 * /proc/self/smaps (VmFlags, Locked, the file behind it), fields of
 * /proc/self/status, and whether this process holds CAP_IPC_LOCK.
 * Uses open/read only (no stdio), so forked children of a threaded
 * process can call it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/syscall.h>

#include "stress.h"

/* Reads a /proc file line by line through a fixed buffer. */
struct lines {
    int fd;
    char buf[16384];
    size_t len, pos;
    int eof;
};

static int lines_open(struct lines *l, const char *path)
{
    memset(l, 0, sizeof *l);
    do
        l->fd = open(path, O_RDONLY | O_CLOEXEC);
    while (l->fd < 0 && errno == EINTR);
    return l->fd < 0 ? -1 : 0;
}

/* Next line without its '\n' (cut at 511 bytes), or NULL at the end. */
static const char *lines_next(struct lines *l, char *out, size_t cap)
{
    size_t o = 0;
    for (;;) {
        if (l->pos == l->len) {
            if (l->eof)
                break;
            ssize_t got = read(l->fd, l->buf, sizeof l->buf);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                l->eof = 1;
                break;
            }
            l->len = (size_t)got;
            l->pos = 0;
        }
        char c = l->buf[l->pos++];
        if (c == '\n') {
            out[o] = '\0';
            return out;
        }
        if (o + 1 < cap)
            out[o++] = c;
    }
    if (o == 0)
        return NULL;
    out[o] = '\0';
    return out;
}

static void lines_close(struct lines *l)
{
    ZS_CHECK(close(l->fd) == 0 || errno == EINTR, "close(/proc file): %s", strerror(errno));
}

/* Copies src into dst[cap], cut to fit, always terminated. */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int parse_hex(const char **s, uintptr_t *v)
{
    uintptr_t x = 0;
    int digits = 0;
    for (;; (*s)++, digits++) {
        char c = **s;
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            break;
        x = x * 16 + d;
    }
    *v = x;
    return digits > 0 ? 0 : -1;
}

/* Per thread, not malloc'd: forked children read smaps too. */
static _Thread_local struct lines reader;

int zs_smaps_find(const void *addr, struct zs_vma *out)
{
    struct lines *l = &reader;
    if (lines_open(l, "/proc/self/smaps") != 0)
        return -1;
    uintptr_t a = (uintptr_t)addr;
    int in_target = 0, found = 0;
    char line[512];
    memset(out, 0, sizeof *out);
    while (lines_next(l, line, sizeof line) != NULL) {
        const char *s = line;
        uintptr_t start, end;
        int header = (line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f');
        if (header && parse_hex(&s, &start) == 0 && *s == '-') {
            s++;
            if (parse_hex(&s, &end) != 0)
                continue;
            if (in_target)
                break;
            in_target = a >= start && a < end;
            if (!in_target)
                continue;
            found = 1;
            out->start = start;
            out->end = end;
            while (*s == ' ')
                s++;
            size_t k = 0;
            while (*s != ' ' && *s != '\0' && k + 1 < sizeof out->perms)
                out->perms[k++] = *s++;
            /* offset, device, inode, then the path (if any) */
            for (int field = 0; field < 3; field++) {
                while (*s == ' ')
                    s++;
                while (*s != ' ' && *s != '\0')
                    s++;
            }
            while (*s == ' ')
                s++;
            copy_cut(out->path, sizeof out->path, s);
            continue;
        }
        if (!in_target)
            continue;
        if (strncmp(line, "VmFlags:", 8) == 0) {
            const char *v = line + 8;
            while (*v == ' ')
                v++;
            copy_cut(out->vmflags, sizeof out->vmflags, v);
        } else if (strncmp(line, "Locked:", 7) == 0) {
            out->locked_kb = strtol(line + 7, NULL, 10);
        }
    }
    lines_close(l);
    return found ? 0 : -1;
}

int zs_has_flag(const char *vmflags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = vmflags; *p != '\0';) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && strncmp(p, flag, n) == 0)
            return 1;
        p = e;
    }
    return 0;
}

long zs_status_kb(const char *key)
{
    struct lines *l = &reader;
    if (lines_open(l, "/proc/self/status") != 0)
        return -1;
    char line[512];
    long v = -1;
    size_t kl = strlen(key);
    while (lines_next(l, line, sizeof line) != NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    lines_close(l);
    return v;
}

int zs_have_cap_ipc_lock(void)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return -1;
    return (data[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}
