#!/usr/bin/env python3
"""Fails when the library's machine code holds a rep-prefixed string
instruction (rep stos, rep movs, rep cmps, rep scas) outside the few
functions that only clear or copy the library's own bookkeeping.

Why: every zz_alloc block of up to 128 bytes ends right before a guard page,
and on Intel Xeon (family 6 model 167) a short `rep stos` that ends at a page
boundary in front of a PROT_NONE page costs about 140 ns against 9 ns in the
middle of a page (issue 18).  GCC turns a plain store loop into `rep stosq`
(the old zzi_wipe_small did), so the code that writes, copies or checks a
block's bytes hides its loop counter from the optimiser (src/wipe.c) and this
check makes sure no compiler found a way round that.

It disassembles (objdump -d):
  - the object files given on the command line (the build's own), and
  - every src/*.c compiled here with each of --cc at -O2 and at -O3, with the
    library's flags (these builds go to --scratch).
It first checks itself: the old zzi_wipe_small loop, compiled with the first
compiler at -O2, must be found when that compiler is GCC (Clang makes vector
stores of it), so the check cannot pass by finding nothing.  x86-64 only.

usage: check_string_ops.py --src DIR --scratch DIR [--cc CC]... [--flag F]...
                           [OBJECT...]
"""
import argparse
import concurrent.futures
import glob
import os
import re
import subprocess
import sys

# Functions whose only string instruction clears or copies a fixed-size
# struct of the library's own (on the stack or the C heap, never a block's
# bytes, never next to a guard page).  Keep each entry's reason.  A function
# that also writes a block's bytes does not belong here.
ALLOWED = {
    ("os_posix.c", "zzi_os_raise_default"): "clears a struct sigaction on the stack",
    ("signals.c", "purge_handler"): "copies a struct chain (two struct sigaction) to the stack",
    ("signals.c", "copy_chain"): "copies a struct chain (two struct sigaction) to the stack (when not inlined)",
    ("signals.c", "install_one"): "clears and copies struct sigaction / struct chain",
    ("signals.c", "publish"): "copies a struct chain into the table (not inlined at -O0)",
    ("block_tcache.c", "zzi_tcache_prepare"): "clears a new thread cache (malloc'd struct)",
    ("block_tcache.c", "fork_child_fixup"): "clears the thread cache struct after fork",
    ("arena_grow.c", "zzi_arena_grow_rebuild_slow"): "clears the arena's avail[] run pointers",
    ("process.c", "zz_get_stats_sized"): "copies a zz_stats into the caller's struct, of the caller's size",
    ("process.c", "zz_arena_stats_sized"): "copies a zz_stats into the caller's struct, of the caller's size",
}

REP = re.compile(r"\brep(?:e|z|ne|nz)?\s+(stos|movs|cmps|scas)")
FUNC = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")

# The old zzi_wipe_small, which GCC -O2 compiles to `rep stosq`.
SELFTEST_SNIPPET = r"""
#include <stddef.h>
#include <stdint.h>
typedef uint64_t v2 __attribute__((vector_size(16)));
void wipe_small(unsigned char *p, size_t n);
void wipe_small(unsigned char *p, size_t n)
{
    const v2 zero = {0, 0};
    if (n > 256)
        return;
    for (size_t k = 0; k < n; k += 16)
        __builtin_memcpy(p + k, &zero, 16);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}
"""


def source_of(obj):
    name = os.path.basename(obj)
    if name.endswith(".c.o"):
        return name[:-2]
    return name[:-2] + ".c"


def base_name(func):
    """install_one for install_one.constprop.0 / .isra.0 / .part.0 / .cold."""
    return func.split(".")[0]


def string_ops(objdump, obj):
    """[(function, instruction)] for every rep string instruction in obj."""
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", obj], check=True,
                         capture_output=True, text=True).stdout
    found, func = [], "?"
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            continue
        if REP.search(line):
            found.append((func, line.split("\t")[-1].strip()))
    return found


def compile_one(cc, opt, flags, src, out):
    cmd = [cc, opt, *flags, "-c", src, "-o", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), r.stderr))
    return out


def build(cc, opt, flags, sources, scratch, pool):
    outdir = os.path.join(scratch, "%s%s" % (os.path.basename(cc), opt))
    os.makedirs(outdir, exist_ok=True)
    jobs = [pool.submit(compile_one, cc, opt, flags, s,
                        os.path.join(outdir, os.path.basename(s)[:-2] + ".o")) for s in sources]
    return [j.result() for j in jobs]


def selftest(cc, objdump, scratch):
    """True when the old loop, compiled with cc -O2, is found (or cc is not
    GCC, which does not make rep stos of it)."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    if "clang" in version.lower():
        return True
    src = os.path.join(scratch, "selftest.c")
    with open(src, "w") as f:
        f.write(SELFTEST_SNIPPET)
    obj = compile_one(cc, "-O2", ["-std=c11"], src, os.path.join(scratch, "selftest.o"))
    return any(base_name(fn) == "wipe_small" for fn, _ in string_ops(objdump, obj))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="the library's src/ directory")
    ap.add_argument("--scratch", required=True, help="where to put the builds")
    ap.add_argument("--cc", action="append", default=[], help="a compiler to build with")
    ap.add_argument("--flag", action="append", default=[], help="a compile flag")
    ap.add_argument("--objdump", default="objdump")
    ap.add_argument("objects", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.scratch, exist_ok=True)

    if args.cc and not selftest(args.cc[0], args.objdump, args.scratch):
        print("check_string_ops: the self-test found no rep stos in the old "
              "zzi_wipe_small loop built with %s -O2: the check is blind" % args.cc[0])
        return 1

    sets = [("the build", list(args.objects))]
    sources = sorted(glob.glob(os.path.join(args.src, "*.c")))
    flags = ["-std=c11", "-D_GNU_SOURCE", "-fPIC", "-fvisibility=hidden",
             "-fstack-protector-strong", *args.flag]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for cc in args.cc:
            for opt in ("-O2", "-O3"):
                sets.append(("%s %s" % (os.path.basename(cc), opt),
                             build(cc, opt, flags, sources, args.scratch, pool)))

    bad, allowed_seen, checked = [], set(), 0
    for label, objs in sets:
        for obj in objs:
            checked += 1
            src = source_of(obj)
            for func, insn in string_ops(args.objdump, obj):
                key = (src, base_name(func))
                if key in ALLOWED:
                    allowed_seen.add(key)
                else:
                    bad.append("%s: %s: %s: %s" % (label, src, func, insn))
    for line in bad:
        print("check_string_ops: rep string instruction in " + line)
    for key in sorted(allowed_seen):
        print("check_string_ops: allowed in %s %s (%s)" % (key[0], key[1], ALLOWED[key]))
    print("check_string_ops: %d object files in %d builds, %d forbidden instructions"
          % (checked, len(sets), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
