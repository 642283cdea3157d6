#!/bin/sh
# check_abi.sh BASELINE LIBRARY SUPPRESSIONS - compares a built libzeroize.so
# with the committed ABI baseline (abidiff, libabigail) and fails on any
# change a program built against the baseline could notice, unless the
# soname changed with it (docs/ABI.md).  Allowed under the same soname:
# new functions (abidiff --no-added-syms), fields appended at the end of
# zz_stats (the suppression file), new enumerators (abidiff's default).
#   exit 0  compatible, or a new soname (then regenerate the baseline:
#           tools/abi_baseline.sh)
#   exit 1  an incompatible change under the same soname
#   exit 2  cannot check (no abidiff, no debug info)
set -eu
baseline=$1 lib=$2 suppr=$3
for tool in abidiff readelf; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "check_abi: $tool is missing: apt-get install abigail-tools binutils (bash .ci/deps.sh)"
        exit 2
    }
done
if ! readelf -S "$lib" | grep -q '\.debug_info'; then
    echo "check_abi: $lib has no DWARF: abidiff needs a build with -g (RelWithDebInfo or Debug)"
    exit 2
fi
old=$(sed -n "s/.*<abi-corpus [^>]*soname='\([^']*\)'.*/\1/p" "$baseline" | head -n 1)
new=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ "$old" != "$new" ]; then
    echo "check_abi: the soname changed ($old -> $new): an incompatible change is allowed."
    echo "Regenerate the baseline for the new soname: sh tools/abi_baseline.sh"
    exit 0
fi
rc=0
abidiff --no-added-syms --suppressions "$suppr" "$baseline" "$lib" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "check_abi: abidiff exit $rc: $lib changed its ABI against $baseline under the same"
    echo "soname $new.  Programs built against the baseline would break.  Either undo the"
    echo "change (add fields at the end of zz_stats only, never change a function's"
    echo "signature), or bump the soname (docs/ABI.md) and regenerate the baseline."
    exit 1
fi
echo "check_abi: $lib is compatible with $baseline ($new)"
