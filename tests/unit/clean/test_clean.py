"""kbflow.clean: status and date filtering, exact and near deduplication, row accounting."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbflow.clean.dedup import CleanResult, clean_rows
from kbflow.clean.minhash import (
    _jaccard,
    _shingle_codes,
    estimated_jaccard,
    lsh_candidate_pairs,
    minhash_signatures,
    screen_floor,
    shingle_hash32,
)
from kbflow.clean.normalize import char_shingles, content_hash, shingle_text
from kbflow.contracts import (
    CLEAN_ENTRY,
    DEDUP_MERGE,
    RAW_ROW,
    ROW_OUTCOME,
    STALE_ENTRY,
    read_table,
    table_from_rows,
    write_table,
)
from kbflow.errors import ContractError
from kbflow.settings import CleanSettings

RUN_DATE = date(2026, 11, 24)

RETURN_ANSWER = (
    "退货运费由谁承担取决于退货原因：如因商品质量问题、发错货或商品与描述不符，"
    "退货运费由商家承担，请在申请退货时上传照片凭证；如为个人原因退货，运费由买家承担。"
)
EXCHANGE_ANSWER = (
    "换货时寄回的运费请先自行垫付，仓库签收并确认问题后，我们会把运费以优惠券形式返还；"
    "新商品寄出的运费由平台承担，一般在三个工作日内发出。"
)
ADDRESS_ANSWER = (
    "订单发货前可在“我的订单”中点击修改地址；已发货的订单请联系快递员或在线客服协助改派。"
)
INVOICE_ANSWER = (
    "电子发票会在确认收货后自动开具，您可以在订单详情页点击“查看发票”下载PDF文件；"
    "如需修改抬头或税号，请在确认收货后三十天内提交申请，逾期将无法重新开具。"
)


def _row(row_id: int, entry_id: str, title: str, answer: str, **extra: Any) -> dict[str, Any]:
    row = {
        "row_id": row_id,
        "source_file": "kb.jsonl",
        "source_line": row_id + 1,
        "id": entry_id,
        "title": title,
        "answer": answer,
        "similar_questions": [],
        "category": "售后",
        "tags": ["faq"],
        "status": None,
        "updated_at": "2026-01-01T00:00:00",
        "effective_from": None,
        "expires_at": None,
        "lang": "zh",
        "metadata": "{}",
    }
    row.update(extra)
    return row


def _kb_rows() -> list[dict[str, Any]]:
    edited = INVOICE_ANSWER.replace("三十天", "30天")  # a small edit
    return [
        # same topic, different answers: must stay two entries
        _row(0, "kb-001", "退货运费谁承担", RETURN_ANSWER, similar_questions=["退货邮费谁出"]),
        _row(1, "kb-002", "换货运费谁承担", EXCHANGE_ANSWER),
        # exact duplicates after normalisation; newest wins, ties broken by the smallest id
        _row(
            2, "kb-010", "如何修改收货地址", ADDRESS_ANSWER,
            updated_at="2026-02-01", similar_questions=["地址填错了怎么办"],
        ),
        _row(
            3, "kb-011", "  如何修改收货地址 ", f"<p>{ADDRESS_ANSWER}</p>",
            updated_at="2026-05-01",
            similar_questions=["怎么改地址", "如何修改收货地址", "", "怎么改地址"],
        ),
        _row(
            4, "kb-003", "如何修改收货地址", ADDRESS_ANSWER.replace("；", ";"),
            updated_at="2026-05-01 00:00:00", similar_questions=["改地址"],
        ),
        # near duplicates: newest (06-01, twice) then the longest answer wins
        _row(
            5, "kb-020", "如何开具电子发票", INVOICE_ANSWER,
            updated_at="2026-03-01", similar_questions=["发票在哪里开"],
        ),
        _row(6, "kb-021", "怎样开具电子发票", edited, updated_at="2026-06-01"),
        _row(
            7, "kb-022", "如何开具电子发票？", INVOICE_ANSWER + "谢谢。",
            updated_at="2026-06-01",
        ),
        # not published
        _row(8, "kb-030", "退货运费谁承担", RETURN_ANSWER, status="draft", updated_at="2026-10-01"),
        _row(9, "kb-031", "旧版退货流程", "请邮寄至旧仓库地址。", status="archived"),
        # dates
        _row(10, "kb-040", "春季促销说明", "全场八折，详见活动页。", expires_at="2025-12-31"),
        _row(11, "kb-041", "满减活动规则", "满300减50，活动截至2025年6月30日。"),
        _row(12, "kb-050", "新会员权益", "会员可享受免运费。", effective_from="2027-01-01"),
        _row(13, "kb-051", "运费新规", "新规自2027年1月1日起生效：满99元包邮。"),
        _row(14, "kb-060", "会员积分有效期", "积分有效期为一年。", expires_at="2027-12-31",
             status="published"),
    ]  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return table_from_rows(rows, RAW_ROW)


@pytest.fixture(scope="module")
def result() -> CleanResult:
    return clean_rows(_table(_kb_rows()), RUN_DATE, CleanSettings())


def _outcomes(res: CleanResult) -> dict[str, dict[str, Any]]:
    return {r["entry_id"]: r for r in res.outcomes.to_pylist()}


def _entries(res: CleanResult) -> dict[str, dict[str, Any]]:
    return {r["entry_id"]: r for r in res.entries.to_pylist()}


def _clusters(res: CleanResult) -> set[frozenset[str]]:
    return {frozenset([e["entry_id"], *e["merged_ids"]]) for e in res.entries.to_pylist()}


def _text_jaccard(a: str, b: str, k: int = 2) -> float:
    sa, sb = char_shingles(a, k), char_shingles(b, k)
    return len(sa & sb) / len(sa | sb)


# --- accounting and contracts -----------------------------------------------------------------


def test_every_input_row_has_exactly_one_outcome(result: CleanResult) -> None:
    rows = _kb_rows()
    row_ids = result.outcomes.column("row_id").to_pylist()
    assert sorted(row_ids) == [r["row_id"] for r in rows]
    assert result.outcomes.column("entry_id").to_pylist() == [r["id"] for r in rows]
    kinds = result.outcomes.column("outcome").to_pylist()
    assert set(kinds) <= {"indexed", "duplicate", "stale", "unpublished"}
    c = result.counts
    assert c["read"] == len(rows)
    assert c["indexed"] + c["duplicate"] + c["stale"] + c["unpublished"] == len(rows)
    assert c["duplicate"] == c["duplicate_exact"] + c["duplicate_near"]
    assert c["indexed"] == result.entries.num_rows
    assert c["duplicate"] == result.merges.num_rows
    for kind in ("indexed", "duplicate", "stale", "unpublished"):
        assert c[kind] == kinds.count(kind)


def test_tables_follow_their_contracts(result: CleanResult, tmp_path: Path) -> None:
    for name, table, schema in [
        ("entries", result.entries, CLEAN_ENTRY),
        ("merges", result.merges, DEDUP_MERGE),
        ("stale", result.stale, STALE_ENTRY),
        ("outcomes", result.outcomes, ROW_OUTCOME),
    ]:
        assert table.schema.equals(schema), name
        path = write_table(table, tmp_path / f"{name}.parquet", schema)
        assert read_table(path, schema).equals(table)


def test_expected_outcomes(result: CleanResult) -> None:
    got = {eid: (o["outcome"], o["reason"], o["detail"]) for eid, o in _outcomes(result).items()}
    assert got == {
        "kb-001": ("indexed", "unique", None),
        "kb-002": ("indexed", "unique", None),
        "kb-003": ("indexed", "canonical", "2 merged"),
        "kb-010": ("duplicate", "exact_duplicate", "kb-003"),
        "kb-011": ("duplicate", "exact_duplicate", "kb-003"),
        "kb-020": ("duplicate", "near_duplicate", "kb-022"),
        "kb-021": ("duplicate", "near_duplicate", "kb-022"),
        "kb-022": ("indexed", "canonical", "2 merged"),
        "kb-030": ("unpublished", "status:draft", None),
        "kb-031": ("unpublished", "status:archived", None),
        "kb-040": ("stale", "expired:expires_at", "expires_at=2025-12-31"),
        "kb-041": ("stale", "expired:date_phrase", "截至2025年6月30日"),
        "kb-050": ("unpublished", "not_yet_effective", "effective_from=2027-01-01"),
        "kb-051": ("unpublished", "not_yet_effective", "自2027年1月1日起生效"),
        "kb-060": ("indexed", "unique", None),
    }


# --- exact duplicates -------------------------------------------------------------------------


def test_exact_duplicates_merge_into_newest_then_smallest_id(result: CleanResult) -> None:
    entry = _entries(result)["kb-003"]
    assert entry["merged_ids"] == ["kb-011", "kb-010"]  # best ranked first
    assert entry["row_id"] == 4
    merges = [m for m in result.merges.to_pylist() if m["canonical_id"] == "kb-003"]
    assert {(m["merged_id"], m["kind"], m["similarity"], m["row_id"]) for m in merges} == {
        ("kb-011", "exact", 1.0, 3),
        ("kb-010", "exact", 1.0, 2),
    }


def test_merged_questions_are_absorbed_without_duplicates(result: CleanResult) -> None:
    address = _entries(result)["kb-003"]
    assert address["similar_questions"] == ["改地址", "怎么改地址", "地址填错了怎么办"]
    invoice = _entries(result)["kb-022"]
    assert invoice["similar_questions"] == ["怎样开具电子发票", "如何开具电子发票", "发票在哪里开"]
    assert invoice["title"] not in invoice["similar_questions"]


def test_entries_carry_normalised_text_and_fields(result: CleanResult) -> None:
    entries = _entries(result)
    assert set(entries) == {"kb-001", "kb-002", "kb-003", "kb-022", "kb-060"}
    assert list(entries) == ["kb-001", "kb-002", "kb-003", "kb-022", "kb-060"]  # input order
    for e in entries.values():
        assert e["content_hash"] == content_hash(e["title"], e["answer"])
        assert e["status"] == "published"
        assert e["category"] == "售后" and e["tags"] == ["faq"] and e["lang"] == "zh"
    assert entries["kb-003"]["answer"] == ADDRESS_ANSWER.replace("；", ";")
    assert entries["kb-022"]["title"] == "如何开具电子发票?"
    assert entries["kb-001"]["similar_questions"] == ["退货邮费谁出"]
    assert entries["kb-060"]["expires_at"] == "2027-12-31"
    assert entries["kb-022"]["updated_at"] == "2026-06-01"


# --- near duplicates --------------------------------------------------------------------------


def test_near_duplicates_merge_into_newest_then_longest(result: CleanResult) -> None:
    entry = _entries(result)["kb-022"]
    assert entry["merged_ids"] == ["kb-021", "kb-020"]
    near = {m["merged_id"]: m for m in result.merges.to_pylist() if m["kind"] == "near"}
    assert set(near) == {"kb-020", "kb-021"}
    rows = {r["id"]: r for r in _kb_rows()}
    canon = rows["kb-022"]
    for merged_id, m in near.items():
        other = rows[merged_id]
        expected = _text_jaccard(
            f"{other['title']}\n{other['answer']}", f"{canon['title']}\n{canon['answer']}"
        )
        assert m["similarity"] == pytest.approx(expected)
        assert m["similarity"] >= CleanSettings().near_dup_threshold
        assert m["similarity"] < 1.0
        assert m["canonical_id"] == "kb-022" and m["canonical_title"] == "如何开具电子发票?"


def test_chained_near_duplicates_record_their_similarity_to_the_canonical() -> None:
    # a~b and b~c pass the threshold, a~c does not: union-find puts all three in one cluster,
    # and the merge of the far end records its exact Jaccard to the canonical, below 0.8.
    base = INVOICE_ANSWER
    a = _row(0, "a", "如何开具电子发票", base, updated_at="2026-03-01")
    b = _row(1, "b", "怎样开具电子发票", base.replace("三十天", "30天"), updated_at="2026-01-01")
    c = _row(2, "c", "如何开具电子发票？", base + "如有疑问请联系客服。", updated_at="2026-06-01")
    text = {r["id"]: f"{r['title']}\n{r['answer']}" for r in (a, b, c)}
    assert _text_jaccard(text["a"], text["b"]) >= 0.8 and _text_jaccard(text["a"], text["c"]) >= 0.8
    assert _text_jaccard(text["b"], text["c"]) < 0.8
    res = clean_rows(_table([c, b, a]), RUN_DATE, CleanSettings())
    assert _clusters(res) == {frozenset("abc")}
    assert _entries(res)["c"]["merged_ids"] == ["a", "b"]
    sims = {m["merged_id"]: m["similarity"] for m in res.merges.to_pylist()}
    assert sims == pytest.approx(
        {"a": _text_jaccard(text["a"], text["c"]), "b": _text_jaccard(text["b"], text["c"])}
    )
    assert sims["b"] < 0.8
    res_c = clean_rows(_table([c, b]), RUN_DATE, CleanSettings())
    assert res_c.counts["duplicate"] == 0  # on their own, b and c are not duplicates


def test_same_topic_different_answers_are_not_merged(result: CleanResult) -> None:
    a, b = _kb_rows()[0], _kb_rows()[1]
    assert _text_jaccard(a["title"], b["title"]) >= 0.5  # the titles alone look alike
    merged = {m["merged_id"] for m in result.merges.to_pylist()}
    assert "kb-001" not in merged and "kb-002" not in merged
    assert {frozenset({"kb-001"}), frozenset({"kb-002"})} <= _clusters(result)


def test_near_duplicates_are_verified_by_exact_jaccard() -> None:
    # The invoice variants are LSH candidates either way; only the exact check can reject them.
    strict = clean_rows(_table(_kb_rows()), RUN_DATE, CleanSettings(near_dup_threshold=0.99))
    assert strict.counts["duplicate_near"] == 0
    assert strict.counts["near_candidate_pairs"] >= 2
    assert strict.counts["near_screened_pairs"] >= 1  # so the exact check is what said no
    assert {"kb-020", "kb-021", "kb-022"} <= set(_entries(strict))


def test_drafts_do_not_join_duplicate_clusters(result: CleanResult) -> None:
    # kb-030 is an exact copy of kb-001 but a draft: unpublished, not a duplicate.
    assert _entries(result)["kb-001"]["merged_ids"] == []
    assert _outcomes(result)["kb-030"]["outcome"] == "unpublished"


# --- dates ------------------------------------------------------------------------------------


def test_stale_table_lists_date_decisions_with_evidence(result: CleanResult) -> None:
    stale = {r["entry_id"]: r for r in result.stale.to_pylist()}
    assert stale == {
        "kb-040": {
            "entry_id": "kb-040", "title": "春季促销说明", "reason": "expires_at",
            "evidence": "expires_at=2025-12-31", "stale_since": "2025-12-31",
        },
        "kb-041": {
            "entry_id": "kb-041", "title": "满减活动规则", "reason": "date_phrase",
            "evidence": "截至2025年6月30日", "stale_since": "2025-06-30",
        },
        "kb-050": {
            "entry_id": "kb-050", "title": "新会员权益", "reason": "effective_from",
            "evidence": "effective_from=2027-01-01", "stale_since": "2027-01-01",
        },
        "kb-051": {
            "entry_id": "kb-051", "title": "运费新规", "reason": "effective_from",
            "evidence": "自2027年1月1日起生效", "stale_since": "2027-01-01",
        },
    }  # fmt: skip


def test_expiry_phrases_can_be_switched_off() -> None:
    res = clean_rows(_table(_kb_rows()), RUN_DATE, CleanSettings(expiry_phrases=False))
    out = _outcomes(res)
    assert out["kb-041"]["outcome"] == "indexed"
    assert out["kb-051"]["outcome"] == "indexed"
    assert out["kb-040"]["outcome"] == "stale"  # explicit fields still count
    assert out["kb-050"]["outcome"] == "unpublished"


def test_expiry_is_judged_against_the_run_date() -> None:
    rows = [_row(0, "a", "积分说明", "积分清零规则。", expires_at="2026-11-24")]
    assert clean_rows(_table(rows), date(2026, 11, 24), CleanSettings()).counts["indexed"] == 1
    assert clean_rows(_table(rows), date(2026, 11, 25), CleanSettings()).counts["stale"] == 1


# --- input errors and edge cases --------------------------------------------------------------


def test_missing_column_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="expires_at"):
        clean_rows(_table(_kb_rows()).drop_columns(["expires_at"]), RUN_DATE, CleanSettings())


def test_unparseable_date_is_a_contract_error() -> None:
    rows = [_row(0, "a", "标题", "答案", expires_at="next tuesday")]
    with pytest.raises(ContractError, match="next tuesday"):
        clean_rows(_table(rows), RUN_DATE, CleanSettings())


def test_empty_input() -> None:
    res = clean_rows(RAW_ROW.empty_table(), RUN_DATE, CleanSettings())
    assert res.entries.num_rows == res.merges.num_rows == res.outcomes.num_rows == 0
    assert res.entries.schema.equals(CLEAN_ENTRY)
    assert res.counts["read"] == 0 and res.counts["indexed"] == 0


def test_punctuation_only_entries_are_not_near_duplicates() -> None:
    rows = [_row(0, "a", "？？？", "！！！"), _row(1, "b", "。。。", "……")]
    res = clean_rows(_table(rows), RUN_DATE, CleanSettings())
    assert res.counts["indexed"] == 2


# --- order independence -----------------------------------------------------------------------


def _family_rows(seed: int = 3) -> list[dict[str, Any]]:
    """A KB with exact copies, near copies and chains of small edits."""
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
    rows = _kb_rows()
    next_id = len(rows)
    for family in range(40):
        base = "".join(rng.choices(chars, k=rng.randint(40, 120)))
        title = "".join(rng.choices(chars, k=rng.randint(8, 16)))
        variants = [base]
        for _ in range(rng.randint(0, 4)):
            text = list(rng.choice(variants))
            for _ in range(rng.randint(0, 3)):
                text[rng.randrange(len(text))] = rng.choice(chars)
            variants.append("".join(text))
        for v in variants:
            rows.append(
                _row(
                    next_id, f"f{family:02d}-{next_id:03d}", title, v,
                    updated_at=f"2026-{rng.randint(1, 3):02d}-01",
                    similar_questions=[f"问题{next_id}"],
                )
            )  # fmt: skip
            next_id += 1
    return rows


def _signature(res: CleanResult) -> tuple[Any, ...]:
    merges = {
        (m["canonical_id"], m["merged_id"], m["kind"], round(m["similarity"], 12))
        for m in res.merges.to_pylist()
    }
    entries = {
        (e["entry_id"], tuple(e["merged_ids"]), tuple(e["similar_questions"]))
        for e in res.entries.to_pylist()
    }
    outcomes = {tuple(o.values()) for o in res.outcomes.to_pylist()}
    return merges, entries, outcomes


def test_merges_do_not_depend_on_input_order() -> None:
    rows = _family_rows()
    table = _table(rows)
    base = clean_rows(table, RUN_DATE, CleanSettings())
    assert base.counts["duplicate_near"] >= 10 and base.counts["duplicate_exact"] >= 2
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(rows))
        shuffled = clean_rows(table.take(pa.array(order)), RUN_DATE, CleanSettings())
        assert _clusters(shuffled) == _clusters(base)
        assert _signature(shuffled) == _signature(base)


# --- MinHash and LSH --------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.floats(min_value=0.3, max_value=0.9), st.sampled_from([64, 128]))
def test_lsh_params_fit_the_permutations(threshold: float, num_perm: int) -> None:
    s = CleanSettings(lsh_threshold=threshold, num_perm=num_perm)
    assert s.lsh_bands >= 1 and s.lsh_rows >= 1
    assert s.lsh_bands * s.lsh_rows <= s.num_perm


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=5),
    st.integers(min_value=1, max_value=4),
)
def test_signatures_equal_datasketch_minhash(texts: list[str], k: int) -> None:
    from datasketch import MinHash

    texts = [t for t in (shingle_text(x) for x in texts) if t] or ["退货运费"]
    sig = minhash_signatures(texts, k, 64)
    for row, text in zip(sig, texts, strict=True):
        m = MinHash(num_perm=64, hashfunc=shingle_hash32)
        m.update_batch(list(char_shingles(text, k)))
        assert np.array_equal(m.hashvalues, row)


def test_signatures_on_many_texts_use_the_same_hashing_in_every_chunk() -> None:
    from datasketch import MinHash

    rng = random.Random(5)
    texts = [
        "".join(rng.choices("退换货运费发票地址订单", k=rng.randint(1, 40))) for _ in range(9000)
    ]
    sig = minhash_signatures(texts, 2, 32)
    for i in (0, 4095, 4096, 8999):
        m = MinHash(num_perm=32, hashfunc=shingle_hash32)
        m.update_batch(list(char_shingles(texts[i], 2)))
        assert np.array_equal(m.hashvalues, sig[i])


@pytest.mark.parametrize(("bands", "rows"), [(25, 5), (9, 13), (16, 8)])
def test_lsh_candidates_equal_datasketch_minhashlsh(bands: int, rows: int) -> None:
    from datasketch import MinHash, MinHashLSH

    texts = [
        shingle_text(f"{r['title']}\n{r['answer']}")
        for r in _family_rows(seed=11)
        if r["status"] is None
    ]
    sig = minhash_signatures(texts, 2, 128)
    pairs = {tuple(p) for p in lsh_candidate_pairs(sig, bands, rows).tolist()}
    lsh = MinHashLSH(num_perm=128, params=(bands, rows))
    sketches = [MinHash(num_perm=128, hashfunc=shingle_hash32) for _ in texts]
    for i, (m, text) in enumerate(zip(sketches, texts, strict=True)):
        m.update_batch(list(char_shingles(text, 2)))
        lsh.insert(i, m)
    expected = {
        (min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if i != j
    }
    assert len(expected) >= 20  # the families give real candidates
    assert pairs == expected


def test_lsh_candidate_pairs_shapes_and_limits() -> None:
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4], [5, 5, 5, 5]], dtype=np.uint32)
    assert lsh_candidate_pairs(sig, 2, 2).tolist() == [[0, 1], [0, 2]]
    assert lsh_candidate_pairs(sig, 1, 4).tolist() == []
    with pytest.raises(Exception, match="do not fit"):
        lsh_candidate_pairs(sig, 3, 2)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40), st.integers(1, 8))
def test_exact_jaccard_over_codes_equals_char_shingles(a: str, b: str, k: int) -> None:
    ta, tb = shingle_text(a) or "甲", shingle_text(b) or "乙"
    sa, sb = char_shingles(ta, k), char_shingles(tb, k)
    codes_a, codes_b = _shingle_codes(ta, k), _shingle_codes(tb, k)
    assert len(codes_a) == len(sa) and len(codes_b) == len(sb)
    assert _jaccard(codes_a, codes_b) == pytest.approx(len(sa & sb) / len(sa | sb))


def test_minhash_screen_keeps_true_near_duplicates() -> None:
    # Signatures are deterministic, so this is a fixed check, not a flaky statistical one:
    # 400 pairs at exact Jaccard >= 0.8 all pass the screen's floor.
    rng = random.Random(9)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    left, right = [], []
    while len(left) < 400:
        text = "".join(rng.choices(chars, k=rng.randint(30, 300)))
        edited = list(text)
        for _ in range(rng.randint(1, 4)):
            edited[rng.randrange(len(edited))] = rng.choice(chars)
        other = "".join(edited)
        if _text_jaccard(text, other) >= 0.8:
            left.append(text)
            right.append(other)
    sig = minhash_signatures(left + right, 2, 128)
    pairs = np.array([[i, i + len(left)] for i in range(len(left))])
    est = estimated_jaccard(sig, pairs)
    assert est.min() >= screen_floor(0.8, 128)
    assert (
        abs(
            float(np.mean(est))
            - np.mean([_text_jaccard(a, b) for a, b in zip(left, right, strict=True)])
        )
        < 0.02
    )


def test_screen_floor_is_the_binomial_tail() -> None:
    from math import comb

    def below(k: int, n: int, p: float) -> float:  # P[Binomial(n, p) < k]
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k))

    for threshold, num_perm in ((0.8, 128), (0.5, 64), (0.9, 256), (0.8, 16)):
        k = round(screen_floor(threshold, num_perm) * num_perm)
        assert below(k, num_perm, threshold) <= 1e-9 < below(k + 1, num_perm, threshold)
    assert screen_floor(0.8, 128) == pytest.approx(73 / 128)
    # Tighter than Hoeffding's bound (0.8 - 0.284) and still far below the threshold.
    assert 0.8 - 0.2844 < screen_floor(0.8, 128) < 0.6
    sig = np.array([[1, 2, 3, 4], [1, 2, 0, 4], [9, 9, 9, 9]], dtype=np.uint32)
    assert estimated_jaccard(sig, np.array([[0, 1], [0, 2], [1, 1]])).tolist() == [0.75, 0.0, 1.0]


def test_garbage_collector_state_is_restored() -> None:
    import gc

    assert gc.isenabled()
    clean_rows(_table(_kb_rows()[:3]), RUN_DATE, CleanSettings())
    assert gc.isenabled()
    with pytest.raises(ContractError):
        clean_rows(_table([_row(0, "a", "t", "a", expires_at="??")]), RUN_DATE, CleanSettings())
    assert gc.isenabled()
    gc.disable()
    try:
        clean_rows(_table(_kb_rows()[:3]), RUN_DATE, CleanSettings())
        assert not gc.isenabled()
    finally:
        gc.enable()


def _templated_rows(seed: int = 5) -> list[dict[str, Any]]:
    """A merchant platform's KB: one return-policy FAQ written from a template for 300 shops
    (shop name, days and fee filled in: alike, mostly not duplicates), the same FAQ copied to 60
    shops with only the shop name changed (near duplicates of one another), and 20 near copies
    of single shops' answers (one character edited)."""
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
    template = (
        "亲爱的顾客，{shop}支持{days}天无理由退货，退货运费{fee}元由{who}承担；"
        "商品需保持完好并附带{extra}，退款将在{refund}个工作日内原路返回。"
    )
    rows: list[dict[str, Any]] = []

    def add(title: str, answer: str) -> None:
        rows.append(_row(len(rows), f"t{len(rows):04d}", title, answer))

    for _ in range(300):
        shop = "".join(rng.choices(chars, k=4))
        answer = template.format(
            shop=shop,
            days=rng.randint(3, 30),
            fee=rng.randint(5, 25),
            who=rng.choice(["买家", "商家", "平台"]),
            extra="".join(rng.choices(chars, k=rng.randint(6, 14))),
            refund=rng.randint(1, 9),
        )
        add(f"{shop}的退货政策", answer)
    copied = template.format(
        shop="本店", days=7, fee=10, who="买家", extra="原包装和发票", refund=3
    )
    for _ in range(60):
        add("退货政策", copied.replace("本店", "".join(rng.choices(chars, k=2))))
    for _ in range(20):
        title, answer = rows[rng.randrange(300)]["title"], rows[rng.randrange(300)]["answer"]
        edited = list(answer)
        edited[rng.randrange(len(edited))] = rng.choice(chars)
        add(title, "".join(edited))
    return rows


def test_large_lsh_buckets_are_split_without_changing_the_merges() -> None:
    rows = _templated_rows()
    table = _table(rows)
    every_pair = clean_rows(table, RUN_DATE, CleanSettings(lsh_max_bucket=10**9))
    split = clean_rows(table, RUN_DATE, CleanSettings(lsh_max_bucket=16))
    # The template fills buckets far above 16 rows: splitting them generates far fewer pairs ...
    assert split.counts["near_candidate_pairs"] < every_pair.counts["near_candidate_pairs"] / 2
    # ... and finds the same duplicates: the 60 copies are one entry, the 20 edits merged.
    assert every_pair.counts["duplicate_near"] >= 59 + 15
    assert _signature(split) == _signature(every_pair)
    for seed in range(3):  # leaders are picked by content, not by row position
        order = np.random.default_rng(seed).permutation(len(rows))
        shuffled = clean_rows(
            table.take(pa.array(order)), RUN_DATE, CleanSettings(lsh_max_bucket=16)
        )
        assert _signature(shuffled) == _signature(every_pair)
