"""What every embedding backend is: the ``Embedder`` protocol, ``ModelInfo`` and model keys.

``model_key`` names model *and* dimension (``all-MiniLM-L6-v2@384``), so vectors of different
models or dimensions never share a cache entry or an index. Matryoshka dimensions: truncate,
then re-normalise."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: ``embed.model`` value that lets the KB's language pick a bundled model (``kbflow.embed.choose``).
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
