/*
 * sanitizer_defaults.c - the sanitizer settings zz-stress needs, built in, so
 * that the replay command it prints works as printed (options in the
 * environment still take precedence):
 *   ASan: fatal signals stay the kernel's (children must die of SIGSEGV and
 *         of abort(), and zs_probe_faults catches SIGSEGV itself);
 *   UBSan: stop at the first report, with a stack;
 *   TSan: stop at the first report; the longest history; tsan.supp (why:
 *         see there).
 * Unused in a build without sanitizers.
 */
#ifndef ZS_TSAN_SUPPRESSIONS
#define ZS_TSAN_SUPPRESSIONS "tsan.supp"
#endif

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__tsan_default_options(void);

const char *__asan_default_options(void)
{
    return "handle_segv=0:handle_sigbus=0:handle_abort=0:allow_user_segv_handler=1:detect_leaks=1";
}

const char *__ubsan_default_options(void)
{
    return "print_stacktrace=1:halt_on_error=1";
}

const char *__tsan_default_options(void)
{
    /* history_size=7: the longest history, so that the stack of the earlier
     * access (a purge's wipe, which the suppression matches) is restored */
    return "halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=" ZS_TSAN_SUPPRESSIONS;
}
