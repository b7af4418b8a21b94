"""Stage ``review``: the version's semantic near-duplicates and contradicting answers, never
applied automatically (``runs/<run_id>/review/``, and the catalog's review tables).

Runs after the index stage, on the version's own vectors: each entry's title (a title passage)
and similar questions. The stage is advisory: a failure is logged and the run goes on."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from kbflow.contracts import (
    CLEAN_ENTRY,
    DEDUP_MERGE,
    PASSAGE,
    RAW_ROW,
    REVIEW_CONTRADICTION,
    REVIEW_SEMANTIC_DUPLICATE,
    read_table,
    table_from_rows,
    write_table,
)
from kbflow.embed.base import Embedder, text_hash
from kbflow.embed.cache import EmbeddingCache, embed_missing
from kbflow.embed.factory import open_embedder
from kbflow.errors import ConfigError
from kbflow.index.bm25 import cjk_share
from kbflow.results import Reviewed
from kbflow.review.contradictions import _merge_pairs, find_contradictions
from kbflow.review.semantic import SemanticPairs, find_semantic_duplicates
from kbflow.review.tables import write_version_review
from kbflow.settings import EmbedSettings, Settings
from kbflow.store.home import DataHome
from kbflow.store.versions import read_manifest

log = logging.getLogger(__name__)


SEMANTIC_FILE = "semantic_duplicates.parquet"


CONTRADICTIONS_FILE = "contradictions.parquet"


def title_vectors(
    embeddings_root: Path,
    model: dict[str, Any],
    titles: list[str],
    embed_settings: EmbedSettings,
    embedder: Embedder | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors of ``titles`` (as documents, like similar questions) under the version's
    model key, through the embedding cache. Returns the vectors and how many texts had to be
    embedded. Raises ``ConfigError`` when ``embedder`` is for another model key."""
    cache = EmbeddingCache(embeddings_root, model["model_key"], int(model["dim"]))
    hashes = [text_hash(t) for t in titles]
    known = cache.known_hashes()
    todo = [i for i, h in enumerate(hashes) if h not in known]
    embedded = 0
    if todo:
        texts = [titles[i] for i in todo]
        todo_hashes = [hashes[i] for i in todo]
        if embedder is not None:
            if embedder.info.key != model["model_key"]:
                raise ConfigError(
                    f"review: embedder is {embedder.info.key}, the version was built with "
                    f"{model['model_key']}"
                )
            embedded = embed_missing(texts, todo_hashes, embedder, cache).embedded
        else:
            from kbflow.embed.factory import embed_settings_for

            with open_embedder(embed_settings_for(embed_settings, model)) as opened:
                if opened.info.key != model["model_key"]:
                    raise ConfigError(
                        f"review: the configured embedder is {opened.info.key}, the version "
                        f"was built with {model['model_key']}"
                    )
                embedded = embed_missing(texts, todo_hashes, opened, cache).embedded
    return cache.get(hashes), embedded


def _version_vectors(
    passages: pa.Table, vectors: np.ndarray, titles: np.ndarray, entry_ids: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Title + similar-question vectors per entry (title first), their owners, refs, texts."""
    index_of = {e: i for i, e in enumerate(entry_ids)}
    kinds = passages.column("kind").to_pylist()
    q_rows = [i for i, k in enumerate(kinds) if k == "question"]
    q_entries = passages.column("entry_id").take(pa.array(q_rows, pa.int64())).to_pylist()
    q_owner = np.fromiter((index_of[e] for e in q_entries), np.int64, len(q_rows))
    q_vecs = np.asarray(vectors[np.asarray(q_rows, dtype=np.int64)], dtype=np.float32)
    all_vecs = np.concatenate(
        [np.asarray(titles, dtype=np.float32), q_vecs.reshape(-1, titles.shape[1])]
    )
    owner = np.concatenate([np.arange(len(entry_ids), dtype=np.int64), q_owner])
    q_ids = passages.column("passage_id").take(pa.array(q_rows, pa.int64())).to_pylist()
    q_text = passages.column("text").take(pa.array(q_rows, pa.int64())).to_pylist()
    first_title = passages.column("title").to_pylist()
    title_of: dict[str, str] = {}
    for e, t in zip(passages.column("entry_id").to_pylist(), first_title, strict=True):
        title_of.setdefault(e, t or "")
    refs = [f"{e}:title" for e in entry_ids] + q_ids
    texts = [title_of[e] for e in entry_ids] + q_text
    return all_vecs, owner, refs, texts


def _newer(a: str | None, b: str | None) -> str | None:
    if not a or not b:
        return a or b
    return max(a, b)


def review_version(
    vdir: Path,
    entries: pa.Table,
    merges: pa.Table,
    rows: pa.Table,
    settings: Settings,
    embeddings_root: Path,
    embedder: Embedder | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Semantic duplicates and contradictions of the version in ``vdir``.

    ``entries``: the run's clean entries (``CLEAN_ENTRY``: answers, ``updated_at``);
    ``merges``: the clean stage's ``DEDUP_MERGE``; ``rows``: the validate stage's
    ``RAW_ROW`` (merged rows' answers). Returns (``REVIEW_SEMANTIC_DUPLICATE`` rows,
    ``REVIEW_CONTRADICTION`` rows, summary), ``version``/``run_id`` filled from the manifest."""
    manifest = read_manifest(vdir)
    version, run_id = manifest["version"], manifest.get("run_id")
    model = manifest["embedding"]
    passages = read_table(vdir / "passages.parquet", PASSAGE)
    if (model.get("adapter") or {}).get("kind") == "finetune":
        # A fine-tuned adapter pushes different entries apart, duplicates included: the review
        # compares entries in the plain model's space (its vectors are in the cache).
        vectors = EmbeddingCache(embeddings_root, model["model_key"], int(model["dim"])).get(
            passages.column("text_hash").to_pylist()
        )
    else:
        vectors = np.load(vdir / "vectors.npy", mmap_mode="r", allow_pickle=False)
    entry_ids = list(dict.fromkeys(passages.column("entry_id").to_pylist()))
    entry_col = entries.column("entry_id").to_pylist()
    info = {
        e: (t or "", a or "", u)
        for e, t, a, u in zip(
            entry_col,
            entries.column("title").to_pylist(),
            entries.column("answer").to_pylist(),
            entries.column("updated_at").to_pylist(),
            strict=True,
        )
    }
    titles_by_passage: dict[str, str] = {}
    for e, t in zip(
        passages.column("entry_id").to_pylist(), passages.column("title").to_pylist(), strict=True
    ):
        titles_by_passage.setdefault(e, t or "")
    titles = [titles_by_passage[e] for e in entry_ids]
    answers = {e: v[1] for e, v in info.items()}

    tvecs, embedded = title_vectors(embeddings_root, model, titles, settings.embed, embedder)
    all_vecs, owner, refs, texts = _version_vectors(passages, vectors, tvecs, entry_ids)
    index_of = {e: i for i, e in enumerate(entry_ids)}
    merged_pairs = set()
    for c, m in zip(
        merges.column("canonical_id").to_pylist(),
        merges.column("merged_id").to_pylist(),
        strict=True,
    ):
        if c in index_of and m in index_of:  # an id both merged and published: never report it
            i, j = sorted((index_of[c], index_of[m]))
            merged_pairs.add((i, j))
    share = cjk_share(titles[:5000])
    languages = model.get("languages") or []
    covers = "multi" in languages or ("zh" if share > 0.5 else "en") in languages
    found: SemanticPairs = find_semantic_duplicates(
        all_vecs,
        owner,
        len(entry_ids),
        model["model_key"],
        settings.review,
        exclude=merged_pairs,
        model_covers_kb=covers,
    )
    threshold = found.calibration.threshold
    dup_rows: list[dict[str, Any]] = []
    for a, b, s, va, vb in zip(
        found.a.tolist(),
        found.b.tolist(),
        found.score.tolist(),
        found.vec_a.tolist(),
        found.vec_b.tolist(),
        strict=True,
    ):
        ea, eb = entry_ids[a], entry_ids[b]
        ua, ub = info.get(ea, ("", "", None))[2], info.get(eb, ("", "", None))[2]
        dup_rows.append(
            {
                "version": version,
                "run_id": run_id,
                "model_key": model["model_key"],
                "entry_a": ea,
                "entry_b": eb,
                "title_a": titles[a],
                "title_b": titles[b],
                "score": round(float(s), 6),
                "threshold": threshold,
                "matched_a": refs[va],
                "matched_b": refs[vb],
                "text_a": texts[va],
                "text_b": texts[vb],
                "updated_at_a": ua,
                "updated_at_b": ub,
                "newest_updated_at": _newer(ua, ub),
            }
        )
    semantic_pairs = [
        {
            "source": "semantic",
            "entry_a": r["entry_a"],
            "entry_b": r["entry_b"],
            "title_a": r["title_a"],
            "title_b": r["title_b"],
            "similarity": r["score"],
        }
        for r in dup_rows
    ]
    merge_pairs = _merge_pairs(merges, rows, {e: titles[i] for e, i in index_of.items()})
    contra = find_contradictions(semantic_pairs + merge_pairs, answers)
    flagged = {(c["entry_a"], c["entry_b"]) for c in contra if c["source"] == "semantic"}
    for r in dup_rows:
        r["has_contradiction"] = (r["entry_a"], r["entry_b"]) in flagged
    # newest first, then the strongest pairs
    dup_rows.sort(key=lambda r: (r["newest_updated_at"] or "", r["score"]), reverse=True)
    for c in contra:
        c["version"], c["run_id"] = version, run_id
    order = {"semantic": 0, "minhash_near": 1, "minhash_exact": 2}
    contra.sort(
        key=lambda c: (order.get(c["source"], 9), c["entry_a"], c["entry_b"], c["fact_kind"])
    )
    summary = {
        "version": version,
        "model_key": model["model_key"],
        "entries": len(entry_ids),
        "vectors": int(len(all_vecs)),
        "titles_embedded": embedded,
        "semantic_pairs": len(dup_rows),
        "semantic_candidates": found.candidates,
        "semantic_truncated": found.truncated,
        "contradictions": len(contra),
        "contradiction_pairs": len({(c["entry_a"], c["entry_b"]) for c in contra}),
        "merge_contradictions": sum(1 for c in contra if c["source"] != "semantic"),
        "merges_checked": len(merge_pairs),
        "calibration": found.calibration.as_dict(),
        "semantic_seconds": found.seconds,
    }
    return (
        table_from_rows(dup_rows, REVIEW_SEMANTIC_DUPLICATE),
        table_from_rows(contra, REVIEW_CONTRADICTION),
        summary,
    )


def review_stage(
    home: DataHome,
    run_id: str,
    version: str,
    settings: Settings,
    embedder: Embedder | None = None,
) -> Reviewed:
    """Review ``indexes/<version>`` built by ``run_id``: write both review Parquet files under
    ``runs/<run_id>/review/``, replace the version's rows in the catalog, return the summary.

    Skipped (marker with ``enabled: false``, empty files) when ``settings.review.enabled`` is
    off. Like every stage, a second call for the same run returns the recorded summary.
    ``embedder`` (tests) stands in for the configured backend when titles must be embedded."""
    from kbflow.runner import run_stage

    def run(folder: Path) -> Reviewed:
        if not settings.review.enabled:
            write_table(
                REVIEW_SEMANTIC_DUPLICATE.empty_table(),
                folder / SEMANTIC_FILE,
                REVIEW_SEMANTIC_DUPLICATE,
            )
            write_table(
                REVIEW_CONTRADICTION.empty_table(),
                folder / CONTRADICTIONS_FILE,
                REVIEW_CONTRADICTION,
            )
            return {"version": version, "enabled": False, "semantic_pairs": 0, "contradictions": 0}
        cdir, vdir = home.stage_dir(run_id, "clean"), home.stage_dir(run_id, "validate")
        semantic, contradictions, summary = review_version(
            home.indexes / version,
            read_table(cdir / "entries.parquet", CLEAN_ENTRY),
            read_table(cdir / "merges.parquet", DEDUP_MERGE),
            read_table(vdir / "rows.parquet", RAW_ROW),
            settings,
            home.embeddings,
            embedder,
        )
        write_table(semantic, folder / SEMANTIC_FILE, REVIEW_SEMANTIC_DUPLICATE)
        write_table(contradictions, folder / CONTRADICTIONS_FILE, REVIEW_CONTRADICTION)
        summary["run_id"] = run_id
        write_version_review(home.catalog_path, version, semantic, contradictions, summary)
        cal = summary["calibration"]
        log.info(
            "review: %s: %d semantic pairs (threshold %s, %s), %d contradictions in %d pairs "
            "(%d hidden by merges)",
            version,
            summary["semantic_pairs"],
            cal["threshold"],
            cal["method"],
            summary["contradictions"],
            summary["contradiction_pairs"],
            summary["merge_contradictions"],
        )
        return cast(Reviewed, {**summary, "enabled": True})

    return run_stage(home, run_id, "review", run)


def report_inputs(home: DataHome, run_id: str) -> dict[str, Any]:
    """What the nightly report shows of the run's review stage: ``summary`` (counts and the
    semantic threshold, or None when the stage did not run), ``contradictions`` and
    ``semantic_duplicates`` (tables, or None)."""
    from kbflow.runner import MARKER

    folder = home.run_dir(run_id) / "review"
    marker = folder / MARKER
    if not marker.is_file():
        return {"summary": None, "contradictions": None, "semantic_duplicates": None}
    full = json.loads(marker.read_text(encoding="utf-8"))
    cal = full.get("calibration") or {}
    keep = ("enabled", "semantic_pairs", "contradictions", "contradiction_pairs")
    summary = {k: full[k] for k in keep if k in full}
    summary["merge_contradictions"] = full.get("merge_contradictions", 0)
    summary["calibration"] = {
        k: cal.get(k)
        for k in (
            "model_key",
            "threshold",
            "method",
            "reason",
            "recall_positives",
            "false_pair_rate",
        )
    }
    tables = {}
    for key, name, schema in (
        ("contradictions", CONTRADICTIONS_FILE, REVIEW_CONTRADICTION),
        ("semantic_duplicates", SEMANTIC_FILE, REVIEW_SEMANTIC_DUPLICATE),
    ):
        tables[key] = read_table(folder / name, schema) if (folder / name).is_file() else None
    return {"summary": summary, **tables}
