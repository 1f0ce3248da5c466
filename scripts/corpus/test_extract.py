#!/usr/bin/python3
"""Tests of the corpus extractors on small fixtures (scripts/corpus/fixtures/); no network.

    /usr/bin/python3 scripts/corpus/test_extract.py

Prints one line per failure and "N passed, M failed"; exit code 0 only if all passed.
"""

import collections
import gzip
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import extract  # noqa: E402
import mathgen  # noqa: E402

FIX = os.path.join(HERE, "fixtures")


def fixture(name, mode="r"):
    with open(os.path.join(FIX, name), mode) as f:
        return f.read()


# --- Brown -----------------------------------------------------------------------------------


def test_brown_detag_line():
    line = "``/`` Only/rb a/at relative/jj handful/nn ''/'' ,/, the/at jury/nn said/vbd ./."
    assert extract.brown_detag_tokens(line.split()) == '"Only a relative handful", the jury said.'


def test_brown_detag_file_paragraphs_headline_and_slash_words():
    text = extract.brown_detag(fixture("brown_sample.txt"))
    assert text.split("\n\n") == [
        'The committee, "after long debate", approved the plan (12 to 3). '
        "It wasn't unanimous; some objected!",
        "Budget passes",
        "Officials cheered.",
        "Next year? Maybe 1/2.",
    ], text


def test_brown_categories_and_fiction_split():
    cats = extract.brown_categories("ca01 news\ncn05 adventure\n\n")
    assert cats == {"ca01": "news", "cn05": "adventure"}
    assert "adventure" in extract.BROWN_FICTION and "news" not in extract.BROWN_FICTION


# --- dictd -----------------------------------------------------------------------------------


def test_dictd_b64_digits():
    assert extract.dictd_b64_decode("A") == 0
    assert extract.dictd_b64_decode("B") == 1
    assert extract.dictd_b64_decode("/") == 63
    assert extract.dictd_b64_decode("BA") == 64  # big-endian: most significant digit first
    assert extract.dictd_b64_decode("CP") == 2 * 64 + 15
    assert extract.dictd_b64_decode("Uz") == 20 * 64 + 51
    for n in (0, 1, 63, 64, 4095, 4096, 123456789):
        assert extract.dictd_b64_decode(extract.dictd_b64_encode(n)) == n
    for bad in ("", "A-", "a b"):
        try:
            extract.dictd_b64_decode(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} must be rejected")


def test_dictd_entries_slice_skip_meta_and_aliases():
    index = fixture("tiny.index")
    data = gzip.decompress(fixture("tiny.dict.dz", "rb"))
    entries = list(extract.dictd_entries(index, data))
    heads = [h for h, _ in entries]
    # 00-database-short dropped; plantain points at banana's bytes and is dropped as a copy.
    assert heads == ["apple", "banana", "cherry", "zebra"], heads
    d = dict(entries)
    assert d["apple"] == "apple\n  n 1: a round fruit of a rosaceous tree\n\n"
    assert d["banana"].startswith("banana\n") and "yellow" in d["banana"]
    assert d["zebra"].startswith("zebra\n") and d["zebra"].count("striped") == 12
    assert extract.gcide_is_wordnet_copy(d["cherry"])
    assert not extract.gcide_is_wordnet_copy(d["apple"])


# --- e-mail ----------------------------------------------------------------------------------


def test_email_plain_subject_body_and_masking():
    text = extract.parse_email(fixture("mail_plain.eml", "rb"))
    assert text.startswith("Subject: Café meeting on Friday\n\n"), text
    assert "Let's meet at the café." in text  # quoted-printable + iso-8859-1 decoded
    assert "@" not in text, text
    assert text.count(extract.EMAIL_MASK) == 2
    assert "Return-Path" not in text and "From:" not in text  # headers other than Subject go


def test_email_multipart_prefers_plain_and_drops_attachments():
    text = extract.parse_email(fixture("mail_multipart.eml", "rb"))
    assert text == ("Subject: You have WON\n\nClaim your prize now: write to "
                    f"{extract.EMAIL_MASK} today."), text


def test_email_html_only_is_rendered():
    text = extract.parse_email(fixture("mail_html_only.eml", "rb"))
    assert text.startswith("Subject: Weekly offers\n\n")
    assert "Two for one & free shipping." in text
    assert "ignored" not in text and "color" not in text
    assert "@" not in text


def test_mask_addresses_leaves_other_at_signs():
    assert extract.mask_addresses("mail a.b-c@x.example.org @ noon") == "mail [email] @ noon"


# --- licence headers and file filters --------------------------------------------------------


def test_strip_licence_header_c_keeps_description():
    out = extract.strip_licence_header_c(fixture("licence_header.c"))
    assert out.startswith("/* Return the length of a string.  */\n#include <string.h>"), out
    assert "Copyright" not in out and "License" not in out
    assert out.rstrip().endswith("return p - s;\n}")


def test_strip_licence_header_c_leaves_plain_comments():
    src = "/* Just a description.  */\nint x;\n"
    assert extract.strip_licence_header_c(src) == src


def test_strip_licence_header_lines_python_and_tex():
    out = extract.strip_licence_header_lines(fixture("licence_header.py"), "#")
    assert out.startswith('#!/usr/bin/env python3\n"""A module docstring."""'), out
    assert "# A comment that stays." in out and "Copyright" not in out
    tex = "% Copyright (c) 2000 The PARI Group\n% GNU General Public License\n\\section{X}\n"
    assert extract.strip_licence_header_lines(tex, "%") == "\\section{X}\n"
    plain = "# A normal comment\nx = 1\n"
    assert extract.strip_licence_header_lines(plain, "#") == plain


def test_source_file_filters():
    table = "static const int t[] = {\n" + ",\n".join(f"0x{i:04x}, {i}" for i in range(400))
    assert extract.is_numeric_table(table + "};\n")
    code = "int f (int x)\n{\n  return x + 1;\n}\n" * 40
    assert not extract.is_numeric_table(code)
    assert extract.python_file_skipped("test/test_os.py", "x = 1\n") == "test"
    assert extract.python_file_skipped("unittest/case.py", "x = 1\n") is None
    assert extract.python_file_skipped("token.py", "# Auto-generated by x.py\n") == "generated"
    assert extract.python_file_skipped("ast.py", '"""can be generated by passing"""\n') is None
    assert extract.python_file_skipped("big.py", "x" * 400_001) == "large"
    assert extract.c_file_skipped("iconvdata/foo.c", code) == "dir"
    assert extract.c_file_skipped("string/tst-strlen.c", code) == "test"
    assert extract.c_file_skipped("string/strlen.c", "int x;\n") == "tiny"
    assert extract.c_file_skipped("string/strlen.c", code) is None


def test_man_header_gaps_closed():
    text = "ls(1)" + " " * 400 + "User Commands" + " " * 400 + "ls(1)\n\nNAME\n       ls - list\n"
    out = extract.tidy_man_render(text + "\nGNU   2023" + " " * 500 + "ls(1)")
    assert out.split("\n")[0] == "ls(1)   User Commands   ls(1)"
    assert "       ls - list" in out  # indentation of the body untouched
    assert out.split("\n")[-1] == "GNU   2023   ls(1)"


def test_normalise():
    assert extract.normalise("\n\na\r\nb  \x00\x07\n\n\n\n\nc\n") == "a\nb\n\n\nc"
    assert extract.normalise("  \n\n") == ""


# --- math generator --------------------------------------------------------------------------


def test_math_generator_deterministic_and_covers_kinds():
    a = list(mathgen.problems(7, 300))
    b = list(mathgen.problems(7, 300))
    c = list(mathgen.problems(8, 300))
    assert a == b
    assert a != c
    assert {k for k, _ in a} == set(mathgen.KINDS)
    for kind, text in a:
        assert text.startswith("Problem: ") and "\nAnswer: " in text, text


def test_math_generator_answers_check_out():
    for kind, text in mathgen.problems(11, 400):
        answer = text.rsplit("Answer: ", 1)[1]
        if kind == "modpow":
            q = text.split("Compute ", 1)[1].split(".", 1)[0]  # "a^e mod m"
            base, rest = q.split("^")
            e, m = rest.split(" mod ")
            assert pow(int(base), int(e), int(m)) == int(answer), text
        elif kind == "linear":
            lhs = text.split("Solve for x: ", 1)[1].split(".\n", 1)[0]
            x = int(answer.split("= ")[1])
            left, right = lhs.split(" = ")
            a, rest = left.split("x ")
            sign, b = rest.split(" ")
            assert int(a) * x + (int(b) if sign == "+" else -int(b)) == int(right), text


# --- split and cap ---------------------------------------------------------------------------


def test_split_deterministic_and_98_1_1():
    sources = [f"pkg:file{i}" for i in range(50_000)]
    first = [extract.split_of("code_c", s) for s in sources]
    assert first == [extract.split_of("code_c", s) for s in sources]
    counts = collections.Counter(first)
    n = len(sources)
    # Binomial sd of a 1% share over 50k is about 0.045%: allow about 4 sd.
    assert abs(counts["valid"] / n - 0.01) < 0.002, counts
    assert abs(counts["test"] / n - 0.01) < 0.002, counts
    assert set(counts) == {"train", "valid", "test"}
    # The domain is part of the key: the same source name splits independently elsewhere.
    other = [extract.split_of("news", s) for s in sources]
    assert other != first


def test_cap_select_fits_keeps_order_and_spreads_over_sources():
    docs = [{"text": "x" * (100 + i % 50), "source": f"{'ab'[i % 2]}:{i}"} for i in range(4000)]
    total = sum(len(d["text"]) for d in docs)
    kept = extract.cap_select("dictionary", docs, total // 4)
    size = sum(len(d["text"]) for d in kept)
    assert size <= total // 4 and size > total // 4 - 200
    idx = [int(d["source"].split(":")[1]) for d in kept]
    assert idx == sorted(idx)
    share_a = sum(d["source"].startswith("a") for d in kept) / len(kept)
    assert 0.45 < share_a < 0.55, share_a
    assert extract.cap_select("dictionary", docs, total) == docs
    assert kept == extract.cap_select("dictionary", docs, total // 4)


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
        except Exception:  # a test failure of any kind is reported, the rest still run
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
