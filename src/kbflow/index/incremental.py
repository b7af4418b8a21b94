"""What a new version can reuse from the live one (``kbflow.index.build`` applies it).

Two independent reuses:

- **Tokens**: a passage whose text the live version holds keeps the live version's BM25 tokens
  (``bm25/doc_tokens.npy``), so only new texts are tokenised. The keyword index itself is rebuilt
  from the tokens in seconds (``kbflow.index.bm25.score_matrix``), with the same scores as a
  from-scratch build, since idf and lengths are the whole corpus's.
- **Dense**: the live version's base segment (``dense.faiss``) is shared by hard link, and only
  the passages it lacks (new, or changed text) go into a delta, with the base ids the version no
  longer serves as tombstones. Allowed when the vectors are the same model's with no adapter on
  either side, the index settings and the index kind (Flat/HNSW/IVF by size) are unchanged, and
  the delta plus tombstones stay within ``index.max_delta_share`` of the base; past that the
  version is built from scratch and becomes the next base (the merge). Hub scores of base
  passages are the base's (their neighbours moved by at most that share); delta passages are
  scored against the whole version.

Calibration is reused when the version is incremental, moved less than
``index.recalibrate_share`` and the golden calibration queries are the same
(``kbflow.index.stage``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kbflow.embed.cache import EmbeddingCache
from kbflow.index.bm25 import TOKENIZER, DocTokens
from kbflow.index.columns import StringColumn, read_rows
from kbflow.index.dense import BASE_KEYS, choose_factory
from kbflow.settings import IndexSettings
from kbflow.store.versions import MANIFEST, read_manifest

log = logging.getLogger(__name__)

#: Passage kinds the keyword index holds as empty documents (``kbflow.chunk``: a title's words
#: are in its answer passage already).
DENSE_ONLY_KINDS = frozenset({"title"})


@dataclass
class DenseReuse:
    """The base segment to share and what the new version changes in it."""

    base_dir: Path
    """The live version folder whose ``dense.faiss`` and ``dense-base.parquet`` are shared."""
    in_base: np.ndarray
    """Per new passage row: served by the base segment (same faiss id, same text)."""
    tombstones: np.ndarray
    """Base ids the new version does not serve from the base (sorted int64)."""
    hub: np.ndarray | None
    """Per new row: the live version's hub score of the same passage (NaN for delta rows),
    None when the version has no hub correction."""


@dataclass
class Live:
    """The live version as reuse needs it, read once per run: its folder, manifest and the
    passages' ids, text hashes and kinds."""

    dir: Path
    manifest: dict[str, Any]
    passages: pa.Table

    @classmethod
    def load(cls, live_dir: Path | None) -> Live | None:
        if live_dir is None or not (live_dir / MANIFEST).is_file():
            return None
        return cls(
            live_dir,
            read_manifest(live_dir),
            pq.read_table(live_dir / "passages.parquet", columns=["faiss_id", "text_hash", "kind"]),
        )

    def same_vectors(self, model_key: str) -> bool:
        """Its ``vectors.npy`` holds ``model_key``'s vectors as the cache does (no adapter)."""
        emb = self.manifest.get("embedding", {})
        return emb.get("model_key") == model_key and not emb.get("adapter")


@dataclass
class Plan:
    dense: DenseReuse | None = None
    tokens: DocTokens | None = None
    token_rows: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)


def keyword_texts(passages: pa.Table) -> StringColumn:
    """The text each passage row contributes to BM25 (row-aligned; dense-only kinds empty), as
    an Arrow column: tokenising reads only the rows it has no saved tokens for."""
    keep = pa.array(keyword_mask(passages.column("kind")))
    return StringColumn(pc.if_else(keep, passages.column("text"), ""))


def keyword_mask(kinds: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where a passage's text is indexed for keywords (not a dense-only kind)."""
    return ~pc.is_in(kinds, pa.array(sorted(DENSE_ONLY_KINDS))).to_numpy(zero_copy_only=False)


def first_rows(
    live: pa.Table, passages: pa.Table, column: str, live_mask: np.ndarray | None = None
) -> np.ndarray:
    """Per new row, the first live row with the same ``column`` value (among ``live_mask``'s
    rows), -1 where there is none. One Arrow hash lookup, no Python loop over the rows."""
    keys = live.column(column)
    rows = np.arange(live.num_rows, dtype=np.int64)
    if live_mask is not None:
        keys = keys.filter(pa.array(live_mask))
        rows = rows[live_mask]
    pos = pc.index_in(passages.column(column), value_set=keys.combine_chunks())
    found = pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(found >= 0, rows[np.maximum(found, 0)] if len(rows) else -1, -1)


def token_rows(live: pa.Table, passages: pa.Table) -> np.ndarray:
    """Per new row, a live row whose keyword text is the same (-1: tokenise it)."""
    got = first_rows(live, passages, "text_hash", keyword_mask(live.column("kind")))
    return np.where(keyword_mask(passages.column("kind")), got, -1)


_BLOCK_ROWS = 65_536


def write_passage_vectors(
    cache: EmbeddingCache, passages: pa.Table, live: Live | None, model_key: str, path: Path
) -> np.ndarray:
    """Write the passages' vectors, row-aligned, to the ``.npy`` file ``path`` and return it
    mapped read-only. Those whose text the live version holds are read from its ``vectors.npy``
    (when they are the same model's, no adapter), the rest from the embedding cache (which has
    them all; reading half a million from its shards took 5 s at 100k entries). Written a block
    of rows at a time, so a version built incrementally never holds all of them in memory (774
    MB at 100k entries): it reads its delta's rows and a sample, and links the file."""
    n, dim = passages.num_rows, cache.dim
    rows = np.full(n, -1, dtype=np.int64)
    if live is not None and live.same_vectors(model_key):
        rows = first_rows(live.passages, passages, "text_hash")
    miss = np.flatnonzero(rows < 0)
    fetched = (
        cache.get(passages.column("text_hash").take(pa.array(miss)).to_pylist())
        if len(miss)
        else np.zeros((0, dim), np.float32)
    )
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)}
        )
        for lo in range(0, n, _BLOCK_ROWS):
            hi = min(n, lo + _BLOCK_ROWS)
            block = np.empty((hi - lo, dim), dtype=np.float32)
            have = np.flatnonzero(rows[lo:hi] >= 0)
            if len(have):
                assert live is not None
                read_rows(live.dir / "vectors.npy", rows[lo:hi][have], block, have)
            a, b = np.searchsorted(miss, [lo, hi])
            block[miss[a:b] - lo] = fetched[a:b]
            block.tofile(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    del fetched
    return np.load(path, mmap_mode="r", allow_pickle=False)


def plan_reuse(
    found: Live | None,
    passages: pa.Table,
    embedding: dict[str, Any],
    settings: IndexSettings,
    adapter: bool,
) -> Plan:
    """What a version of ``passages`` (embedded as ``embedding``; ``adapter``: the version
    ships one, so its vectors are its own) reuses from the live version, with the reasons."""
    plan = Plan(report={"mode": "full", "base_version": None})
    if found is None:
        plan.report["reason"] = "no live version"
        return plan
    live_dir, live_manifest, live = found.dir, found.manifest, found.passages
    bm25 = live_manifest.get("index", {}).get("bm25", {})
    if bm25.get("tokenizer_version") == TOKENIZER:
        plan.tokens = DocTokens.load(live_dir / "bm25")
        if plan.tokens is not None and len(plan.tokens) == live.num_rows:
            plan.token_rows = token_rows(live, passages)
            plan.report["tokens_reused"] = int((plan.token_rows >= 0).sum())
        else:
            plan.tokens = None
    why = _dense_refusal(live_dir, live_manifest, embedding, settings, adapter, passages.num_rows)
    if why:
        plan.report["reason"] = why
        return plan
    keys = pq.read_table(live_dir / BASE_KEYS)
    base_ids = keys.column("faiss_id").to_numpy()
    new_ids = passages.column("faiss_id").to_numpy()
    base_row = first_rows(keys, passages, "faiss_id")
    in_base = base_row >= 0
    same = pc.equal(
        keys.column("text_hash").take(pa.array(np.maximum(base_row, 0))),
        passages.column("text_hash"),
    )
    in_base &= same.to_numpy(zero_copy_only=False)
    hub = None
    if live_manifest["index"].get("dense_scale", {}).get("hub_weight"):
        live_hub = np.load(live_dir / "hub.npy", allow_pickle=False)
        live_row = first_rows(live, passages, "faiss_id")
        hub = np.full(passages.num_rows, np.nan, dtype=np.float32)
        # a base passage the live version did not serve has no hub score there: re-scored
        in_base &= live_row >= 0
        hub[in_base] = live_hub[live_row[in_base]]
    tombstones = np.setdiff1d(base_ids, new_ids[in_base]).astype(np.int64)
    delta = int((~in_base).sum())
    share = (delta + len(tombstones)) / max(len(base_ids), 1)
    plan.report.update(
        delta_passages=delta,
        tombstones=len(tombstones),
        delta_share=round(share, 4),
        base_passages=len(base_ids),
    )
    if share > settings.max_delta_share:
        plan.report["reason"] = (
            f"delta and tombstones are {share:.1%} of the base segment, over "
            f"index.max_delta_share {settings.max_delta_share:.0%}: merged into a new base"
        )
        return plan
    plan.dense = DenseReuse(live_dir, in_base, tombstones, hub)
    plan.report.update(
        mode="incremental",
        base_version=live_manifest.get("index", {}).get("segments", {}).get("base_version")
        or live_manifest.get("version"),
        reason=f"delta and tombstones are {share:.1%} of the base segment",
    )
    return plan


def _dense_refusal(
    live_dir: Path,
    live_manifest: dict[str, Any],
    embedding: dict[str, Any],
    settings: IndexSettings,
    adapter: bool,
    n: int,
) -> str | None:
    if not settings.incremental:
        return "index.incremental is off (a full rebuild was asked for)"
    live_emb = live_manifest.get("embedding", {})
    if adapter or live_emb.get("adapter"):
        return "an adapter maps this version's or the live version's vectors"
    if live_emb.get("model_key") != embedding.get("model_key"):
        return f"the model changed ({live_emb.get('model_key')} -> {embedding.get('model_key')})"
    live_settings = live_manifest.get("settings", {}).get("index")
    mine = settings.model_dump(mode="json", exclude=set(IndexSettings.REUSE_NEUTRAL))
    theirs = {
        k: v for k, v in (live_settings or {}).items() if k not in IndexSettings.REUSE_NEUTRAL
    }
    if theirs != mine:
        return "the index settings changed"
    factory = live_manifest.get("index", {}).get("factory")
    if factory != choose_factory(n, settings):
        return f"the index kind changes with the KB's size ({factory} -> {choose_factory(n, settings)})"
    if not (live_dir / BASE_KEYS).is_file() or not (live_dir / "dense.faiss").is_file():
        return "the live version was built before incremental versions"
    return None
