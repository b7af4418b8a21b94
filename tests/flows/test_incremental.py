"""kb-nightly builds a small change as an incremental version that answers like a full rebuild
(the bundled Chinese sample: multilingual-e5 vectors with hub correction, exact Flat search)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kbflow_flows.nightly import kb_nightly

from kbflow.contracts import PASSAGE, read_table
from kbflow.embed.cache import EmbeddingCache
from kbflow.index.bm25 import tokenize
from kbflow.index.build import build_version
from kbflow.index.dense import DELTA, TOMBSTONES
from kbflow.index.incremental import Plan
from kbflow.index.version import LoadedVersion
from kbflow.settings import load_settings
from kbflow.store.versions import read_manifest

from ..conftest import EXAMPLES

ZH = EXAMPLES / "kb_zh"
RUN_DATE = json.loads((ZH / "expected.json").read_text(encoding="utf-8"))["run_date"]


def run(home: Path, source: Path, **kw: Any) -> dict[str, Any]:
    return kb_nightly(source=str(source), run_date=RUN_DATE, home=str(home), **kw)


def edit_export(dest: Path, note: str, edit: int, delete: int, add: int, tag: str = "a") -> Path:
    """The sample export (and its golden queries) with ``edit`` answers changed, ``delete``
    entries gone and ``add`` new ones, in faq.jsonl."""
    shutil.copytree(ZH / "export", dest / "export")
    shutil.copy(ZH / "golden.jsonl", dest / "golden.jsonl")
    path = dest / "export" / "faq.jsonl"
    lines, kept = path.read_text(encoding="utf-8").splitlines(), []
    done = {"edit": 0, "delete": 0}
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            kept.append(line)
            continue
        ok = isinstance(obj, dict) and obj.get("status", "published") == "published"
        if ok and done["delete"] < delete and str(obj.get("id", "")).endswith("7"):
            done["delete"] += 1
            continue
        if ok and done["edit"] < edit and str(obj.get("id", "")).endswith("3"):
            obj["answer"] = f"{obj['answer']}{note}"
            done["edit"] += 1
        kept.append(json.dumps(obj, ensure_ascii=False))
    for i in range(add):
        kept.append(
            json.dumps(
                {
                    "id": f"new-{tag}-{i}",
                    "title": f"新品{i}号的保修期是多久？",
                    "answer": f"新品{i}号自签收之日起保修一年，保修期内非人为损坏免费维修。",
                    "similar_questions": [f"新品{i}号坏了能免费修吗"],
                    "status": "published",
                },
                ensure_ascii=False,
            )
        )
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    assert done == {"edit": edit, "delete": delete}
    return dest / "export"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("incr-flow")
    home = root / "home"
    first = run(home, ZH / "export")
    source = edit_export(root / "e1", "（已于本月更新。）", edit=3, delete=1, add=1)
    second = run(home, source)
    return {"root": root, "home": home, "first": first, "second": second}


def test_a_small_change_is_built_incrementally(runs: dict[str, Any]) -> None:
    home, first, second = runs["home"], runs["first"], runs["second"]
    assert first["status"] == second["status"] == "published"
    one = read_manifest(home / "indexes" / first["version"])
    two = read_manifest(home / "indexes" / second["version"])
    assert one["index"]["build"] == {
        "mode": "full",
        "base_version": None,
        "reason": "no live version",
    }
    build = two["index"]["build"]
    assert build["mode"] == "incremental" and build["base_version"] == first["version"]
    # 3 edited answers + the new entry's passages in the delta; the deleted entry's passages
    # and the 3 old answers as tombstones
    assert 3 + 3 <= build["delta_passages"] <= 3 + 5
    assert build["tombstones"] >= 3 + 2
    assert build["tokens_reused"] >= two["counts"]["passages"] * 0.5
    folder = home / "indexes" / second["version"]
    assert (folder / DELTA).is_file() and (folder / TOMBSTONES).is_file()
    assert (folder / "dense.faiss").stat().st_ino == (
        home / "indexes" / first["version"] / "dense.faiss"
    ).stat().st_ino
    cal = two["calibration"]
    assert cal["reused_from"] == first["version"]
    assert cal["dense_weight"] == one["calibration"]["dense_weight"]
    assert second["gate"]["passed"]
    v = LoadedVersion(folder)
    # vectors of unchanged texts came from the live version's vectors.npy: the cache's exactly
    cache = EmbeddingCache(home / "embeddings", two["embedding"]["model_key"], v.vectors.shape[1])
    passages = read_table(folder / "passages.parquet", PASSAGE)
    assert np.array_equal(cache.get(passages.column("text_hash").to_pylist()), v.vectors)
    assert "new-a-0" in v.entry_ids and v.dense.ntotal == v.n_passages
    hits = v.candidates(None, tokenize("新品0号坏了能免费修吗"))
    assert v.entry_ids[int(hits.entries[int(np.argmax(hits.keyword))])] == "new-a-0"


def test_the_incremental_version_answers_like_a_full_rebuild(runs: dict[str, Any]) -> None:
    home, second = runs["home"], runs["second"]
    incr = LoadedVersion(home / "indexes" / second["version"])
    manifest = read_manifest(incr.folder)
    manifest.pop("index")
    manifest.pop("calibration")
    passages = read_table(incr.folder / "passages.parquet", PASSAGE)
    vectors = np.load(incr.folder / "vectors.npy")
    settings = load_settings(str(home))
    full = LoadedVersion(
        build_version(
            runs["root"] / "full", second["version"], passages, vectors, manifest,
            settings.index, None, Plan(),
        )
    )  # fmt: skip
    full.weight = incr.weight
    full.bm25_scale = incr.bm25_scale
    rows = [r for r, k in enumerate(incr.kinds) if k in ("question", "title")]
    same_top1 = overlap = 0.0
    for r in rows:
        tokens = tokenize(incr.texts[r])
        assert np.array_equal(incr.bm25.scores(tokens), full.bm25.scores(tokens))
        tops = []
        for v in (incr, full):
            c = v.candidates(np.asarray(incr.vectors[r]), tokens)
            s = v.fuse(c)
            tops.append([int(c.entries[j]) for j in np.argsort(-s, kind="stable")[:10]])
        same_top1 += tops[0][0] == tops[1][0]
        overlap += len(set(tops[0]) & set(tops[1])) / max(len(tops[1]), 1)
    # the only difference: base passages keep the live version's hub scores
    assert same_top1 / len(rows) >= 0.98, same_top1 / len(rows)
    assert overlap / len(rows) >= 0.97, overlap / len(rows)
    assert float(np.abs(incr.hub - full.hub).max()) < 0.02


def test_full_rebuild_is_one_flag_away(runs: dict[str, Any]) -> None:
    source = edit_export(runs["root"] / "e2", "（再次更新。）", edit=1, delete=0, add=0)
    third = run(runs["home"], source, overrides={"index.incremental": False})
    assert third["status"] == "published"
    manifest = read_manifest(runs["home"] / "indexes" / third["version"])
    assert manifest["index"]["build"]["mode"] == "full"
    assert "a full rebuild was asked for" in manifest["index"]["build"]["reason"]
    assert "reused_from" not in manifest["calibration"]
    assert manifest["index"]["build"]["tokens_reused"] > 0  # tokens still come from the live one


def test_the_review_keeps_what_did_not_change_and_equals_a_whole_review(
    runs: dict[str, Any],
) -> None:
    from kbflow.contracts import CLEAN_ENTRY, DEDUP_MERGE, RAW_ROW
    from kbflow.review.stage import review_version
    from kbflow.runner import read_marker
    from kbflow.store.home import DataHome

    home, second = runs["home"], runs["second"]
    data = DataHome.at(home)
    run_id = second["run_id"]
    got = read_marker(data, run_id, "review")
    assert got is not None
    inc = got["incremental"]
    assert inc["mode"] == "incremental" and inc["base_version"] == runs["first"]["version"]
    # the new entry is searched from; the 3 edited answers left their questions as they were
    assert inc["changed_entries"] >= 1 and inc["gone_entries"] == 1
    kept_threshold = got["calibration"]["threshold"]
    first = read_marker(data, runs["first"]["run_id"], "review")
    assert kept_threshold == first["calibration"]["threshold"]  # calibration reused

    settings = load_settings(str(home))
    cdir, vdir = data.stage_dir(run_id, "clean"), data.stage_dir(run_id, "validate")
    semantic, contradictions, whole, _ = review_version(
        home / "indexes" / second["version"],
        read_table(cdir / "entries.parquet", CLEAN_ENTRY),
        read_table(cdir / "merges.parquet", DEDUP_MERGE),
        read_table(vdir / "rows.parquet", RAW_ROW),
        settings,
        home / "embeddings",
    )
    assert whole["incremental"]["mode"] == "full"
    floor = max(kept_threshold or 1.0, whole["calibration"]["threshold"] or 1.0)

    def pairs(folder_or_table: Any) -> set[tuple[str, str, float]]:
        rows = folder_or_table.to_pylist()
        return {
            (r["entry_a"], r["entry_b"], round(r["score"], 5)) for r in rows if r["score"] >= floor
        }

    from kbflow.contracts import REVIEW_CONTRADICTION, REVIEW_SEMANTIC_DUPLICATE

    folder = data.run_dir(run_id) / "review"
    mine = read_table(folder / "semantic_duplicates.parquet", REVIEW_SEMANTIC_DUPLICATE)
    assert pairs(mine) == pairs(semantic) and pairs(semantic)
    kept = {(p[0], p[1]) for p in pairs(semantic)}

    def facts(table: Any) -> set[tuple[str, ...]]:
        return {
            (c["source"], c["entry_a"], c["entry_b"], c["fact_kind"], c["value_a"], c["value_b"])
            for c in table.to_pylist()
            if c["source"] != "semantic" or (c["entry_a"], c["entry_b"]) in kept
        }

    theirs = read_table(folder / "contradictions.parquet", REVIEW_CONTRADICTION)
    assert facts(theirs) == facts(contradictions)
