#!/bin/sh
# check_install.sh BUILD_DIR WORK_DIR C_COMPILER - installs BUILD_DIR into
# WORK_DIR/prefix and builds a consumer of libzeroize-shield against it, by
# find_package(zeroize) (zeroize::zeroize_shield) and by pkg-config
# (zeroize-shield.pc); the shared library exports only zz_shield_ symbols.
set -eu
build=$1 work=$2 cc=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/zeroize_shield.h lib/libzeroize-shield.a lib/libzeroize-shield.so.0 \
         lib/pkgconfig/zeroize-shield.pc lib/cmake/zeroize/zeroizeShieldTargets.cmake; do
    [ -e "$prefix/$f" ] || { echo "missing $f"; exit 1; }
done
cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer" | grep -q "^shield consumer ok"
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs zeroize-shield)
# shellcheck disable=SC2086
"$cc" "$here/consumer/consumer.c" $flags -Wl,-rpath,"$prefix/lib" -o "$work/pc-consumer"
"$work/pc-consumer" | grep -q "^shield consumer ok"
# (ZEROIZE_SHIELD_0.1 and later: the version nodes of src/shield/libzeroize-shield.map)
others=$(nm -D --defined-only "$prefix/lib/libzeroize-shield.so" | awk '{print $3}' \
         | grep -v '^zz_shield_' | grep -v '^ZEROIZE_SHIELD_[0-9]*\.[0-9]*$' || true)
if [ -n "$others" ]; then echo "exported symbols other than zz_shield_*: $others"; exit 1; fi
echo "libzeroize-shield: install, find_package, pkg-config and symbol visibility: ok"
