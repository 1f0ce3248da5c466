"""Pure text-cleaning functions for the default corpus (no I/O beyond what callers pass in).

Each function turns one raw source format into clean text. build_text.py walks the unpacked
packages and calls these; test_extract.py checks them on small fixtures. Standard library only.
"""

import email
import email.header
import email.policy
import hashlib
import html.parser
import re

# --------------------------------------------------------------------------------------------
# Generic text hygiene


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise(text):
    """Unix newlines, no control characters but tab/newline, no trailing spaces, no runs of
    more than two blank lines, no leading/trailing blank lines. Returns "" for blank input."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    # Lone surrogates (from errors="surrogateescape" elsewhere) would make invalid UTF-8.
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip("\n")


# --------------------------------------------------------------------------------------------
# Brown corpus ("Form C": word/tag tokens, one sentence per line, tab opens a paragraph)

_NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "]", "}", "''", "'"}
_NO_SPACE_AFTER = {"(", "[", "{", "``"}


def brown_detag_tokens(tokens):
    """Joins word/tag tokens into plain text: drops the tags, turns `` and '' into ", and
    re-attaches punctuation to the neighbouring word."""
    out = []
    glue_next = True  # no space before the first word
    for tok in tokens:
        word = tok.rsplit("/", 1)[0] if "/" in tok else tok
        if not word:
            continue
        text = '"' if word in ("``", "''") else word
        if not glue_next and word not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(text)
        glue_next = word in _NO_SPACE_AFTER
    return "".join(out)


def _is_headline(tokens):
    tags = [t.rsplit("/", 1)[1] for t in tokens if "/" in t]
    return bool(tags) and all(t.endswith("-hl") or not t[:1].isalpha() for t in tags) and any(
        t.endswith("-hl") for t in tags)


def brown_detag(raw):
    """A whole Brown sample file → paragraphs separated by blank lines. Blank lines or a
    leading tab start a paragraph; sentences on following lines continue it; headlines (every
    tag ending in -hl) stand alone."""
    paragraphs = []
    current = []

    def flush():
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    prev_blank = True
    for line in raw.replace("\r", "").split("\n"):
        if not line.strip():
            prev_blank = True
            continue
        tokens = line.split()
        sentence = brown_detag_tokens(tokens)
        if prev_blank or line.startswith("\t"):
            flush()
        if _is_headline(tokens):
            flush()
            paragraphs.append(sentence)
        else:
            current.append(sentence)
        prev_blank = False
    flush()
    return "\n\n".join(p for p in paragraphs if p)


def brown_categories(cats_text):
    """cats.txt ("ca01 news" per line) → {file id: genre}."""
    cats = {}
    for line in cats_text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            cats[parts[0]] = parts[1]
    return cats


# Brown genres read as imaginative prose (literature); the rest is informative prose (news).
BROWN_FICTION = {"fiction", "mystery", "science_fiction", "adventure", "romance", "humor"}


# --------------------------------------------------------------------------------------------
# dictd databases: <db>.index lines "headword TAB offset TAB length", numbers in base 64

_DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DICTD_VALUE = {c: i for i, c in enumerate(_DICTD_DIGITS)}


def dictd_b64_decode(s):
    """dictd's base-64 number (most significant digit first) → int. Raises ValueError."""
    if not s:
        raise ValueError("dictd number must be non-empty")
    n = 0
    for c in s:
        if c not in _DICTD_VALUE:
            raise ValueError(f"dictd number must use A-Za-z0-9+/, got {s!r}")
        n = n * 64 + _DICTD_VALUE[c]
    return n


def dictd_b64_encode(n):
    """Inverse of dictd_b64_decode (used to build fixtures)."""
    if n == 0:
        return "A"
    digits = []
    while n:
        digits.append(_DICTD_DIGITS[n % 64])
        n //= 64
    return "".join(reversed(digits))


_DICTD_META = re.compile(r"^00-?database")


def dictd_entries(index_text, data):
    """Yields (headword, text) per entry, in index order, skipping the 00-database-* meta
    entries and index lines that point at an entry already yielded (alternate headwords).
    data is the decompressed .dict content as bytes."""
    seen = set()
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        head = parts[0]
        if _DICTD_META.match(head):
            continue
        off, length = dictd_b64_decode(parts[1]), dictd_b64_decode(parts[2])
        if (off, length) in seen:
            continue
        seen.add((off, length))
        yield head, data[off:off + length].decode("utf-8", "replace")


def gcide_is_wordnet_copy(entry_text):
    """GCIDE carries copies of WordNet 1.5 senses; dict-wn already has WordNet 3.0."""
    return "[WordNet 1.5" in entry_text


# --------------------------------------------------------------------------------------------
# Licence headers in source files


_LICENCE_WORDS = re.compile(r"Copyright|Licen[cs]e|Free Software Foundation|Permission is hereby",
                            re.I)


def strip_licence_header_c(text):
    """Removes the licence part of a leading /* ... */ comment. Description lines before the
    Copyright line are kept (closed again as a comment); the rest of the comment is dropped."""
    m = re.match(r"\s*/\*(.*?)\*/[ \t]*\n?", text, re.S)
    if not m or not _LICENCE_WORDS.search(m.group(1)):
        return text
    body = m.group(1).split("\n")
    keep = []
    for line in body:
        if re.search(r"Copyright|Licen[cs]e|This file is part of", line):
            break
        keep.append(line)
    desc = "\n".join(keep).strip()
    rest = text[m.end():].lstrip("\n")
    if desc:
        return "/* " + desc + "  */\n" + rest
    return rest


def strip_licence_header_lines(text, prefix="#"):
    """Removes a leading run of line comments (prefix "#" for Python, "%" for TeX) that is a
    licence. A '#!' line and an encoding line stay."""
    lines = text.split("\n")
    head = []
    i = 0
    while i < len(lines) and (lines[i].startswith("#!") or re.match(r"#.*coding[:=]", lines[i])):
        head.append(lines[i])
        i += 1
    j = i
    while j < len(lines) and (lines[j].startswith(prefix) or not lines[j].strip()):
        j += 1
    block = "\n".join(lines[i:j])
    if j > i and _LICENCE_WORDS.search(block):
        return "\n".join(head + lines[j:])
    return text


def tidy_man_render(text):
    """groff with -rLL=1000n pads the header and footer lines to 1000 columns: close the gaps."""
    lines = text.split("\n")
    idx = [i for i, line in enumerate(lines) if line.strip()]
    for i in idx[:1] + idx[-1:]:
        lines[i] = re.sub(r" {4,}", "   ", lines[i].strip())
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Source-file filters


def is_numeric_table(text):
    """True for generated data files: mostly digits, hex literals and commas."""
    body = re.sub(r"\s+", "", text)
    if len(body) < 200:
        return False
    numeric = len(re.findall(r"0x[0-9a-fA-F]+|[0-9]+|[,{}]", body))
    tokens = len(re.findall(r"0x[0-9a-fA-F]+|[0-9]+|[A-Za-z_]\w*|\S", body))
    return tokens > 0 and numeric / tokens > 0.6


_PY_TEST = re.compile(r"(^|/)(tests?|idle_test|test_\w+)(/|\.py$)|(^|/)test_\w*\.py$")


_GENERATED = re.compile(r"auto-?generated|automatically generated|is generated|"
                        r"generated (by|from) \S+\.py|do not edit", re.I)


def python_file_skipped(relpath, text):
    """Reason a stdlib .py file is left out, or None: tests, generated codecs and tables,
    files over 400 kB."""
    if len(text.encode("utf-8", "replace")) > 400_000:
        return "large"
    if _PY_TEST.search(relpath):
        return "test"
    head = "\n".join(text.split("\n")[:12])
    if _GENERATED.search(head) or relpath.startswith("_sysconfigdata"):
        return "generated"
    if relpath.startswith("encodings/") and ("gencodec" in text[:2000].lower()
                                            or "decoding_table = (" in text):
        return "generated"
    if is_numeric_table(text):
        return "table"
    return None


_C_SKIP_DIRS = ("localedata/", "iconvdata/", "timezone/", "benchtests/")


def c_file_skipped(relpath, text):
    """Reason a glibc .c/.h file is left out, or None. relpath is relative to glibc-2.36/."""
    if relpath.startswith(_C_SKIP_DIRS):
        return "dir"
    name = relpath.rsplit("/", 1)[-1]
    if name.startswith(("tst-", "test-", "bug-")):
        return "test"
    if len(text) < 400:
        return "tiny"
    if len(text) > 400_000:
        return "large"
    if is_numeric_table(text):
        return "table"
    return None


# --------------------------------------------------------------------------------------------
# HTML → text (GAP manual chapters, HTML-only e-mails)


class _HtmlText(html.parser.HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
              "dt", "dd", "blockquote", "hr"}

    def __init__(self, skip_classes):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.skip = 0
        self.pre = 0
        self.skip_classes = skip_classes
        self.skip_tag = None  # (tag, nesting depth) of a skipped element by class/id
        self.skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if self.skip_tag:
            self.skip_depth += tag == self.skip_tag
            return
        names = " ".join(v or "" for k, v in attrs if k in ("class", "id")).split()
        if any(n.startswith(self.skip_classes) for n in names) and self.skip_classes:
            self.skip_tag, self.skip_depth = tag, 1
            return
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self._BLOCK:
            self.parts.append("\n\n" if tag in ("p", "pre", "h1", "h2", "h3", "h4") else "\n")

    def handle_endtag(self, tag):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip or self.skip_tag:
            return
        self.parts.append(data if self.pre else re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(markup, skip_classes=()):
    """Visible text of an HTML page. Elements whose class or id starts with one of
    skip_classes (navigation bars, for instance) are left out with their children."""
    p = _HtmlText(tuple(skip_classes))
    p.feed(markup)
    p.close()
    text = "".join(p.parts)
    text = "\n".join(line.strip(" ") if not line.startswith("  ") else line.rstrip()
                     for line in text.split("\n"))
    return normalise(re.sub(r"\n{3,}", "\n\n", text))


# --------------------------------------------------------------------------------------------
# E-mail (raw RFC-822): Subject + text body, addresses masked

EMAIL_MASK = "[email]"
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def mask_addresses(text):
    return _ADDRESS.sub(EMAIL_MASK, text)


def _decode_part(part):
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("latin-1")


def _decode_header(value):
    if value is None:
        return ""
    try:
        pieces = email.header.decode_header(str(value))
    except Exception:  # malformed encoded words: keep the raw header
        return str(value)
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "latin-1", "replace"))
            except LookupError:
                out.append(chunk.decode("latin-1"))
        else:
            out.append(chunk)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def parse_email(raw):
    """Raw message bytes → "Subject: ...\n\n<body>" with every address masked, or "" when the
    message has no text. The body is the text/plain parts; HTML-only messages are rendered to
    text. Attachments are dropped."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    plain, htmls = [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_filename() or (part.get("Content-Disposition", "").lower()
                                   .startswith("attachment")):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            plain.append(_decode_part(part))
        elif ctype == "text/html":
            htmls.append(_decode_part(part))
    if plain:
        body = "\n\n".join(plain)
    elif htmls:
        body = "\n\n".join(html_to_text(h) for h in htmls)
    else:
        body = ""
    body = normalise(body)
    if not body.strip():
        return ""
    subject = _decode_header(msg.get("Subject"))
    return mask_addresses(normalise(f"Subject: {subject}\n\n{body}"))


# --------------------------------------------------------------------------------------------
# Deterministic split and cap

SPLIT_RULE = ("bucket = first 8 hex digits of SHA-256(domain + '\\0' + source) as an integer, "
              "mod 100; 0 -> valid, 1 -> test, 2..99 -> train")


def _hash_int(*parts):
    return int(hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:8], 16)


def split_of(domain, source):
    """train / valid / test for a document, from its (unique) source name: 98/1/1."""
    b = _hash_int(domain, source) % 100
    return "valid" if b == 0 else "test" if b == 1 else "train"


def cap_select(domain, docs, cap_bytes):
    """Keeps a pseudo-random subset of docs (dicts with "text", "source") whose text totals at
    most cap_bytes, in their original order. Documents are ranked by a hash of their source
    independent of the split's (so the 98/1/1 proportions hold after the cap) and taken in
    rank order while they fit; every source package keeps about the same fraction."""
    sizes = [len(d["text"].encode("utf-8")) for d in docs]
    if sum(sizes) <= cap_bytes:
        return list(docs)
    order = sorted(range(len(docs)),
                   key=lambda i: (_hash_int("cap", domain, docs[i]["source"]), i))
    keep, total = set(), 0
    for i in order:
        if total + sizes[i] <= cap_bytes:
            keep.add(i)
            total += sizes[i]
    return [d for i, d in enumerate(docs) if i in keep]
