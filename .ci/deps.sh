#!/usr/bin/env bash
# Installs the Debian packages the build, tests, benchmark, demo and the
# packaging checks (ABI, man pages, Python distributions, .deb) need,
# only when some are missing (so a machine that has them makes no apt call).
set -euo pipefail
pkgs=(cmake make gcc clang pkg-config libcmocka-dev valgrind strace util-linux
      libsodium-dev libssl-dev libgcrypt20-dev librust-zeroize-dev gnuplot-nox
      python3-dev python3-setuptools python3-pip python3-venv python3-numpy
      python3-pytest python3-hypothesis python3-cryptography python3-mypy
      abigail-tools man-db python3-build twine
      debhelper dh-python pybuild-plugin-pyproject lintian fakeroot dpkg-dev)
command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] || pkgs+=(cargo)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
