"""Chunk stage: FAQ and long-document passages, ids, budgets, coverage (kbflow.chunk)."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbflow.chunk.passages import (
    QUESTION_DISPLAY_CHARS,
    chunk_entries,
    chunk_entry,
    count_tokens,
    passage_faiss_id,
    split_sections,
)
from kbflow.contracts import CLEAN_ENTRY, PASSAGE, table_from_rows
from kbflow.errors import ContractError
from kbflow.settings import ChunkSettings

# --- helpers ------------------------------------------------------------------------------

SENTENCES = [
    "商品签收后七天内可以申请无理由退货。",
    "退货时请保持商品完好，配件和赠品齐全。",
    "非质量问题的退货运费由买家承担！",
    "审核通过后请在三日内寄回商品，并填写物流单号。",
    "退款将在仓库收到商品后原路返回；",
    "如有疑问请联系在线客服或拨打400-800-1234？",
    "定制商品和已拆封的数码产品不支持无理由退货。",
]


def paragraph(seed: int, sentences: int) -> str:
    return "".join(SENTENCES[(seed * 7 + i * 3) % len(SENTENCES)] for i in range(sentences))


def entry(answer: str, questions: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "entry_id": kw.pop("entry_id", "E1"),
        "title": kw.pop("title", "退货政策"),
        "answer": answer,
        "similar_questions": questions or [],
        **kw,
    }


def squash(text: str) -> str:
    return "".join(text.split())


def assert_covers(answer: str, displays: list[str]) -> None:
    """Displays are the answer in order, cut only at whitespace that was dropped."""
    assert squash("".join(displays)) == squash(answer)
    pos = 0
    for d in displays:
        found = answer.find(d, pos)
        assert found >= 0, d[:40]
        assert answer[pos:found].strip() == "", answer[pos:found][:40]
        pos = found + len(d)
    assert answer[pos:].strip() == ""


def sections_of(passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in passages if p["kind"] == "section"]


SOP = "\n\n".join(
    [
        "本规范适用于所有线上渠道的订单售后处理，客服人员须严格遵照执行。",
        "# 退货政策",
        paragraph(1, 5),
        "## 适用范围",
        paragraph(2, 8) + "\n\n" + paragraph(3, 7),
        "## 运费",
        "### 首重",
        paragraph(4, 6),
        "### 续重",
        paragraph(5, 9) + "\n\n" + paragraph(6, 9),
        "# 退款时效",
        paragraph(7, 10) + "\n\n" + paragraph(8, 10) + "\n\n" + paragraph(9, 10),
        "## 特殊情况",
        paragraph(10, 12) + "\n\n" + paragraph(11, 6),
        "# 换货流程",
        paragraph(12, 14) + "\n\n" + paragraph(13, 14),
        "## 换货运费",
        paragraph(14, 16) + "\n\n" + paragraph(15, 12),
    ]
)


# --- tokens -------------------------------------------------------------------------------


def test_count_tokens_counts_cjk_chars_word_pieces_and_punctuation() -> None:
    assert count_tokens("") == 0
    assert count_tokens("  \n\t\u3000") == 0
    assert count_tokens("退货政策") == 4
    assert count_tokens("ok") == 1  # a word is at least one token
    assert count_tokens("refund") == 2  # ceil(6 / 4)
    assert count_tokens("internationalization") == 5
    assert count_tokens("退货，refund!") == 2 + 1 + 2 + 1
    assert count_tokens("APP内申请") == 1 + 3
    assert count_tokens("a_b") == 3  # "_" is punctuation, not part of a word


@settings(database=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_count_tokens_is_additive_across_whitespace_and_bounded_by_length(a: str, b: str) -> None:
    assert count_tokens(a) <= len(a)
    assert count_tokens(f"{a} {b}") == count_tokens(a) + count_tokens(b)
    assert count_tokens(f"{a}。{b}") == count_tokens(a) + 1 + count_tokens(b)


# --- ids ----------------------------------------------------------------------------------


def test_passage_faiss_id_is_the_documented_blake2b_int63() -> None:
    expected = int.from_bytes(hashlib.blake2b(b"E1:0", digest_size=8).digest(), "big") & (
        (1 << 63) - 1
    )
    assert passage_faiss_id("E1:0") == expected
    ids = [passage_faiss_id(f"E{i}:{j}") for i in range(500) for j in range(4)]
    assert len(set(ids)) == len(ids)
    assert all(0 < x < 1 << 63 for x in ids)


# --- FAQ entries --------------------------------------------------------------------------


def test_faq_entry_gives_answer_then_question_passages() -> None:
    answer = "签收后7天内可在APP“我的订单”中申请退货。"
    qs = ["怎么退货", "退货流程是什么", "可以退货吗"]
    ps = chunk_entry(entry(answer, qs, entry_id="FAQ-9"), ChunkSettings())

    assert [p["kind"] for p in ps] == ["answer", "question", "question", "question", "title"]
    assert [p["ordinal"] for p in ps] == [0, 1, 2, 3, 4]
    assert [p["passage_id"] for p in ps] == [f"FAQ-9:{i}" for i in range(5)]
    assert [p["faiss_id"] for p in ps] == [passage_faiss_id(p["passage_id"]) for p in ps]
    assert len({p["faiss_id"] for p in ps}) == 5
    first = ps[0]
    assert first["text"] == f"退货政策\n{answer}"
    assert first["display"] == answer
    assert first["heading_path"] == ""
    assert [p["text"] for p in ps[1:4]] == qs
    # the title alone, last (ids of the other passages do not move), showing the whole answer
    assert ps[4]["text"] == "退货政策" and ps[4]["display"] == answer
    assert all(p["display"] == answer for p in ps[1:])
    assert all(p["entry_id"] == "FAQ-9" and p["title"] == "退货政策" for p in ps)
    assert all(p["text_hash"] == hashlib.sha256(p["text"].encode()).hexdigest() for p in ps)
    assert set(ps[0]) == set(PASSAGE.names)


def test_faq_ids_are_stable_across_runs_and_differ_between_entries() -> None:
    e = entry("请在订单页申请退货。", ["怎么退货"])
    again = chunk_entry(dict(e), ChunkSettings())
    assert chunk_entry(e, ChunkSettings()) == again
    other = chunk_entry({**e, "entry_id": "E2"}, ChunkSettings())
    assert {p["faiss_id"] for p in again}.isdisjoint({p["faiss_id"] for p in other})


def test_question_passages_show_the_answer_head_and_skip_blank_or_repeated_questions() -> None:
    answer = "退" * 250 + "款" * 250  # 500 tokens: still an FAQ with a 512-token threshold
    ps = chunk_entry(
        entry(answer, ["怎么退款", " ", "", "怎么退款", "退款多久到账"]),
        ChunkSettings(max_tokens=512, long_answer_tokens=512),
    )
    assert [p["kind"] for p in ps] == ["answer", "question", "question", "title"]
    assert [p["text"] for p in ps[1:3]] == ["怎么退款", "退款多久到账"]
    assert ps[1]["display"] == answer[:QUESTION_DISPLAY_CHARS]
    assert ps[0]["display"] == answer


# --- long documents -----------------------------------------------------------------------


def test_chinese_sop_with_markdown_headings_splits_into_prefixed_sections() -> None:
    assert len(SOP) >= 3000
    cfg = ChunkSettings()
    ps = chunk_entry(entry(SOP, ["怎么退货"], title="售后SOP"), cfg)
    secs = sections_of(ps)

    assert len(secs) >= 6
    assert [p["ordinal"] for p in ps] == list(range(len(ps)))
    assert ps[-2]["kind"] == "question" and ps[-2]["ordinal"] == len(secs)
    # a document's title passage shows the head of the document
    assert ps[-1]["kind"] == "title" and ps[-1]["text"] == "售后SOP"
    assert ps[-1]["display"] == SOP[:QUESTION_DISPLAY_CHARS]
    for p in secs:
        path = p["heading_path"]
        prefix = f"【售后SOP › {path}】" if path else "【售后SOP】"
        assert p["text"] == prefix + p["display"]
        assert count_tokens(p["text"]) <= cfg.max_tokens
    paths = {p["heading_path"] for p in secs}
    assert {
        "退货政策 › 适用范围",
        "退货政策 › 运费 › 续重",
        "退款时效",
        "退款时效 › 特殊情况",
    } <= paths
    # A heading line opens the display of the section it heads.
    heading = next(p for p in secs if p["heading_path"] == "退款时效")
    assert heading["display"].startswith("# 退款时效")
    assert_covers(SOP, [p["display"] for p in secs])


def test_heading_only_section_joins_its_first_child() -> None:
    cfg = ChunkSettings(max_tokens=160, min_tokens=30, long_answer_tokens=200)
    secs = sections_of(chunk_entry(entry(SOP), cfg))
    # "## 运费" has no text of its own: it is joined with "### 首重" under the common path.
    fee = [p for p in secs if p["display"].startswith("## 运费")]
    assert len(fee) == 1
    assert fee[0]["heading_path"] == "退货政策 › 运费"
    assert "### 首重" in fee[0]["display"]


def test_tiny_sibling_sections_merge_under_their_parent() -> None:
    answer = (
        "# 联系方式\n"
        "## 电话\n021-5555-0101\n"
        "## 邮箱\nhelp@example.com\n"
        "## 在线客服\nAPP首页右下角\n"
        "# 退货政策\n" + paragraph(1, 20)
    )
    cfg = ChunkSettings(max_tokens=200, min_tokens=40, long_answer_tokens=100)
    secs = sections_of(chunk_entry(entry(answer), cfg))
    contact = [p for p in secs if "021-5555-0101" in p["display"]]
    assert len(contact) == 1
    assert contact[0]["heading_path"] == "联系方式"
    assert "## 在线客服" in contact[0]["display"]
    assert "# 退货政策" not in contact[0]["display"]  # a different parent is not joined
    assert_covers(answer, [p["display"] for p in secs])


def test_tiny_sections_do_not_merge_across_parents() -> None:
    answer = (
        "# 退货政策\n" + paragraph(1, 8) + "\n"
        "## 电话\n021-5555-0101\n"
        "## 邮箱\nhelp@example.com\n"
        "# 营业时间\n周一至周日\n"
    )
    cfg = ChunkSettings(max_tokens=200, min_tokens=40, long_answer_tokens=100)
    secs = sections_of(chunk_entry(entry(answer), cfg))
    assert [p["heading_path"] for p in secs] == ["退货政策", "退货政策", "营业时间"]
    assert secs[1]["display"] == "## 电话\n021-5555-0101\n## 邮箱\nhelp@example.com"


def test_chinese_numbered_headings_nest() -> None:
    doc = (
        "第一章 总则\n本章说明适用范围。\n"
        "一、退货申请\n"
        "（一）线上申请\n"
        "1. 登录账户\n打开APP。\n"
        "1.1 找到订单\n进入我的订单。\n"
        "2、提交申请\n点击退货按钮。\n"
        "(二)线下申请\n到门店办理。\n"
        "二、审核\n客服一个工作日内审核。\n"
        "第二章 附则\n本规范自发布之日起施行。\n"
    )
    sections = split_sections(doc)
    assert "".join(body for _, body in sections) == doc
    assert [path for path, _ in sections] == [
        ["总则"],
        ["总则", "退货申请"],
        ["总则", "退货申请", "线上申请"],
        ["总则", "退货申请", "线上申请", "登录账户"],
        ["总则", "退货申请", "线上申请", "登录账户", "找到订单"],
        ["总则", "退货申请", "线上申请", "提交申请"],
        ["总则", "退货申请", "线下申请"],
        ["总则", "审核"],
        ["附则"],
    ]
    assert sections[3][1] == "1. 登录账户\n打开APP。\n"


def test_sentence_like_and_long_numbered_lines_are_not_headings() -> None:
    doc = (
        "# 退货\n"
        "一、请在收到货物后7天内申请退货。\n"
        "1. 打开订单页面，点击申请退货，然后按照页面上的提示填写退货原因并上传商品照片作为凭证\n"
        "1.5kg以内免运费\n"
        "2.5公斤以内免运费\n"
        "#标签\n"
        "```\n# 代码注释\n```\n"
    )
    assert [path for path, _ in split_sections(doc)] == [["退货"]]


def test_english_headings() -> None:
    doc = (
        "Our return policy in short.\n"
        "# Returns\n"
        "1. Eligibility\nItems can be returned within 30 days.\n"
        "Shipping fees:\nFree returns over $50.\n"
        "2. Refunds\nRefunds arrive within 5 business days.\n"
        "Please note: this line is text.\n"
        "Open the app. Go to Orders.\n"
    )
    sections = split_sections(doc)
    assert [path for path, _ in sections] == [
        [],
        ["Returns"],
        ["Returns", "Eligibility"],
        ["Returns", "Eligibility", "Shipping fees"],
        ["Returns", "Refunds"],
    ]
    assert sections[-1][1].endswith(
        "Please note: this line is text.\nOpen the app. Go to Orders.\n"
    )

    cfg = ChunkSettings(max_tokens=64, min_tokens=0, long_answer_tokens=32)
    secs = sections_of(chunk_entry(entry(doc, title="Returns FAQ"), cfg))
    fees = next(p for p in secs if "Free returns" in p["display"])
    assert fees["heading_path"] == "Returns › Eligibility › Shipping fees"
    assert (
        fees["text"] == "【Returns FAQ › Returns › Eligibility › Shipping fees】" + fees["display"]
    )


def test_long_section_without_headings_splits_at_paragraphs_then_sentences() -> None:
    # Each paragraph is two lines of about 18 tokens: three lines fit in a passage, two
    # paragraphs do not, so a passage holds one paragraph rather than a line and a half.
    paras = [paragraph(i, 1) + "\n" + paragraph(i + 1, 1) for i in range(6)]
    big = paragraph(9, 30)  # one paragraph far over the budget
    answer = "\n\n".join([*paras, big])
    cfg = ChunkSettings(max_tokens=64, min_tokens=0, long_answer_tokens=64)
    secs = sections_of(chunk_entry(entry(answer, title="退货"), cfg))

    assert len(secs) >= 4
    assert all(p["heading_path"] == "" for p in secs)
    assert all(p["text"] == "【退货】" + p["display"] for p in secs)
    assert all(count_tokens(p["text"]) <= cfg.max_tokens for p in secs)
    displays = [p["display"] for p in secs]
    assert_covers(answer, displays)
    # Small paragraphs are never cut inside; the big one is cut at sentence ends.
    big_start = answer.index(big)
    pos = 0
    for d in displays[:-1]:
        end = answer.index(d, pos) + len(d)
        if end < big_start:
            assert answer[end : end + 2] == "\n\n"
        else:
            assert answer[end - 1] in "。！；？"
        pos = end
    assert any(answer.index(d) > big_start for d in displays)


def test_text_without_any_boundary_is_hard_cut_without_losing_characters() -> None:
    answer = "退货运费说明" * 120  # 720 CJK characters, no punctuation or spaces
    cfg = ChunkSettings(max_tokens=100, min_tokens=0, long_answer_tokens=64)
    secs = sections_of(chunk_entry(entry(answer, title="T"), cfg))
    assert "".join(p["display"] for p in secs) == answer
    assert all(count_tokens(p["text"]) <= 100 for p in secs)
    assert len(secs) == -(-720 // (100 - 3))  # 【T】 takes 3 tokens


def test_pieces_are_even_instead_of_ending_in_a_crumb() -> None:
    sentence = "退货需在七天内申请。"  # 10 tokens
    answer = sentence * 7
    cfg = ChunkSettings(max_tokens=30 + 3 + 2, min_tokens=0, long_answer_tokens=32)
    secs = sections_of(chunk_entry(entry(answer, title="T"), cfg))
    # Greedy packing would give 3 + 3 + 1 sentences.
    assert sorted(p["display"].count("。") for p in secs) == [2, 2, 3]

    hard = "退" * 300
    secs = sections_of(chunk_entry(entry(hard, title="T"), cfg))
    assert [len(p["display"]) for p in secs] == [30] * 10
    assert "".join(p["display"] for p in secs) == hard


def test_heading_line_is_not_left_alone_when_its_paragraph_fills_the_budget() -> None:
    body = paragraph(3, 6)
    answer = "# 退货政策\n" + body + "\n# 运费\n" + paragraph(4, 6)
    budget = count_tokens(body) + 2  # the paragraph fits, "# 退货政策" (5) + paragraph does not
    cfg = ChunkSettings(
        max_tokens=budget + count_tokens("【T › 退货政策】"), min_tokens=20, long_answer_tokens=32
    )
    secs = sections_of(chunk_entry(entry(answer, title="T"), cfg))
    assert all(p["display"] not in ("# 退货政策", "# 运费") for p in secs)
    first = [p for p in secs if p["heading_path"] == "退货政策"]
    assert len(first) == 2 and first[0]["display"].startswith("# 退货政策\n商品")
    assert all(count_tokens(p["text"]) <= cfg.max_tokens for p in secs)
    assert_covers(answer, [p["display"] for p in secs])


def test_huge_title_prefix_is_shortened_to_keep_the_budget() -> None:
    title = "超长标题" * 100
    answer = "\n\n".join(paragraph(i, 6) for i in range(8))
    cfg = ChunkSettings(max_tokens=64, min_tokens=0, long_answer_tokens=64)
    secs = sections_of(chunk_entry(entry(answer, title=title), cfg))
    assert all(count_tokens(p["text"]) <= 64 for p in secs)
    assert all(p["text"].startswith("【超长标题") and "…】" in p["text"] for p in secs)
    assert all(p["title"] == title for p in secs)
    assert_covers(answer, [p["display"] for p in secs])


# --- coverage property --------------------------------------------------------------------

HEADINGS = st.sampled_from(
    ["# 总则", "## 运费", "### 首重", "一、退货", "（一）线上", "(二)线下", "1. 登录", "1.1 订单",
     "2、提交", "第一章 总则", "第二节 细则", "Shipping fees:", "1. Returns", "#### Deep"]
)  # fmt: skip
WORDS = st.sampled_from(
    ["退货", "运费", "refund", "internationalization", "APP", "3.5", "。", "，", "！", "?",
     ". ", "; ", " ", "  ", "\n", "\u3000", "www.example.com", "x" * 30, "长" * 40]
)  # fmt: skip
PARAGRAPHS = st.lists(WORDS, min_size=1, max_size=60).map("".join)
BLOCKS = st.lists(st.one_of(HEADINGS, PARAGRAPHS, st.text(max_size=80)), min_size=1, max_size=25)
SEPARATORS = st.sampled_from(["\n", "\n\n", "\n \n", "\r\n"])


@st.composite
def documents(draw: st.DrawFn) -> str:
    blocks = draw(BLOCKS)
    return "".join(b + draw(SEPARATORS) for b in blocks)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    answer=documents(),
    max_tokens=st.integers(32, 200),
    min_tokens=st.integers(0, 80),
    title=st.sampled_from(["退货政策", "Returns", "", "长" * 120]),
)
def test_sections_cover_the_whole_answer_within_budget(
    answer: str, max_tokens: int, min_tokens: int, title: str
) -> None:
    cfg = ChunkSettings(max_tokens=max_tokens, min_tokens=min_tokens, long_answer_tokens=32)
    sections = split_sections(answer)
    assert "".join(body for _, body in sections) == answer

    ps = chunk_entry(entry(answer, ["q"], title=title), cfg)
    assert [p["ordinal"] for p in ps] == list(range(len(ps)))
    titled = ["title"] if title.strip() and title != "q" and ps[0]["text"] != title else []
    if count_tokens(answer) <= cfg.long_answer_tokens:
        assert [p["kind"] for p in ps] == ["answer", "question", *titled]
        return
    secs = sections_of(ps)
    assert len(secs) == len(ps) - 1 - len(titled)
    assert_covers(answer, [p["display"] for p in secs])
    for p in secs:
        assert p["display"] and p["display"] == p["display"].strip()
        assert count_tokens(p["text"]) <= max_tokens
        assert p["text"].endswith(p["display"])
        assert re.fullmatch(r"【.*】", p["text"][: -len(p["display"])], re.S)


# --- tables -------------------------------------------------------------------------------


def test_chunk_entries_matches_chunk_entry_with_exact_schema(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [
        {
            **entry("签收后7天内可退货。", ["怎么退货", "能退吗"], entry_id="A"),
            "answer": "签收后7天内可退货。",
        },
        {**entry(SOP, ["售后规范"], entry_id="B", title="售后SOP")},
        {**entry("x" * 2000, [], entry_id="C", title="Long")},
        {**entry(None, None, entry_id="D", title=None)},  # type: ignore[arg-type]
    ]
    cfg = ChunkSettings(max_tokens=160, min_tokens=30, long_answer_tokens=200)
    with caplog.at_level(logging.INFO, logger="kbflow.chunk"):
        table = chunk_entries(table_from_rows(rows, CLEAN_ENTRY), cfg)

    assert table.schema.equals(PASSAGE, check_metadata=False)
    expected = [p for r in rows for p in chunk_entry(r, cfg)]
    assert table.to_pylist() == expected
    assert table.column("display").null_count == 0
    assert table.to_pylist()[-1]["display"] == "" and table.to_pylist()[-1]["text"] == ""
    kinds = table.column("kind").to_pylist()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("kbflow.chunk")]
    assert len(lines) == 1
    assert f"4 entries (2 long) -> {table.num_rows} passages" in lines[0]
    assert f"answer=2 section={kinds.count('section')} question=3" in lines[0]
    most = max(count_tokens(t) for t in table.column("text").to_pylist())
    assert f"max tokens {most} " in lines[0]
    # Deterministic: a rerun gives the same table.
    assert chunk_entries(table_from_rows(rows, CLEAN_ENTRY), cfg).equals(table)


def test_chunk_entries_empty_table() -> None:
    table = chunk_entries(CLEAN_ENTRY.empty_table(), ChunkSettings())
    assert table.num_rows == 0
    assert table.schema.equals(PASSAGE, check_metadata=False)


def test_chunk_entries_rejects_repeated_or_missing_ids_and_missing_columns() -> None:
    rows = [entry("a。", entry_id="A"), entry("b。", entry_id="A")]
    with pytest.raises(ContractError, match="repeats"):
        chunk_entries(table_from_rows(rows, CLEAN_ENTRY), ChunkSettings())
    with pytest.raises(ContractError, match="without entry_id"):
        chunk_entries(table_from_rows([entry("a。", entry_id=None)], CLEAN_ENTRY), ChunkSettings())
    with pytest.raises(ContractError, match="similar_questions"):
        chunk_entries(
            pa.table({"entry_id": ["A"], "title": ["t"], "answer": ["a"]}), ChunkSettings()
        )
    with pytest.raises(ContractError):
        chunk_entry(entry("a", entry_id=""), ChunkSettings())


def test_slices_give_the_same_passages_and_fingerprint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from kbflow.chunk import passages as passages_module
    from kbflow.chunk.passages import fingerprint_keys
    from kbflow.chunk.stage import fingerprint, passages_fingerprint
    from kbflow.contracts import TableWriter, read_table

    rows = [
        entry(f"第{i}条答案。" * (1 + i % 4), [f"问题{i}", f"问法{i}"], entry_id=f"E{i:02d}")
        for i in range(23)
    ]
    rows.append({**entry(SOP, ["售后规范"], entry_id="SOP", title="售后SOP")})
    table = table_from_rows(rows, CLEAN_ENTRY)
    whole = chunk_entries(table, ChunkSettings())
    monkeypatch.setattr(passages_module, "SLICE_ENTRIES", 5)
    kinds: dict[str, int] = {}
    sliced = list(passages_module.passage_slices(table, ChunkSettings(), kinds))
    pieces = [piece for piece, _ in sliced]
    assert len(pieces) == 5
    with TableWriter(tmp_path / "passages.parquet", PASSAGE) as out:
        for piece in pieces:
            out.write(piece)
    written = read_table(tmp_path / "passages.parquet", PASSAGE)
    assert written.to_pylist() == whole.to_pylist() and out.rows == whole.num_rows
    assert kinds == {k: whole.column("kind").to_pylist().count(k) for k in kinds}
    assert fingerprint([fingerprint_keys(p) for p in pieces]) == passages_fingerprint(whole)
    assert [keys.to_pylist() for _, keys in sliced] == [
        fingerprint_keys(p).to_pylist() for p in pieces
    ]
    # The fingerprint is the documented one: sha256 over id, text hash and display digest, by id.
    h = hashlib.sha256()
    for p in sorted(whole.to_pylist(), key=lambda p: p["passage_id"]):
        digest = hashlib.sha256(p["display"].encode()).hexdigest()
        h.update(f"{p['passage_id']}\x1f{p['text_hash']}\x1f{digest}\x1e".encode())
    assert passages_fingerprint(whole) == h.hexdigest()


def test_a_failed_table_writer_leaves_no_file(tmp_path: Any) -> None:
    from kbflow.contracts import TableWriter

    target = tmp_path / "passages.parquet"
    with pytest.raises(RuntimeError), TableWriter(target, PASSAGE) as out:
        out.write(
            chunk_entries(
                table_from_rows([entry("a。", entry_id="A")], CLEAN_ENTRY), ChunkSettings()
            )
        )
        raise RuntimeError("the stage failed half way")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ContractError, match="does not match"), TableWriter(target, PASSAGE) as out:
        out.write(pa.table({"passage_id": [1]}))
    assert list(tmp_path.iterdir()) == []


def test_read_table_reads_and_checks_only_the_columns_asked(tmp_path: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kbflow.contracts import read_table
    from kbflow.errors import ContractError

    whole = chunk_entries(
        table_from_rows([entry("答案。", ["问题"], entry_id="A")], CLEAN_ENTRY), ChunkSettings()
    )
    pq.write_table(whole, tmp_path / "passages.parquet")
    two = read_table(tmp_path / "passages.parquet", PASSAGE, ["entry_id", "text"])
    assert two.column_names == ["entry_id", "text"]
    assert two.to_pylist() == whole.select(["entry_id", "text"]).to_pylist()
    # a column of the wrong type is still refused
    bad = whole.set_column(
        whole.column_names.index("text"), "text", pa.array([1] * whole.num_rows, pa.int64())
    )
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ContractError, match="does not match its contract"):
        read_table(tmp_path / "bad.parquet", PASSAGE, ["entry_id", "text"])
