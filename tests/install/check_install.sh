#!/bin/sh
# check_install.sh BUILD_DIR WORK_DIR C_COMPILER - installs BUILD_DIR into
# WORK_DIR/prefix, then builds and runs a consumer against it twice: through
# find_package(zeroize) (CMake package) and through pkg-config (zeroize.pc).
# Also checks that the shared library exports only zz_ symbols.
set -eu
build=$1 work=$2 cc=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/zeroize.h lib/libzeroize.a lib/pkgconfig/zeroize.pc \
         lib/cmake/zeroize/zeroize-config.cmake bin/zz-bench; do
    [ -e "$prefix/$f" ] || [ "$f" = bin/zz-bench ] || { echo "missing $f"; exit 1; }
done
ls "$prefix"/lib/libzeroize.so.0 >/dev/null
if [ -e "$build/man/stamp-man3" ]; then   # built with ZZ_BUILD_MAN (the default)
    for f in man3/zz_alloc.3 man3/zz_free.3 man3/zz_arena.3 man7/zeroize.7; do
        [ -e "$prefix/share/man/$f" ] || { echo "missing share/man/$f"; exit 1; }
    done
fi
cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer" | grep -q "^consumer ok"
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs zeroize)
# shellcheck disable=SC2086
"$cc" "$here/consumer/consumer.c" $flags -Wl,-rpath,"$prefix/lib" -o "$work/pc-consumer"
"$work/pc-consumer" | grep -q "^consumer ok"
# (ZEROIZE_0.1 and later: the version nodes of src/libzeroize.map)
others=$(nm -D --defined-only "$prefix/lib/libzeroize.so" | awk '{print $3}' \
         | grep -v '^zz_' | grep -v '^ZEROIZE_[0-9]*\.[0-9]*$' || true)
if [ -n "$others" ]; then echo "exported non-zz_ symbols: $others"; exit 1; fi
echo "install, find_package, pkg-config and symbol visibility: ok"
