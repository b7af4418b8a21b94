"""Text normalisation shared by validate, clean and search: HTML to text, NFKC, whitespace.

Everything here is pure and deterministic. ``normalize_text`` is idempotent
(``normalize_text(normalize_text(x)) == normalize_text(x)``), which is what lets content
hashes be computed over "normalised text" by any stage without drift.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import unicodedata
from functools import cache
from html.parser import HTMLParser

log = logging.getLogger(__name__)


__all__ = [
    "char_shingles",
    "content_hash",
    "hash_normalized",
    "html_to_text",
    "nfkc",
    "normalize_text",
    "shingle_text",
]


# Tags whose start or end is a line break in the text. Inline tags (b, span, a...) vanish.
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "ul",
    }
)  # fmt: skip


# Content of these is never text.
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template", "iframe"})


# Only well-known tag names make a string "look like HTML": plain text such as "x<y and y>z"
# or "<订单号>" must not be sent through the parser, which would eat it as a tag.
_KNOWN_TAGS = (
    "a|abbr|b|big|blockquote|body|br|caption|center|code|col|colgroup|dd|del|div|dl|dt|em|"
    "figcaption|figure|font|footer|form|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|"
    "label|li|link|main|mark|meta|nav|noscript|ol|option|p|pre|s|script|section|select|small|"
    "source|span|strike|strong|style|sub|sup|table|tbody|td|template|textarea|tfoot|th|thead|"
    "title|tr|tt|u|ul|video|audio|article|aside|address|main|o:p"
)


_HTML_RE = re.compile(
    rf"<\s*/?\s*(?:{_KNOWN_TAGS})(?:\s[^<>]*)?/?\s*>|<!--|<!doctype"
    r"|&(?:[a-zA-Z][a-zA-Z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});",
    re.IGNORECASE,
)


_TAG_FALLBACK_RE = re.compile(r"<[^<>]*>")


# Line breaks other than "\n" (normalised to "\n"), tabs and the ogham space mark (to a
# space: the only whitespace NFKC leaves alone), and characters that are removed: C0/C1
# controls, lone surrogates, and invisible format characters that break matching (zero-width
# space, word joiner, BOM, soft hyphen). ZWJ/ZWNJ are kept: emoji and some scripts need them.
# After this and NFKC, the only whitespace left is " " and "\n" (a unit test checks it over
# all code points), so the whitespace steps below can test for plain substrings first.
_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


_FIX_RE = re.compile(
    "[\t\u1680" + _BREAKS + "\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ud800-\udfff"
    "\u00ad\u200b\u2060\ufeff]"
)


_DROP = dict.fromkeys(
    [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x1F, *range(0x7F, 0x85), *range(0x86, 0xA0)]
    + [*range(0xD800, 0xE000), 0x00AD, 0x200B, 0x2060, 0xFEFF]
)


_TRANSLATE = {**_DROP, ord("\t"): " ", 0x1680: " ", **{ord(c): "\n" for c in _BREAKS}}


_SPACES_RE = re.compile(r"[^\S\n]+")  # any whitespace but "\n"


_SPACE_RUN_RE = re.compile(" {2,}")


_LINE_EDGE_RE = re.compile(r" *\n *")


_BLANK_LINES_RE = re.compile(r"\n{3,}")


_SHINGLE_DROP_RE = re.compile(r"[\W_]+")  # whitespace, punctuation, symbols


_MAX_PASSES = 8


@cache
def _compat_table() -> tuple[re.Pattern[str], dict[str, str]]:
    """Every BMP character NFKC changes, with its NFKC form (built once, ~30 ms)."""
    table: dict[str, str] = {}
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        n = unicodedata.normalize("NFKC", c)
        if n != c:
            table[c] = n
    return re.compile("[" + "".join(map(re.escape, table)) + "]"), table


def nfkc(s: str) -> str:
    """``unicodedata.normalize("NFKC", s)``, several times faster on typical Chinese text.

    CPython's NFKC is slow (~14 us for 200 characters) as soon as one character needs it, and
    Chinese text always has some (full-width "，？：（）"). Replacing each such character by
    its own NFKC form first leaves the string's NFKD unchanged (NFKD decomposes character by
    character, then reorders marks stably), so NFKC of the result equals NFKC of the input; and
    the result is usually NFKC already, which ``normalize`` detects with its quick check.
    """
    if unicodedata.is_normalized("NFKC", s):
        return s
    pattern, table = _compat_table()
    return unicodedata.normalize("NFKC", pattern.sub(lambda m: table[m.group()], s))


class _TextExtractor(HTMLParser):
    """Collects text; block tags become line breaks; script/style content is dropped.

    Breaks are kept pending until the next text so that adjacent block boundaries
    (``</li><li>``) give one line break, not one per tag; ``<p>`` asks for a blank line.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._pending = 0
        self._skip = 0
        self._pre = 0

    def _block(self, tag: str) -> None:
        if tag == "br":
            self._pending += 1
        else:
            self._pending = max(self._pending, 2 if tag == "p" else 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self._block(tag)
            if tag == "pre":
                self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._block(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS and tag != "br":
            self._block(tag)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        # Source line breaks inside a paragraph are not line breaks in rendered HTML.
        text = data if self._pre else _SPACES_RE.sub(" ", data.replace("\n", " "))
        if self._pending:
            if not text.strip():
                return  # indentation between block tags
            if self.parts:
                self.parts.append("\n" * self._pending)
            self._pending = 0
        self.parts.append(text)


def html_to_text(s: str) -> str:
    """Plain text of an HTML fragment (stdlib ``html.parser``; never raises on broken HTML).

    Tags are removed, ``script``/``style`` (and head/title/noscript/template/iframe) contents
    are dropped, entities are unescaped, block tags (``br``, ``p``, ``li``, ``div``, headings,
    table rows...) become line breaks. Whitespace inside a paragraph collapses to one space,
    lines are stripped and runs of blank lines become one blank line.
    """
    if not s:
        return ""
    parser = _TextExtractor()
    try:
        parser.feed(s)
        parser.close()
        text = "".join(parser.parts)
    except (AssertionError, ValueError):  # pragma: no cover - defensive: parser bugs
        log.debug("html.parser failed, falling back to tag stripping", exc_info=True)
        text = html.unescape(_TAG_FALLBACK_RE.sub("\n", s))
    text = _SPACES_RE.sub(" ", text)
    text = _LINE_EDGE_RE.sub("\n", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip(" \n")


def _looks_like_html(s: str) -> bool:
    return ("<" in s or "&" in s) and _HTML_RE.search(s) is not None


def _normalize_pass(s: str) -> str:
    if _looks_like_html(s):
        s = html_to_text(s)
    # Control characters go before NFKC: removing one later could bring a base character and a
    # combining mark together and leave text that is no longer NFKC (breaking idempotence).
    # NFKC itself never produces control, format or line-break characters (checked over all
    # code points), so one removal pass is enough.
    if _FIX_RE.search(s):
        s = s.replace("\r\n", "\n").translate(_TRANSLATE)
    s = nfkc(s)
    if "  " in s:
        s = _SPACE_RUN_RE.sub(" ", s)
    if "\n" in s:
        s = _LINE_EDGE_RE.sub("\n", s)
        if "\n\n\n" in s:
            s = _BLANK_LINES_RE.sub("\n\n", s)
    return s.strip(" \n")


def normalize_text(s: str | None) -> str:
    """Canonical form of a KB text; ``None`` gives ``""``. Idempotent.

    HTML to text (when the string contains known tags or entities), control characters
    removed (``\\n`` kept; tabs and other line breaks normalised), NFKC (full-width to
    half-width, compatibility forms), runs of spaces collapsed, each line stripped, three or
    more line breaks collapsed to two, the whole stripped.

    Text that still looks like HTML after one pass (double-escaped markup such as
    ``&amp;lt;b&amp;gt;``, or full-width ``＜ｂ＞`` that NFKC turns into a tag) is passed again,
    until it no longer changes: that is what makes the function idempotent.
    """
    if not s:
        return ""
    out = _normalize_pass(s)
    for _ in range(_MAX_PASSES):
        if not _looks_like_html(out):
            break
        nxt = _normalize_pass(out)
        if nxt == out:
            break
        out = nxt
    return out


def content_hash(*parts: str) -> str:
    """sha256 hex of the normalised parts joined with U+001F (unit separator).

    Equal for texts that differ only in what ``normalize_text`` removes; a part's boundary is
    part of the hash (``("ab", "c")`` and ``("a", "bc")`` differ).
    """
    return hash_normalized(*(normalize_text(p) for p in parts))


def hash_normalized(*parts: str) -> str:
    """``content_hash`` for parts that are already ``normalize_text`` output (no re-normalising)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def shingle_text(text: str) -> str:
    """The character sequence shingles are cut from: NFKC, lower-cased, with whitespace,
    punctuation and symbols removed (so "退货，运费" and "退货运费" shingle alike)."""
    return _SHINGLE_DROP_RE.sub("", nfkc(text).lower())


def char_shingles(text: str, k: int) -> set[str]:
    """Set of character ``k``-grams of ``shingle_text(text)``.

    A text shorter than ``k`` (after removal) gives itself as its only shingle; an empty one
    gives the empty set. Raises ``ValueError`` when ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"shingle size must be >= 1, got {k}")
    t = shingle_text(text)
    if not t:
        return set()
    if len(t) <= k:
        return {t}
    return {t[i : i + k] for i in range(len(t) - k + 1)}
