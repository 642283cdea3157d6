#!/usr/bin/env bash
# check_deb.sh - the Debian packages, built and used as a new user would:
#   1. dpkg-buildpackage -us -uc -b from a copy of this checkout in
#      build-deb/src (the .debs land in build-deb/, inside the checkout;
#      DEB_BUILD_OPTIONS=nocheck: the tests run elsewhere in .ci/test.sh)
#      makes libzeroize0, libzeroize-dev, libzeroize-shield0,
#      libzeroize-shield-dev, zeroize-tools and python3-zeroize;
#   2. lintian reports no error;
#   3. dpkg -i installs them; examples/key_daemon.c builds against the
#      system install with pkg-config alone and runs; so does
#      examples/shielded_signer.c (pkg-config zeroize-shield, and libsodium
#      for its own crypto_sign calls), and the installed libraries carry no
#      RUNPATH; /usr/bin/python3 imports zeroize with no PYTHONPATH, and
#      zeroize.Shielded works on the system's libsodium (a dependency of
#      the package); zz-bench wipe --quick runs; man finds zz_alloc(3),
#      zz_free(3), zeroize(7), zz_shield(3) and zz_shield_open(3);
#   4. dpkg --purge removes them (also when a step fails), and the list of
#      installed packages (dpkg-query) is the same as before the test.
# Installs system-wide, so it needs root; skips (exit 0, with a message)
# without it.  Refuses to run when a zeroize package is already installed
# (it could not leave that machine as it found it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=$top/build-deb
pkgs="libzeroize0 libzeroize-dev libzeroize-shield0 libzeroize-shield-dev zeroize-tools python3-zeroize"
# A fresh Debian machine's PATH: Debian's python3, not another first on PATH.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONPATH PKG_CONFIG_PATH LD_LIBRARY_PATH ZEROIZE_LOCK ZEROIZE_BACKEND ZEROIZE_GUARDS

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: the Debian package test installs packages system-wide (dpkg -i); run it as root"
    exit 0
fi
for tool in dpkg-buildpackage dh lintian pkg-config man; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (bash .ci/deps.sh)"; exit 1; }
done
installed() { dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "$@" 2>/dev/null | grep ' ii' || true; }
already=$(installed $pkgs)
if [ -n "$already" ]; then
    echo "FAIL: already installed, so the test could not leave the machine as it found it:"
    echo "$already"
    echo "remove them first: dpkg --purge $pkgs"
    exit 1
fi

echo "== copy of the checkout in $out/src"
rm -rf "$out"
mkdir -p "$out/src"
cd "$top"
if git rev-parse --git-dir >/dev/null 2>&1; then
    # tracked and untracked files, as in the work tree, without what git ignores
    git ls-files -z --cached --others --exclude-standard \
        | (while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done; true) \
        | tar --null -T - -cf - | tar -C "$out/src" -xf -
else
    tar --exclude='./build*' --exclude=./python-bindings/.venv -cf - . | tar -C "$out/src" -xf -
fi
[ -f "$out/src/debian/control" ] || { echo "FAIL: the copy has no debian/control"; exit 1; }

echo "== dpkg-buildpackage -us -uc -b (log: $out/build.log)"
if ! (cd "$out/src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
      dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1); then
    tail -60 "$out/build.log"
    echo "FAIL: dpkg-buildpackage"
    exit 1
fi
debs=""
for p in $pkgs; do
    f=$(ls "$out/${p}_"*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ] || { echo "FAIL: dpkg-buildpackage made no $p package"; exit 1; }
    debs="$debs $f"
done
echo "built:$debs"

echo "== lintian"
changes=$(ls "$out"/*.changes)
lrc=0
lintian --fail-on error "$changes" >"$out/lintian.log" 2>&1 || lrc=$?
grep -v 'running with root privileges' "$out/lintian.log" || true
if [ "$lrc" -ne 0 ] || grep -q '^E: ' "$out/lintian.log"; then
    echo "FAIL: lintian reports errors (exit $lrc)"; exit 1
fi
echo "lintian: no errors"

before=$out/dpkg-before.txt after=$out/dpkg-after.txt
dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' | sort >"$before"
purge() {
    dpkg --purge $pkgs >"$out/purge.log" 2>&1 || { cat "$out/purge.log"; return 1; }
}
cleanup() {
    rc=$?
    trap - EXIT
    purge || rc=1
    dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' | sort >"$after"
    if ! diff -u "$before" "$after"; then
        echo "FAIL: the installed packages differ from before the test"
        rc=1
    fi
    for f in /usr/include/zeroize.h /usr/include/zeroize_shield.h /usr/bin/zz-bench \
             /usr/share/man/man7/zeroize.7.gz /usr/share/man/man3/zz_shield.3.gz \
             /usr/lib/python3/dist-packages/zeroize; do
        [ ! -e "$f" ] || { echo "FAIL: $f is still there after the purge"; rc=1; }
    done
    if ls /usr/lib/*/libzeroize.so* /usr/lib/*/libzeroize-shield.so* >/dev/null 2>&1; then
        echo "FAIL: libzeroize is still installed after the purge"; rc=1
    fi
    [ "$rc" -eq 0 ] && echo "purged: the machine is as the test found it"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP   # killed (a timeout): still purge, through the EXIT trap

echo "== dpkg -i"
dpkg -i $debs >"$out/install.log" 2>&1 || { cat "$out/install.log"; echo "FAIL: dpkg -i"; exit 1; }

echo "== a C program built with pkg-config alone, against the system install"
cc "$top/examples/key_daemon.c" $(pkg-config --cflags --libs zeroize) -o "$out/key_daemon"
ldd "$out/key_daemon" | grep -E 'libzeroize\.so\.0 => /(usr/)?lib/' >/dev/null \
    || { echo "FAIL: key_daemon does not load the system's libzeroize.so.0"; ldd "$out/key_daemon"; exit 1; }
"$out/key_daemon" 2 | tee "$out/key_daemon.log"
grep -q "after shutdown: live blocks 0" "$out/key_daemon.log" || { echo "FAIL: key_daemon"; exit 1; }

echo "== libzeroize-shield: no RUNPATH; examples/shielded_signer.c built with pkg-config alone"
for lib in /usr/lib/*/libzeroize.so.0 /usr/lib/*/libzeroize-shield.so.0; do
    if readelf -d "$lib" | grep -E '\((RUNPATH|RPATH)\)'; then
        echo "FAIL: $lib carries an RPATH/RUNPATH (debian/rules: -DCMAKE_SKIP_INSTALL_RPATH=ON)"; exit 1
    fi
done
# the example calls libsodium itself (crypto_sign): it names libsodium too;
# zeroize-shield.pc brings libzeroize (Requires) and keeps libsodium private
cc "$top/examples/shielded_signer.c" $(pkg-config --cflags --libs zeroize-shield libsodium) \
    -o "$out/shielded_signer"
ldd "$out/shielded_signer" | grep -E 'libzeroize-shield\.so\.0 => /(usr/)?lib/' >/dev/null \
    || { echo "FAIL: shielded_signer does not load the system's libzeroize-shield.so.0"
         ldd "$out/shielded_signer"; exit 1; }
"$out/shielded_signer" 3 | tee "$out/shielded_signer.log"
grep -q "^3 of 3 signatures verified" "$out/shielded_signer.log" || { echo "FAIL: shielded_signer"; exit 1; }
deps=$(dpkg-query -W -f='${Depends}' libzeroize-shield0)
case $deps in *libzeroize0*libsodium23*|*libsodium23*libzeroize0*) ;;
    *) echo "FAIL: libzeroize-shield0 depends on '$deps', not on libzeroize0 and libsodium23"; exit 1 ;;
esac
echo "libzeroize-shield0 depends on: $deps"

echo "== /usr/bin/python3 imports zeroize (no PYTHONPATH)"
(cd / && /usr/bin/python3 -c '
import zeroize
assert zeroize.__file__.startswith("/usr/lib/python3/dist-packages/zeroize/"), zeroize.__file__
with zeroize.SecureBuffer(b"from the package") as sb:
    assert sb == b"from the package"
s = zeroize.Shielded(bytearray(b"shielded by the package"))
with s.open() as view:
    assert view == b"shielded by the package"
s.destroy()
print("python3-zeroize OK:", zeroize.__file__)
')
# zeroize.Shielded runs on the system's libsodium: the extension needs it,
# and the package says so (dpkg-shlibdeps)
ext=$(/usr/bin/python3 -c 'import zeroize._zeroize as m; print(m.__file__)')
readelf -d "$ext" | grep -q 'NEEDED.*\[libsodium\.so\.23\]' \
    || { echo "FAIL: $ext does not link the system's libsodium.so.23"; readelf -d "$ext"; exit 1; }
dpkg-query -W -f='${Depends}' python3-zeroize | grep -q 'libsodium23' \
    || { echo "FAIL: python3-zeroize does not depend on libsodium23"; exit 1; }
echo "zeroize.Shielded: links libsodium.so.23, python3-zeroize depends on libsodium23"

echo "== zz-bench wipe --quick"
zz-bench wipe --quick >"$out/zz-bench.log" 2>&1 || { cat "$out/zz-bench.log"; echo "FAIL: zz-bench"; exit 1; }
grep -q "zz_wipe" "$out/zz-bench.log" || { cat "$out/zz-bench.log"; echo "FAIL: no zz_wipe column"; exit 1; }
echo "zz-bench wipe --quick: $(wc -l <"$out/zz-bench.log") lines"

echo "== man pages"
for page in zz_alloc zz_free zeroize.7 zz-bench zz_shield zz_shield_open zz_shielded; do
    case $page in *.7) p=${page%.7}; s=7 ;; zz-bench) p=$page; s=1 ;; *) p=$page; s=3 ;; esac
    MANWIDTH=80 man "$s" "$p" 2>&1 | grep -q . || { echo "FAIL: man $s $p"; exit 1; }
done
MANWIDTH=80 man 3 zz_shield_open 2>/dev/null | grep -q 'zz_shield_open(zz_shielded \*s)' \
    || { echo "FAIL: man zz_shield_open does not show zz_shield(3)'s synopsis"; exit 1; }
echo "man finds zz_alloc(3), zz_free(3), zeroize(7), zz-bench(1), zz_shield(3), zz_shield_open(3), zz_shielded(3)"
echo "Debian packages: built, lintian-clean, installed, used"
