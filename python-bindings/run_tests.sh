#!/bin/sh
# Build the zeroize Python package from source into a fresh virtual
# environment (Debian's /usr/bin/python3 with its numpy, pytest, hypothesis
# and cryptography visible), check that `pip install --target` works too,
# and run the test suite.  Exits non-zero on any failure.
#
#   python-bindings/run_tests.sh [extra pytest arguments]
#
# Environment: ZZ_VENV (default /tmp/zzvenv), PYTHON (default /usr/bin/python3).
# The tests check the library's defaults, so ZEROIZE_LOCK and ZEROIZE_BACKEND
# are cleared (the tests set them where they need them); ZEROIZE_GUARDS is
# kept: the suite passes with ZEROIZE_GUARDS=mprotect too.
set -eu
unset ZEROIZE_LOCK ZEROIZE_BACKEND

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
venv=${ZZ_VENV:-/tmp/zzvenv}

# setuptools reuses an old build/ and egg-info manifest: start clean.
rm -rf "$here/build" "$here/src/zeroize.egg-info"

echo "== creating $venv"
rm -rf "$venv"
"$python" -m venv --system-site-packages "$venv"

echo "== pip install --no-build-isolation $here"
"$venv/bin/pip" install --quiet --no-build-isolation "$here"

echo "== pip install --target (smoke test)"
target=$(mktemp -d /tmp/zztarget.XXXXXX)
trap 'rm -rf "$target"' EXIT
rm -rf "$here/build" "$here/src/zeroize.egg-info"
"$venv/bin/pip" install --quiet --no-build-isolation --target "$target" "$here"
(cd / && PYTHONPATH="$target" "$python" -c '
import zeroize, sys
assert zeroize.__file__.startswith(sys.argv[1]), zeroize.__file__
with zeroize.SecureBuffer(b"target install") as sb:
    assert sb == b"target install"
print("--target install OK:", zeroize.__file__)
' "$target")

echo "== pytest"
cd "$here"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" tests
