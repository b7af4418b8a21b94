"""Index stage: build a versioned FAISS + BM25 index folder with its manifest.

A version is built under ``indexes/.building-<version>/`` and renamed to
``indexes/<version>/`` only when every file (``manifest.json`` last) is written and fsynced,
so a listed version is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kbflow.contracts import PASSAGE, write_table
from kbflow.errors import IndexError_
from kbflow.home import atomic_write_text, fsync_dir
from kbflow.settings import IndexSettings
from kbflow.textindex import Bm25Index

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
HUB = "hub.npy"
#: Random passage pairs whose median (hub-corrected) cosine is the dense scale's zero.
NORM_PAIRS = 20_000
_HUB_BATCH = 8192


def choose_factory(n: int, settings: IndexSettings) -> str:
    """Flat for small KBs (exact), HNSW up to ``hnsw_max``, IVF beyond."""
    if n <= settings.flat_max:
        return "Flat"
    if n <= settings.hnsw_max:
        return "HNSW32"
    nlist = int(4 * np.sqrt(n))
    return f"IVF{nlist},Flat"


#: Passage kinds the keyword index holds as empty documents (``kbflow.chunk``: a title's words
#: are in its answer passage already).
DENSE_ONLY_KINDS = frozenset({"title"})


def keyword_texts(passages: pa.Table) -> list[str]:
    """The text each passage row contributes to BM25 (row-aligned; dense-only kinds empty)."""
    return [
        "" if kind in DENSE_ONLY_KINDS else text
        for kind, text in zip(
            passages.column("kind").to_pylist(), passages.column("text").to_pylist(), strict=True
        )
    ]


def build_dense(vectors: np.ndarray, ids: np.ndarray, factory: str) -> Any:
    """Inner-product FAISS index over L2-normalised vectors, with stable int64 ids."""
    import faiss

    d = vectors.shape[1]
    base = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if not base.is_trained:
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 100_000), replace=False)]
        if _faiss_gpus(faiss) > 0:
            # faiss-gpu (GPU hosts): IVF's k-means is the slow part, so train on the GPU, then
            # copy back with index_gpu_to_cpu: the saved file and its readers stay the same.
            gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, base)
            gpu.train(sample)
            base = faiss.index_gpu_to_cpu(gpu)
        else:
            base.train(sample)
    index = faiss.IndexIDMap2(base)
    index.add_with_ids(vectors, ids.astype(np.int64))
    return index


def hub_scores(vectors: np.ndarray, dense: Any, k: int) -> np.ndarray:
    """Mean cosine of each vector to its ``k`` nearest other vectors, found with the version's
    own dense index (exact up to ``index.flat_max`` vectors, HNSW/IVF above: an estimate, which
    is all a correction term needs). The nearest hit is taken to be the vector itself."""
    import faiss

    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float32)
    inner = faiss.downcast_index(dense.index) if hasattr(dense, "index") else dense
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(64, 2 * k)
    out = np.empty(n, dtype=np.float32)
    for lo in range(0, n, _HUB_BATCH):
        scores, ids = dense.search(np.ascontiguousarray(vectors[lo : lo + _HUB_BATCH]), k + 1)
        scores = np.where(ids >= 0, scores, np.nan)[:, 1:]
        out[lo : lo + _HUB_BATCH] = np.nan_to_num(np.nanmean(scores, axis=1), nan=0.0)
    return out


def dense_scale(
    vectors: np.ndarray, hub: np.ndarray | None, hub_weight: float, seed: int = 0
) -> dict[str, float]:
    """``lo``/``hi`` of the dense scale: search scores ``(cos - hub_weight * hub - lo) /
    (hi - lo)``, where ``lo`` is the median corrected cosine of random passage pairs (what an
    unrelated passage scores) and ``hi`` what a passage scores against its own text at the
    median hub. Cosines mean different things per model (MiniLM: unrelated pairs ~0.07,
    multilingual-e5: ~0.86); on this scale 0 is unrelated and 1 a perfect match for every
    model, like the keyword side (BM25 over its median self-score), so fusion weights and
    hand-off thresholds carry over between models."""
    n = len(vectors)
    if n < 2:
        return {"lo": 0.0, "hi": 1.0}
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, NORM_PAIRS)
    b = rng.integers(0, n, NORM_PAIRS)
    keep = a != b
    a, b = a[keep], b[keep]
    cos = np.einsum("ij,ij->i", np.asarray(vectors[a]), np.asarray(vectors[b]))
    h = hub if hub is not None and hub_weight else np.zeros(n, dtype=np.float32)
    lo = float(np.median(cos - hub_weight * h[b]))
    hi = float(1.0 - hub_weight * np.median(h))
    if hi - lo < 1e-3:  # a degenerate model that maps every text alike
        return {"lo": 0.0, "hi": 1.0}
    return {"lo": round(lo, 6), "hi": round(hi, 6)}


def model_hub_weight(model: str, settings: IndexSettings) -> float:
    """``index.hub_weight``, or the model's own (see ``IndexSettings.hub_weight``)."""
    if settings.hub_weight is not None:
        return float(settings.hub_weight)
    from kbflow.embed_e5 import is_e5

    return 0.5 if is_e5(model) else 0.0


def _faiss_gpus(faiss: Any) -> int:
    """GPUs faiss can use: 0 with faiss-cpu, on a host without a device, or an old build."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


def _write_faiss(index: Any, path: Path) -> None:
    import faiss

    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for p in [folder, *[d for d in folder.rglob("*") if d.is_dir()]]:
        fsync_dir(p)


def new_version_id(run_id: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"v{now:%Y%m%d-%H%M%S}-{run_id.rsplit('-', 1)[-1]}"


def build_version(
    indexes_dir: Path,
    version: str,
    passages: pa.Table,
    vectors: np.ndarray,
    manifest: dict[str, Any],
    settings: IndexSettings,
) -> Path:
    """Write a complete version folder and return its path.

    ``passages`` (PASSAGE schema) and ``vectors`` are row-aligned. ``manifest`` gets the
    index facts added and is written last. Raises ``IndexError_`` if the version exists.
    """
    final = indexes_dir / version
    if final.exists():
        raise IndexError_(f"version {version} already exists in {indexes_dir}")
    work = indexes_dir / f".building-{version}"
    if work.exists():
        shutil.rmtree(work)
    n = passages.num_rows
    if vectors.shape[0] != n:
        raise IndexError_(f"{n} passages but {vectors.shape[0]} vectors")
    work.mkdir(parents=True)
    try:
        return _build(indexes_dir, work, final, version, passages, vectors, manifest, settings)
    except BaseException:
        # A failed build (a full disk, a bad vector) leaves nothing behind; a killed one leaves
        # .building-*, which the next run removes (clean_stale_builds). Never a listed version.
        shutil.rmtree(work, ignore_errors=True)
        raise


def _build(
    indexes_dir: Path,
    work: Path,
    final: Path,
    version: str,
    passages: pa.Table,
    vectors: np.ndarray,
    manifest: dict[str, Any],
    settings: IndexSettings,
) -> Path:
    n = passages.num_rows
    factory = choose_factory(n, settings)
    write_table(passages, work / "passages.parquet", PASSAGE)
    vectors = np.asarray(vectors, dtype=np.float32)  # no copy when already float32
    np.save(work / "vectors.npy", vectors, allow_pickle=False)
    dense = build_dense(
        vectors, np.asarray(passages.column("faiss_id").to_pylist(), dtype=np.int64), factory
    )
    _write_faiss(dense, work / "dense.faiss")
    hub_weight = model_hub_weight(str(manifest.get("embedding", {}).get("model", "")), settings)
    hub = hub_scores(vectors, dense, settings.hub_neighbors) if hub_weight else None
    del dense  # the HNSW graph need not stay in memory while BM25 is built
    if hub is not None:
        np.save(work / HUB, hub, allow_pickle=False)
    scale = dense_scale(vectors, hub, hub_weight)
    bm25 = Bm25Index.build(keyword_texts(passages), settings.bm25_k1, settings.bm25_b)
    bm25.save(work / "bm25")
    manifest = {
        **manifest,
        "version": version,
        "index": {
            "factory": factory,
            "metric": "inner_product",
            "dim": int(vectors.shape[1]),
            "dense_scale": {
                **scale,
                "hub_weight": hub_weight,
                "hub_neighbors": settings.hub_neighbors if hub_weight else 0,
            },
            "bm25": {
                "k1": settings.bm25_k1,
                "b": settings.bm25_b,
                "tokenizer": "jieba words + CJK char unigrams and bigrams; lower-cased latin words",
            },
        },
    }
    atomic_write_text(
        work / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, default=str)
    )
    _fsync_tree(work)
    os.rename(work, final)
    fsync_dir(indexes_dir)
    log.info("index: version %s, %d passages, %s, dim %d", version, n, factory, vectors.shape[1])
    return final


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MANIFEST
    if not path.is_file():
        raise IndexError_(f"{version_dir} is not a complete index version (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


def update_manifest(version_dir: Path, **fields: Any) -> dict[str, Any]:
    manifest = read_manifest(version_dir)
    manifest.update(fields)
    atomic_write_text(
        version_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, default=str)
    )
    return manifest


def clean_stale_builds(indexes_dir: Path) -> list[str]:
    """Remove what a killed run left in ``indexes_dir``: half-built version folders
    (``.building-*``), half-deleted ones (``.deleting-*``, from pruning) and temp files of
    ``CURRENT``/``HISTORY``. None of them is ever listed as a version or read. Call it only
    while holding the run lock (another run's build would look the same)."""
    removed = []
    for p in sorted(indexes_dir.glob(".building-*")) + sorted(indexes_dir.glob(".deleting-*")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p.name)
    for p in sorted(indexes_dir.glob(".*.tmp-*")):
        if p.is_file() or p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
