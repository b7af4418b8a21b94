"""Review stage: semantic near-duplicates and contradicting answers of a new index version.

Runs after the index stage, on the version's own vectors. Two review lists, never applied
automatically:

* ``semantic_duplicates``: pairs of different entries whose titles/similar questions mean the
  same (``kbflow.semantic``: FAISS neighbours, threshold calibrated per version), newest first;
* ``contradictions``: for every near-duplicate pair, semantic *or* merged by MinHash in the
  clean stage, the facts whose values differ (``kbflow.facts``), both values side by side.
  For a MinHash merge the canonical entry keeps its answer and the merged row's answer (read
  from the validate stage's ``rows.parquet``, normalised like the clean stage does) is what the
  merge hid: such rows say so in ``note``.

Outputs: ``runs/<run_id>/review/semantic_duplicates.parquet`` (``REVIEW_SEMANTIC_DUPLICATE``)
and ``contradictions.parquet`` (``REVIEW_CONTRADICTION``), and the catalog tables
``review_semantic_duplicates`` / ``review_contradictions``, whose rows for the version are
replaced in one transaction (a rerun of the same version replaces them). The completion marker
holds the counts and the calibration.

Title vectors are not passages (an FAQ entry's passage is title + answer), so titles are
embedded through the embedding cache under the version's model key: only titles the cache
lacks reach the backend, and a rerun or the next night embeds nothing new for unchanged titles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from kbflow import catalog
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
from kbflow.embed import Embedder, EmbeddingCache, embed_missing, open_embedder, text_hash
from kbflow.errors import ConfigError
from kbflow.facts import Fact, compare_facts, extract_facts
from kbflow.home import DataHome
from kbflow.index import read_manifest
from kbflow.normalize import normalize_text
from kbflow.semantic import SemanticPairs, find_semantic_duplicates
from kbflow.settings import EmbedSettings, Settings
from kbflow.sqlfiles import load_sql
from kbflow.textindex import cjk_share

log = logging.getLogger(__name__)

SEMANTIC_FILE = "semantic_duplicates.parquet"
CONTRADICTIONS_FILE = "contradictions.parquet"
#: Review tables in the catalog, by short name (the weekly bundle exports them under it).
REVIEW_TABLES = {
    "semantic_duplicates": REVIEW_SEMANTIC_DUPLICATE,
    "contradictions": REVIEW_CONTRADICTION,
}
MERGE_NOTE = (
    "merge hid a contradiction: the canonical entry {a} keeps its answer ({va}); "
    "the merged entry {b} said {vb}"
)

__all__ = [
    "REVIEW_TABLES",
    "find_contradictions",
    "read_review_tables",
    "review_stage",
    "review_version",
    "title_vectors",
    "write_review_tables",
]


# --- vectors -------------------------------------------------------------------------------


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
            from kbflow.calibrate import embed_settings_for

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


# --- contradictions ------------------------------------------------------------------------


def _joined(values: tuple[str, ...]) -> str:
    return " / ".join(values)


def find_contradictions(
    pairs: list[dict[str, Any]], answers: dict[str, str]
) -> list[dict[str, Any]]:
    """Contradiction rows for near-duplicate ``pairs``.

    Each pair is a dict with ``entry_a``, ``entry_b``, ``title_a``, ``title_b``,
    ``similarity``, ``source`` and, for merges, ``answer_b`` (the merged row's answer; the
    canonical ``entry_a``'s answer comes from ``answers``). Returns rows of
    ``REVIEW_CONTRADICTION`` without ``version``/``run_id``."""
    cache: dict[str, list[Fact]] = {}

    def facts_of(key: str, text: str) -> list[Fact]:
        if key not in cache:
            cache[key] = extract_facts(text)
        return cache[key]

    rows: list[dict[str, Any]] = []
    for p in pairs:
        a, b = p["entry_a"], p["entry_b"]
        text_a = answers.get(a, "")
        text_b = p["answer_b"] if "answer_b" in p else answers.get(b, "")
        if not text_a or not text_b or text_a == text_b:
            continue
        key_b = f"merged:{b}:{p.get('row_id')}" if "answer_b" in p else b
        for c in compare_facts(facts_of(a, text_a), facts_of(key_b, text_b)):
            note = ""
            if p["source"].startswith("minhash"):
                note = MERGE_NOTE.format(a=a, b=b, va=_joined(c.values_a), vb=_joined(c.values_b))
            rows.append(
                {
                    "source": p["source"],
                    "entry_a": a,
                    "entry_b": b,
                    "title_a": p.get("title_a"),
                    "title_b": p.get("title_b"),
                    "similarity": p.get("similarity"),
                    "fact_kind": c.kind,
                    "unit": c.unit,
                    "topic": c.topic,
                    "value_a": _joined(c.values_a),
                    "value_b": _joined(c.values_b),
                    "normalized_a": _joined(c.normalized_a),
                    "normalized_b": _joined(c.normalized_b),
                    "evidence_a": c.evidence_a,
                    "evidence_b": c.evidence_b,
                    "note": note,
                }
            )
    return rows


def _merge_pairs(merges: pa.Table, rows: pa.Table, titles: dict[str, str]) -> list[dict[str, Any]]:
    """Clean-stage merges (exact and near) with the merged row's normalised answer."""
    if merges.num_rows == 0:
        return []
    answer_of = dict(
        zip(rows.column("row_id").to_pylist(), rows.column("answer").to_pylist(), strict=True)
    )
    out = []
    for m in merges.to_pylist():
        if m["kind"] not in ("exact", "near"):
            continue  # "id": an older row of the same entry, an update, not a second answer
        out.append(
            {
                "source": f"minhash_{m['kind']}",
                "entry_a": m["canonical_id"],
                "entry_b": m["merged_id"],
                "title_a": titles.get(m["canonical_id"], m["canonical_title"]),
                "title_b": m["merged_title"],
                "similarity": m["similarity"],
                "row_id": m["row_id"],
                "answer_b": normalize_text(answer_of.get(m["row_id"])),
            }
        )
    return out


# --- the version ---------------------------------------------------------------------------


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


# --- catalog -------------------------------------------------------------------------------


def write_review_tables(
    catalog_path: Path,
    version: str,
    semantic: pa.Table,
    contradictions: pa.Table,
    summary: dict[str, Any],
) -> None:
    """Replace ``version``'s rows of the review tables (``review_versions``,
    ``review_semantic_duplicates``, ``review_contradictions``) in one transaction."""
    reviewed_at = datetime.now(UTC).replace(tzinfo=None)
    cal = summary.get("calibration") or {}
    with catalog.connect(catalog_path) as con:
        con.execute(load_sql("review/create_review_tables"))
        con.execute("begin transaction")
        try:
            con.execute(load_sql("review/delete_version_review_versions"), {"version": version})
            con.execute(
                load_sql("review/insert_review_version"),
                {
                    "version": version,
                    "run_id": summary.get("run_id"),
                    "reviewed_at": reviewed_at,
                    "model_key": summary.get("model_key"),
                    "method": cal.get("method"),
                    "semantic_threshold": cal.get("threshold"),
                    "n_semantic_pairs": semantic.num_rows,
                    "n_contradictions": contradictions.num_rows,
                    "summary": json.dumps(summary, ensure_ascii=False, default=str),
                },
            )
            for name, table in (
                ("semantic_duplicates", semantic),
                ("contradictions", contradictions),
            ):
                con.execute(load_sql(f"review/delete_version_{name}"), {"version": version})
                con.register(f"staged_{name}", table)
                con.execute(load_sql(f"review/insert_{name}"), {"reviewed_at": reviewed_at})
                con.unregister(f"staged_{name}")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


@contextmanager
def _reader(catalog_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The catalog, or an empty in-memory one when it does not exist yet (nothing created)."""
    if catalog_path.is_file():
        with catalog.connect(catalog_path) as con:
            con.execute(load_sql("review/create_review_tables"))
            yield con
        return
    con = duckdb.connect(":memory:")
    try:
        con.execute(load_sql("catalog/create_tables"))
        con.execute(load_sql("review/create_review_tables"))
        yield con
    finally:
        con.close()


def _latest(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute(load_sql("review/select_latest_version")).fetchall()  # consume it all
    return str(rows[0][0]) if rows else None


def latest_review(catalog_path: Path) -> dict[str, Any] | None:
    """The ``review_versions`` row of the version the weekly bundle shows: the live version
    when it was reviewed, else the most recently reviewed one; None when none was."""
    with _reader(catalog_path) as con:
        version = _latest(con)
        if version is None:
            return None
        cur = con.execute(load_sql("review/select_review_versions"), {"limit": 1_000})
        cols = [d[0] for d in cur.description]
        for row in cur.fetchall():
            rec = dict(zip(cols, row, strict=True))
            if rec["version"] == version:
                rec["summary"] = json.loads(rec["summary"]) if rec.get("summary") else {}
                return rec
    return None


def read_review_tables(catalog_path: Path, version: str | None = None) -> dict[str, pa.Table]:
    """``semantic_duplicates`` and ``contradictions`` rows of ``version`` as stored in the
    catalog (with ``reviewed_at``); default: the version ``latest_review`` picks. Empty
    tables with the same columns when nothing was reviewed."""
    with _reader(catalog_path) as con:
        version = version or _latest(con) or ""
        return {
            name: con.sql(
                load_sql(f"review/select_{name}"), params={"version": version}
            ).to_arrow_table()
            for name in REVIEW_TABLES
        }


# --- the stage -----------------------------------------------------------------------------


def review_stage(
    home: DataHome,
    run_id: str,
    version: str,
    settings: Settings,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Review ``indexes/<version>`` built by ``run_id``: write both review Parquet files under
    ``runs/<run_id>/review/``, replace the version's rows in the catalog, return the summary.

    Skipped (marker with ``enabled: false``, empty files) when ``settings.review.enabled`` is
    off. Like every stage, a second call for the same run returns the recorded summary.
    ``embedder`` (tests) stands in for the configured backend when titles must be embedded."""
    from kbflow.pipeline import _stage

    def run(folder: Path) -> dict[str, Any]:
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
        write_review_tables(home.catalog_path, version, semantic, contradictions, summary)
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
        return {**summary, "enabled": True}

    return _stage(home, run_id, "review", run)


def report_inputs(home: DataHome, run_id: str) -> dict[str, Any]:
    """What the nightly report shows of the run's review stage: ``summary`` (counts and the
    semantic threshold, or None when the stage did not run), ``contradictions`` and
    ``semantic_duplicates`` (tables, or None)."""
    from kbflow.pipeline import MARKER

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
