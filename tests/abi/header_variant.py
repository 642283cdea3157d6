#!/usr/bin/python3
"""Writes a copy of zeroize.h whose zz_stats differs from the real one, to
build programs and libraries the way a different release of the header would.

  header_variant.py MODE SRC_HEADER OUT_HEADER

MODE:
  v0_1    zz_stats cut to the fields of version 0.1 (ZZ_STATS_SIZE_0_1 bytes):
          the header an older program was built with, once fields are added
  newer   one field appended (a header newer than the library)
  insert  one field inserted before the others (the change the ABI check
          must refuse)
  count   prints the number of fields of SRC_HEADER's zz_stats (OUT_HEADER
          is not written)
The struct's members are the lines of its body indented by four spaces
(continuation lines of their comments are indented further).
"""
import re
import sys

STRUCT = re.compile(r"(typedef struct \{\n)(?P<body>.*?)(\} zz_stats;)", re.S)
V0_1_FIELDS = 6  # ZZ_STATS_SIZE_0_1 / sizeof(size_t)
EXTRA = "    size_t zz_test_field; /* not in any release */\n"


def members(body):
    """The body split into members, each its first line and continuations."""
    out = []
    for line in body.splitlines(keepends=True):
        if re.match(r"    [A-Za-z_]", line) or not out:
            out.append(line)
        else:
            out[-1] += line
    return out


def main():
    mode, src = sys.argv[1:3]
    dst = sys.argv[3] if len(sys.argv) > 3 else None
    with open(src, encoding="utf-8") as f:
        text = f.read()
    m = STRUCT.search(text)
    if m is None:
        sys.exit(f"{src}: no 'typedef struct {{ ... }} zz_stats;'")
    fields = members(m.group("body"))
    if mode == "count":
        print(len(fields))
        return
    if mode == "v0_1":
        if len(fields) < V0_1_FIELDS:
            sys.exit(f"zz_stats has {len(fields)} fields, fewer than version 0.1's {V0_1_FIELDS}")
        fields = fields[:V0_1_FIELDS]
    elif mode == "newer":
        fields = fields + [EXTRA]
    elif mode == "insert":
        fields = [EXTRA] + fields
    else:
        sys.exit(f"unknown mode {mode}")
    text = text[:m.start("body")] + "".join(fields) + text[m.end("body"):]
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
