"""What the weekly mining knows about the live version: its entries' questions (to tell a new
wording from a known one), the entries themselves (category, answer, expiry), the run's stale
entries, semantic duplicates and contradictions (the nightly review stage's), and the version's
query encoder with a threshold calibrated on its own vectors (to group gap queries by meaning).

Read from the live version's folder and the run that built it (``runs/<run_id>/clean`` and
``review``); every part is empty when it does not exist (no live version yet, the review stage
off), so mining still runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kbflow.errors import KbflowError
from kbflow.store.versions import embedding_info, live_version_dir, read_manifest

log = logging.getLogger(__name__)

ENTRY_QUESTIONS = pa.schema([("entry_id", pa.string()), ("question", pa.string())])

KB_ENTRIES = pa.schema(
    [
        ("entry_id", pa.string()),
        ("title", pa.string()),
        ("answer", pa.string()),
        ("category", pa.string()),
        ("expires_at", pa.string()),
    ]
)

STALE_ENTRIES = pa.schema(
    [
        ("entry_id", pa.string()),
        ("title", pa.string()),
        ("reason", pa.string()),
        ("stale_since", pa.string()),
    ]
)

DUPLICATE_PAIRS = pa.schema(
    [
        ("entry_a", pa.string()),
        ("entry_b", pa.string()),
        ("score", pa.float64()),
        ("matched_a", pa.string()),
        ("matched_b", pa.string()),
    ]
)

CONTRADICTIONS = pa.schema(
    [
        ("entry_a", pa.string()),
        ("entry_b", pa.string()),
        ("similarity", pa.float64()),
        ("fact_kind", pa.string()),
        ("topic", pa.string()),
        ("value_a", pa.string()),
        ("value_b", pa.string()),
        ("evidence_a", pa.string()),
        ("evidence_b", pa.string()),
    ]
)

Encoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class LiveKb:
    """The live version as the mining sees it (every table may be empty)."""

    version: str | None
    questions: pa.Table = field(default_factory=ENTRY_QUESTIONS.empty_table)
    entries: pa.Table = field(default_factory=KB_ENTRIES.empty_table)
    stale: pa.Table = field(default_factory=STALE_ENTRIES.empty_table)
    duplicates: pa.Table = field(default_factory=DUPLICATE_PAIRS.empty_table)
    contradictions: pa.Table = field(default_factory=CONTRADICTIONS.empty_table)
    encode: Encoder | None = None
    """The version's query encoder (built on first use), or None: gap topics by characters."""
    query_threshold: float | None = None
    """Cosine from which two queries are one topic (``calibrate_query_threshold``)."""
    expiring_days: int = 14


def _read(path: Path, schema: pa.Schema) -> pa.Table:
    if not path.is_file():
        return schema.empty_table()
    t = pq.read_table(path)
    present = [n for n in schema.names if n in t.column_names]
    if len(present) != len(schema.names):
        log.warning("mining: %s lacks %s; left out", path, sorted(set(schema.names) - set(present)))
        return schema.empty_table()
    return t.select(schema.names).cast(schema)


def entry_questions(version_dir: Path) -> pa.Table:
    """Titles and similar questions of a version's entries."""
    t = pq.read_table(version_dir / "passages.parquet", columns=["entry_id", "kind", "text"])
    keep = [k in ("title", "question") for k in t.column("kind").to_pylist()]
    t = t.filter(pa.array(keep, pa.bool_()))
    return pa.table(
        {"entry_id": t.column("entry_id"), "question": t.column("text")}, schema=ENTRY_QUESTIONS
    )


def calibrate_query_threshold(
    version_dir: Path, pairs: int = 200_000, false_pair_rate: float = 0.01, seed: int = 0
) -> float | None:
    """The cosine that only ``false_pair_rate`` of pairs of wordings of two *different*
    entries reach (titles and similar questions as the version embedded them; up to ``pairs``
    random pairs): two gap queries that close are one topic. Precision first: a topic that
    mixes unrelated questions misleads a reviewer, two topics for one need only cost a glance
    (on the sample, multilingual-e5-small: 0.917; a TPR-FPR optimum, 0.878, grouped "my rice
    cooker will not heat" with "delivery to the 6th floor"). None when the version has fewer
    than 40 titles and questions, or no vectors."""
    vec_path = version_dir / "vectors.npy"
    if not vec_path.is_file():
        return None
    t = pq.read_table(version_dir / "passages.parquet", columns=["entry_id", "kind"])
    kinds = t.column("kind").to_pylist()
    rows = np.asarray([i for i, k in enumerate(kinds) if k in ("title", "question")])
    if len(rows) < 40:
        return None
    vectors = np.load(vec_path, mmap_mode="r", allow_pickle=False)  # rows: passages' rows
    entries = np.asarray(t.column("entry_id").to_pylist(), dtype=object)[rows]
    _, codes = np.unique(entries, return_inverse=True)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(rows), size=pairs)
    b = rng.integers(0, len(rows), size=pairs)
    keep = codes[a] != codes[b]
    if keep.sum() < 100:
        return None
    va = np.asarray(vectors[rows[a[keep]]], dtype=np.float32)
    vb = np.asarray(vectors[rows[b[keep]]], dtype=np.float32)
    va /= np.linalg.norm(va, axis=1, keepdims=True) + 1e-12
    vb /= np.linalg.norm(vb, axis=1, keepdims=True) + 1e-12
    return float(np.quantile(np.einsum("ij,ij->i", va, vb), 1 - false_pair_rate))


def _encoder(info: dict[str, Any], embed: Any) -> Encoder:
    """The version's query encoder, built on first call (no model loads without gap queries)."""
    from kbflow.embed.adapter import make_version_embedder

    built: list[Any] = []

    def encode(texts: list[str]) -> np.ndarray:
        if not built:
            built.append(make_version_embedder(embed, info))
        return np.asarray(built[0].embed_queries(texts), dtype=np.float32)

    return encode


def live_kb(
    indexes_dir: Path, runs_dir: Path, embed: Any | None = None, expiring_days: int = 14
) -> LiveKb:
    """The live version of a data home (``indexes/``, ``runs/``) as the mining needs it; with
    ``embed`` (``EmbedSettings``) also its query encoder and calibrated query threshold."""
    try:
        folder = live_version_dir(indexes_dir)
        manifest = read_manifest(folder)
    except KbflowError:
        return LiveKb(version=None, expiring_days=expiring_days)
    run = runs_dir / str(manifest.get("run_id"))
    encode = threshold = None
    if embed is not None and manifest.get("embedding", {}).get("model"):
        threshold = calibrate_query_threshold(folder)
        info = embedding_info(manifest, folder)
        if (info.get("adapter") or {}).get("kind") == "linear":
            # the threshold is calibrated on the passages' own vectors: queries stay in that space
            info.pop("adapter")
        encode = _encoder(info, embed) if threshold is not None else None
    return LiveKb(
        version=str(manifest.get("version") or folder.name),
        questions=entry_questions(folder),
        entries=_read(run / "clean" / "entries.parquet", KB_ENTRIES),
        stale=_read(run / "clean" / "stale.parquet", STALE_ENTRIES),
        duplicates=_read(run / "review" / "semantic_duplicates.parquet", DUPLICATE_PAIRS),
        contradictions=_read(run / "review" / "contradictions.parquet", CONTRADICTIONS),
        encode=encode,
        query_threshold=threshold,
        expiring_days=expiring_days,
    )
