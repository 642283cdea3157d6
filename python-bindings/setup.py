"""Build the zeroize._zeroize extension together with libzeroize's sources.

The C library is not installed first: its sources are compiled straight
into the extension module, which then links libc alone.  They are read from
csrc/ next to this file:

  - in a checkout, csrc/ is refreshed from ../src and ../include at every
    build (found from this file's own location, so the build works from any
    current directory; csrc/ is git-ignored);
  - in an sdist (a PKG-INFO file next to this one), csrc/ came in the
    archive, and nothing outside it is read: the sdist builds anywhere.

RECIPES.md is installed inside the package too (help(zeroize) points to it).
"""
import fnmatch
import glob
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
CSRC = "csrc"  # relative: setuptools insists on source paths under setup.py's directory

# The library's sources compiled into the extension, by set.  "core" needs
# only libc and is always built.  A set that needs another library (e.g.
# {"sources": "src/shield/*.c", "libraries": ["sodium"], "macros": [...]})
# is built only when named in the environment variable ZEROIZE_WITH
# (comma-separated), so the default wheel still links libc alone.  The
# shield (zeroize.Shielded, src/shield/) is not such a set: it is built
# whenever libsodium.a is found, linked in statically (see
# find_static_libsodium), so the wheel still links libc alone.
SOURCE_SETS = {
    "core": {"sources": "src/*.c", "libraries": [], "macros": []},
}

# setuptools insists on source paths relative to setup.py's directory.
os.chdir(HERE)


def in_sdist():
    return os.path.exists(os.path.join(HERE, "PKG-INFO"))


def refresh_csrc_from_checkout():
    """Copies the library's C sources and headers (every .c and .h under
    ../src, and ../include/*.h) into csrc/, replacing what was there."""
    src, include = os.path.join(TOP, "src"), os.path.join(TOP, "include")
    if not (os.path.exists(os.path.join(include, "zeroize.h"))
            and os.path.exists(os.path.join(src, "internal.h"))):
        raise SystemExit(
            f"zeroize: the library's sources are missing: no {CSRC}/ here and no checkout "
            f"around {HERE} (../src, ../include).  Build from the sdist, or from a checkout "
            "of the whole repository.")
    shutil.rmtree(CSRC, ignore_errors=True)
    def not_c(directory, names):
        return [n for n in names if not os.path.isdir(os.path.join(directory, n))
                and not fnmatch.fnmatch(n, "*.[ch]")]

    shutil.copytree(src, os.path.join(CSRC, "src"), ignore=not_c)
    os.makedirs(os.path.join(CSRC, "include"))
    for header in glob.glob(os.path.join(include, "*.h")):
        shutil.copy2(header, os.path.join(CSRC, "include"))


if not in_sdist():
    refresh_csrc_from_checkout()
elif not glob.glob(os.path.join(CSRC, "src", "*.c")):
    raise SystemExit(f"zeroize: this sdist lacks {CSRC}/src/*.c: it was built wrongly")

wanted = ["core"] + [s for s in os.environ.get("ZEROIZE_WITH", "").split(",") if s]
unknown = [s for s in wanted if s not in SOURCE_SETS]
if unknown:
    raise SystemExit(f"zeroize: ZEROIZE_WITH names unknown source sets {unknown}; "
                     f"known: {sorted(SOURCE_SETS)}")
library_sources, libraries = [], []
define_macros = [("_GNU_SOURCE", "1")]
for name in dict.fromkeys(wanted):
    found = sorted(glob.glob(os.path.join(CSRC, SOURCE_SETS[name]["sources"])))
    if not found:
        raise SystemExit(f"zeroize: source set {name}: nothing matches "
                         f"{CSRC}/{SOURCE_SETS[name]['sources']}")
    library_sources += found
    libraries += SOURCE_SETS[name]["libraries"]
    define_macros += SOURCE_SETS[name]["macros"]
if os.path.exists("/usr/include/valgrind/memcheck.h"):
    define_macros.append(("ZZ_VALGRIND", "1"))  # client requests only: no library linked

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


# ZEROIZE_LIBSODIUM=shared links the system's libsodium.so instead (-lsodium;
# debian/rules: a distribution package then depends on libsodium23 and gets
# its security updates, and the process has one libsodium, the system's).
LIBSODIUM_SHARED = os.environ.get("ZEROIZE_LIBSODIUM", "static") == "shared"
LIBSODIUM_A = None if LIBSODIUM_SHARED else find_static_libsodium()
SHIELD_SOURCES = sorted(glob.glob(os.path.join(CSRC, "src", "shield", "*.c")))
extra_objects, extra_link_args = [], []
if LIBSODIUM_SHARED and SHIELD_SOURCES:
    define_macros.append(("ZPY_HAVE_SHIELD", "1"))
    library_sources += SHIELD_SOURCES
    libraries.append("sodium")
elif LIBSODIUM_A and SHIELD_SOURCES:
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
    depends=[os.path.join("src", "zeroize", "_zeroize.h")]
    + sorted(glob.glob(os.path.join(CSRC, "src", "**", "*.h"), recursive=True))
    + sorted(glob.glob(os.path.join(CSRC, "include", "*.h"))),
    include_dirs=[os.path.join(CSRC, "include"), os.path.join(CSRC, "src")],
    extra_objects=extra_objects,
    extra_link_args=extra_link_args,
    define_macros=define_macros,
    libraries=libraries,
    extra_compile_args=[
        "-std=c11",
        "-fvisibility=hidden",     # only PyInit__zeroize and zz_* are exported
        "-fstack-protector-strong",
        "-Wall", "-Wextra", "-Wcast-qual", "-Wwrite-strings", "-Wundef",
        "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wshadow",
    ],
)

setup(ext_modules=[extension], cmdclass={"build_py": build_py_with_docs})
