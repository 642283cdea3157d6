/*
 * Force-included into the library's objects ONLY in a ZZ_FAULT_INJECTION
 * build, and only while src/os_posix.c still names an enumerator F_LOCK:
 * <fcntl.h> and <unistd.h> define F_LOCK (lockf) as a macro under
 * _GNU_SOURCE, which turns `enum fault_op { ..., F_LOCK, ... }` into a
 * syntax error.  Both headers define it only if it is not defined yet, so
 * including them first and then removing the macro leaves the enumerator
 * alone.  The proper fix is renaming the enumerators in src/os_posix.c;
 * tests/reliability/CMakeLists.txt stops using this header by itself then.
 */
#include <fcntl.h>
#include <unistd.h>
#undef F_LOCK
