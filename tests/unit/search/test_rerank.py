"""The rerank stage against a real HTTP server speaking SGLang's /v1/rerank protocol."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kbflow.publish.pointer import publish_version
from kbflow.search.rerank import Reranker, RerankError, parse_rerank_response
from kbflow.search.searcher import Searcher
from kbflow.settings import RerankSettings, SearchSettings

from ...rerankserver import RerankServer
from ..helpers import EN_KB, build_test_version


@pytest.fixture(scope="module")
def home(tmp_path_factory, local_embedder) -> Path:
    root = tmp_path_factory.mktemp("rerank")
    build_test_version(root, "v1", EN_KB, local_embedder)
    publish_version(root / "indexes", "v1", keep=5)
    return root


@pytest.fixture()
def server():
    s = RerankServer().start()
    yield s
    s.stop()


def searcher(home: Path, server: RerankServer, local_embedder, **kw) -> Searcher:
    rs = RerankSettings(enabled=True, url=server.url, **kw)
    settings = SearchSettings(rerank=rs)
    return Searcher(home / "indexes", settings, lambda info: local_embedder, Reranker(rs))


def test_reranker_reorders_the_fused_top_candidates(home: Path, server, local_embedder):
    plain = Searcher(home / "indexes", SearchSettings(), lambda info: local_embedder)
    fused = plain.search("my money hasn't come back yet", k=3)
    assert fused.results[0].entry_id == "refund-time"
    # the reranker prefers another entry's passage: that one must come first
    target = next(h for h in plain.search("coupon", k=1).results)
    server.favourite = target.passage[:20]
    res = searcher(home, server, local_embedder, top_n=20).search(
        "my money hasn't come back yet", k=3
    )
    assert res.reranked and res.error is None
    assert res.results[0].entry_id == target.entry_id and res.results[0].rerank == 1.0
    assert len(res.results) == 3
    assert [r.rerank for r in res.results] == sorted((r.rerank for r in res.results), reverse=True)
    # the hand-off decision stays on the calibrated fused score
    assert res.top_score == fused.top_score and res.handoff == fused.handoff
    req = server.requests[-1]
    assert req["query"] == "my money hasn't come back yet"
    assert 3 < len(req["documents"]) <= 20  # the fused top candidates, not just k


@pytest.mark.parametrize("fault", ["status", "delay"])
def test_failing_reranker_keeps_the_fused_order(home: Path, server, local_embedder, fault):
    if fault == "status":
        server.status = 503
    else:
        server.delay_s = 3.0
    s = searcher(home, server, local_embedder, timeout=0.5)
    start = time.perf_counter()
    res = s.search("my money hasn't come back yet", k=3)
    assert time.perf_counter() - start < 2.5
    assert not res.reranked and res.fallback_level == 0
    assert res.results[0].entry_id == "refund-time"
    assert "rerank failed" in (res.error or "")


def test_rerank_response_parsing():
    sg = [{"score": 0.2, "index": 1}, {"score": 0.9, "index": 0}]
    assert parse_rerank_response(sg, 2) == [0.9, 0.2]
    cohere = {
        "results": [{"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.5}]
    }
    assert parse_rerank_response(cohere, 2) == [0.1, 0.5]
    with pytest.raises(RerankError, match="scored 1 of 2"):
        parse_rerank_response([{"score": 0.2, "index": 1}], 2)
    with pytest.raises(RerankError, match="outside"):
        parse_rerank_response([{"score": 0.2, "index": 5}], 2)
    with pytest.raises(RerankError, match="not set"):
        Reranker(RerankSettings(enabled=True))


def test_unreachable_reranker_is_a_rerank_error():
    r = Reranker(RerankSettings(enabled=True, url="http://127.0.0.1:9", timeout=1))
    assert r.endpoint == "http://127.0.0.1:9/v1/rerank"
    with pytest.raises(RerankError, match="unreachable"):
        r.scores("q", ["a", "b"])
