#!/bin/sh
# usage: valgrind_uaf.sh VALGRIND HELPER SUPPRESSIONS
# Passes when memcheck is silent on ordinary use of the library and reports
# (exit 99) a read of a freed block that sits in the library's cache.
# Exit 77 (skipped) when valgrind is not installed.
vg=$1
helper=$2
supp=$3
if ! command -v "$vg" >/dev/null 2>&1; then
    echo "valgrind not found: skipped"
    exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$vg" -q --error-exitcode=99 --leak-check=full --suppressions="$supp" "$helper" clean >"$log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    cat "$log"
    echo "FAIL: memcheck run of ordinary use exited $rc (want 0)"
    exit 1
fi

"$vg" -q --error-exitcode=99 --suppressions="$supp" "$helper" uaf >"$log" 2>&1
rc=$?
cat "$log"
if [ "$rc" -ne 99 ]; then
    echo "FAIL: use after free exited $rc under memcheck (want 99: an error reported)"
    exit 1
fi
if ! grep -q "Invalid read of size 1" "$log"; then
    echo "FAIL: memcheck did not report the invalid read"
    exit 1
fi
echo "ok: memcheck reports a read of a freed, cached block"
