"""Reads a public header (include/zeroize.h, include/zeroize_shield.h) into
the pieces the manual pages are made of (tools/gen_man.py) and the ABI
checks compare against (tests/abi/).

The header's convention: after the version macros it is cut into sections
by banners,

    /* ------------------------------------------------------------------------ */
    /* Guarded blocks                                               zz_alloc(3) */
    /* ------------------------------------------------------------------------ */

and each banner names the manual page (section 3) its declarations go to.
A banner that names no page sends its section to a page named after the
section's first function.  Several sections may share a page.  Within a
section, a comment directly followed by code documents that code; a comment
followed by a blank line stands alone.
"""
import re

RULE = re.compile(r"^/\* -{20,} \*/$")
TITLE = re.compile(r"^/\* (?P<title>.*?)\s*(?:\b(?P<page>[a-z_][a-z0-9_]*)\(3\))?\s*\*/$")
EXPORT_MACROS = re.compile(r"\bZZ_(?:EXPORT|MALLOC_LIKE|WARN_UNUSED)\b\s*|\bZZ_NONNULL\([^)]*\)\s*")
FUNCTION = re.compile(r"\bZZ_EXPORT\b[^;{]*?\(?\b(?P<name>zz_[a-z0-9_]*)\)?\s*\([^;]*\)\s*;")
END = re.compile(r"^#ifdef __cplusplus\s*$")


class Entry:
    """A comment (possibly empty) and the code it documents (possibly empty)."""

    def __init__(self, comment, code):
        self.comment = comment  # list of lines, comment markers stripped
        self.code = code        # list of source lines

    def functions(self):
        return [m.group("name") for m in FUNCTION.finditer(strip_comments("\n".join(self.code)))]

    def prototypes(self):
        """Each exported function's declaration as a reader would write it."""
        out = []
        text = strip_comments("\n".join(self.code))
        for m in FUNCTION.finditer(text):
            decl = EXPORT_MACROS.sub("", m.group(0))
            decl = re.sub(r"\(\s*(%s)\s*\)\s*\(" % m.group("name"), r"\1(", decl)
            out.append(re.sub(r"\s+", " ", decl).strip())
        return out


class Section:
    def __init__(self, title, page):
        self.title = title
        self.page = page
        self.entries = []

    def functions(self):
        return [f for e in self.entries for f in e.functions()]


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def exported_functions(text):
    """Every ZZ_EXPORT function of a header's text, in order: a plain
    regular expression over the whole file, independent of the sections."""
    return [m.group("name") for m in FUNCTION.finditer(strip_comments(text))]


def _comment_lines(block):
    lines = block.splitlines()
    lines[0] = re.sub(r"^/\*\s?", "", lines[0])
    lines[-1] = re.sub(r"\s*\*/$", "", lines[-1])
    out = []
    for line in lines:
        line = re.sub(r"^ \* ?", "", line) if line.startswith(" *") else line
        out.append(line.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def top_comment(text):
    """The header's opening comment, markers stripped."""
    m = re.match(r"\s*(/\*.*?\*/)", text, re.S)
    return _comment_lines(m.group(1)) if m else []


def sections(text):
    """The header's sections, in order (see the module's comment)."""
    lines = text.splitlines()
    out = []
    i = 0
    # Everything before the first banner is set-up (include guard, macros).
    while i < len(lines) and not RULE.match(lines[i]):
        i += 1
    pending_comment = None
    code = []

    def flush():
        nonlocal pending_comment, code
        if out and (pending_comment is not None or code):
            out[-1].entries.append(Entry(pending_comment or [], code))
        pending_comment, code = None, []

    while i < len(lines):
        line = lines[i]
        if END.match(line):
            break
        if RULE.match(line) and i + 2 < len(lines) and RULE.match(lines[i + 2]):
            flush()
            m = TITLE.match(lines[i + 1])
            out.append(Section(m.group("title").strip(), m.group("page")))
            i += 3
            continue
        if line.startswith("/*") and not code:
            flush()
            j = i
            while "*/" not in lines[j]:
                j += 1
            pending_comment = _comment_lines("\n".join(lines[i:j + 1]))
            i = j + 1
            if i < len(lines) and not lines[i].strip():
                flush()  # a comment standing alone
            continue
        if not line.strip():
            flush()
        else:
            code.append(line)
        i += 1
    flush()
    for s in out:
        if s.page is None:
            funcs = s.functions()
            if not funcs:
                raise ValueError(f"header section '{s.title}' names no page and declares no "
                                 "function: end its banner's title with the page, e.g. zz_x(3)")
            s.page = funcs[0]
    return out
