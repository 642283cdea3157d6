#!/bin/sh
# abi_selftest.sh CC WORK_DIR - shows that check_abi.sh catches what it must
# and lets through what it may, on copies of the library built from the
# sources with a changed header (header_variant.py; -O0 -g: quick):
#   a field inserted into zz_stats, same soname   -> refused
#   the same with the soname bumped               -> accepted
#   a field appended to zz_stats                  -> accepted (sized struct)
#   a new function                                -> accepted
set -eu
cc=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rm -rf "$work" && mkdir -p "$work"
build() {  # build NAME VARIANT SONAME [EXTRA_SOURCE]
    mkdir -p "$work/$1"
    if [ "$2" = same ]; then cp "$top/include/zeroize.h" "$work/$1/zeroize.h"
    else /usr/bin/python3 "$here/header_variant.py" "$2" "$top/include/zeroize.h" "$work/$1/zeroize.h"; fi
    # shellcheck disable=SC2086
    "$cc" -shared -fPIC -g -O0 -std=c11 -D_GNU_SOURCE -fvisibility=hidden -I"$work/$1" \
        -I"$top/src" "$top"/src/*.c ${4:-} -pthread \
        -Wl,--version-script="$top/src/libzeroize.map" -Wl,-soname,"$3" -o "$work/$1/libzeroize.so"
}
check() {  # check NAME EXPECTED_EXIT
    rc=0
    sh "$here/check_abi.sh" "$here/libzeroize.so.0.abi" "$work/$1/libzeroize.so" \
        "$here/zeroize.abignore" >"$work/$1.out" 2>&1 || rc=$?
    if [ "$rc" -ne "$2" ]; then
        echo "FAIL $1: check_abi.sh exit $rc, expected $2"; cat "$work/$1.out"; exit 1
    fi
    echo "ok   $1: exit $rc"
}
soname=$(sed -n "s/.*<abi-corpus [^>]*soname='\([^']*\)'.*/\1/p" "$here/libzeroize.so.0.abi" | head -n 1)
build inserted insert "$soname"
check inserted 1
grep -q "zz_test_field" "$work/inserted.out" || { echo "FAIL: the report does not name the field"; exit 1; }
build inserted_new_soname insert libzeroize.so.99
check inserted_new_soname 0
build appended newer "$soname"
check appended 0
printf '%s\n' '#include "zeroize.h"' 'ZZ_EXPORT int zz_selftest_new(void);' \
    'int zz_selftest_new(void) { return 1; }' > "$work/new.c"
build new_function same "$soname" "$work/new.c"
check new_function 0
echo "abi self-test: ok"
