#!/usr/bin/python3
"""A shared library exports exactly its header's ZZ_EXPORT functions, each
under a version node of its linker script, and nothing else (docs/ABI.md):
libzeroize.so, zeroize.h and ZEROIZE_x.y (src/libzeroize.map);
libzeroize-shield.so, zeroize_shield.h and ZEROIZE_SHIELD_x.y
(src/shield/libzeroize-shield.map).

  check_symbols.py READELF LIBRARY_SO HEADER [NODE_PREFIX]

NODE_PREFIX is the version nodes' name before x.y (default ZEROIZE_).
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import zz_header  # noqa: E402


def main():
    readelf, lib, header = sys.argv[1:4]
    prefix = sys.argv[4] if len(sys.argv) > 4 else "ZEROIZE_"
    with open(header, encoding="utf-8") as f:
        declared = set(zz_header.exported_functions(f.read()))
    out = subprocess.run([readelf, "--dyn-syms", "-W", lib], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    exported = {}
    for line in out.splitlines():
        f = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(f) >= 8 and f[4] in ("GLOBAL", "WEAK") and f[6] != "UND":
            name, _, version = f[7].partition("@")
            exported[name] = version.lstrip("@")
    problems = []
    for name in sorted(declared - exported.keys()):
        problems.append(f"{name}: declared ZZ_EXPORT in {header} but not exported by {lib}")
    for name in sorted(exported.keys() - declared):
        if exported[name] in ("", name) and re.fullmatch(r"ZEROIZE_[A-Z_]*\d+\.\d+", name):
            continue  # the version nodes themselves
        problems.append(f"{name}: exported by {lib} but not a ZZ_EXPORT function of {header}")
    for name, version in sorted(exported.items()):
        if name in declared and not re.fullmatch(re.escape(prefix) + r"\d+\.\d+", version):
            problems.append(f"{name}: exported without a {prefix}x.y version "
                            f"({version or 'none'}): its linker version script")
    for p in problems:
        print("FAIL", p)
    if problems:
        return 1
    print(f"ok: {len(declared)} functions of {os.path.basename(header)}, each exported once "
          f"under a {prefix}x.y version, nothing else exported by {os.path.basename(lib)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
