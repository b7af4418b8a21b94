"""Properties of the nightly stages over generated inputs (hypothesis).

Complements the per-module properties (``test_normalize``: ``normalize_text`` is idempotent on
text and HTML fragments; ``test_chunk``: one long answer's sections cover it) with the
stage-level ones the reliability guarantees rest on:

- normalisation is idempotent through the clean stage, also for text a JSON export can carry
  (lone surrogates, controls, markup), and validate and clean agree on content hashes;
- chunking a table of entries never loses or reorders text: every passage is its prefix plus
  a piece of the answer, the pieces are the answer in order, and the questions follow;
- dedup is symmetric (which of two rows comes first changes nothing) and every merged row
  points at an indexed, canonical entry;
- row accounting sums for any export: every record gets exactly one outcome.
"""

from __future__ import annotations

import json
import random
import re
import string
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbflow.account import account_stage
from kbflow.chunk.passages import chunk_entries
from kbflow.clean.dedup import clean_rows
from kbflow.clean.normalize import content_hash, hash_normalized, normalize_text
from kbflow.clean.stage import clean_stage
from kbflow.contracts import (
    CLEAN_ENTRY,
    OUTCOMES,
    RAW_ROW,
    ROW_OUTCOME,
    read_table,
    table_from_rows,
)
from kbflow.errors import ValidationFailed
from kbflow.pull.stage import pull_stage
from kbflow.settings import ChunkSettings, CleanSettings, Settings, ValidateSettings
from kbflow.store.home import DataHome
from kbflow.validate.stage import validate_stage

RUN_DATE = date(2026, 11, 24)
CLEAN = CleanSettings()  # built once: deriving the LSH bands costs ~50 ms
#: Every row reaches the accounting, however many are bad (the batch limit is tested elsewhere).
LENIENT = Settings(validate=ValidateSettings(max_bad_row_fraction=1.0))
FAST = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- normalisation ------------------------------------------------------------------------------

#: Any code point, lone surrogates included (``json.loads`` produces them from ``\\ud800``).
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=[])
FRAGMENTS = st.sampled_from(
    ["<p>", "</p>", "<br>", "<script>x()</script>", "&amp;lt;b&amp;gt;", "＜ｂ＞", "&#xD800;",
     "\ud800", "\udfff", "\u202e", "\x00", "\r\n", "\u3000", "e\u0301", "ﬁ", "①", "\n\n\n"]
)  # fmt: skip
TEXTS = st.lists(st.one_of(st.text(ANY_CHAR, max_size=6), FRAGMENTS), max_size=10).map("".join)
_SURROGATE = re.compile("[\ud800-\udfff]")


def as_read(text: str) -> str:
    """What the reader hands on: lone surrogates replaced (``kbflow.pull``)."""
    return _SURROGATE.sub("\ufffd", text)


def raw_row(row_id: int, entry_id: str, title: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {
        "row_id": row_id,
        "source_file": "kb.jsonl",
        "source_line": row_id + 1,
        "id": entry_id,
        "title": title,
        "answer": answer,
        "similar_questions": extra.pop("similar_questions", []),
        "updated_at": extra.pop("updated_at", "2026-01-01"),
        **extra,
    }


@FAST
@given(title=TEXTS, answer=TEXTS, questions=st.lists(TEXTS, max_size=3))
def test_clean_is_a_fixed_point_of_its_own_output(
    title: str, answer: str, questions: list[str]
) -> None:
    once = normalize_text(answer)
    assert normalize_text(once) == once
    once.encode("utf-8")  # normalisation drops lone surrogates
    title, answer, questions = as_read(title), as_read(answer), [as_read(q) for q in questions]
    row = raw_row(0, "e1", title + "x", answer + "y", similar_questions=questions)
    first = clean_rows(table_from_rows([row], RAW_ROW), RUN_DATE, CLEAN)
    (entry,) = first.entries.to_pylist()
    for text in (entry["title"], entry["answer"], *entry["similar_questions"]):
        text.encode("utf-8")  # no lone surrogate survives normalisation
    # validate hashes raw text, clean hashes normalised text: the same content hash
    assert entry["content_hash"] == content_hash(row["title"], row["answer"])
    again = raw_row(
        0,
        "e1",
        entry["title"],
        entry["answer"],
        similar_questions=entry["similar_questions"],
    )
    (second,) = clean_rows(table_from_rows([again], RAW_ROW), RUN_DATE, CLEAN).entries.to_pylist()
    assert (second["title"], second["answer"], second["similar_questions"]) == (
        entry["title"],
        entry["answer"],
        entry["similar_questions"],
    )
    assert second["content_hash"] == hash_normalized(entry["title"], entry["answer"])


# --- chunking -----------------------------------------------------------------------------------

WORDS = st.sampled_from(
    ["退货", "运费", "refund", "internationalization", "3.5", "。", "，", "！", "? ", ". ",
     " ", "\n", "\n\n", "# 总则\n", "## 运费\n", "一、退货\n", "1. Returns\n", "Fees:\n",
     "【", "】", " › ", "x" * 40, "长" * 50, "www.example.com"]
)  # fmt: skip
ANSWERS = st.lists(WORDS, min_size=1, max_size=120).map("".join).filter(lambda s: s.strip())
TITLES = st.one_of(
    st.sampled_from(["退货政策", "Returns", "【标题】", "a › b", "长" * 200]), st.text(max_size=20)
)


@st.composite
def entry_tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 5))
    return [
        {
            "entry_id": f"e{i}",
            "title": draw(TITLES),
            "answer": draw(ANSWERS),
            "similar_questions": draw(st.lists(st.sampled_from(["", " ", "q1", "q2", "Q1"]))),
            "tags": [],
            "merged_ids": [],
            "row_id": i,
            "content_hash": f"h{i}",
            "status": "published",
        }
        for i in range(n)
    ]


def squash(text: str) -> str:
    return "".join(text.split())


@FAST
@given(entries=entry_tables(), max_tokens=st.integers(32, 160), min_tokens=st.integers(0, 60))
def test_chunking_never_loses_or_reorders_text(
    entries: list[dict[str, Any]], max_tokens: int, min_tokens: int
) -> None:
    cfg = ChunkSettings(max_tokens=max_tokens, min_tokens=min_tokens, long_answer_tokens=32)
    passages = chunk_entries(table_from_rows(entries, CLEAN_ENTRY), cfg).to_pylist()
    assert len({p["faiss_id"] for p in passages}) == len(passages)
    for e in entries:
        mine = [p for p in passages if p["entry_id"] == e["entry_id"]]
        assert [p["passage_id"] for p in mine] == [f"{e['entry_id']}:{i}" for i in range(len(mine))]
        titles = [p for p in mine if p["kind"] == "title"]
        body = [p for p in mine if p["kind"] not in ("question", "title")]
        questions = [p["text"] for p in mine if p["kind"] == "question"]
        # questions come after the body, blank and repeated ones dropped, order kept; then
        # the title alone, unless the answer passage or a similar question already is it
        assert mine[len(body) : len(mine) - len(titles)] == [
            p for p in mine if p["kind"] == "question"
        ]
        assert questions == list(dict.fromkeys(q for q in e["similar_questions"] if q.strip()))
        title, answer = e["title"], e["answer"]
        needs_title = bool(title.strip()) and body[0]["text"] != title and title not in questions
        assert [p["text"] for p in titles] == ([title] if needs_title else [])
        assert mine[-len(titles) :] == titles if titles else True
        if body[0]["kind"] == "answer":
            assert len(body) == 1
            assert body[0]["text"] in (f"{title}\n{answer}", title)
            assert body[0]["display"] == answer
            continue
        # sections: each text is "【title › path】" + its display, and the displays, in order,
        # are the answer cut only at whitespace that was dropped
        pos = 0
        for p in body:
            display = p["display"]
            assert display and p["text"].endswith(display)
            prefix = p["text"][: -len(display)]
            assert prefix.startswith("【") and prefix.endswith("】"), prefix
            found = answer.find(display, pos)
            assert found >= 0 and answer[pos:found].strip() == "", (display[:30], pos)
            pos = found + len(display)
        assert answer[pos:].strip() == ""
        assert squash("".join(p["display"] for p in body)) == squash(answer)


# --- dedup --------------------------------------------------------------------------------------

BASES = [
    "订单发货后可以在订单详情页查看物流信息，快递公司会在二十四小时内更新第一条轨迹",
    "Refunds reach the original card within five working days after the return arrives",
    "会员积分在每年十二月三十一日清零，请在清零之前使用积分兑换优惠券或者礼品",
    "Invoices can be downloaded from the order page once the order has been delivered",
]


@st.composite
def family_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows drawn from a few bases with small edits: exact copies, near copies, strangers."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    alphabet = string.ascii_letters + "的了是在我有他这中大来上"
    rows = []
    for i in range(draw(st.integers(2, 9))):
        text = list(rng.choice(BASES))
        for _ in range(rng.choice([0, 0, 1, 2, 4, 12, 30])):
            text[rng.randrange(len(text))] = rng.choice(alphabet)
        rows.append(
            raw_row(
                i,
                f"id{i}",
                "标题" + "".join(text[:6]),
                "".join(text),
                updated_at=rng.choice(["2025-01-01", "2026-01-01", "2026-06-01", None]),
                status=rng.choice([None, None, None, "draft"]),
            )
        )
    return rows


def merge_view(rows: list[dict[str, Any]]) -> tuple[set[tuple[str, str]], dict[str, str]]:
    res = clean_rows(table_from_rows(rows, RAW_ROW), RUN_DATE, CLEAN)
    indexed = {e["entry_id"] for e in res.entries.to_pylist()}
    merges = {(m["canonical_id"], m["merged_id"]) for m in res.merges.to_pylist()}
    for canonical, merged in merges:
        assert canonical in indexed and merged not in indexed
    outcomes = {o["entry_id"]: o for o in res.outcomes.to_pylist()}
    for o in outcomes.values():
        if o["outcome"] == "duplicate":
            assert o["detail"] in indexed, o  # points at the canonical it was merged into
    for e in res.entries.to_pylist():
        assert sorted(e["merged_ids"]) == sorted(m for c, m in merges if c == e["entry_id"])
    assert {m for _, m in merges} == {i for i, o in outcomes.items() if o["outcome"] == "duplicate"}
    return merges, {i: o["outcome"] for i, o in outcomes.items()}


@FAST
@given(rows=family_rows(), seed=st.integers(0, 1000))
def test_dedup_is_symmetric_and_merges_point_at_indexed_entries(
    rows: list[dict[str, Any]], seed: int
) -> None:
    merges, outcomes = merge_view(rows)
    shuffled = [dict(r) for r in rows]
    random.Random(seed).shuffle(shuffled)
    for new_id, r in enumerate(shuffled):
        r["row_id"] = new_id  # row order and row ids change; ids and content do not
    assert merge_view(shuffled) == (merges, outcomes)
    # pairwise: a merges with b exactly when b merges with a, into the same canonical
    a, b = rows[0], rows[1]
    ab, _ = merge_view([a, {**b, "row_id": 1}])
    ba, _ = merge_view([{**b, "row_id": 0}, {**a, "row_id": 1}])
    assert ab == ba


# --- row accounting -----------------------------------------------------------------------------

GOOD = {
    "id": "g",
    "title": "How do I reset my password?",
    "answer": "Open Settings, then Security.",
}
LINES = st.sampled_from(
    [
        "good", "good", "good", "blank", "empty_object", "malformed", "not_object", "no_id",
        "path_id", "empty_answer", "draft", "archived", "expired", "future", "dup_same",
        "dup_different", "near_dup", "html_only", "bad_date", "bad_status",
    ]
)  # fmt: skip


def export_line(kind: str, i: int) -> str:
    base = {**GOOD, "id": f"g{i}", "title": f"{GOOD['title']} {i}", "answer": f"Step {i}: ok."}
    match kind:
        case "good":
            obj: Any = base
        case "blank":
            return "   "
        case "empty_object":
            return "{}"
        case "malformed":
            return '{"id": "broken'
        case "not_object":
            obj = [1, 2]
        case "no_id":
            obj = {**base, "id": None}
        case "path_id":
            obj = {**base, "id": f"../x{i}"}
        case "empty_answer":
            obj = {**base, "answer": "  "}
        case "draft" | "archived":
            obj = {**base, "status": kind}
        case "expired":
            obj = {**base, "expires_at": "2020-01-01"}
        case "future":
            obj = {**base, "effective_from": "2030-01-01"}
        case "dup_same":
            obj = {**GOOD, "id": "g0", "title": f"{GOOD['title']} 0", "answer": "Step 0: ok."}
        case "dup_different":
            obj = {**GOOD, "id": "g0", "answer": f"Another answer {i}."}
        case "near_dup":
            obj = {**GOOD, "id": f"n{i}", "answer": GOOD["answer"] * 3 + f" {i}"}
        case "html_only":
            obj = {**base, "answer": "<script>x()</script>"}
        case "bad_date":
            obj = {**base, "updated_at": "yesterday-ish"}
        case _:  # bad_status
            obj = {**base, "status": "deleted"}
    return json.dumps(obj, ensure_ascii=False)


@settings(
    max_examples=20, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(kinds=st.lists(LINES, min_size=1, max_size=25))
def test_row_accounting_always_sums(kinds: list[str]) -> None:
    lines = [export_line(k, i) for i, k in enumerate(kinds)]
    records = sum(1 for k in kinds if k not in ("blank", "empty_object"))
    cfg = LENIENT
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "export"
        src.mkdir()
        (src / "kb.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        home = DataHome.at(Path(tmp) / "home")
        run_id = "20261124T020000-prop00"
        pulled = pull_stage(home, run_id, str(src))
        try:
            validate_stage(home, run_id, pulled, cfg)
        except ValidationFailed as exc:
            # Batch-level only (no rows at all, or no row with an id/title/answer): the run
            # stops before anything is published or accounted.
            assert {f["check"] for f in exc.failures} <= {"non_empty", "required_column"}, exc
            assert records == 0 or exc.failures[0]["check"] == "required_column"
            return
        clean_stage(home, run_id, RUN_DATE, cfg)
        counts = account_stage(home, run_id, pulled)
        outcomes = read_table(home.stage_dir(run_id, "account") / "outcomes.parquet", ROW_OUTCOME)
    assert counts["input"] == records
    assert sum(counts[o] for o in OUTCOMES) == records
    assert sorted(outcomes.column("row_id").to_pylist()) == list(range(records))
    assert set(pc.unique(outcomes.column("outcome")).to_pylist()) <= set(OUTCOMES)
