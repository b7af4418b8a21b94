from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kbflow.embed.base import ModelInfo, model_key, text_hash, truncate_normalize
from kbflow.embed.cache import EmbeddingCache, embed_missing
from kbflow.embed.local import verify_weights
from kbflow.errors import EmbeddingError, ModelIntegrityError


class CountingEmbedder:
    """A real (deterministic, hash-seeded) backend that counts what it is asked to embed."""

    def __init__(self, dim: int = 8) -> None:
        self.info = ModelInfo("count", dim, dim, ("en",), None, None)
        self.seen: list[str] = []

    def embed_documents(self, texts):
        self.seen.extend(texts)
        out = (
            np.stack(
                [
                    np.random.default_rng(int(text_hash(t)[:8], 16)).normal(size=self.info.dim)
                    for t in texts
                ]
            )
            if texts
            else np.zeros((0, self.info.dim))
        )
        return truncate_normalize(out.astype(np.float32), self.info.dim)

    embed_queries = embed_documents


def test_cache_embeds_only_new_texts_and_returns_same_vectors(tmp_path: Path):
    emb = CountingEmbedder()
    cache = EmbeddingCache(tmp_path, emb.info.key, emb.info.dim)
    texts = ["a", "b", "c", "b"]
    st = embed_missing(texts, [text_hash(t) for t in texts], emb, cache, group_size=2)
    assert (st.embedded, st.cached, st.unique_texts) == (3, 0, 3)
    assert len(cache.shards()) == 2  # one shard per finished group: a crash keeps finished work
    first = cache.get([text_hash(t) for t in texts])
    texts2 = ["a", "b", "c", "d"]
    st2 = embed_missing(texts2, [text_hash(t) for t in texts2], emb, cache)
    assert (st2.embedded, st2.cached) == (1, 3)
    assert emb.seen == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(cache.get([text_hash(t) for t in texts]), first)


def test_cache_rejects_bad_vectors_and_reports_missing(tmp_path: Path):
    cache = EmbeddingCache(tmp_path, "m@4", 4)
    with pytest.raises(EmbeddingError, match="shape"):
        cache.put(["x"], np.zeros((1, 3), np.float32))
    with pytest.raises(EmbeddingError, match="NaN"):
        cache.put(["x"], np.full((1, 4), np.nan, np.float32))
    with pytest.raises(EmbeddingError, match="no cached vector"):
        cache.get(["nope"])


def test_model_key_separates_dimensions():
    assert model_key("Qwen/Qwen3-Embedding-4B", 1024) != model_key("Qwen/Qwen3-Embedding-4B", 256)
    assert "/" not in model_key("Qwen/Qwen3-Embedding-4B", 256)


def test_truncate_then_renormalise():
    v = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    t = truncate_normalize(v, 4)
    assert t.shape == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t[0] * np.linalg.norm(v[0, :4]), v[0, :4], rtol=1e-5)


def test_tampered_weights_are_refused(tmp_path: Path):
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_weights(tmp_path, "0" * 64)


def test_local_model_puts_paraphrases_closer_than_unrelated(local_embedder):
    v = local_embedder.embed_documents(
        ["where is my parcel", "my package has not arrived", "how do I reset my password"]
    )
    assert local_embedder.info.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    # batching and order do not change vectors
    single = local_embedder.embed_documents(["my package has not arrived"])
    assert float(single[0] @ v[1]) > 0.9999
