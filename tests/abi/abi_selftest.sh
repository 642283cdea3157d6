#!/bin/sh
# abi_selftest.sh CC WORK_DIR [OLDER_PROGRAM] - shows that check_abi.sh
# catches what it must and lets through what it may, on copies of the
# library built from the sources with a changed header (header_variant.py;
# -O0 -g: quick):
#   a field inserted into zz_stats, same soname   -> refused
#   the same with the soname bumped               -> accepted
#   a field appended to zz_stats                  -> accepted (sized struct)
#   a new function                                -> accepted
# OLDER_PROGRAM (test_stats_abi_current, built against today's header) then
# runs against the copy with the appended field, a newer library that fills
# it: it must pass, guard bytes and all.  (A library of 5c03a46, before the
# sized calls, given such a field wrote 8 bytes past the caller's struct.)
set -eu
cc=$1 work=$2 older=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
rm -rf "$work" && mkdir -p "$work"
build() {  # build NAME VARIANT SONAME [EXTRA_SOURCE]
    mkdir -p "$work/$1"
    cp -r "$top/src" "$work/$1/src"
    if [ "$2" = same ]; then cp "$top/include/zeroize.h" "$work/$1/zeroize.h"
    else /usr/bin/python3 "$here/header_variant.py" "$2" "$top/include/zeroize.h" "$work/$1/zeroize.h"; fi
    if [ "$2" = newer ]; then
        # The copy counts something new: its zz_get_stats fills the new field
        # (all ones), as a real newer library would.
        /usr/bin/python3 - "$work/$1/src/process.c" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text, n = re.subn(r"(static void fill_stats\(zz_stats \*out\)\n\{\n)",
                  r"\1    out->zz_test_field = ~(size_t)0;\n", text)
if n != 1:
    sys.exit(f"{path}: no 'static void fill_stats(zz_stats *out)' to fill the new field in")
open(path, "w").write(text)
PY
    fi
    # shellcheck disable=SC2086
    "$cc" -shared -fPIC -g -O0 -std=c11 -D_GNU_SOURCE -fvisibility=hidden -I"$work/$1" \
        -I"$work/$1/src" "$work/$1"/src/*.c ${4:-} -pthread \
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
if [ -n "$older" ]; then
    ln -sf libzeroize.so "$work/appended/$soname"
    LD_LIBRARY_PATH=$work/appended ldd "$older" | grep -q "$work/appended/$soname" \
        || { echo "FAIL: $older does not load the copy"; exit 1; }
    LD_LIBRARY_PATH=$work/appended ZZ_TEST_NEWER_LIBRARY=1 "$older" >"$work/older.out" 2>&1 \
        || { echo "FAIL: a program built against today's header, run with a library whose"
             echo "zz_stats has one more field:"; cat "$work/older.out"; exit 1; }
    echo "ok   $(basename "$older") runs against the library with the appended field"
fi
printf '%s\n' '#include "zeroize.h"' 'ZZ_EXPORT int zz_selftest_new(void);' \
    'int zz_selftest_new(void) { return 1; }' > "$work/new.c"
build new_function same "$soname" "$work/new.c"
check new_function 0
echo "abi self-test: ok"
