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
import pyarrow.compute as pc

from kbflow.contracts import (
    CLEAN_ENTRY,
    DEDUP_MERGE,
    PASSAGE,
    RAW_ROW,
    REVIEW_CONTRADICTION,
    REVIEW_ENTRY,
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
from kbflow.index.columns import read_rows
from kbflow.results import Reviewed
from kbflow.review.contradictions import _merge_pairs, find_contradictions
from kbflow.review.incremental import (
    ENTRIES_FILE,
    PreviousReview,
    entry_keys,
    keys_table,
    load_previous,
    plan,
    settings_key,
    vectors_key,
)
from kbflow.review.semantic import (
    SemanticPairs,
    find_semantic_duplicates,
    update_semantic_duplicates,
)
from kbflow.review.tables import write_version_review
from kbflow.settings import EmbedSettings, Settings
from kbflow.store.home import DataHome
from kbflow.store.versions import live_manifest, read_manifest

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
    passages: pa.Table, vectors: np.ndarray | Path, titles: np.ndarray, entry_ids: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Title + similar-question vectors per entry (title first), their owners, refs, texts.
    ``vectors``: the passages' (row-aligned), or the version's ``vectors.npy`` to read the
    question rows from (block reads: at 100k entries they are spread over all of its 774 MB,
    which mapped would stay in the process's RSS)."""
    index_of = {e: i for i, e in enumerate(entry_ids)}
    is_question = pc.equal(passages.column("kind"), "question")
    q_rows = np.flatnonzero(is_question.to_numpy(zero_copy_only=False))
    questions = passages.filter(is_question)
    q_owner = np.fromiter(
        (index_of[e] for e in questions.column("entry_id").to_pylist()), np.int64, len(q_rows)
    )
    n = len(entry_ids)
    all_vecs = np.empty((n + len(q_rows), titles.shape[1]), dtype=np.float32)
    all_vecs[:n] = titles
    if isinstance(vectors, Path):
        read_rows(vectors, q_rows, all_vecs, np.arange(n, n + len(q_rows)))
    else:
        all_vecs[n:] = vectors[q_rows]
    owner = np.concatenate([np.arange(n, dtype=np.int64), q_owner])
    title_of: dict[str, str] = {}
    for e, t in zip(
        passages.column("entry_id").to_pylist(), passages.column("title").to_pylist(), strict=True
    ):
        title_of.setdefault(e, t or "")
    refs = [f"{e}:title" for e in entry_ids] + questions.column("passage_id").to_pylist()
    texts = [title_of[e] for e in entry_ids] + questions.column("text").to_pylist()
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
    previous: PreviousReview | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, Any], pa.Table]:
    """Semantic duplicates and contradictions of the version in ``vdir``.

    ``entries``: the run's clean entries (``CLEAN_ENTRY``: answers, ``updated_at``);
    ``merges``: the clean stage's ``DEDUP_MERGE``; ``rows``: the validate stage's
    ``RAW_ROW`` (merged rows' answers); ``previous``: the live version's review, reused for
    what did not change when it may be (``kbflow.review.incremental``). Returns
    (``REVIEW_SEMANTIC_DUPLICATE`` rows, ``REVIEW_CONTRADICTION`` rows, summary,
    ``REVIEW_ENTRY`` keys), ``version``/``run_id`` filled from the manifest."""
    manifest = read_manifest(vdir)
    version, run_id = manifest["version"], manifest.get("run_id")
    model = manifest["embedding"]
    passages = read_table(vdir / "passages.parquet", PASSAGE, columns=_REVIEW_COLUMNS)
    vectors: np.ndarray | Path
    if (model.get("adapter") or {}).get("kind") == "finetune":
        # A fine-tuned adapter pushes different entries apart, duplicates included: the review
        # compares entries in the plain model's space (its vectors are in the cache).
        vectors = EmbeddingCache(embeddings_root, model["model_key"], int(model["dim"])).get(
            passages.column("text_hash").to_pylist()
        )
    else:
        vectors = vdir / "vectors.npy"
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
    merged_ids = {entry_ids[i] for pair in merged_pairs for i in pair}
    title_of = {e: titles[i] for e, i in index_of.items()}
    keys = entry_keys(passages, title_of, answers, merged_ids)
    review_key = settings_key(settings.review)
    how = plan(previous, keys, vectors_key(model), review_key, settings.index.recalibrate_share)
    reused: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if how.previous is not None:
        changed = np.zeros(len(entry_ids), dtype=bool)
        changed[[index_of[e] for e in how.changed]] = True
        kept = _kept_pairs(how.previous, index_of, changed, refs)
        found: SemanticPairs = update_semantic_duplicates(
            all_vecs,
            owner,
            len(entry_ids),
            how.previous.calibration,
            settings.review,
            changed,
            kept,
            exclude=merged_pairs,
        )
        reused = _kept_contradictions(how.previous, keys)
    else:
        found = find_semantic_duplicates(
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
    merge_pairs = _merge_pairs(merges, rows, title_of)
    again = [p for p in semantic_pairs if (p["entry_a"], p["entry_b"]) not in reused]
    contra = find_contradictions(again + merge_pairs, answers)
    kept_contra = [
        c | {"similarity": p["similarity"], "title_a": p["title_a"], "title_b": p["title_b"]}
        for p in semantic_pairs
        for c in reused.get((p["entry_a"], p["entry_b"]), [])
    ]
    contra += kept_contra
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
        "settings_key": review_key,
        "vectors_key": vectors_key(model),
        "incremental": {
            "mode": "incremental" if how.previous is not None else "full",
            "reason": how.reason,
            "base_version": how.previous.version if how.previous is not None else None,
            "changed_entries": len(how.changed) if how.previous is not None else None,
            "gone_entries": how.gone,
            "share": round(how.share, 6),
            "contradiction_pairs_kept": len({(c["entry_a"], c["entry_b"]) for c in kept_contra}),
        },
    }
    return (
        table_from_rows(dup_rows, REVIEW_SEMANTIC_DUPLICATE),
        table_from_rows(contra, REVIEW_CONTRADICTION),
        summary,
        keys_table(keys),
    )


#: What the review reads of a version's passages (the answers' display column is the bulk).
_REVIEW_COLUMNS = ("passage_id", "entry_id", "kind", "title", "text", "text_hash")


def _kept_pairs(
    previous: PreviousReview,
    index_of: dict[str, int],
    changed: np.ndarray,
    refs: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The previous review's pairs of two unchanged entries, as vector pairs of this version
    (``(i, j, cosine)``: the matched title/question rows)."""
    row_of = {r: i for i, r in enumerate(refs)}
    t = previous.semantic
    vi: list[int] = []
    vj: list[int] = []
    ss: list[float] = []
    for a, b, ma, mb, score in zip(
        t.column("entry_a").to_pylist(),
        t.column("entry_b").to_pylist(),
        t.column("matched_a").to_pylist(),
        t.column("matched_b").to_pylist(),
        t.column("score").to_pylist(),
        strict=True,
    ):
        ia, ib = index_of.get(a), index_of.get(b)
        if ia is None or ib is None or changed[ia] or changed[ib]:
            continue
        ra, rb = row_of.get(ma), row_of.get(mb)
        if ra is None or rb is None:  # cannot be for an unchanged entry; searched again then
            changed[ia] = changed[ib] = True
            continue
        vi.append(ra)
        vj.append(rb)
        ss.append(score)
    return np.asarray(vi, np.int64), np.asarray(vj, np.int64), np.asarray(ss, np.float32)


def _kept_contradictions(
    previous: PreviousReview, keys: dict[str, tuple[str, str, bool]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The previous review's contradictions of semantic pairs whose two answers did not change,
    by pair (with no rows for a pair that had none: it need not be compared again)."""
    old = previous.keys
    same = {e for e, k in keys.items() if e in old and old[e][1] == k[1]}
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in previous.semantic.select(["entry_a", "entry_b"]).to_pylist():
        if r["entry_a"] in same and r["entry_b"] in same:
            out[(r["entry_a"], r["entry_b"])] = []
    for c in previous.contradictions.to_pylist():
        pair = (c["entry_a"], c["entry_b"])
        if c["source"] == "semantic" and pair in out:
            out[pair].append(c)
    return out


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
        incremental = settings.index.incremental  # --full-rebuild reviews whole too
        semantic, contradictions, summary, keys = review_version(
            home.indexes / version,
            read_table(cdir / "entries.parquet", CLEAN_ENTRY),
            read_table(cdir / "merges.parquet", DEDUP_MERGE),
            read_table(vdir / "rows.parquet", RAW_ROW),
            settings,
            home.embeddings,
            embedder,
            _live_review(home, version) if incremental else None,
        )
        write_table(keys, folder / ENTRIES_FILE, REVIEW_ENTRY)
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


def _live_review(home: DataHome, version: str) -> PreviousReview | None:
    """The live version's review (from the run that built it), unless ``version`` is live."""
    live = live_manifest(home)
    if live is None or live["version"] == version or not live.get("run_id"):
        return None
    return load_previous(home, live["run_id"])


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
