"""The embedding cache: vectors by text hash under ``embeddings/<model_key>/``, as Parquet shards.

Each finished group of texts is written as its own shard at once (temp name, fsync, rename), so
a crashed run resumes where it stopped and never embeds a text twice."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kbflow.contracts import embedding_schema
from kbflow.embed.base import Embedder
from kbflow.errors import EmbeddingError

log = logging.getLogger(__name__)


class EmbeddingCache:
    """Vectors by text hash for one model key, as immutable Parquet shards."""

    def __init__(self, root: Path, key: str, dim: int) -> None:
        self.dir = root / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.schema = embedding_schema(dim)

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def known_hashes(self) -> set[str]:
        known: set[str] = set()
        for shard in self.shards():
            known.update(
                pq.read_table(shard, columns=["text_hash"]).column("text_hash").to_pylist()
            )
        return known

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> Path:
        """Write one shard atomically (temp name, fsync, rename); returns its path."""
        if vectors.shape != (len(hashes), self.dim):
            raise EmbeddingError(
                f"backend returned vectors of shape {vectors.shape}, expected ({len(hashes)}, {self.dim})"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError("backend returned NaN or infinite vector components")
        flat = pa.array(vectors.astype(np.float32, copy=False).reshape(-1), pa.float32())
        table = pa.Table.from_arrays(
            [
                pa.array(list(hashes), pa.string()),
                pa.FixedSizeListArray.from_arrays(flat, self.dim),
            ],
            schema=self.schema,
        )
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.parquet"
        tmp = self.dir / f".{name}.tmp"
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial shard behind
            raise
        return self.dir / name

    def get(self, hashes: Sequence[str]) -> np.ndarray:
        """Vectors for ``hashes`` in order; raises if any is missing. The shards' hashes are
        looked up in one hash table (a lookup per shard rebuilt a 500k-hash table 175 times:
        27 s for a 100k-entry KB), and only shards holding a wanted vector are read."""
        if not hashes:
            return np.zeros((0, self.dim), np.float32)
        shards = self.shards()
        keys = [pq.read_table(s, columns=["text_hash"]).column("text_hash") for s in shards]
        starts = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum([len(k) for k in keys], out=starts[1:])
        known = pa.chunked_array([c for k in keys for c in k.chunks], pa.string())
        pos = pc.index_in(pa.array(hashes, pa.string()), value_set=known.combine_chunks())
        if pos.null_count:
            first = hashes[int(np.nonzero(pos.is_null().to_numpy(zero_copy_only=False))[0][0])]
            raise EmbeddingError(f"{pos.null_count} passages have no cached vector (e.g. {first})")
        at = pos.to_numpy().astype(np.int64)
        shard_of = np.searchsorted(starts, at, side="right") - 1
        out = np.empty((len(hashes), self.dim), dtype=np.float32)
        for s in np.unique(shard_of).tolist():
            rows = np.nonzero(shard_of == s)[0]
            col = pq.read_table(shards[s], columns=["vector"]).column("vector").combine_chunks()
            vecs = col.flatten().to_numpy().reshape(-1, self.dim)
            out[rows] = vecs[at[rows] - starts[s]]
        return out


def remove_partial_shards(root: Path) -> list[str]:
    """Delete shard temp files a killed run left under ``root/<model_key>/`` (never read: only
    ``part-*.parquet`` names are shards). Call it while no run can be writing."""
    removed = []
    for tmp in root.glob("*/.part-*.parquet.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(f"{tmp.parent.name}/{tmp.name}")
    return removed


@dataclass
class EmbedStats:
    passages: int
    unique_texts: int
    cached: int
    embedded: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def embed_missing(
    texts: Sequence[str],
    hashes: Sequence[str],
    embedder: Embedder,
    cache: EmbeddingCache,
    group_size: int = 2048,
    progress: Callable[[int, int, float], None] | None = None,
) -> EmbedStats:
    """Embed the texts whose hash is not cached yet, writing one cache shard per group.

    Idempotent: a rerun after a crash embeds only what no shard holds yet.
    """
    start = time.perf_counter()
    known = cache.known_hashes()
    todo: dict[str, str] = {}
    for t, h in zip(texts, hashes, strict=True):
        if h not in known and h not in todo:
            todo[h] = t
    unique = len(set(hashes))
    items = sorted(todo.items(), key=lambda kv: len(kv[1]))
    done = 0
    for i in range(0, len(items), group_size):
        group = items[i : i + group_size]
        vecs = embedder.embed_documents([t for _, t in group])
        cache.put([h for h, _ in group], vecs)
        done += len(group)
        elapsed = time.perf_counter() - start
        if progress:
            progress(done, len(items), elapsed)
        log.info(
            "embed: %d/%d passages, %.0f/s, ETA %.0fs",
            done,
            len(items),
            done / max(elapsed, 1e-9),
            (len(items) - done) / max(done / max(elapsed, 1e-9), 1e-9),
        )
    return EmbedStats(
        passages=len(texts),
        unique_texts=unique,
        cached=unique - len(items),
        embedded=len(items),
        seconds=time.perf_counter() - start,
    )
