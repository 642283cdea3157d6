#!/bin/sh
# check_elide.sh CC LIBZEROIZE_A INCLUDE_DIR SOURCE OUTDIR
#
# Builds SOURCE (elide_prog.c) with -O3 -flto against the static library,
# then checks in its disassembly that
#   - secret_zzwipe calls zz_wipe (the wipe survived LTO);
#   - secret_memset has exactly the code of secret_nowipe (the compiler
#     removed the plain memset: proof that the check above can fail);
# and runs it to check the stack at run time (see elide_prog.c).
# Exits 0 when all holds, 1 otherwise (with the evidence on stdout).
set -u
if [ $# -ne 5 ]; then
    echo "usage: $0 CC LIBZEROIZE_A INCLUDE_DIR SOURCE OUTDIR" >&2
    exit 2
fi
cc=$1 lib=$2 inc=$3 src=$4 out=$5
mkdir -p "$out" || exit 1
prog="$out/elide_prog"

# Identical-code folding would merge secret_memset into secret_nowipe (that
# too would prove the memset gone, but the comparison below wants both).
extra=""
if "$cc" -fno-ipa-icf -x c -c -o /dev/null /dev/null 2>/dev/null; then
    extra="-fno-ipa-icf"
fi
echo "compiler: $("$cc" --version | head -n 1)"
echo "flags: -O3 -flto $extra"
"$cc" -O3 -flto $extra -I"$inc" -o "$prog" "$src" "$lib" -lpthread || {
    echo "FAIL: cannot build $src"; exit 1; }

dis="$out/elide_prog.dis"
objdump -d --no-show-raw-insn "$prog" > "$dis" || { echo "FAIL: objdump"; exit 1; }

# The instructions of one function, without addresses, so that two functions
# with the same code compare equal.
body() {
    awk -v f="<$1>:" '
        $2 == f { on = 1; next }
        on && NF == 0 { exit }
        on {
            sub(/^[ \t]*[0-9a-f]+:[ \t]*/, "")
            gsub(/[0-9a-f]+ </, "<")          # call 401136 <f>  ->  call <f>
            gsub(/\+0x[0-9a-f]+>/, ">")       # <f+0x12>         ->  <f>
            gsub(/-?0x[0-9a-f]+\(%rip\)/, "D(%rip)")   # position-dependent displacements
            gsub(/#.*/, "")
            gsub(/[ \t]+$/, "")
            print
        }' "$dis"
}

for f in secret_nowipe secret_memset secret_zzwipe; do
    body "$f" > "$out/$f.s"
    if [ ! -s "$out/$f.s" ]; then
        echo "FAIL: $f not found in the disassembly"; exit 1
    fi
done
status=0
echo "--- secret_zzwipe:"; cat "$out/secret_zzwipe.s"
if grep -Eq '(call|jmp)[^<]*<zz_wipe' "$out/secret_zzwipe.s"; then
    echo "ok: secret_zzwipe calls zz_wipe"
else
    echo "FAIL: no call to zz_wipe left in secret_zzwipe"; status=1
fi
echo "--- secret_memset:"; cat "$out/secret_memset.s"
if cmp -s "$out/secret_memset.s" "$out/secret_nowipe.s"; then
    echo "ok: secret_memset has the same code as secret_nowipe: the memset was elided"
else
    echo "FAIL (control): secret_memset differs from secret_nowipe, the memset was not elided:"
    diff "$out/secret_nowipe.s" "$out/secret_memset.s"
    status=1
fi
if cmp -s "$out/secret_zzwipe.s" "$out/secret_nowipe.s"; then
    echo "FAIL: secret_zzwipe has the same code as secret_nowipe"; status=1
fi

echo "--- run time:"
"$prog"
rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL: elide_prog exited $rc"; status=1
fi
exit $status
