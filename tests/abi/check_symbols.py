#!/usr/bin/python3
"""The shared library exports exactly the header's ZZ_EXPORT functions, each
under a version node of src/libzeroize.map (ZEROIZE_0.1 and later), and
nothing else (docs/ABI.md).

  check_symbols.py READELF LIBZEROIZE_SO HEADER
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import zz_header  # noqa: E402


def main():
    readelf, lib, header = sys.argv[1:4]
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
        if name.startswith("ZEROIZE_"):
            continue  # the version nodes themselves
        problems.append(f"{name}: exported by {lib} but not a ZZ_EXPORT function of {header}")
    for name, version in sorted(exported.items()):
        if name in declared and not re.fullmatch(r"ZEROIZE_\d+\.\d+", version):
            problems.append(f"{name}: exported without a ZEROIZE_x.y version ({version or 'none'}): "
                            "src/libzeroize.map")
    for p in problems:
        print("FAIL", p)
    if problems:
        return 1
    print(f"ok: {len(declared)} functions, each exported once under a ZEROIZE_ version, "
          "nothing else exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
