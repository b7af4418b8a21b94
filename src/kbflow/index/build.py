"""Build a version folder: FAISS + BM25 + passages + manifest, atomically.

A version is built under ``indexes/.building-<version>/`` and renamed to
``indexes/<version>/`` only when every file (``manifest.json`` last) is written and fsynced,
so a listed version is always complete."""

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
import pyarrow.parquet as pq

from kbflow.contracts import DENSE_BASE_KEY, PASSAGE, write_table
from kbflow.embed.adapter import ADAPTER_DIR
from kbflow.errors import IndexError_
from kbflow.index.bm25 import TOKENIZER, Bm25Index
from kbflow.index.columns import take_rows
from kbflow.index.dense import (
    BASE_KEYS,
    DELTA,
    TOMBSTONES,
    DenseIndex,
    build_dense,
    choose_factory,
    dense_scale,
    hub_scores,
    load_faiss,
    model_hub_weight,
)
from kbflow.index.incremental import Plan, keyword_texts
from kbflow.settings import IndexSettings
from kbflow.store.home import atomic_write_text, fsync_dir
from kbflow.store.versions import MANIFEST

log = logging.getLogger(__name__)


HUB = "hub.npy"


def _write_faiss(index: Any, path: Path) -> None:
    faiss = load_faiss()

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
    adapter: Path | None = None,
    plan: Plan | None = None,
    passages_file: Path | None = None,
    vectors_file: Path | None = None,
) -> Path:
    """Write a complete version folder and return its path.

    ``passages`` (PASSAGE schema, or some of its columns with ``passages_file``) and
    ``vectors`` are row-aligned. ``passages_file``: the stage file ``passages`` was read from,
    copied into the version as it is (checked against the contract) instead of writing the
    table again. ``vectors_file``: the ``.npy`` file ``vectors`` is mapped from, linked into the
    version instead of saving the array again (which would read all of it). ``manifest`` gets the
    index facts added and is written last. ``adapter``: a staged adapter folder
    (``kbflow.index.adapter``) copied into the version as ``adapter/``. ``plan``: what to reuse
    from the live version (``kbflow.index.incremental.plan_reuse``); None builds everything.
    Raises ``IndexError_`` if the version exists.
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
        if adapter is not None:
            shutil.copytree(adapter, work / ADAPTER_DIR)
        if passages_file is None:
            write_table(passages, work / "passages.parquet", PASSAGE)
        else:
            _copy_passages(passages_file, work / "passages.parquet", n)
        if vectors_file is None:
            np.save(work / "vectors.npy", np.asarray(vectors, dtype=np.float32), allow_pickle=False)
        else:
            _share(vectors_file, work / "vectors.npy")
        return _build(
            indexes_dir, work, final, version, passages, vectors, manifest, settings, plan or Plan()
        )
    except BaseException:
        # A failed build (a full disk, a bad vector) leaves nothing behind; a killed one leaves
        # .building-*, which the next run removes (clean_stale_builds). Never a listed version.
        shutil.rmtree(work, ignore_errors=True)
        raise


def _copy_passages(src: Path, dst: Path, rows: int) -> None:
    """The version's passages file as a copy of the stage file (``rows`` rows, the contract's
    columns), refused otherwise."""
    meta = pq.read_metadata(src)
    if meta.num_rows != rows or not meta.schema.to_arrow_schema().equals(
        PASSAGE, check_metadata=False
    ):
        raise IndexError_(f"{src} does not hold the {rows} passages being indexed")
    shutil.copyfile(src, dst)


def _share(src: Path, dst: Path) -> None:
    """``dst`` is ``src`` (a hard link: versions stay self-contained folders and pruning one
    never removes a file another still links), or a copy where links are not supported."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _dense_side(
    work: Path,
    passages: pa.Table,
    vectors: np.ndarray,
    settings: IndexSettings,
    factory: str,
    hub_weight: float,
    plan: Plan,
) -> np.ndarray | None:
    """Write the version's dense files; returns its hub scores (None without hub correction)."""
    faiss_ids = passages.column("faiss_id").to_numpy()
    reuse = plan.dense
    if reuse is None:
        base = build_dense(vectors, faiss_ids, factory, settings.device)
        _write_faiss(base, work / "dense.faiss")
        write_table(passages.select(["faiss_id", "text_hash"]), work / BASE_KEYS, DENSE_BASE_KEY)
        dense = DenseIndex(base)
        hub = hub_scores(vectors, dense, settings.hub_neighbors) if hub_weight else None
        return hub
    _share(reuse.base_dir / "dense.faiss", work / "dense.faiss")
    _share(reuse.base_dir / BASE_KEYS, work / BASE_KEYS)
    delta_rows = np.nonzero(~reuse.in_base)[0]
    delta = None
    if len(delta_rows):
        delta_vectors = take_rows(vectors, delta_rows)
        delta = build_dense(delta_vectors, faiss_ids[delta_rows], "Flat", "cpu")
        _write_faiss(delta, work / DELTA)
    if len(reuse.tombstones):
        np.save(work / TOMBSTONES, reuse.tombstones, allow_pickle=False)
    if not hub_weight:
        return None
    assert reuse.hub is not None
    hub = reuse.hub.copy()
    if len(delta_rows):
        dense = DenseIndex(
            load_faiss().read_index(str(work / "dense.faiss")), delta, reuse.tombstones
        )
        hub[delta_rows] = hub_scores(delta_vectors, dense, settings.hub_neighbors)
    return hub


def _build(
    indexes_dir: Path,
    work: Path,
    final: Path,
    version: str,
    passages: pa.Table,
    vectors: np.ndarray,
    manifest: dict[str, Any],
    settings: IndexSettings,
    plan: Plan,
) -> Path:
    n = passages.num_rows
    factory = choose_factory(n, settings)
    if not isinstance(vectors, np.memmap):  # a mapped file stays one (read by rows)
        vectors = np.asarray(vectors, dtype=np.float32)  # no copy when already float32
    hub_weight = model_hub_weight(str(manifest.get("embedding", {}).get("model", "")), settings)
    hub = _dense_side(work, passages, vectors, settings, factory, hub_weight, plan)
    if hub is not None:
        np.save(work / HUB, hub, allow_pickle=False)
    scale = dense_scale(vectors, hub, hub_weight)
    bm25 = Bm25Index.build(
        keyword_texts(passages), settings.bm25_k1, settings.bm25_b, plan.tokens, plan.token_rows
    )
    bm25.save(work / "bm25")
    del bm25
    segments = {
        "base_version": plan.report.get("base_version") if plan.dense else version,
        "delta_passages": int((~plan.dense.in_base).sum()) if plan.dense else 0,
        "tombstones": len(plan.dense.tombstones) if plan.dense else 0,
    }
    manifest = {
        **manifest,
        "version": version,
        "index": {
            "factory": factory,
            "metric": "inner_product",
            "dim": int(vectors.shape[1]),
            "segments": segments,
            "build": plan.report,
            "dense_scale": {
                **scale,
                "hub_weight": hub_weight,
                "hub_neighbors": settings.hub_neighbors if hub_weight else 0,
            },
            "bm25": {
                "k1": settings.bm25_k1,
                "b": settings.bm25_b,
                "tokenizer": "jieba words + CJK char unigrams and bigrams; lower-cased latin words",
                "tokenizer_version": TOKENIZER,
            },
        },
    }
    atomic_write_text(
        work / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, default=str)
    )
    _fsync_tree(work)
    os.rename(work, final)
    fsync_dir(indexes_dir)
    log.info(
        "index: version %s, %d passages, %s, dim %d, %s (%s)",
        version,
        n,
        factory,
        vectors.shape[1],
        plan.report.get("mode", "full"),
        plan.report.get("reason", ""),
    )
    return final


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
