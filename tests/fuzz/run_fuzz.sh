#!/bin/sh
# run_fuzz.sh SECONDS [FUZZER] - runs the libFuzzer harness fuzz_ops for
# SECONDS seconds, starting from the seed corpus in tests/fuzz/corpus.
#
# Without FUZZER, configures and builds it first with clang in
# $ZZ_FUZZ_BUILD (default: <repo>/build-fuzz):
#   cmake -S <repo> -B build-fuzz -DCMAKE_C_COMPILER=clang -DZZ_FUZZ=ON
# New interesting inputs go to $ZZ_FUZZ_BUILD/fuzz-corpus (the seed corpus is
# never modified); a crash leaves its input in $ZZ_FUZZ_BUILD/fuzz-artifacts/
# and makes this script exit non-zero.  Replay a crash with
#   <build>/tests/fuzz/fuzz_ops_replay CRASH_FILE    (any compiler)
# or FUZZER CRASH_FILE.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 SECONDS [FUZZER]" >&2
    exit 2
fi
seconds=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${ZZ_FUZZ_BUILD:-$root/build-fuzz}
if [ $# -ge 2 ]; then
    fuzzer=$2
    build=$(dirname "$fuzzer")
else
    cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DZZ_FUZZ=ON \
        -DZZ_BUILD_BENCH=OFF -DZZ_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$build" --target fuzz_ops -j"$(nproc)" >/dev/null
    fuzzer=$(find "$build" -name fuzz_ops -type f -perm -u+x | head -n 1)
fi
[ -x "$fuzzer" ] || { echo "$0: no fuzzer binary at '$fuzzer'" >&2; exit 1; }
work="$build/fuzz-corpus"
artifacts="$build/fuzz-artifacts"
mkdir -p "$work" "$artifacts"
# LeakSanitizer stays on: the harness frees everything after each input.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
exec "$fuzzer" -max_total_time="$seconds" -max_len=2048 -timeout=120 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$here/corpus"
