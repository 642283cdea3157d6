"""Build the zeroize._zeroize extension together with libzeroize's sources.

The C library is not installed first: its sources (../src/*.c, found from
this file's own location, so the build works from any current directory)
are compiled straight into the extension module.  RECIPES.md is installed
inside the package too (help(zeroize) points to it).
"""
import glob
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
LIB_SRC = os.path.join(TOP, "src")
LIB_INCLUDE = os.path.join(TOP, "include")

# setuptools insists on source paths relative to setup.py's directory.
os.chdir(HERE)
library_sources = sorted(os.path.relpath(path, HERE)
                         for path in glob.glob(os.path.join(LIB_SRC, "*.c")))
if not library_sources:
    raise SystemExit(
        f"zeroize: no C sources found in {LIB_SRC}; build from a checkout of the "
        "whole repository (python-bindings/ needs ../src and ../include)")

define_macros = [("_GNU_SOURCE", "1")]
if os.path.exists("/usr/include/valgrind/memcheck.h"):
    define_macros.append(("ZZ_VALGRIND", "1"))

# The extension's own files: the module, SecureBuffer, Arena, Shielded, buffer helpers.
extension_sources = sorted(glob.glob(os.path.join("src", "zeroize", "_*.c")))


def find_static_libsodium():
    """libsodium.a, for zeroize.Shielded: linked in statically, its symbols
    hidden (--exclude-libs), so that the extension still needs nothing but
    libc at run time (issue 20) and cannot clash with another libsodium in
    the process.  ZEROIZE_LIBSODIUM_A names it; "" builds without it (then
    zeroize.Shielded raises RuntimeError saying how to get it)."""
    chosen = os.environ.get("ZEROIZE_LIBSODIUM_A")
    if chosen is not None:
        return chosen or None
    import subprocess
    dirs = []
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "libsodium"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirs.append(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    if not os.path.exists("/usr/include/sodium.h"):
        return None
    for d in dirs:
        if d and os.path.exists(os.path.join(d, "libsodium.a")):
            return os.path.join(d, "libsodium.a")
    return None


LIBSODIUM_A = find_static_libsodium()
SHIELD_SOURCES = sorted(os.path.relpath(path, HERE)
                        for path in glob.glob(os.path.join(LIB_SRC, "shield", "*.c")))
extra_objects, extra_link_args = [], []
if LIBSODIUM_A:
    define_macros.append(("ZPY_HAVE_SHIELD", "1"))
    library_sources += SHIELD_SOURCES
    extra_objects.append(LIBSODIUM_A)
    extra_link_args.append("-Wl,--exclude-libs,ALL")
else:
    print("zeroize: libsodium.a not found (apt install libsodium-dev): "
          "building without zeroize.Shielded")
SHIPPED_DOCS = ["RECIPES.md"]  # copied next to __init__.py at build time


class build_py_with_docs(build_py):
    """build_py that also puts SHIPPED_DOCS into the built package, so the
    file help(zeroize) names exists wherever the package is installed."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "zeroize")
        self.mkpath(target)
        for name in SHIPPED_DOCS:
            shutil.copyfile(os.path.join(HERE, name), os.path.join(target, name))


extension = Extension(
    "zeroize._zeroize",
    sources=extension_sources + library_sources,
    depends=[os.path.join("src", "zeroize", "_zeroize.h")],
    extra_objects=extra_objects,
    extra_link_args=extra_link_args,
    include_dirs=[LIB_INCLUDE, LIB_SRC],
    define_macros=define_macros,
    extra_compile_args=[
        "-std=c11",
        "-fvisibility=hidden",     # only PyInit__zeroize and zz_* are exported
        "-fstack-protector-strong",
        "-Wall", "-Wextra", "-Wcast-qual", "-Wwrite-strings", "-Wundef",
        "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wshadow",
    ],
)

setup(ext_modules=[extension], cmdclass={"build_py": build_py_with_docs})
