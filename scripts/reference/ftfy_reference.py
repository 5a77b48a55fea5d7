#!/usr/bin/env python3
"""ftfy's data for spdit's C++ port of `ftfy.fix_text`, taken from ftfy itself.

Original: github.com/rspeer/python-ftfy @ 74dd045 (ftfy 6.3.1), imported
unchanged from a checkout given with --src (the folder holding the `ftfy`
package and its `tests/test-cases`). Run it with Debian's /usr/bin/python3 (its
wcwidth, used only for ftfy's terminal formatting, may be absent: see import_ftfy).

  tables   writes src/text/ftfy_tables.cpp: ftfy's regexes (badness.BADNESS_RE,
           chardata.UTF8_DETECTOR_RE / ALTERED_UTF8_RE / LOSSY_UTF8_RE /
           HTML_ENTITY_RE, fixes.ANSI_RE / A_GRAVE_WORD_RE) translated from
           Python's own parse of them (re._parser) into PCRE2 syntax with every
           character written as \\x{..} and \\s \\w \\d expanded into the code
           points Python's `re` gives them; the decoding tables of the
           single-byte codecs ftfy tries (its sloppy codecs included) and of
           strict windows-1252; chardata's HTML_ENTITIES, WIDTH_MAP, LIGATURES,
           CONTROL_CHARS; Python's html.unescape regex, its html5 entity table and
           its numeric character reference tables (Wan's prompt_clean runs
           html.unescape after ftfy).
  fixture  writes tests/fixtures/ftfy/cases.json: (input, ftfy.fix_text(input))
           for every case of ftfy's tests/test-cases/*.json and for prompt-like
           cases of our own. Inputs that are not valid UTF-8 are stored as hex
           and fixed as spdit documents: bytes.decode("utf-8", "replace") first.
           Each case also holds Wan's whole prompt_clean of its input.

A wider run of the same kinds (6,000 cases) was checked once by hand and
matched too; the fixture keeps a size CI reads quickly.

Usage: ftfy_reference.py --src /tmp/ftfy-ref tables  > src/text/ftfy_tables.cpp
       ftfy_reference.py --src /tmp/ftfy-ref fixture > tests/fixtures/ftfy/cases.json
"""
import argparse
import glob
import json
import os
import re
import sys


def cp_ranges(pred):
    """Sorted (lo, hi) code point ranges where pred(chr(c)) holds."""
    out = []
    start = None
    for c in range(0x110000):
        ok = not 0xD800 <= c <= 0xDFFF and pred(chr(c))
        if ok and start is None:
            start = c
        if not ok and start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


_CATEGORY_CACHE = {}


def category_ranges(cat):
    if cat not in _CATEGORY_CACHE:
        expr = {"CATEGORY_SPACE": r"\s", "CATEGORY_WORD": r"\w", "CATEGORY_DIGIT": r"\d"}[str(cat)]
        rx = re.compile(expr)
        _CATEGORY_CACHE[cat] = cp_ranges(lambda ch: rx.fullmatch(ch) is not None)
    return _CATEGORY_CACHE[cat]


def esc(c):
    return "\\x{%x}" % c


def translate(parsed):
    """Python regex parse tree -> PCRE2 pattern text."""
    from re import _constants as C

    out = []
    for op, av in parsed:
        if op is C.LITERAL:
            out.append(esc(av))
        elif op is C.NOT_LITERAL:
            out.append("[^" + esc(av) + "]")
        elif op is C.ANY:
            out.append("[^\\x{a}]")
        elif op is C.IN:
            negate = False
            items = []
            for iop, iav in av:
                if iop is C.NEGATE:
                    negate = True
                elif iop is C.LITERAL:
                    items.append(esc(iav))
                elif iop is C.RANGE:
                    items.append(esc(iav[0]) + "-" + esc(iav[1]))
                elif iop is C.CATEGORY:
                    for lo, hi in category_ranges(iav):
                        items.append(esc(lo) if lo == hi else esc(lo) + "-" + esc(hi))
                else:
                    raise ValueError("class item %r" % (iop,))
            out.append("[" + ("^" if negate else "") + "".join(items) + "]")
        elif op is C.BRANCH:
            out.append("(?:" + "|".join(translate(b) for b in av[1]) + ")")
        elif op is C.SUBPATTERN:
            out.append("(?:" + translate(av[3]) + ")")
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            body = "(?:" + translate(sub) + ")"
            hi_s = "" if hi is C.MAXREPEAT else str(hi)
            out.append(body + "{%d,%s}" % (lo, hi_s) + ("?" if op is C.MIN_REPEAT else ""))
        elif op in (C.ASSERT, C.ASSERT_NOT):
            direction, sub = av
            kind = ("(?<" if direction < 0 else "(?") + ("=" if op is C.ASSERT else "!")
            out.append(kind + translate(sub) + ")")
        elif op is C.AT:
            if av is C.AT_BEGINNING:
                out.append("^")
            elif av is C.AT_END:
                out.append("$")  # Python's and PCRE2's $: the end, or before a final \n
            else:
                raise ValueError("anchor %r" % (av,))
        elif op is C.CATEGORY:
            items = [esc(lo) if lo == hi else esc(lo) + "-" + esc(hi) for lo, hi in category_ranges(av)]
            out.append("[" + "".join(items) + "]")
        else:
            raise ValueError("regex op %r" % (op,))
    return "".join(out)


def to_pcre2(compiled):
    from re import _parser

    pattern = compiled.pattern
    if isinstance(pattern, bytes):
        pattern = pattern.decode("latin-1")
    return translate(_parser.parse(pattern, compiled.flags))


def cxx_string(s):
    """A C++ narrow string literal holding the UTF-8 of s, split into pieces."""
    data = s.encode("utf-8")
    pieces = []
    cur = ""
    for b in data:
        if chr(b) in '"\\':
            cur += "\\" + chr(b)
        elif 0x20 <= b < 0x7F:
            cur += chr(b)
        else:
            cur += "\\%03o" % b  # octal: a \x escape would swallow following hex digits
        if len(cur) > 80:
            pieces.append('"' + cur + '"')
            cur = ""
    pieces.append('"' + cur + '"')
    return "\n    ".join(pieces)


def import_ftfy(src):
    """ftfy imports wcwidth only for ftfy.formatting (terminal column widths),
    which fix_text never calls; Debian's python may lack it, so a stand-in that
    refuses to be used takes its place."""
    import types

    if "wcwidth" not in sys.modules:
        try:
            import wcwidth  # noqa: F401
        except ImportError:
            stub = types.ModuleType("wcwidth")

            def refuse(*args):
                raise RuntimeError("wcwidth stand-in: not used by fix_text")

            stub.wcwidth = stub.wcswidth = refuse
            sys.modules["wcwidth"] = stub
    sys.path.insert(0, src)
    import ftfy

    return ftfy


def tables(src):
    import_ftfy(src)
    import html
    import html.entities

    from ftfy import badness, chardata, fixes

    w = sys.stdout.write
    w("// GENERATED by scripts/reference/ftfy_reference.py tables from ftfy 6.3.1's own\n")
    w("// code (github.com/rspeer/python-ftfy @ 74dd045); do not edit by hand.\n")
    w("// clang-format off\n")
    w('#include "ftfy_tables.h"\n\nnamespace spdit::text::ftfy_data {\n\n')

    regexes = [
        ("kBadness", badness.BADNESS_RE),
        ("kUtf8Detector", chardata.UTF8_DETECTOR_RE),
        ("kHtmlEntity", chardata.HTML_ENTITY_RE),
        ("kAnsiEscape", fixes.ANSI_RE),
        ("kAlteredUtf8", chardata.ALTERED_UTF8_RE),
        ("kLossyUtf8", chardata.LOSSY_UTF8_RE),
        ("kAGraveWord", fixes.A_GRAVE_WORD_RE),
        ("kHtmlCharref", html._charref),
    ]
    for name, rx in regexes:
        w("// %s\nconst char* const %s =\n    %s;\n\n" % (name, name, cxx_string(to_pcre2(rx))))

    w("const SingleByteCodec kCharmapCodecs[kCharmapCodecCount] = {\n")
    assert len(chardata.CHARMAP_ENCODINGS) == 10
    for enc in chardata.CHARMAP_ENCODINGS:
        table = bytes(range(256)).decode(enc)
        assert len(set(table)) == 256, enc
        sloppy = enc.startswith("sloppy")
        w('  {"%s", %s, {' % (enc, "true" if sloppy else "false"))
        w(", ".join("0x%x" % ord(c) for c in table))
        w("}},\n")
    w("};\n\n")
    strict = []
    for b in range(256):
        try:
            strict.append("0x%x" % ord(bytes([b]).decode("windows-1252")))
        except UnicodeDecodeError:
            strict.append("kUndefined")
    w("const char32_t kStrictWindows1252[256] = {" + ", ".join(strict) + "};\n\n")

    w("const Entity kHtmlEntities[] = {\n")
    for name in sorted(chardata.HTML_ENTITIES):
        w("  {%s, %s},\n" % (cxx_string(name), cxx_string(chardata.HTML_ENTITIES[name])))
    w("};\nconst size_t kHtmlEntityCount = sizeof(kHtmlEntities) / sizeof(kHtmlEntities[0]);\n\n")

    w("const Entity kHtml5[] = {\n")
    for name in sorted(html.entities.html5):
        w("  {%s, %s},\n" % (cxx_string(name), cxx_string(html.entities.html5[name])))
    w("};\nconst size_t kHtml5Count = sizeof(kHtml5) / sizeof(kHtml5[0]);\n\n")

    w("const CharMapping kInvalidCharrefs[] = {\n")
    for num in sorted(html._invalid_charrefs):
        w("  {0x%x, %s},\n" % (num, cxx_string(html._invalid_charrefs[num])))
    w("};\nconst size_t kInvalidCharrefCount = sizeof(kInvalidCharrefs) / sizeof(kInvalidCharrefs[0]);\n\n")
    w("const char32_t kInvalidCodepoints[] = {" + ", ".join("0x%x" % c for c in sorted(html._invalid_codepoints)) + "};\n")
    w("const size_t kInvalidCodepointCount = sizeof(kInvalidCodepoints) / sizeof(kInvalidCodepoints[0]);\n\n")

    for name, mapping in [("kWidthMap", chardata.WIDTH_MAP), ("kLigatures", chardata.LIGATURES)]:
        w("const CharMapping %s[] = {\n" % name)
        for cp in sorted(mapping):
            w("  {0x%x, %s},\n" % (cp, cxx_string(mapping[cp])))
        w("};\nconst size_t %sCount = sizeof(%s) / sizeof(%s[0]);\n\n" % (name, name, name))
    w("const char32_t kControlChars[] = {" + ", ".join("0x%x" % c for c in sorted(chardata.CONTROL_CHARS)) + "};\n")
    w("const size_t kControlCharCount = sizeof(kControlChars) / sizeof(kControlChars[0]);\n\n")
    single = sorted(ord(c) for c in map(chr, range(0x10000)) if chardata.SINGLE_QUOTE_RE.fullmatch(c))
    double = sorted(ord(c) for c in map(chr, range(0x10000)) if chardata.DOUBLE_QUOTE_RE.fullmatch(c))
    w("const char32_t kSingleQuotes[] = {" + ", ".join("0x%x" % c for c in single) + "};\n")
    w("const size_t kSingleQuoteCount = sizeof(kSingleQuotes) / sizeof(kSingleQuotes[0]);\n")
    w("const char32_t kDoubleQuotes[] = {" + ", ".join("0x%x" % c for c in double) + "};\n")
    w("const size_t kDoubleQuoteCount = sizeof(kDoubleQuotes) / sizeof(kDoubleQuotes[0]);\n\n")
    w("}  // namespace spdit::text::ftfy_data\n// clang-format on\n")


def own_cases():
    """Prompt-like text and each repair ftfy makes, written the way it reaches a prompt."""
    c = []

    def add(label, text):
        c.append((label, text))

    add("plain prompt", "A cat sitting on a windowsill, golden hour, 35mm photo")
    add("curly quotes", "\u201cA dog\u201d says \u2018hello\u2019 \u201ahere\u201b \u201e\u201f and \u02bcokina")
    add("em and en dashes, ellipsis", "night \u2014 a city\u2013scape\u2026 neon")
    add("emoji", "a happy fox \U0001F98A with a \u2764\ufe0f and \U0001F469\u200d\U0001F52C")
    add("CJK", "\u4e00\u53ea\u5728\u8349\u5730\u4e0a\u5954\u8dd1\u7684\u5c0f\u72d7\uff0c\u9633\u5149\u660e\u5a9a")
    add("Japanese with halfwidth katakana", "\uff76\uff80\uff76\uff85 and \u30ab\u30bf\u30ab\u30ca")
    add("fullwidth latin and ideographic space", "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33\uff01")
    add("ligatures", "\ufb01sh \ufb02ower of\ufb00ice \ufb03 \ufb04 \ufb05 \ufb06 \u0132 \u0133 \u01c4 \u01c6 \u01c9 \u0149")
    add("html entities", "fish &amp; chips &lt;3 &hellip; &eacute;t&eacute; &#8217;s &#x2019; &NTILDE; &nbsp;x")
    add("html entities without <", "Tom &amp; Jerry &quot;cartoon&quot; &copy; 1940")
    add("html entity numeric edge cases", "&#59; &#0; &#x80; &#xD800; &#1114112; &#12ab; &#xFFFF; &#128512;")
    add("unknown entity", "&notanentity; &amp &AMP; &Eacute; &EACUTE;")
    add("latin-1 mojibake", "caf\u00c3\u00a9 cr\u00c3\u00a8me br\u00c3\u00bbl\u00c3\u00a9e")
    add("windows-1252 mojibake of quotes", "\u00e2\u20ac\u0153Hello\u00e2\u20ac\u009d she said \u00e2\u20ac\u201d loudly")
    add("windows-1252 mojibake of emoji", "\u00f0\u0178\u02dc\u20ac smiling")
    add("windows-1251 mojibake", "\u0420\u045f\u0421\u0402\u0420\u0451\u0420\u0406\u0420\u00b5\u0421\u201a \u0420\u0458\u0420\u0451\u0421\u0402")
    add("windows-1250 mojibake", "\u0139\u017dlu\u0139\u0104ou\u0139\u02c7k\u0102\u02dd k\u0139\u0088\u0102\u02c7\u0139\u02c7")
    add("windows-1253 mojibake", "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1".encode("utf-8").decode("windows-1253", "replace"))
    add("windows-1254 mojibake", "G\u00fczel g\u00fcn \u011f\u015f\u0131".encode("utf-8").decode("windows-1254", "replace"))
    add("windows-1257 mojibake", "\u0160iauliai \u017e\u0117".encode("utf-8").decode("windows-1257", "replace"))
    add("iso-8859-2 mojibake", "\u017b\u00f3\u0142w".encode("utf-8").decode("iso-8859-2"))
    add("macroman mojibake", "cr\u00e8me br\u00fbl\u00e9e".encode("utf-8").decode("macroman"))
    add("cp437 mojibake", "na\u00efve caf\u00e9".encode("utf-8").decode("cp437"))
    add("double mojibake", "caf\u00e9".encode("utf-8").decode("latin-1").encode("utf-8").decode("windows-1252"))
    add("mojibake with lost nbsp", "voil\u00c3 le travail")
    add("lossy mojibake", "\u00e2\u20ac\ufffd quoted \u00c3? x")
    add("mixed mojibake in a prompt", "A red panda in the snow \u00e2\u20ac\u201c 4k, caf\u00c3\u00a9 style")
    add("CRLF line breaks", "first line\r\nsecond line\rthird\u2028fourth\u2029fifth\u0085sixth")
    add("C1 controls", "price \u0080 5 and \u0093quoted\u0094 \u0099")
    add("ANSI escapes", "\x1b[1;31mred\x1b[0m text \x1b[4munderline\x1b[m")
    add("control characters", "a\x00b\x01c\x07d\x0be\x0cf\x7fg\u200bh\u206ai\ufeffj\ufff9k\ufffdl")
    add("tabs and newlines kept", "a\tb\nc\n\nd")
    add("combining characters NFC", "cafe\u0301 nai\u0308ve \u1100\u1161")
    add("html with <", "<b>bold &amp; strong</b> &lt;tag&gt;")
    add("html.unescape after ftfy (<)", "<p>caf&eacute &amp;amp; &notin; &notit; &ampxyz &#x26;lt; &#38 &#X41 &AElig</p>")
    add("html.unescape names", "<i>&Eacute;t&eacute;&nbsp;&hellip&copy2024 &unknown; &a &am; &#xZZ;</i>")
    add("segments: < on first line turns off entities later", "x < y\n&amp; later line")
    add("segments: entities before < line", "&amp; first\nx < y &amp;")
    add("nbsp and soft hyphen", "non\u00a0breaking and soft\u00adhyphen")
    add("already fine accents", "S\u00e3o Paulo, M\u00fcnchen, \u0141\u00f3d\u017a, \u00c5re, na\u00efve")
    add("degree and symbols", "25\u00b0C \u00b1 2\u00b0, \u00a9 2024, \u00ae, \u2122, \u20ac100")
    add("kaomoji", "\u00af\\_(\u30c4)_/\u00af and (\u256f\u00b0\u25a1\u00b0)\u256f\ufe35 \u253b\u2501\u253b")
    add("empty", "")
    add("only spaces", "   ")
    add("arabic and hebrew", "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd")
    add("korean", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8")
    add("cesu-8 mojibake", "\U0001F600".encode("utf-16-be").decode("utf-16-be").encode("utf-8").decode("latin-1") + " and \u00ed\u00a0\u00bd\u00ed\u00b8\u0080")
    add("java null mojibake", "a\u00c0\u0080b")
    add("long line", ("word " * 300).strip())
    return c


def random_cases(count=400, seed=20251126):
    """Mojibake made on purpose: phrases in many scripts, pieces of them encoded
    as UTF-8 and decoded with each codec ftfy knows (sometimes twice, sometimes
    with U+A0 turned into a space or a byte lost), mixed with clean text. The
    same seed gives the same cases."""
    import random

    rng = random.Random(seed)
    phrases = [
        "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "na\u00efve fa\u00e7ade", "Stra\u00dfe M\u00fcnchen \u00e4\u00f6\u00fc",
        "\u017c\u00f3\u0142w \u0141\u00f3d\u017a", "\u010ce\u0161tina \u0159e\u010d", "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
        "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1", "G\u00fczel \u011f\u015f\u0131", "\u0160iauliai \u017e\u0117",
        "\u201cquoted\u201d \u2018single\u2019", "dash \u2014 and \u2013 \u2026", "\u20ac 5 \u00a3 3 \u00a5 2",
        "\u2714 done \u2764", "\U0001F600 \U0001F98A \U0001F52C", "\u4e2d\u6587 \u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4",
        "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd", "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e44\u0e17\u0e22",
        "S\u00e3o Paulo", "\u00bfQu\u00e9 tal? \u00a1Bien!", "25\u00b0C \u00b1 2", "\u00a9 \u00ae \u2122", "voil\u00e0 \u00e0 la",
        "a cat on a mat", "golden hour, 35mm", "\u00c5re \u00d8sterbro \u00e6\u00f8\u00e5",
    ]
    codecs = ["latin-1", "windows-1252", "windows-1251", "windows-1250", "windows-1253", "windows-1254",
              "windows-1257", "iso-8859-2", "macroman", "cp437"]
    out = []
    for i in range(count):
        parts = []
        for _ in range(rng.randint(1, 3)):
            phrase = rng.choice(phrases)
            kind = rng.random()
            if kind < 0.25:
                parts.append(phrase)
                continue
            codec = rng.choice(codecs)
            text = phrase.encode("utf-8").decode(codec, "replace")
            if kind < 0.35:
                text = text.encode("utf-8").decode(rng.choice(codecs[:2]), "replace")
            if kind > 0.9:
                text = text.replace("\u00a0", " ")
            if kind > 0.95 and len(text) > 3:
                j = rng.randrange(len(text))
                text = text[:j] + rng.choice(["\ufffd", "?"]) + text[j + 1:]
            parts.append(text)
        out.append(("random mojibake %d" % i, rng.choice([" ", ", ", " - ", "\n"]).join(parts)))
    return out


def soup_cases(count=150, seed=7):
    """Random strings of the characters mojibake is made of (bytes 0x80-0xFF
    in every codec ftfy knows) mixed with ASCII, quotes, entities, escapes and
    line breaks: the corners of the badness regex. Seeded."""
    import random

    rng = random.Random(seed)
    pool = set()
    for enc in ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "iso-8859-2",
                "mac_roman", "cp437"]:
        pool |= set(bytes(range(0x80, 0x100)).decode(enc, "ignore"))
    pool = sorted(pool) + list("abcdefgh ABC 123 .,;!?'\"<>&#") + [
        "\u201c", "\u201d", "\ufb01", "\uff21", "\u3000", "\r", "\n", "\x1b[1m", "&amp;", "&#x41;",
        "\u00a0", "\u2028", "\x85", "\x00", "\ufffd"]
    return [("character soup %d" % i, "".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
            for i in range(count)]


def invalid_utf8_cases():
    return [
        ("invalid byte ff", b"bad \xff byte"),
        ("truncated sequence", b"cut \xe2\x80 here"),
        ("lone continuation", b"\x80\x80 start"),
        ("overlong", b"over \xc0\xaf long"),
        ("encoded surrogate", b"sur \xed\xa0\x80 rogate"),
        ("truncated at end", b"end \xf0\x9f\x98"),
        ("latin-1 bytes", "caf\u00e9 cr\u00e8me".encode("latin-1")),
    ]


def wan_prompt_clean(ftfy, text):
    """Wan2.1's prompt_clean (wan/modules/tokenizers.py; diffusers' WanPipeline
    has the same with ftfy installed): basic_clean then whitespace_clean, with
    the `regex` module as Wan imports it (Debian's python3-regex)."""
    import html

    import regex

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    text = text.strip()
    text = regex.sub(r"\s+", " ", text)
    return text.strip()


def fixture(src):
    ftfy = import_ftfy(src)

    cases = []
    for path in sorted(glob.glob(os.path.join(src, "tests", "test-cases", "*.json"))):
        name = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            for case in json.load(f):
                text = case["original"]
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    sys.stderr.write("skipped (not UTF-8 text): %s\n" % case["label"])
                    continue
                cases.append({"label": name + ": " + case["label"], "input": text, "fixed": ftfy.fix_text(text)})
    for label, text in own_cases():
        cases.append({"label": "spdit: " + label, "input": text, "fixed": ftfy.fix_text(text)})
    for label, text in random_cases() + soup_cases():
        cases.append({"label": "spdit: " + label, "input": text, "fixed": ftfy.fix_text(text)})
    for label, data in invalid_utf8_cases():
        text = data.decode("utf-8", "replace")
        cases.append({"label": "spdit invalid UTF-8: " + label, "input_hex": data.hex(), "fixed": ftfy.fix_text(text)})
    for case in cases:
        text = bytes.fromhex(case["input_hex"]).decode("utf-8", "replace") if "input_hex" in case else case["input"]
        case["wan_prompt_clean"] = wan_prompt_clean(ftfy, text)
    json.dump(cases, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("what", choices=["tables", "fixture"])
    args = ap.parse_args()
    tables(args.src) if args.what == "tables" else fixture(args.src)


if __name__ == "__main__":
    main()
