#!/bin/sh
# Builds the Python distributions and tests each on its own:
#   - python3 -m build (Debian's python3-build, --no-isolation: no package
#     index is reached) makes the sdist, and the wheel from that sdist;
#   - twine check --strict passes on both;
#   - the sdist holds the library's C sources (csrc/), and the wheel's
#     extension links nothing but the C library (libc.so.6 and its loader);
#   - the sdist, copied alone into an empty directory, installs into a fresh
#     venv with no checkout around it (pip unpacks it under build-dist/tmp,
#     where no ../src exists), and the whole Python suite runs against that
#     install;
#   - the wheel installs into another venv and imports.
#
#   python-bindings/check_dist.sh [extra pytest arguments]
#
# Everything goes to build-dist/ at the top of the checkout (git-ignored),
# which is deleted and made anew.  Environment: PYTHON (default
# /usr/bin/python3).
set -eu
unset ZEROIZE_LOCK ZEROIZE_BACKEND
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
python=${PYTHON:-/usr/bin/python3}
out=$top/build-dist
rm -rf "$out"
mkdir -p "$out/tmp" "$out/sdist-only"
TMPDIR=$out/tmp
export TMPDIR

for mod in build twine; do
    "$python" -c "import $mod" 2>/dev/null || {
        echo "python3-$mod is missing: apt-get install python3-build twine (bash .ci/deps.sh)" >&2
        exit 1
    }
done

echo "== python3 -m build (sdist, then the wheel from the sdist)"
rm -rf "$here/build" "$here/src/zeroize.egg-info"
"$python" -m build --no-isolation --outdir "$out/dist" "$here" >"$out/build.log" 2>&1 || {
    tail -40 "$out/build.log"; exit 1; }
sdist=$(ls "$out"/dist/zeroize-*.tar.gz)
wheel=$(ls "$out"/dist/zeroize-*.whl)
rm -rf "$here/build" "$here/src/zeroize.egg-info"

echo "== twine check --strict"
"$python" -m twine check --strict "$sdist" "$wheel"

echo "== the sdist holds the C sources"
for f in csrc/include/zeroize.h csrc/src/internal.h csrc/src/wipe.c setup.py RECIPES.md \
         src/zeroize/_zeroize.c src/zeroize/__init__.pyi; do
    tar tzf "$sdist" | grep -qx "zeroize-[0-9.]*/$f" || { echo "the sdist lacks $f"; exit 1; }
done
n=$(tar tzf "$sdist" | grep -c '/csrc/src/.*\.c$')
echo "sdist OK: $n C sources of the library"

echo "== the wheel's extension links nothing but libc"
"$python" - "$wheel" "$out/wheel-files" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
so=$(find "$out/wheel-files" -name '_zeroize*.so')
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
echo "NEEDED: $needed"
for lib in $needed; do
    case $lib in
        libc.so.6|ld-linux-*.so.*) ;;   # glibc itself: the C library and its loader
        *) echo "the wheel's extension links $lib: only libc is allowed"; exit 1 ;;
    esac
done

echo "== the sdist alone: install from $out/sdist-only into a fresh venv"
cp "$sdist" "$out/sdist-only/"
"$python" -m venv --system-site-packages "$out/venv-sdist"
(cd "$out/sdist-only" && "$out/venv-sdist/bin/pip" install --quiet --no-index \
    --no-build-isolation --no-deps ./"$(basename "$sdist")")
(cd / && "$out/venv-sdist/bin/python" -c '
import sys, zeroize
assert zeroize.__file__.startswith(sys.argv[1]), zeroize.__file__
print("sdist install OK:", zeroize.__file__)
' "$out/venv-sdist")

echo "== the wheel alone: install into a fresh venv"
"$python" -m venv --system-site-packages "$out/venv-wheel"
"$out/venv-wheel/bin/pip" install --quiet --no-index --no-deps "$wheel"
(cd / && "$out/venv-wheel/bin/python" -c '
import os, sys, zeroize
assert zeroize.__file__.startswith(sys.argv[1]), zeroize.__file__
with zeroize.SecureBuffer(b"wheel") as sb:
    assert sb == b"wheel"
b = bytearray(b"secret"); zeroize.zeroize1(b); assert b == bytearray(6)
assert os.path.exists(zeroize.RECIPES)
print("wheel install OK:", zeroize.__file__)
' "$out/venv-wheel")

echo "== pytest against the sdist install"
cd "$here"
"$out/venv-sdist/bin/python" - "$out/venv-sdist" <<'PY'
import sys, zeroize
assert zeroize.__file__.startswith(sys.argv[1]), f"tests would import {zeroize.__file__}"
PY
"$out/venv-sdist/bin/python" -m pytest -q -p no:cacheprovider "$@" tests
