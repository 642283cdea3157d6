#!/bin/sh
# run_stress.sh SECONDS [plain|asan|tsan] [zz-stress options...]
#
# Builds zz-stress (and the library) with the chosen sanitizer and runs it for
# SECONDS in segments of $ZZ_STRESS_SEGMENT seconds (default 300), each with a
# new seed, alternating the guard paths (default, ZEROIZE_GUARDS=mprotect);
# every segment runs half with CAP_IPC_LOCK and half without it under a small
# lock limit (--mode both; pass --mode to change that).  Stops at the first
# finding: its seed and replay command are printed, and this script exits 1.
#
#   tests/stress/run_stress.sh 3600 asan          # an hour under ASan+UBSan
#   tests/stress/run_stress.sh 600 tsan --threads 6
#
# Environment:
#   ZZ_STRESS_BUILD    build directory (default <repo>/build-stress-KIND)
#   ZZ_STRESS_LIBRARY  a checkout of the library to test instead of this one
#                      (e.g. a git worktree of an older commit): zz-stress from
#                      this tree is built against that tree's src/
#   ZZ_STRESS_SEGMENT  seconds per run (default 300)
#   ZZ_STRESS_JOBS     parallel compile jobs (default 2)
set -eu
if [ $# -lt 1 ]; then
    sed -n '2,21p' "$0" >&2
    exit 2
fi
seconds=$1
shift
kind=asan
if [ $# -gt 0 ]; then
    case $1 in plain|asan|tsan) kind=$1; shift ;; esac
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lib=${ZZ_STRESS_LIBRARY:-$root}
lib=$(cd "$lib" && pwd)
case $kind in
    plain) flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo"; san="" ;;
    asan) flags="-DCMAKE_BUILD_TYPE=Debug"; san="address,undefined" ;;
    tsan) flags="-DCMAKE_BUILD_TYPE=Debug"; san="thread" ;;
esac
suffix=""
[ "$kind" = plain ] || suffix="-$kind"
build=${ZZ_STRESS_BUILD:-$root/build-stress$suffix}

if [ "$lib" = "$root" ]; then
    src=$root
else
    # Another checkout: a small project that builds its library and our
    # harness together (the sanitizer flags must reach both).
    src=$build/src
    mkdir -p "$src"
    cat > "$src/CMakeLists.txt.new" <<EOF_CMAKE
cmake_minimum_required(VERSION 3.18)
project(zz_stress_against_other C)
if(ZZ_SANITIZE)
  add_compile_options(-fsanitize=\${ZZ_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=\${ZZ_SANITIZE})
endif()
enable_testing()
add_subdirectory("$lib" zeroize)
add_subdirectory("$here" stress)
EOF_CMAKE
    mv "$src/CMakeLists.txt.new" "$src/CMakeLists.txt"
fi
cmake -S "$src" -B "$build" $flags -DZZ_SANITIZE="$san" -DZZ_BUILD_BENCH=OFF \
    -DZZ_BUILD_EXAMPLES=OFF -DZZ_VALGRIND=OFF >/dev/null
cmake --build "$build" --target zz_stress -j"${ZZ_STRESS_JOBS:-2}" >/dev/null
bin=$(find "$build" -name zz-stress -type f -perm -u+x | head -n 1)
[ -x "$bin" ] || { echo "$0: no zz-stress in $build" >&2; exit 1; }

segment=${ZZ_STRESS_SEGMENT:-300}
left=$seconds
n=0
echo "run_stress: $seconds s of zz-stress ($kind) against $lib, segments of $segment s"
while [ "$left" -gt 0 ]; do
    this=$segment
    [ "$left" -lt "$this" ] && this=$left
    n=$((n + 1))
    if [ $((n % 2)) -eq 0 ]; then guards=mprotect; else guards=""; fi
    echo "run_stress: segment $n: $this s${guards:+, ZEROIZE_GUARDS=$guards}"
    rc=0
    # timeout: a hang the program's own watchdogs cannot see (a sanitizer's)
    if [ -n "$guards" ]; then
        ZEROIZE_GUARDS=$guards timeout $((this + 600)) "$bin" --seconds "$this" "$@" || rc=$?
    else
        timeout $((this + 600)) "$bin" --seconds "$this" "$@" || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        echo "run_stress: segment $n ended with status $rc after $((seconds - left)) s of earlier segments${guards:+ (ZEROIZE_GUARDS=$guards)}" >&2
        exit 1
    fi
    left=$((left - this))
done
echo "run_stress: $seconds s ($kind), $n segment(s), no finding"
