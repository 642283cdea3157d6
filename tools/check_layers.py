#!/usr/bin/env python3
"""Checks that the library's source files call each other in layers.

Reads, with nm, which symbols each object file of src/ defines and which it
uses, so an edge "a.c -> b.c" means a.c calls a function (or uses a variable)
that b.c defines.  Fails (exit 1) when a file uses one from a higher layer
than its own, or when the edges form a cycle (within a layer too).  The
layers are the ones src/internal.h describes; a source file missing from
LAYERS fails as well, so a new file has to be placed.

The cycle check is between modules: the files that share a private header
(block.h: slab.c, block_cache.c, block_tcache.c, block.c, block_modes.c; arena.h: the arena files) form one
module, and may call each other both ways; every other file is a module of
its own.

usage: check_layers.py NM OBJECT...
"""
import os
import subprocess
import sys

# Lowest first.  Keep in step with the comment at the top of src/internal.h.
LAYERS = [
    ("base", ["fatal.c", "memcheck.c", "wipe.c"]),
    ("os", ["os_posix.c"]),
    ("policy", ["policy.c", "canary.c"]),
    ("pages, registry, lifecycle", ["pages.c", "registry.c", "lifecycle.c"]),
    ("zz_alloc blocks and caller-owned locks",
     ["slab.c", "block_cache.c", "block_tcache.c", "block.c", "block_modes.c", "lockref.c"]),
    ("arenas", ["arena.c", "arena_grow.c", "arena_fixed.c", "arena_cache.c"]),
    ("process-wide", ["purge.c", "signals.c", "process.c"]),
]

# Files behind one private header: one module for the cycle check.
MODULES = {
    "blocks": ["slab.c", "block_cache.c", "block_tcache.c", "block.c", "block_modes.c"],
    "arenas": ["arena.c", "arena_grow.c", "arena_fixed.c", "arena_cache.c"],
}


def source_of(obj):
    """src/x.c for .../x.c.o (CMake's naming) or .../x.o."""
    name = os.path.basename(obj)
    if name.endswith(".c.o"):
        return name[:-2]
    return name[:-2] + ".c"


def symbols(nm, obj):
    out = subprocess.run([nm, obj], check=True, capture_output=True, text=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRCV":  # global definitions only
            defined.add(parts[2])
    return defined, used


def find_cycle(edges):
    """One cycle as a list of files, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    nm, objs = argv[1], argv[2:]
    layer_of = {f: i for i, (_, files) in enumerate(LAYERS) for f in files}
    module_of = {f: m for m, files in MODULES.items() for f in files}
    definer, uses = {}, {}
    for obj in objs:
        src = source_of(obj)
        defined, used = symbols(nm, obj)
        for s in defined:
            definer[s] = src
        uses[src] = used
    errors = []
    for src in sorted(uses):
        if src not in layer_of:
            errors.append(f"{src}: in no layer (add it to LAYERS and to src/internal.h)")
    edges = {}
    for src, used in uses.items():
        for s in sorted(used):
            dst = definer.get(s)
            if dst is None or dst == src:
                continue
            a, b = module_of.get(src, src), module_of.get(dst, dst)
            if a != b:
                edges.setdefault(a, set()).add(b)
            if src in layer_of and dst in layer_of and layer_of[dst] > layer_of[src]:
                errors.append(f"upward: {src} ({LAYERS[layer_of[src]][0]}) uses {s} "
                              f"of {dst} ({LAYERS[layer_of[dst]][0]})")
    cycle = find_cycle(edges)
    if cycle:
        errors.append("cycle: " + " -> ".join(cycle))
    for e in errors:
        print(e)
    if errors:
        return 1
    print(f"{len(uses)} files, {sum(len(v) for v in edges.values())} edges between "
          f"modules: layered, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
