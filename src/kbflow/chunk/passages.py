"""Chunk stage: clean entries in (``CLEAN_ENTRY``), passages out (``PASSAGE``).

An FAQ entry (answer within ``long_answer_tokens``) gives one ``answer`` passage
(``title\nanswer``). A long answer (an SOP document) is split at headings into sections, tiny
sibling sections are joined, and sections over the budget are split at blank lines, line
breaks, sentence ends, spaces, and as a last resort anywhere; each ``section`` passage's text is
prefixed with its heading path (``【退货政策 › 运费】...``) and fits ``max_tokens`` with the
prefix. Every similar question gives a ``question`` passage pointing at the same entry, and the
title alone gives a ``title`` passage (unless the answer or a similar question already is the
title). Title passages are **dense only**: the keyword index holds them as empty documents
(their words are in the answer passage already; counted twice they cost BM25 hit@1 on kb_zh,
0.675 to 0.64). They are what users' questions are most alike: with multilingual-e5-small,
dense hit@1 / hit@3 on esun_faq (test split) 0.70 / 0.92 without them, 0.82 / 1.00 with them
(kb_zh 0.86 / 0.96 and 0.81 / 0.98); the review stage reads its title vectors from them.

Ids: ``passage_id`` is ``entry_id:ordinal`` (answer/section passages first, then questions,
then the title);
``faiss_id`` is a hash of the passage id, so the same passage keeps the same FAISS id across
runs. Everything here is pure and deterministic: the same input gives the same table.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.contracts import PASSAGE, take_chunked
from kbflow.errors import ContractError
from kbflow.settings import ChunkSettings

logger = logging.getLogger(__name__)


#: How much of the answer a question passage shows.
QUESTION_DISPLAY_CHARS = 300


_SEP = " › "


# CJK ideographs, kana, bopomofo, Hangul: one token per character. They are word characters
# to ``re``, so they are carved out of the "latin run" class below.
_CJK = (
    "\u2e80-\u2fff\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff"
)


_RUN = re.compile(rf"[^\W_{_CJK}]+")


_TOKEN = re.compile(rf"[^\W_{_CJK}]{{1,4}}|\S")


def count_tokens(text: str) -> int:
    """Estimate the model tokens in ``text`` without a tokenizer.

    Each run of letters/digits (any alphabetic script but CJK) counts ``ceil(len / 4)``, so
    at least 1 per word; every other non-space character (a CJK character, a punctuation mark,
    a symbol) counts 1; whitespace counts 0. On natural text this over-estimates WordPiece and
    BPE counts (BERT-style tokenizers give one token per CJK character and per punctuation
    mark; BPE merges CJK characters; most English words are a single piece), so a passage
    within the budget here is within it for the model too. It is an estimate, not a bound:
    a random string like ``xqzj`` may take more pieces than it is counted for.

    The count is additive across any cut that is not inside a letter/digit run, and
    ``count_tokens(text) <= len(text)``.
    """
    # Equal to len(_TOKEN.findall(text)), but 3x faster on CJK text, which has few runs.
    n = len("".join(text.split()))
    runs = _RUN.findall(text)
    if not runs:
        return n
    return n - sum(map(len, runs)) + sum((len(r) + 3) // 4 for r in runs)


def passage_faiss_id(passage_id: str) -> int:
    """The FAISS id of a passage: the first 8 bytes of its id's BLAKE2b, as a positive int64.

    Stable across runs and machines; distinct passages collide with probability ~n²/2⁶⁴.
    """
    digest = hashlib.blake2b(passage_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


_CN_NUM = "一二三四五六七八九十百千零〇"


_MD_HEADING = re.compile(r"#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")


_CN_PART = re.compile(rf"第[{_CN_NUM}\d]+([章节条])[\s:：、.]*(.*)")


_CN_ITEM = re.compile(rf"[{_CN_NUM}]+[、.．][ \t]*(.*)")


_CN_PAREN = re.compile(rf"[（(][{_CN_NUM}]+[)）][ \t、.]*(.*)")


# "1.1 首重", "1.1.2. 退货范围", "1.1、运费": a separator must follow, or "2.5公斤以内免运费"
# would be a heading.
_DOTTED = re.compile(r"(\d{1,3}(?:[.．]\d{1,3})+)(?:[.．、](?!\d)[ \t]*|[ \t]+)(.*)")


# "1. Returns", "1、退货", "2.运费"; not "1.5" (a decimal).
_NUMBERED = re.compile(r"\d{1,3}(?:[.．](?!\d)|、)[ \t]*(.*)")


# "Shipping fees:": a few words, starting with a letter.
_COLON = re.compile(r"[A-Za-z][A-Za-z0-9 &/'()-]{0,38}:")


_FENCE = re.compile(r"[ \t]*(```|~~~)")


#: Lines longer than this are text, not numbered headings.
_HEADING_MAX_CHARS = 40


#: A numbered line ending like a sentence is a list item, not a heading.
_SENTENCE_TAIL = ("。", "；", ";", "，", ",", ".", "!", "?", "！", "？")


# Nesting ranks: a heading closes every open heading of the same or a higher rank. Markdown
# levels come first (1-6); Chinese numbering nests 第X章 > 第X节 > 第X条 > 一、 > （一） > 1. > 1.1;
# an English "Label:" line is the innermost.
_RANK_CHAPTER = {"章": 10, "节": 11, "条": 12}


_RANK_CN_ITEM = 13


_RANK_CN_PAREN = 14


_RANK_NUMBERED = 15


_RANK_COLON = 30


def _heading(line: str) -> tuple[int, str] | None:
    """``(rank, heading text)`` when ``line`` is a heading on its own line, else None."""
    s = line.strip()
    if not s:
        return None
    if s[0] == "#":
        m = _MD_HEADING.fullmatch(s)
        return (len(s) - len(s.lstrip("#")), m.group(1).strip()) if m else None
    if len(s) > _HEADING_MAX_CHARS or s.endswith(_SENTENCE_TAIL):
        return None
    if m := _CN_PART.fullmatch(s):
        return _RANK_CHAPTER[m.group(1)], m.group(2).strip() or s
    if m := _CN_ITEM.fullmatch(s):
        return _RANK_CN_ITEM, m.group(1).strip() or s
    if m := _CN_PAREN.fullmatch(s):
        return _RANK_CN_PAREN, m.group(1).strip() or s
    if m := _DOTTED.fullmatch(s):
        depth = len(re.split(r"[.．]", m.group(1)))
        return _RANK_NUMBERED + depth - 1, m.group(2).strip() or s
    if m := _NUMBERED.fullmatch(s):
        return _RANK_NUMBERED, m.group(1).strip() or s
    if _COLON.fullmatch(s) and len(s.split()) <= 6:
        return _RANK_COLON, s[:-1].strip()
    return None


def split_sections(answer: str) -> list[tuple[list[str], str]]:
    """Split ``answer`` at heading lines into ``(heading path, body)`` pairs.

    The heading line stays at the start of the body it heads; text before the first heading
    has the empty path. Bodies concatenated give back ``answer`` exactly (leading blank text
    joins the first section), and no body is empty. Headings recognised, each on its own line
    (outside fenced code): markdown ``#``..``######``; ``第一章/第一节/第一条``; ``一、``;
    ``（一）``/``(一)``; ``1.``/``1、``/``1.1``; English ``Label:`` lines. Numbered and label
    headings must be short (≤ 40 characters) and not end like a sentence (``。；.`` etc.).
    """
    sections: list[tuple[list[str], str]] = []
    stack: list[tuple[int, str]] = []
    path: list[str] = []
    body: list[str] = []
    in_fence = False
    for line in answer.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        head = None if in_fence else _heading(line)
        if head is not None:
            if any(not b.isspace() for b in body):
                sections.append((path, "".join(body)))
                body = []
            rank, text = head
            while stack and stack[-1][0] >= rank:
                stack.pop()
            stack.append((rank, text))
            path = [t for _, t in stack]
        body.append(line)
    if body:
        if sections and all(b.isspace() for b in body):
            sections[-1] = (sections[-1][0], sections[-1][1] + "".join(body))
        else:
            sections.append((path, "".join(body)))
    return sections


# Each pattern matches a separator; a piece ends after it. Coarsest first.
_BOUNDARIES = (
    re.compile(r"\n[^\S\n]*\n\s*"),  # blank line(s): paragraphs
    re.compile(r"\n\s*"),  # line breaks: list items, table rows
    # sentence ends; "." only before a space or the end, so "3.5" and "www.x.com" stay whole
    re.compile(r"(?:[。！？!?；;]+|\.(?=\s|$))[”’」』）)\]\"']*\s*"),
    re.compile(r"\s+"),  # spaces between words
)


def _cut_after(text: str, sep: re.Pattern[str]) -> list[str]:
    pieces, start = [], 0
    for m in sep.finditer(text):
        end = m.end()
        if start < end < len(text):
            pieces.append(text[start:end])
            start = end
    pieces.append(text[start:])
    return pieces


def _token_starts(text: str) -> list[int]:
    return [m.start() for m in _TOKEN.finditer(text)]


def _hard_cut(text: str, budget: int) -> list[str]:
    """``text`` cut into the fewest near-equal pieces within ``budget`` tokens."""
    # Cuts fall on estimator token boundaries, so each piece counts exactly its share.
    starts = _token_starts(text)
    pieces = -(-len(starts) // budget)
    size = -(-len(starts) // pieces)
    cuts = [0, *starts[size::size], len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def _head(text: str, tokens: int) -> str:
    """The start of ``text`` holding ``tokens`` tokens."""
    starts = _token_starts(text)
    return text[: starts[tokens]] if tokens < len(starts) else text


#: ``(text, tokens, level)``: a piece of a section and the boundary level to cut it further at.
_Unit = tuple[str, int, int]


def _units(text: str, budget: int, level: int = 0) -> list[_Unit]:
    """The coarsest pieces of ``text`` within ``budget``, cut at ``_BOUNDARIES[level:]``."""
    n = count_tokens(text)
    if n <= budget:
        return [(text, n, level)]
    finer = _finer(text, budget, level)
    if finer is None:
        end = len(_BOUNDARIES)
        return [(piece, count_tokens(piece), end) for piece in _hard_cut(text, budget)]
    return finer


def _finer(text: str, budget: int, level: int) -> list[_Unit] | None:
    """``text`` cut at the first of ``_BOUNDARIES[level:]`` it has; None if it has none."""
    for lvl in range(level, len(_BOUNDARIES)):
        pieces = _cut_after(text, _BOUNDARIES[lvl])
        if len(pieces) > 1:
            return [unit for piece in pieces for unit in _units(piece, budget, lvl + 1)]
    return None


def _pack(units: list[_Unit], cap: int) -> list[str]:
    """Greedy packing of ``units`` into pieces of at most ``cap`` tokens."""
    # Cuts fall after whitespace or punctuation, or on hard-cut token boundaries, where the
    # token estimate is additive: a piece's count is the sum of its units' counts.
    pieces: list[str] = []
    current, used = "", 0
    for unit, n, _ in units:
        if current and used + n > cap:
            pieces.append(current)
            current, used = "", 0
        current += unit
        used += n
    pieces.append(current)
    return pieces


#: Above this many units a section is packed greedily (the balanced packing is O(units x
#: units per piece)); only pathological sections, like thousands of one-word lines, get there.
_BALANCE_MAX_UNITS = 2000


def _pack_balanced(units: list[_Unit], cap: int) -> list[str]:
    """The packing with the fewest pieces and, among those, the most even sizes.

    Greedy packing fills each piece and leaves a crumb of one sentence at the end; this one
    minimises (pieces, sum of squared piece sizes) by dynamic programming over cut points.
    """
    sizes = [n for _, n, _ in units]
    worst = (len(units) + 1, 0)
    best: list[tuple[int, int]] = [(0, 0)] + [worst] * len(units)
    cut_at = [0] * (len(units) + 1)
    for j in range(1, len(units) + 1):
        size = 0
        for i in range(j - 1, -1, -1):
            size += sizes[i]
            if size > cap:
                break
            pieces, squares = best[i]
            candidate = (pieces + 1, squares + size * size)
            if candidate < best[j]:
                best[j], cut_at[j] = candidate, i
    cuts = [len(units)]
    while cuts[-1]:
        cuts.append(cut_at[cuts[-1]])
    cuts.reverse()
    return ["".join(u for u, _, _ in units[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]


def _split_to_budget(text: str, budget: int, small: int) -> list[str]:
    """Pieces of ``text`` within ``budget`` tokens, concatenating to ``text`` exactly.

    Cuts at blank lines first, then line breaks, sentence ends, spaces, and anywhere as a
    last resort (into near-equal pieces). A unit under ``small`` tokens (a heading line)
    that does not fit with the next unit gets that unit cut finer, so it is not left alone.
    The units are packed into the fewest pieces, as even as can be, so a section does not
    end in a crumb of one sentence.
    """
    units: list[_Unit] = []
    for unit in _units(text, budget):
        if units and units[-1][1] < small and units[-1][1] + unit[1] > budget:
            units.extend(_finer(unit[0], budget, unit[2]) or [unit])
        else:
            units.append(unit)
    if len(units) == 1:
        return [text]
    if len(units) > _BALANCE_MAX_UNITS:
        return _pack(units, budget)
    return _pack_balanced(units, budget)


def _prefix(title: str, path: Sequence[str], max_tokens: int) -> str:
    label = _SEP.join([title, *path]) if path else title
    prefix = f"【{label}】"
    # A 500-character title must not eat the budget: keep at most half of it for the prefix.
    limit = max_tokens // 2
    if count_tokens(prefix) > limit:
        prefix = f"【{_head(label, limit - 3)}…】"
    return prefix


def _common_path(a: Sequence[str], b: Sequence[str]) -> list[str]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


def _merge_tiny(
    sections: list[tuple[list[str], str]], title: str, settings: ChunkSettings
) -> list[tuple[list[str], str]]:
    """Join a section under ``min_tokens`` with the next ones under the same parent.

    The joined section takes the common path (the first's path when the next is its child,
    the parent for siblings), and is only formed when it still fits the budget.
    """
    out: list[tuple[list[str], str]] = []
    i = 0
    while i < len(sections):
        path, body = sections[i]
        parent = path[:-1]
        while i + 1 < len(sections) and count_tokens(body) < settings.min_tokens:
            next_path, next_body = sections[i + 1]
            if next_path[: len(parent)] != parent:
                break
            joined_path = _common_path(path, next_path)
            joined = body + next_body
            if (
                count_tokens(_prefix(title, joined_path, settings.max_tokens))
                + count_tokens(joined.strip())
                > settings.max_tokens
            ):
                break
            path, body = joined_path, joined
            i += 1
        out.append((path, body))
        i += 1
    return out


def _section_texts(title: str, answer: str, settings: ChunkSettings) -> list[tuple[str, str, str]]:
    """``(heading_path, text, display)`` for each section passage of a long answer."""
    out = []
    for path, body in _merge_tiny(split_sections(answer), title, settings):
        prefix = _prefix(title, path, settings.max_tokens)
        budget = settings.max_tokens - count_tokens(prefix)
        heading_path = _SEP.join(path)
        for piece in _split_to_budget(body, budget, settings.min_tokens):
            display = piece.strip()
            if display:
                out.append((heading_path, prefix + display, display))
    return out


#: ``(kind, heading_path, text, display)``; display None means "taken from the answer": the
#: whole answer for the answer passage, its first ``QUESTION_DISPLAY_CHARS`` for a question.
_Part = tuple[str, str, str, str | None]


def _entry_parts(
    title: str, answer: str, questions: Sequence[str] | None, settings: ChunkSettings
) -> list[_Part]:
    parts: list[_Part]
    # count_tokens(x) <= len(x): short answers skip the count.
    if len(answer) > settings.long_answer_tokens and (
        count_tokens(answer) > settings.long_answer_tokens
    ):
        parts = [("section", *t) for t in _section_texts(title, answer, settings)]
    else:
        # An export whose answer only repeats the title (a stand-in) must not double its terms.
        text = title if answer.strip() == title.strip() else f"{title}\n{answer}"
        parts = [("answer", "", text, None)]
    seen: set[str] = set()
    for q in questions or ():
        # Blank or repeated questions would only add duplicate vectors.
        if q and not q.isspace() and q not in seen:
            seen.add(q)
            parts.append(("question", "", q, None))
    if title.strip() and parts[0][2] != title and title not in seen:
        parts.append(("title", "", title, None))
    return parts


def _full_display(kind: str, first_kind: str) -> bool:
    """Whether a passage shows the whole answer (an FAQ's answer and title passages) rather
    than its first ``QUESTION_DISPLAY_CHARS`` (questions, and the title of a long document)."""
    return kind == "answer" or (kind == "title" and first_kind == "answer")


def chunk_entry(entry: dict[str, Any], settings: ChunkSettings) -> list[dict[str, Any]]:
    """Passages (``PASSAGE``-shaped dicts, in ordinal order) for one clean entry.

    ``entry`` needs ``entry_id``, ``title``, ``answer`` and ``similar_questions`` (a
    ``CLEAN_ENTRY`` row). Pure and deterministic. Raises ``ContractError`` without an id.
    """
    entry_id = entry.get("entry_id")
    if not entry_id:
        raise ContractError(f"entry without entry_id: {entry.get('title')!r}")
    title = entry.get("title") or ""
    answer = entry.get("answer") or ""
    passages = []
    parts = _entry_parts(title, answer, entry.get("similar_questions"), settings)
    for ordinal, (kind, heading_path, text, display) in enumerate(parts):
        if display is None:
            full = _full_display(kind, parts[0][0])
            display = answer if full else answer[:QUESTION_DISPLAY_CHARS]
        passage_id = f"{entry_id}:{ordinal}"
        passages.append(
            {
                "passage_id": passage_id,
                "faiss_id": passage_faiss_id(passage_id),
                "entry_id": entry_id,
                "ordinal": ordinal,
                "kind": kind,
                "title": title,
                "heading_path": heading_path,
                "text": text,
                "display": display,
                "text_hash": hashlib.sha256(text.encode()).hexdigest(),
            }
        )
    return passages


#: Entries chunked at a time by ``chunk_entries`` (and displays hashed at a time).
SLICE_ENTRIES = 50_000


def _chunk_slice(
    entries: pa.Table, settings: ChunkSettings, stats: dict[str, int], kinds: dict[str, int]
) -> tuple[pa.Table, pa.Table]:
    """``PASSAGE`` rows of a slice of entries, and their fingerprint keys (``passage_slices``);
    ``stats`` (long entries, max tokens) and ``kinds`` (passages per kind) are added to."""
    ids, titles, answers, questions = (
        entries.column(c).to_pylist() for c in ("entry_id", "title", "answer", "similar_questions")
    )
    n = len(ids)
    passage_ids: list[str] = []
    faiss_ids: list[int] = []
    entry_ids: list[str] = []
    ordinals: list[int] = []
    kind_col: list[str] = []
    passage_titles: list[str] = []
    heading_paths: list[str] = []
    texts: list[bytes] = []
    text_hashes: list[str] = []
    # Display strings are mostly the answer (or its head), already UTF-8 in the input table:
    # take them from there rather than encode every answer again (the costliest step at 100k).
    display_index: list[int] = []
    own_displays: list[str] = []
    max_tokens = stats["max_tokens"]
    for i, (entry_id, title, answer, qs) in enumerate(
        zip(ids, titles, answers, questions, strict=True)
    ):
        title = title or ""
        parts = _entry_parts(title, answer or "", qs, settings)
        stats["long"] += parts[0][0] == "section"
        for ordinal, (kind, heading_path, text, display) in enumerate(parts):
            passage_id = f"{entry_id}:{ordinal}"
            encoded = text.encode()
            passage_ids.append(passage_id)
            faiss_ids.append(passage_faiss_id(passage_id))
            entry_ids.append(entry_id)
            ordinals.append(ordinal)
            kind_col.append(kind)
            passage_titles.append(title)
            heading_paths.append(heading_path)
            texts.append(encoded)
            text_hashes.append(hashlib.sha256(encoded).hexdigest())
            # count_tokens(t) <= len(t), so most texts need no count for the maximum.
            if len(text) > max_tokens:
                max_tokens = max(max_tokens, count_tokens(text))
            if display is None:
                display_index.append(i if _full_display(kind, parts[0][0]) else n + i)
            else:
                display_index.append(2 * n + len(own_displays))
                own_displays.append(display)
    stats["max_tokens"] = max_tokens
    for kind in kind_col:
        kinds[kind] = kinds.get(kind, 0) + 1

    # large_string: a slice's answers may pass the 2 GiB a string array holds.
    answer_col = pc.fill_null(entries.column("answer").cast(pa.large_string()).combine_chunks(), "")
    display_pool = pa.concat_arrays(
        [
            answer_col,
            pc.utf8_slice_codeunits(answer_col, 0, QUESTION_DISPLAY_CHARS),
            pa.array(own_displays, type=pa.large_string()),
        ]
    )
    table = pa.Table.from_arrays(
        [
            pa.array(passage_ids, type=pa.string()),
            pa.array(faiss_ids, type=pa.int64()),
            pa.array(entry_ids, type=pa.string()),
            pa.array(ordinals, type=pa.int32()),
            pa.array(kind_col, type=pa.string()),
            pa.array(passage_titles, type=pa.string()),
            pa.array(heading_paths, type=pa.string()),
            pa.array(texts, type=pa.binary()).cast(pa.string()),
            take_chunked(display_pool, display_index, pa.string()),
            pa.array(text_hashes, type=pa.string()),
        ],
        schema=PASSAGE,
    )
    return table, fingerprint_keys(table, display_index)


def fingerprint_keys(passages: pa.Table, display_of: list[int] | None = None) -> pa.Table:
    """What the passages fingerprint (``kbflow.chunk.stage.fingerprint``) reads of some passages:
    ``id``, ``th`` (text hash) and ``d`` (the display's sha256); the displays are not kept.
    ``display_of`` (one key per passage, equal for equal displays, as ``_chunk_slice`` knows
    them) hashes each distinct display once: an entry's question passages share one head."""
    digest_of: dict[Any, str] = {}
    digests: list[str] = []
    for lo in range(0, passages.num_rows, SLICE_ENTRIES):
        displays = passages.column("display").slice(lo, SLICE_ENTRIES).to_pylist()
        same = display_of[lo : lo + len(displays)] if display_of is not None else displays
        for key, display in zip(same, displays, strict=True):
            digest = digest_of.get(key)
            if digest is None:
                digest = hashlib.sha256((display or "").encode()).hexdigest()
                if display_of is not None:
                    digest_of[key] = digest
            digests.append(digest)
    return pa.table(
        {
            "id": passages.column("passage_id"),
            "th": passages.column("text_hash"),
            "d": pa.array(digests, pa.string()),
        }
    )


def passage_slices(
    entries: pa.Table, settings: ChunkSettings, kinds: dict[str, int] | None = None
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """``chunk_entries``' passages as ``PASSAGE`` tables of ``SLICE_ENTRIES`` entries each, in
    order, each with its ``fingerprint_keys``. A million entries give four million passages, and
    holding them all as Python objects took 11 GB; a caller that writes each slice as it comes
    holds one. ``kinds`` (passages per kind) is added to. Checks the entries first
    (``ContractError``, see ``chunk_entries``) and logs one summary line after the last slice."""
    check_entry_ids(entries)
    stats = {"long": 0, "max_tokens": 0}
    counts: dict[str, int] = {} if kinds is None else kinds
    passages = 0
    for lo in range(0, entries.num_rows, SLICE_ENTRIES):
        piece = _chunk_slice(entries.slice(lo, SLICE_ENTRIES), settings, stats, counts)
        passages += piece[0].num_rows
        yield piece
    logger.info(
        "chunk: %d entries (%d long) -> %d passages (answer=%d section=%d question=%d "
        "title=%d), max tokens %d (budget %d)",
        entries.num_rows,
        stats["long"],
        passages,
        counts.get("answer", 0),
        counts.get("section", 0),
        counts.get("question", 0),
        counts.get("title", 0),
        stats["max_tokens"],
        settings.max_tokens,
    )


CHUNK_COLUMNS = ("entry_id", "title", "answer", "similar_questions")


def check_entry_ids(entries: pa.Table) -> None:
    """Raise ``ContractError`` when a needed column is missing, or an entry id is missing or
    repeated (passage ids would collide)."""
    missing = [c for c in CHUNK_COLUMNS if c not in entries.column_names]
    if missing:
        raise ContractError(f"chunk input lacks columns {missing}")
    ids = entries.column("entry_id")
    if ids.null_count or pc.any(pc.equal(ids, "")).as_py():
        raise ContractError("chunk input has an entry without entry_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        raise ContractError("chunk input repeats an entry_id; passage ids would collide")


def chunk_entries(entries: pa.Table, settings: ChunkSettings) -> pa.Table:
    """Chunk a ``CLEAN_ENTRY`` table into a ``PASSAGE`` table (schema exact).

    Gives the same passages as ``chunk_entry`` on each row, in entry order, each entry's
    passages in ordinal order. Pure and deterministic, so a rerun gives the same ids and
    hashes. Raises ``ContractError`` when a needed column is missing or an entry id is
    missing or repeated (passage ids would collide).
    """
    pieces = [table for table, _ in passage_slices(entries, settings)]
    return pa.concat_tables(pieces) if pieces else PASSAGE.empty_table()
