#!/usr/bin/python3
"""The misuse table lives in docs/MISUSE.md and, for readers of the front
page, in README.md: this checks that the two copies say the same (README's
subsections are one level deeper).  Exits 1, showing the first difference,
if they drift."""
import difflib
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def section(text, start, end=None):
    i = text.index(start)
    j = text.index(end, i) if end else len(text)
    return text[i:j].strip().splitlines()


def main():
    with open(os.path.join(TOP, "docs/MISUSE.md"), encoding="utf-8") as f:
        doc = section(f.read(), "Each row: the misuse")
    with open(os.path.join(TOP, "README.md"), encoding="utf-8") as f:
        readme = section(f.read(), "Each row: the misuse", "(Also in [`docs/MISUSE.md`]")
    readme = [line[1:] if line.startswith("### ") else line for line in readme]
    if doc == readme:
        print(f"README.md and docs/MISUSE.md agree ({len(doc)} lines)")
        return 0
    sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(
        doc, readme, "docs/MISUSE.md", "README.md", lineterm="", n=1))
    return 1


if __name__ == "__main__":
    sys.exit(main())
