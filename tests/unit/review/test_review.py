"""The review stage (kbflow.review) on purpose-built exports run through the real stages
(pull, validate, clean, chunk, embed, index; no Prefect): semantic pairs, contradictions of
semantic pairs and of MinHash merges, the catalog tables, reruns and the report section."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kbflow.chunk.stage import chunk_stage
from kbflow.clean.stage import clean_stage
from kbflow.contracts import REVIEW_CONTRADICTION, REVIEW_SEMANTIC_DUPLICATE, read_table
from kbflow.embed.stage import embed_stage, model_stage, with_model
from kbflow.index.stage import index_stage
from kbflow.pull.stage import pull_stage
from kbflow.report.nightly import write_nightly_report
from kbflow.review.contradictions import find_contradictions
from kbflow.review.stage import CONTRADICTIONS_FILE, SEMANTIC_FILE, report_inputs, review_stage
from kbflow.review.tables import latest_review, read_version_review
from kbflow.run import start_run
from kbflow.runner import MARKER
from kbflow.settings import Settings
from kbflow.store.home import DataHome
from kbflow.validate.stage import validate_stage

from .test_semantic import KB, PARAPHRASES

RUN_DATE = date(2026, 11, 24)

# The English KB of test_semantic, with answers that state facts: the paraphrased
# ship-address / edit-delivery pair disagrees on when orders ship, and two entries have a
# copy with a small edit that MinHash merges (one changes a number, the other does not).
ANSWERS = {
    "ship-address": "Open Orders, pick the order and tap Edit address; orders are dispatched within 24 hours.",
    "edit-delivery": "Yes: in My purchases choose Modify destination; orders are shipped within 2 days.",
    "return-window": "You can return items within 30 days of delivery, unused and in the original box.",
    "gift-wrap": "Add gift wrapping at checkout for 3 dollars per parcel, card included.",
}  # fmt: skip
EN_COPIES = [
    # (id, copy of, answer, updated_at): the canonical entries are newer
    ("return-window-old", "return-window", ANSWERS["return-window"].replace("30 days", "14 days")),
    ("gift-wrap-old", "gift-wrap", ANSWERS["gift-wrap"].replace("3 dollars", "4 dollars")),
    ("invoice-old", "invoice", None),  # an exact copy: nothing to report
]
ZH_ROWS = [
    ("zh-return", "退货期限是多久？", "自签收之日起7天内可申请无理由退货，商品需保持完好、吊牌齐全，赠品需一并退回。", "2026-11-01"),
    ("zh-return-old", "退货期限是多久？", "自签收之日起15天内可申请无理由退货，商品需保持完好、吊牌齐全，赠品需一并退回。", "2025-03-01"),
    ("zh-return-cn", "退货期限是多久？", "自签收之日起七天内可申请无理由退货，商品需保持完好、吊牌齐全，赠品需一并退回。", "2025-02-01"),
    ("zh-fee", "运费怎么收？", "普通快递运费10元，一般下单后48小时内发货，偏远地区时效略长，具体以物流信息为准。", "2026-11-01"),
    ("zh-fee-old", "运费怎么收？", "普通快递运费免费，一般下单后48小时内发货，偏远地区时效略长，具体以物流信息为准。", "2025-03-01"),
    ("zh-invoice", "怎么开发票？", "在订单详情页点击申请开票，电子发票会在确认收货后开具。", "2026-10-01"),
    ("zh-points", "积分有什么用？", "积分可在结算时抵扣现金，100积分抵1元。", "2026-10-01"),
]  # fmt: skip


def _line(eid: str, title: str, answer: str, qs: list[str], updated: str) -> str:
    return json.dumps(
        {
            "id": eid,
            "title": title,
            "answer": answer,
            "similar_questions": qs,
            "category": "faq",
            "status": "published",
            "updated_at": f"{updated}T10:00:00",
        },
        ensure_ascii=False,
    )


def _en_export(folder: Path) -> Path:
    by_id = {e[0]: e for e in KB}
    lines = [_line(e, t, ANSWERS.get(e, a), qs, "2026-11-01") for e, t, a, qs in KB]
    for eid, of, answer in EN_COPIES:
        _, title, a, qs = by_id[of]
        lines.append(_line(eid, title, answer or ANSWERS.get(of, a), qs, "2025-01-01"))
    folder.mkdir(parents=True)
    (folder / "kb.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _zh_export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = [_line(e, t, a, [], u) for e, t, a, u in ZH_ROWS]
    (folder / "kb.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _build(home_dir: Path, export: Path, run_id: str) -> tuple[DataHome, str, Settings]:
    """pull .. index with the real stage functions; returns the home and the version."""
    settings = Settings(home=home_dir)
    home = DataHome.at(home_dir)
    start_run(home, run_id, RUN_DATE)
    pulled = pull_stage(home, run_id, str(export))
    validate_stage(home, run_id, pulled, settings)
    clean_stage(home, run_id, RUN_DATE, settings)
    chunk_stage(home, run_id, settings)
    # embed.model is auto: the KB's language picks the model, as in the flow
    settings = with_model(settings, model_stage(home, run_id, settings))
    embedded = embed_stage(home, run_id, settings)
    built = index_stage(home, run_id, RUN_DATE, pulled, embedded, settings)
    return home, built["version"], settings


@pytest.fixture(scope="module")
def en(tmp_path_factory, local_embedder) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("review-en")
    home, version, settings = _build(
        tmp / "home", _en_export(tmp / "export"), "20261124T020000-aaaaaa"
    )
    summary = review_stage(
        home, "20261124T020000-aaaaaa", version, settings, embedder=local_embedder
    )
    return {"home": home, "version": version, "settings": settings, "summary": summary}


@pytest.fixture(scope="module")
def zh(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("review-zh")
    home, version, settings = _build(
        tmp / "home", _zh_export(tmp / "export"), "20261124T020000-bbbbbb"
    )
    summary = review_stage(home, "20261124T020000-bbbbbb", version, settings)
    return {"home": home, "version": version, "settings": settings, "summary": summary}


def _files(run: dict[str, Any], run_id: str) -> tuple[list[dict], list[dict]]:
    folder = run["home"].run_dir(run_id) / "review"
    sem = read_table(folder / SEMANTIC_FILE, REVIEW_SEMANTIC_DUPLICATE).to_pylist()
    con = read_table(folder / CONTRADICTIONS_FILE, REVIEW_CONTRADICTION).to_pylist()
    return sem, con


def _catalog(home: DataHome, sql: str, *params: Any) -> list[tuple]:
    con = duckdb.connect(str(home.catalog_path), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_semantic_pairs_of_the_version(en):
    sem, _ = _files(en, "20261124T020000-aaaaaa")
    pairs = {frozenset((r["entry_a"], r["entry_b"])) for r in sem}
    assert pairs >= PARAPHRASES
    cal = en["summary"]["calibration"]
    assert cal["method"] == "calibrated" and all(r["score"] >= cal["threshold"] for r in sem)
    # the MinHash copies were merged in the clean stage: never listed as semantic pairs
    assert not any(e.endswith("-old") for r in sem for e in (r["entry_a"], r["entry_b"]))
    row = next(r for r in sem if {r["entry_a"], r["entry_b"]} == {"ship-address", "edit-delivery"})
    # passage ids of the two similar questions that matched (ordinal 0 is the answer passage)
    assert {row["matched_a"], row["matched_b"]} == {"ship-address:1", "edit-delivery:2"}
    assert {row["text_a"], row["text_b"]} == {"change shipping address", "modify delivery address"}
    assert row["has_contradiction"] is True
    # every title is a passage of the version (kbflow.chunk): the embed stage embedded them all
    assert en["summary"]["titles_embedded"] == 0
    assert en["summary"]["model_key"] == "all-MiniLM-L6-v2@384"  # English KB: the English model


def test_contradictions_of_semantic_pairs_and_of_merges(en):
    _, rows = _files(en, "20261124T020000-aaaaaa")
    got = {(r["source"], r["entry_a"], r["entry_b"], r["value_a"], r["value_b"]) for r in rows}
    assert got == {
        ("semantic", "ship-address", "edit-delivery", "24 hours", "2 days"),
        ("minhash_near", "return-window", "return-window-old", "30 days", "14 days"),
        ("minhash_near", "gift-wrap", "gift-wrap-old", "3 dollars", "4 dollars"),
    }
    merge = next(r for r in rows if r["entry_b"] == "return-window-old")
    assert merge["note"].startswith("merge hid a contradiction")
    assert "return-window keeps" in merge["note"] and "said 14 days" in merge["note"]
    assert "退货" in merge["topic"].split(",") and merge["normalized_b"] == "14 days"
    assert en["summary"]["merges_checked"] == 3 and en["summary"]["merge_contradictions"] == 2


def test_small_chinese_kb_uses_the_models_default_and_reports_what_merges_hid(zh):
    sem, rows = _files(zh, "20261124T020000-bbbbbb")
    cal = zh["summary"]["calibration"]
    # the multilingual model covers Chinese; four entries are too few to calibrate on, so the
    # model's own default threshold applies, and no two of these four questions mean the same
    assert zh["summary"]["model_key"] == "multilingual-e5-small@384"
    assert cal["method"] == "default" and cal["threshold"] == 0.97 and sem == []
    got = {(r["entry_a"], r["entry_b"], r["value_a"], r["value_b"]) for r in rows}
    assert got == {
        ("zh-return", "zh-return-old", "7天", "15天"),
        ("zh-fee", "zh-fee-old", "10元", "免费"),
    }  # zh-return-cn says 七天: the same duration, not a contradiction
    assert all(r["note"].startswith("merge hid a contradiction") for r in rows)


def test_catalog_holds_the_version_rows_and_a_rerun_replaces_them(en, local_embedder):
    home, version = en["home"], en["version"]
    run_id = "20261124T020000-aaaaaa"
    sem, con = _files(en, run_id)
    count = "select count(*) from {} where version = ?"
    assert _catalog(home, count.format("review_semantic_duplicates"), version) == [(len(sem),)]
    assert _catalog(home, count.format("review_contradictions"), version) == [(len(con),)]
    (home.run_dir(run_id) / "review" / MARKER).unlink()
    again = review_stage(home, run_id, version, en["settings"], embedder=local_embedder)
    assert again["titles_embedded"] == 0  # the cache has them now
    assert _catalog(home, count.format("review_semantic_duplicates"), version) == [(len(sem),)]
    assert _catalog(home, count.format("review_contradictions"), version) == [(len(con),)]
    assert _catalog(home, count.format("review_versions"), version) == [(1,)]
    tables = read_version_review(home.catalog_path, version)
    assert tables["contradictions"].num_rows == len(con)
    assert latest_review(home.catalog_path)["version"] == version  # no publish yet: the latest


def test_a_completed_review_is_not_redone(en):
    marker = en["home"].run_dir("20261124T020000-aaaaaa") / "review" / MARKER
    before = marker.read_text(encoding="utf-8")
    review_stage(en["home"], "20261124T020000-aaaaaa", en["version"], en["settings"])
    assert marker.read_text(encoding="utf-8") == before


def test_report_puts_contradictions_first(en, tmp_path):
    inputs = report_inputs(en["home"], "20261124T020000-aaaaaa")
    summary = {
        "run_id": "r",
        "status": "published",
        "rows": {"input": 1},
        "review": inputs.pop("summary"),
    }
    path = write_nightly_report(tmp_path / "r.html", summary, **inputs)
    html = path.read_text(encoding="utf-8")
    top = html.index("Contradicting answers (3)")
    assert top < html.index("Row accounting") < html.index("Semantic near-duplicates (")
    for value in ("24 hours", "2 days", "30 days", "14 days", "merge hid a contradiction"):
        assert value in html[top : html.index("Row accounting")]
    assert "calibrated" in html  # how the semantic threshold was chosen


def test_find_contradictions_reports_both_values_for_chinese_answers():
    rows = find_contradictions(
        [
            {"source": "semantic", "entry_a": "a", "entry_b": "b", "similarity": 0.93},
            {"source": "semantic", "entry_a": "c", "entry_b": "d", "similarity": 0.91},
            {"source": "semantic", "entry_a": "e", "entry_b": "f", "similarity": 0.95},
        ],
        {
            "a": "退货期限7天，请保持商品完好。",
            "b": "退货期限15天，请保持商品完好。",
            "c": "运费10元。",
            "d": "运费免费。",
            "e": "支持7天无理由退货。",
            "f": "支持一周内无理由退货。",
        },
    )
    assert [(r["entry_a"], r["value_a"], r["value_b"], r["normalized_b"]) for r in rows] == [
        ("a", "7天", "15天", "15 days"),
        ("c", "10元", "免费", "0 (free)"),
    ]
