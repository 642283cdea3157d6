#!/bin/sh
# Build the zeroize Python package from source into a fresh virtual
# environment (Debian's /usr/bin/python3 with its numpy, pytest, hypothesis
# and cryptography visible), check that `pip install --target` works too,
# type-check the stubs with Debian's mypy (python3-mypy), compare them with
# the installed module (mypy.stubtest), and run the test
# suite (which also type-checks every Python example of the docs and checks
# that the stubs report misuse: tests/test_docs.py).  Exits non-zero on any
# failure.
#
#   python-bindings/run_tests.sh [extra pytest arguments]
#
# Environment: ZZ_VENV (default python-bindings/.venv, git-ignored),
# PYTHON (default /usr/bin/python3).  Everything this script deletes lies
# inside the checkout: the default venv and the --target directory
# (python-bindings/build-target, git-ignored) are rebuilt from scratch.  A
# venv named by ZZ_VENV is never deleted: it is created if missing, and
# the package is reinstalled into it.
#
# The tests check the library's defaults, so ZEROIZE_LOCK and ZEROIZE_BACKEND
# are cleared (the tests set them where they need them); ZEROIZE_GUARDS is
# kept: the suite passes with ZEROIZE_GUARDS=mprotect too.
set -eu
unset ZEROIZE_LOCK ZEROIZE_BACKEND

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
venv=${ZZ_VENV:-$here/.venv}
target=$here/build-target

# setuptools reuses an old build/ and egg-info manifest: start clean.
rm -rf "$here/build" "$here/src/zeroize.egg-info"

if [ -z "${ZZ_VENV:-}" ]; then
    echo "== creating $venv"
    rm -rf "$venv"
    "$python" -m venv --system-site-packages "$venv"
elif [ -x "$venv/bin/python" ]; then
    echo "== reusing ZZ_VENV=$venv (never deleted by this script)"
else
    echo "== creating ZZ_VENV=$venv"
    "$python" -m venv --system-site-packages "$venv"
fi

echo "== pip install --no-build-isolation $here"
"$venv/bin/pip" install --quiet --no-build-isolation --force-reinstall --no-deps "$here"

echo "== pip install --target $target (smoke test)"
rm -rf "$target"
mkdir -p "$target"
trap 'rm -rf "$target"' EXIT
rm -rf "$here/build" "$here/src/zeroize.egg-info"
"$venv/bin/pip" install --quiet --no-build-isolation --target "$target" "$here"
(cd / && PYTHONPATH="$target" "$python" -c '
import zeroize, sys
assert zeroize.__file__.startswith(sys.argv[1]), zeroize.__file__
with zeroize.SecureBuffer(b"target install") as sb:
    assert sb == b"target install"
import os
assert os.path.exists(zeroize.RECIPES), zeroize.RECIPES   # help(zeroize) names it
print("--target install OK:", zeroize.__file__)
' "$target")

echo "== mypy --strict on the installed stubs (Debian's python3-mypy)"
if ! "$python" -c 'import mypy' 2>/dev/null; then
    echo "mypy is missing: apt-get install python3-mypy" >&2
    exit 1
fi
site=$("$venv/bin/python" -c 'import os, zeroize; print(os.path.dirname(zeroize.__file__))')
(cd / && "$python" -m mypy --strict --no-error-summary --cache-dir "$venv/.mypy_cache" \
    --python-executable "$venv/bin/python" "$site/__init__.pyi")
echo "stubs OK"

echo "== mypy.stubtest zeroize: the stubs against the installed module, no allowlist"
# Run by the venv's interpreter (it sees Debian's mypy through
# --system-site-packages) so that it imports the installed package.
(cd / && "$venv/bin/python" -m mypy.stubtest zeroize)
echo "stubtest OK"

echo "== pytest"
cd "$here"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" tests
