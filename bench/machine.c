/*
 * machine.c - what the figures were measured on: CPU, kernel, C library,
 * library versions and the limits that decide how many guarded blocks fit.
 */
#include "bench.h"

#include <gnu/libc-version.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "zeroize.h"

#ifdef ZB_HAVE_SODIUM
#include <sodium.h>
#endif
#ifdef ZB_HAVE_OPENSSL
#include <openssl/crypto.h>
#endif
#ifdef ZB_HAVE_GCRYPT
#include <gcrypt.h>
#endif

typedef struct {
    char cpu[128];
    char flags[128]; /* the wipe-relevant CPU features we found */
    long cores;
    char kernel[3 * 65 + 8];
    char libc[32];
    char rlimit_memlock[48];
    long max_map_count;
    char thp[32];
    long long mem_total;
    char compiler[64];
    char rust_zeroize[32];
    char loadavg[64];
} machine_info;

static int has_flag(const char *flags_line, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = flags_line; (p = strstr(p, flag)) != NULL; p += n)
        if ((p == flags_line || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void read_cpu(machine_info *m)
{
    snprintf(m->cpu, sizeof(m->cpu), "unknown");
    m->flags[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return;
    static char line[8192];
    int got_model = 0, got_flags = 0;
    long family = -1, model = -1;
    while (fgets(line, sizeof(line), f) && !(got_model && got_flags)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        const char *value = colon + 1 + (colon[1] == ' ');
        if (strncmp(line, "cpu family", 10) == 0 && family < 0) {
            family = atol(value);
        } else if (strncmp(line, "model\t", 6) == 0 && model < 0) {
            model = atol(value);
        } else if (!got_model && strncmp(line, "model name", 10) == 0) {
            /* a VM may show only "AMD EPYC": family and model tell more */
            snprintf(m->cpu, sizeof(m->cpu), "%.*s (family %ld, model %ld)",
                     (int)strcspn(value, "\n"), value, family, model);
            got_model = 1;
        } else if (!got_flags && strncmp(line, "flags", 5) == 0) {
            static const char *const wanted[] = {"sse2", "avx2", "avx512f", "erms", "fsrm"};
            for (size_t i = 0; i < ZB_ARRAY_LEN(wanted); i++)
                if (has_flag(value, wanted[i])) {
                    size_t used = strlen(m->flags);
                    snprintf(m->flags + used, sizeof(m->flags) - used, "%s%s", used ? " " : "",
                             wanted[i]);
                }
            got_flags = 1;
        }
    }
    fclose(f);
}

const char *zb_cpu_model(void)
{
    static machine_info m;
    if (!m.cpu[0])
        read_cpu(&m);
    return m.cpu;
}

static void read_machine(machine_info *m)
{
    memset(m, 0, sizeof(*m));
    read_cpu(m);
    m->cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname, u.release, u.machine);
    snprintf(m->libc, sizeof(m->libc), "glibc %s", gnu_get_libc_version());
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY)
            snprintf(m->rlimit_memlock, sizeof(m->rlimit_memlock), "unlimited");
        else
            snprintf(m->rlimit_memlock, sizeof(m->rlimit_memlock), "%llu bytes",
                     (unsigned long long)rl.rlim_cur);
    }
    if (geteuid() == 0) {
        size_t used = strlen(m->rlimit_memlock);
        snprintf(m->rlimit_memlock + used, sizeof(m->rlimit_memlock) - used,
                 " (root: CAP_IPC_LOCK ignores it)");
    }
    char line[128];
    zb_read_first_line("/proc/sys/vm/max_map_count", line, sizeof(line));
    m->max_map_count = line[0] ? atol(line) : -1;
    zb_read_first_line("/sys/kernel/mm/transparent_hugepage/enabled", m->thp, sizeof(m->thp));
    /* other load skews timings: say how busy the machine was */
    zb_read_first_line("/proc/loadavg", m->loadavg, sizeof(m->loadavg));
    m->mem_total = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
#ifdef __VERSION__
    snprintf(m->compiler, sizeof(m->compiler), "%s", __VERSION__);
#endif
#ifdef ZB_RUST_ZEROIZE_VERSION
    snprintf(m->rust_zeroize, sizeof(m->rust_zeroize), "%s", ZB_RUST_ZEROIZE_VERSION);
#endif
}

const char *zb_sodium_version(void)
{
#ifdef ZB_HAVE_SODIUM
    return sodium_version_string();
#else
    return NULL;
#endif
}

const char *zb_openssl_version(void)
{
#ifdef ZB_HAVE_OPENSSL
    return OpenSSL_version(OPENSSL_VERSION);
#else
    return NULL;
#endif
}

const char *zb_gcrypt_version(void)
{
#ifdef ZB_HAVE_GCRYPT
    return gcry_check_version(NULL);
#else
    return NULL;
#endif
}

static const char *or_absent(const char *s)
{
    return s && s[0] ? s : "not built in";
}

void zb_machine_print(FILE *out)
{
    machine_info m;
    read_machine(&m);
    fprintf(out, "## Machine\n\n");
    fprintf(out, "- date: ");
    zb_print_timestamp(out);
    fprintf(out, "\n- CPU: %s (%ld online cores; features: %s)\n", m.cpu, m.cores, m.flags);
    fprintf(out, "- memory: %.1f GiB; transparent huge pages: %s\n",
            (double)m.mem_total / (1024.0 * 1024 * 1024), m.thp);
    fprintf(out, "- kernel: %s; C library: %s; compiler: %s\n", m.kernel, m.libc, m.compiler);
    fprintf(out, "- zeroize %s; libsodium %s; %s; libgcrypt %s; Rust zeroize crate %s\n",
            zz_version(), or_absent(zb_sodium_version()), or_absent(zb_openssl_version()),
            or_absent(zb_gcrypt_version()), or_absent(m.rust_zeroize));
    fprintf(out, "- RLIMIT_MEMLOCK: %s; vm.max_map_count: %ld\n", m.rlimit_memlock,
            m.max_map_count);
    if (zb_pinned_cpu() >= 0)
        fprintf(out, "- single-thread figures: main thread pinned to CPU %d (the threads of 2- and 4-thread "
                     "runs may use every CPU)\n",
                zb_pinned_cpu());
    fprintf(out, "- zz-bench built from commit %s\n", zb_build_commit());
    zb_load_print_start(out);
    fputc('\n', out);
}

static void json_field(FILE *out, const char *key, const char *value, int last)
{
    fprintf(out, "    \"%s\": \"", key);
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', out);
        if ((unsigned char)*p >= 0x20)
            fputc(*p, out);
    }
    fprintf(out, "\"%s\n", last ? "" : ",");
}

void zb_machine_json(FILE *out)
{
    machine_info m;
    read_machine(&m);
    fputs("{\n", out);
    json_field(out, "cpu", m.cpu, 0);
    json_field(out, "cpu_features", m.flags, 0);
    fprintf(out, "    \"cores\": %ld,\n", m.cores);
    fprintf(out, "    \"memory_bytes\": %lld,\n", m.mem_total);
    json_field(out, "transparent_hugepage", m.thp, 0);
    json_field(out, "kernel", m.kernel, 0);
    json_field(out, "libc", m.libc, 0);
    json_field(out, "compiler", m.compiler, 0);
    json_field(out, "zeroize", zz_version(), 0);
    json_field(out, "libsodium", zb_sodium_version(), 0);
    json_field(out, "openssl", zb_openssl_version(), 0);
    json_field(out, "libgcrypt", zb_gcrypt_version(), 0);
    json_field(out, "rust_zeroize", m.rust_zeroize, 0);
    json_field(out, "rlimit_memlock", m.rlimit_memlock, 0);
    json_field(out, "commit", zb_build_commit(), 0);
    json_field(out, "loadavg_at_start", zb_loadavg_at_start(), 0);
    json_field(out, "loadavg_at_end", zb_loadavg_at_end()[0] ? zb_loadavg_at_end() : m.loadavg, 0);
    fprintf(out, "    \"vm_max_map_count\": %ld\n  }", m.max_map_count);
}

void zb_print_load(FILE *out, const char *when)
{
    char load[64];
    zb_read_first_line("/proc/loadavg", load, sizeof(load));
    fprintf(out, "Load average %s: %s\n\n", when, load);
}
