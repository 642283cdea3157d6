#!/bin/sh
# limits_table.sh LIBZEROIZE_A INCLUDE_DIR [WORK_DIR] - measures every row of
# docs/LIMITS.md's "How many secrets fit" table with count_secrets.c: each row
# in a fresh process, as root (no lock limit) and unprivileged (CAP_IPC_LOCK
# dropped from every set, RLIMIT_MEMLOCK 8 MiB).  Run as root; prints one line
# a row.  Builds the program into WORK_DIR (default: build-limits/ at the top
# of the checkout).  LIBZEROIZE_A may come from another commit's build, to
# measure that commit.  Not a test: it measures.
set -eu
lib=$1 inc=$2
here=$(cd "$(dirname "$0")" && pwd)
work=${3:-$here/../../build-limits}
mkdir -p "$work"
cc -std=c11 -O2 -I "$inc" "$here/count_secrets.c" "$lib" -lpthread -o "$work/count_secrets"
unpriv() {
    prlimit --memlock=8388608 setpriv --inh-caps=-ipc_lock --ambient-caps=-ipc_lock \
        --bounding-set=-ipc_lock "$@"
}
for who in root unprivileged; do
    run=""; [ "$who" = unprivileged ] && run=unpriv
    echo "== $who (vm.max_map_count $(cat /proc/sys/vm/max_map_count))"
    for guards in guard-install mprotect; do
        printf 'zz_alloc, %s guards: ' "$guards"
        ZEROIZE_GUARDS=$guards $run "$work/count_secrets" alloc
    done
    printf 'secretmem backend: '; $run "$work/count_secrets" secretmem
    printf 'growable arena: '; $run "$work/count_secrets" arena 2000000
done
