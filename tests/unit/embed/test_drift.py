"""The drift guard, with the local model and the real embeddings server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kbflow.embed.cache import EmbeddingCache
from kbflow.embed.drift import CANARY_FILE, CANARY_TEXTS, check_drift
from kbflow.embed.openai import OpenAIEmbedder
from kbflow.embed.reference import reference_vectors
from kbflow.errors import DriftError
from kbflow.settings import EmbedSettings

from ...embedserver import embedding_server, shared_server

MINILM = "all-MiniLM-L6-v2"  # what the project's own embedding server serves


def test_canaries_cover_chinese_and_english_short_and_long():
    lengths = [len(t) for t in CANARY_TEXTS]
    assert any("\u4e00" <= c <= "\u9fff" for c in CANARY_TEXTS[0])
    assert any(t.isascii() for t in CANARY_TEXTS)
    assert min(lengths) <= 8 and max(lengths) >= 150


def test_first_run_stores_canaries_and_a_second_run_passes(tmp_path: Path, local_embedder):
    first = check_drift(local_embedder, tmp_path)
    assert first.stored and first.min_cosine_stored is None
    stored = json.loads((tmp_path / CANARY_FILE).read_text())
    assert stored["model_key"] == "all-MiniLM-L6-v2@384"
    assert len(stored["vectors"]) == len(CANARY_TEXTS)
    second = check_drift(local_embedder, tmp_path)
    assert not second.stored and second.min_cosine_stored is not None
    assert second.min_cosine_stored >= 0.999 and second.min_cosine_single >= 0.999


def test_a_server_whose_vectors_changed_is_stopped_before_anything_is_written(
    tmp_path: Path, local_embedder
):
    cache = EmbeddingCache(tmp_path, local_embedder.info.key, local_embedder.info.dim)
    check_drift(local_embedder, cache.dir)  # the cache was built with the local model
    before = (cache.dir / CANARY_FILE).read_bytes()
    # the same model behind the real server passes: it is the same model
    check_drift(
        OpenAIEmbedder(EmbedSettings(backend="openai", urls=[shared_server().url], model=MINILM)),
        cache.dir,
    )
    with embedding_server("--perturb", "0.1") as server:
        emb = OpenAIEmbedder(EmbedSettings(backend="openai", urls=[server.url], model=MINILM))
        with pytest.raises(DriftError, match="changed since the cache was built") as info:
            check_drift(emb, cache.dir)
    assert "all-MiniLM-L6-v2@384" in str(info.value)
    assert (cache.dir / CANARY_FILE).read_bytes() == before
    assert cache.shards() == []


class BatchDependent:
    """A backend whose vectors depend on the batch they were in (a padding bug)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.info = inner.info

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self.inner.embed_documents(texts)
        if len(texts) > 1:
            vecs = vecs.copy()
            vecs[:, : vecs.shape[1] // 2] *= 1.5
        return vecs

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)


def test_batch_versus_single_mismatch_is_caught_even_on_first_use(tmp_path: Path, local_embedder):
    with pytest.raises(DriftError, match="alone and in a batch"):
        check_drift(BatchDependent(local_embedder), tmp_path)
    assert not (tmp_path / CANARY_FILE).exists()


def served(url: str, **kw) -> tuple[OpenAIEmbedder, EmbedSettings]:
    settings = EmbedSettings(backend="openai", urls=[url], model=MINILM, **kw)
    return OpenAIEmbedder(settings), settings


def test_a_first_run_is_checked_against_the_model_computed_here_and_records_how(
    tmp_path: Path,
):
    from kbflow.embed.local import default_model_dir

    # the model folder, loaded with sentence-transformers in this process
    emb, settings = served(shared_server().url, model_path=default_model_dir())
    check = check_drift(emb, tmp_path, reference=lambda t: reference_vectors(settings, t))
    assert check.stored and check.reference is not None
    assert check.reference.startswith("sentence-transformers on cpu")
    assert check.min_cosine_reference is not None and check.min_cosine_reference >= 0.999
    stored = json.loads((tmp_path / CANARY_FILE).read_text())
    assert stored["reference"] == {"how": check.reference, "min_cosine": check.min_cosine_reference}
    # no folder: a bundled model by name; Matryoshka dims are compared truncated
    emb, settings = served(shared_server().url, dim=128)
    check = check_drift(emb, tmp_path / "b", reference=lambda t: reference_vectors(settings, t))
    assert check.reference == f"the bundled {MINILM}, in process"
    assert check.min_cosine_reference is not None and check.min_cosine_reference >= 0.999
    # neither: stored, and the canary file says it was unchecked
    unknown = EmbedSettings(backend="openai", urls=[shared_server().url], model="some-model")
    vecs, why = reference_vectors(unknown, ["x"])
    assert vecs is None and why.startswith("none available")


def test_a_wrong_first_run_is_refused_and_nothing_is_stored(tmp_path: Path):
    with embedding_server("--perturb", "0.3") as server:
        emb, settings = served(server.url)
        with pytest.raises(DriftError, match="differ from the same model computed here") as info:
            check_drift(emb, tmp_path, reference=lambda t: reference_vectors(settings, t))
    assert "the bundled all-MiniLM-L6-v2" in str(info.value)
    assert not (tmp_path / CANARY_FILE).exists()
