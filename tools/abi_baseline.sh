#!/bin/sh
# tools/abi_baseline.sh [BUILD_DIR] - regenerates the committed ABI
# baselines with libabigail's abidw (abigail-tools), from a RelWithDebInfo
# build of the shared libraries (default build-abi/, inside the checkout):
#   tests/abi/libzeroize.so.0.abi          libzeroize (zeroize.h)
#   tests/abi/libzeroize-shield.so.0.abi   libzeroize-shield (zeroize_shield.h;
#                                          needs libsodium-dev)
# Run it when a release fixes the ABI, or after a soname change
# (docs/ABI.md); commit the result.  Paths of the checkout are left out, so
# the files do not depend on where they were made.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build-abi}
command -v abidw >/dev/null || { echo "abidw is missing: apt-get install abigail-tools"; exit 1; }
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZZ_BUILD_TESTS=OFF \
      -DZZ_BUILD_BENCH=OFF -DZZ_BUILD_EXAMPLES=OFF -DZZ_BUILD_MAN=OFF -DZZ_SHIELD=ON >/dev/null
cmake --build "$build" --target zeroize zeroize_shield -j2 >/dev/null

# baseline NAME: writes tests/abi/<soname>.abi from $build/NAME.so.<N>
baseline() {
    lib=$(ls "$build/$1".so.[0-9]* | head -n 1)
    soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
    out=$top/tests/abi/$soname.abi
    abidw --headers-dir "$top/include" --drop-private-types --exported-interfaces-only \
          --no-corpus-path --no-show-locs --no-comp-dir-path --type-id-style hash \
          --out-file "$out.tmp" "$lib"
    sed "s|$top/||g" "$out.tmp" > "$out" && rm -f "$out.tmp"
    echo "wrote $out ($(grep -c '<elf-symbol ' "$out") symbols, soname $soname)"
    if [ "$soname" != "$1.so.0" ]; then
        echo "the soname is now $soname: point tests/abi/CMakeLists.txt at $soname.abi and remove the old baseline"
    fi
}
baseline libzeroize
baseline libzeroize-shield
