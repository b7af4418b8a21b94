"""A version's own query encoder: its model, with the version's adapter when it has one.

Two kinds (``kbflow.index.adapter`` trains them, the manifest's ``embedding.adapter`` records
which, with the sha256 of its file):

- ``linear``: a ``d x d`` map applied to query vectors only (``adapter/linear.npy``); the
  version's passages keep the model's own vectors, so any model works (MiniLM, multilingual-e5,
  Qwen3 over HTTP) and nothing is re-embedded.
- ``finetune``: a fine-tuned copy of the bundled English model (``adapter/model/``, a
  sentence-transformers folder); the version's passages were embedded with it.

A version without an adapter gets exactly the embedder it got before adapters existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed.base import Embedder, ModelInfo, model_key, sha256_file
from kbflow.embed.factory import embed_settings_for, make_embedder
from kbflow.errors import ConfigError, ModelIntegrityError
from kbflow.settings import EmbedSettings

ADAPTER_DIR = "adapter"
LINEAR_FILE = "linear.npy"
MODEL_DIR = "model"
HELD_OUT_FILE = "held_out.json"


def space_name(info: dict[str, Any]) -> str:
    """Name of the model whose vectors the version's passages are: the model's own, or for a
    fine-tuned adapter ``<model>+finetune-<sha12>`` (its documents never share a cache entry
    with the plain model's)."""
    adapter = info.get("adapter") or {}
    if adapter.get("kind") == "finetune":
        return f"{info['model']}+finetune-{str(adapter['sha256'])[:12]}"
    return str(info["model"])


def space_key(info: dict[str, Any]) -> str:
    """Cache key of the version's document vectors (``model_key`` of ``space_name``)."""
    return model_key(space_name(info), int(info["dim"]))


def adapter_key(info: dict[str, Any]) -> str:
    """Key of a version's query encoder: the model key, plus the adapter's kind and hash when
    it has one (two versions with different adapters never share an encoder)."""
    adapter = info.get("adapter")
    key = str(info["model_key"])
    if not adapter:
        return key
    return f"{key}+{adapter['kind']}-{str(adapter['sha256'])[:12]}"


def apply_linear(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``vectors @ matrix.T``, L2-normalised again."""
    out = np.asarray(vectors, dtype=np.float32) @ np.asarray(matrix, dtype=np.float32).T
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    return out.astype(np.float32, copy=False)


class LinearQueryAdapter:
    """An embedder whose query vectors pass through the version's linear map; documents are
    embedded by the base model as they are."""

    def __init__(self, base: Embedder, matrix: np.ndarray) -> None:
        if matrix.shape != (base.info.dim, base.info.dim):
            raise ConfigError(
                f"the adapter is {matrix.shape[0]}x{matrix.shape[1]} but the model gives "
                f"{base.info.dim} dimensions; rebuild the version (kbflow nightly --force)"
            )
        self.base = base
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.info: ModelInfo = base.info

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.base.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return apply_linear(self.base.embed_queries(texts), self.matrix)

    def close(self) -> None:
        close = getattr(self.base, "close", None)
        if close is not None:
            close()


def queries_reuse_passages(info: dict[str, Any]) -> bool:
    """Whether a question passage's stored vector is its query vector: the model embeds queries
    and documents alike (no query instruction) and no linear adapter maps the queries."""
    adapter = info.get("adapter") or {}
    return not (info.get("query_template") and info.get("task")) and adapter.get("kind") != "linear"


def _verified(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise ModelIntegrityError(f"the version's adapter file {path} is missing")
    got = sha256_file(path)
    if got != expected:
        raise ModelIntegrityError(
            f"{path} has sha256 {got}, the manifest says {expected}: the version folder was "
            "changed after it was built; roll back (kbflow rollback) or rebuild it"
        )
    return path


def load_linear(info: dict[str, Any]) -> np.ndarray:
    adapter = info["adapter"]
    path = _verified(Path(adapter["dir"]) / LINEAR_FILE, adapter["sha256"])
    return np.load(path, allow_pickle=False)


def make_version_embedder(settings: EmbedSettings, info: dict[str, Any]) -> Embedder:
    """The query encoder of a version (``info``: ``kbflow.store.versions.embedding_info``, so
    that an adapter's folder is resolved): its model and dimension from ``settings``' backend,
    then its adapter."""
    cfg = embed_settings_for(settings, info)
    adapter = info.get("adapter")
    if not adapter:
        return make_embedder(cfg)
    if "dir" not in adapter:
        raise ConfigError("the version's adapter folder is not resolved (use embedding_info)")
    if adapter["kind"] == "linear":
        return LinearQueryAdapter(make_embedder(cfg), load_linear(info))
    if adapter["kind"] == "finetune":
        from kbflow.embed.local import LocalEmbedder

        folder = Path(adapter["dir"]) / MODEL_DIR
        _verified(folder / "model.safetensors", adapter["sha256"])
        tuned = LocalEmbedder(cfg.model_copy(update={"backend": "local"}), model_dir=folder)
        tuned.info = replace(tuned.info, name=space_name(info))
        return tuned
    raise ConfigError(f"unknown adapter kind {adapter['kind']!r} in the version's manifest")
