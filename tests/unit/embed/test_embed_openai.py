"""The ``openai`` backend against the real ``kbflow serve-embeddings`` server."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from kbflow.embed.base import ModelInfo, format_query
from kbflow.embed.base import text_hash as th
from kbflow.embed.cache import EmbeddingCache, embed_missing
from kbflow.embed.local import default_model_dir
from kbflow.embed.openai import (
    QWEN3_DEFAULT_TASK,
    QWEN3_QUERY_TEMPLATE,
    OpenAIEmbedder,
    estimate_tokens,
    pack_batches,
    query_format,
)
from kbflow.errors import EmbeddingError, EndpointUnavailable
from kbflow.settings import EmbedSettings

from ...embedserver import embedding_server, shared_server, start_server

TEXTS = [
    "如何申请退款？",
    "退货运费由谁承担",
    "How do I reset my password?",
    "Where is my parcel? It was due yesterday and the tracking page has not changed.",
    "【会员 › 积分】积分有效期为12个月，过期自动清零。" * 3,
    "refund",
]


def settings(*urls: str, **kw: object) -> EmbedSettings:
    kw.setdefault("model", "all-MiniLM-L6-v2")  # what the project's own server serves
    return EmbedSettings(backend="openai", urls=list(urls), retry_backoff=0.02, **kw)  # type: ignore[arg-type]


def varied_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["退货", "refund", "会员积分", "password", "快递", "delivery", "发票", "invoice"]
    return [
        f"{i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for i in range(n)
    ]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_pack_batches_covers_every_text_within_budgets():
    rng = random.Random(1)
    for _ in range(50):
        texts = [
            "x" * rng.randint(0, 400) + "字" * rng.randint(0, 50) for _ in range(rng.randint(0, 60))
        ]
        budget, items = rng.randint(20, 500), rng.randint(1, 10)
        batches = pack_batches(texts, budget, items)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(texts)))
        lengths = [len(texts[i]) for i in flat]
        assert lengths == sorted(lengths)  # length-sorted: little padding
        for b in batches:
            assert len(b) <= items
            if len(b) > 1:
                assert max(estimate_tokens(texts[i]) for i in b) * len(b) <= budget


QWEN3_PROMPT = "Instruct: " + QWEN3_DEFAULT_TASK + "\nQuery:"


def test_the_query_instruction_comes_from_the_model_folder_not_the_name(tmp_path):
    def fmt(**kw):
        template, task, _ = query_format(EmbedSettings(backend="sglang", **kw))
        return None if template is None else template.format(task=task, query="怎么退货")

    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": QWEN3_PROMPT, "document": ""}}), encoding="utf-8"
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    # the folder's prompt, whatever the served name says
    assert fmt(model="my-embedder", model_path=qwen) == QWEN3_PROMPT + "怎么退货"
    # a Qwen3-Embedding name over a folder without a prompt gets none
    assert fmt(model="Qwen3-Embedding-4B", model_path=plain) is None
    # an explicit setting wins; "" means none; a bare task gets Qwen's format
    assert fmt(model="x", model_path=qwen, query_instruction="") is None
    assert fmt(model="x", query_instruction="Find FAQ") == "Instruct: Find FAQ\nQuery:怎么退货"
    assert fmt(model="x", query_instruction="query: ") == "query: 怎么退货"
    # a remote endpoint, no folder to read: the name is all there is
    assert fmt(model="Qwen/Qwen3-Embedding-4B") == QWEN3_PROMPT + "怎么退货"
    assert fmt(model="all-MiniLM-L6-v2") is None
    info = ModelInfo("Qwen3-Embedding-4B", 1024, 2560, ("multi",), QWEN3_QUERY_TEMPLATE, "Find FAQ")
    assert format_query(info, "怎么退货") == "Instruct: Find FAQ\nQuery:怎么退货"


def test_openai_vectors_match_local_backend(local_embedder):
    server = shared_server()
    emb = OpenAIEmbedder(settings(server.url, batch_items=2))
    got = emb.embed_documents(TEXTS)
    want = local_embedder.embed_documents(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    assert cosines(got, want).min() >= 0.999
    assert emb.info.key == "all-MiniLM-L6-v2@384" and emb.info.query_template is None
    # MiniLM takes no instruction: queries are embedded as they are
    assert cosines(emb.embed_queries(TEXTS), want).min() >= 0.999


def test_the_multilingual_model_served_gives_the_local_backends_vectors():
    from kbflow.embed.factory import make_embedder

    local = make_embedder(EmbedSettings(model="multilingual-e5-small"))
    server = start_server("--model-name", "multilingual-e5-small")
    try:
        emb = OpenAIEmbedder(settings(server.url, model="multilingual-e5-small", batch_items=3))
        assert emb.info.key == local.info.key == "multilingual-e5-small@384"
        got, want = emb.embed_documents(TEXTS), local.embed_documents(TEXTS)
        assert cosines(got, want).min() >= 0.999
        assert cosines(emb.embed_queries(TEXTS), local.embed_queries(TEXTS)).min() >= 0.999
    finally:
        server.stop()


def test_matryoshka_dimension_truncates_renormalises_and_keys(local_embedder):
    emb = OpenAIEmbedder(settings(shared_server().url, dim=128))
    got = emb.embed_documents(TEXTS)
    assert got.shape == (len(TEXTS), 128)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    want = local_embedder.embed_documents(TEXTS)[:, :128]
    assert cosines(got, want).min() >= 0.999
    assert emb.info.key == "all-MiniLM-L6-v2@128"


def test_two_endpoints_share_the_work(local_embedder):
    a, b = shared_server("plain"), shared_server("second")
    before = {s.port: s.stats()["inputs"] for s in (a, b)}
    emb = OpenAIEmbedder(settings(a.url, b.url, batch_items=8, max_in_flight=2))
    texts = varied_texts(160)
    got = emb.embed_documents(texts)
    assert set(emb.requests) == {a.url, b.url} and min(emb.requests.values()) >= 2
    served = {s.port: s.stats()["inputs"] - before[s.port] for s in (a, b)}
    assert min(served.values()) > 0
    assert sum(served.values()) == len(texts) + 1  # + the probe: no text was sent twice
    assert cosines(got, local_embedder.embed_documents(texts)).min() >= 0.999


def test_a_non_retryable_error_fails_at_once():
    server = shared_server()
    with pytest.raises(EmbeddingError, match="HTTP 404") as info:
        OpenAIEmbedder(settings(server.url, model="no-such-model"))
    assert not isinstance(info.value, EndpointUnavailable)


def test_503s_are_retried_with_backoff_until_they_stop(local_embedder):
    with embedding_server("--fail-first", "4") as server:
        with pytest.raises(EndpointUnavailable, match="after 3 attempts"):
            OpenAIEmbedder(settings(server.url, retries=2))
        assert server.stats()["failed"] == 3
        emb = OpenAIEmbedder(settings(server.url, retries=3))  # 4th attempt fails, 5th answers
        got = emb.embed_documents(TEXTS)
        assert server.stats()["failed"] == 4
    assert cosines(got, local_embedder.embed_documents(TEXTS)).min() >= 0.999


@pytest.mark.parametrize("refusal", ["413", "sglang"])
def test_too_large_requests_are_split_and_qwen3_queries_instructed(local_embedder, refusal):
    name = "Qwen3-Embedding-test"
    args = ["--model-dir", str(default_model_dir()), "--model-name", name]
    args += ["--max-batch-tokens", "300"] + (
        ["--too-long-as-sglang"] if refusal == "sglang" else []
    )
    with embedding_server(*args) as server:
        emb = OpenAIEmbedder(settings(server.url, model=name, batch_tokens=100_000))
        texts = varied_texts(60, seed=3)
        got = emb.embed_documents(texts)
        assert emb.requests[server.url] > 2  # the one packed request was split until it fit
        assert cosines(got, local_embedder.embed_documents(texts)).min() >= 0.999
        q = emb.embed_queries(["怎么退货"])
        want = local_embedder.embed_documents([f"Instruct: {emb.info.task}\nQuery:怎么退货"])
        assert emb.info.query_template == QWEN3_QUERY_TEMPLATE and emb.info.languages == ("multi",)
        assert cosines(q, want).min() >= 0.999
        with pytest.raises(EmbeddingError, match="single text"):
            emb.embed_documents(["退货" * 400])


def test_a_server_killed_mid_run_is_survived_by_a_rerun(tmp_path: Path, local_embedder):
    texts = varied_texts(200, seed=5)
    hashes = [th(t) for t in texts]
    cache = EmbeddingCache(tmp_path, "all-MiniLM-L6-v2@384", 384)
    # probe + 2 groups of 4 requests answer; the 10th request kills the server
    with embedding_server("--exit-after", "9") as dying:
        emb = OpenAIEmbedder(settings(dying.url, batch_items=10, max_in_flight=2, retries=1))
        with pytest.raises(EndpointUnavailable):
            embed_missing(texts, hashes, emb, cache, group_size=40)
        assert dying.process.wait(timeout=10) == 17
    assert len(cache.known_hashes()) == 80 and len(cache.shards()) == 2
    server = shared_server()
    before = server.stats()["inputs"]
    stats = embed_missing(
        texts, hashes, OpenAIEmbedder(settings(server.url, batch_items=10)), cache, group_size=40
    )
    assert (stats.cached, stats.embedded) == (80, 120)
    assert server.stats()["inputs"] - before == 120 + 1  # only the missing texts (+ the probe)
    assert cosines(cache.get(hashes), local_embedder.embed_documents(texts)).min() >= 0.999


def test_when_one_endpoint_dies_the_other_takes_its_work(local_embedder):
    texts = varied_texts(120, seed=7)
    healthy = shared_server()
    with embedding_server("--exit-after", "3") as dying:
        before = healthy.stats()["inputs"]
        emb = OpenAIEmbedder(
            settings(dying.url, healthy.url, batch_items=5, max_in_flight=1, retries=1)
        )
        got = emb.embed_documents(texts)
        assert dying.process.wait(timeout=10) == 17
    assert emb.requests[dying.url] == 3  # the probe and two batches, then it crashed
    assert healthy.stats()["inputs"] - before == len(texts) - 2 * 5
    assert cosines(got, local_embedder.embed_documents(texts)).min() >= 0.999


def test_blank_texts_are_never_sent_and_the_server_refuses_them_as_sglang_does():
    server = shared_server()
    emb = OpenAIEmbedder(settings(server.url))
    before = server.stats()
    with pytest.raises(EmbeddingError, match=r"1 of 3 texts are empty or whitespace only"):
        emb.embed_documents(["退货", " \u3000\n", "refund"])
    assert server.stats()["seen"] == before["seen"]  # refused before anything was sent
    # what SGLang answers (serving_embedding._validate_request), from our own server too
    body = json.dumps({"input": ["退货", "  "], "model": "all-MiniLM-L6-v2"}).encode()
    req = urllib.request.Request(
        f"{server.url}/embeddings", data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 400
    message = json.loads(info.value.read())["error"]["message"]
    assert message == "Input at index 1 cannot be empty or whitespace only"
