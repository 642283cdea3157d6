#!/usr/bin/env bash
# The main job: build, run the examples (C and Python), then a short benchmark
# that writes bench-results/results.{md,json} and bench-results/plot.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "== C example: a daemon holding a key"
./build/examples/key_daemon 3
echo "== C example: a signing daemon whose key stays shielded between requests"
./build/examples/shielded_signer 3
echo "== Python examples (the seed's README examples, unchanged but for the import)"
venv=${ZZ_DEMO_VENV:-$PWD/build-demo/venv}  # inside the checkout (git-ignored), not the test suite's venv: both may run at once
rm -rf "$venv" python-bindings/build python-bindings/src/zeroize.egg-info
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --quiet --no-build-isolation ./python-bindings
for ex in python-bindings/examples/*.py; do
  echo "-- $ex"; (cd /tmp && "$venv/bin/python" "$OLDPWD/$ex")
done
echo "== zz-bench all --quick"
mkdir -p bench-results
./build/bench/zz-bench all --quick --json bench-results/results.json --plot bench-results/plot.png \
  | tee bench-results/results.md
echo "== wrote bench-results/results.md, results.json, plot.png"
