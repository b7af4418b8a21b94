"""Search: the consumer of the live index version.

Embed the query, take dense and BM25 candidates, fuse with the version's calibrated weight,
return the top k. Under the version's hand-off threshold the answer is a hand-off to a human.
If the embedder fails, BM25 alone answers (fallback level 1); if that fails too, the canned
hand-off (level 2). A query never raises to the caller. Never starts Prefect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed import Embedder
from kbflow.publish import current_version, live_version_dir
from kbflow.retrieval import Hit, LoadedVersion
from kbflow.settings import SearchSettings
from kbflow.textindex import tokenize

log = logging.getLogger(__name__)


@dataclass
class SearchResponse:
    query: str
    version: str | None
    handoff: bool
    results: list[Hit]
    latency_ms: float
    fallback_level: int = 0
    top_score: float | None = None
    threshold: float | None = None
    message: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["results"] = [
            {
                "id": h.entry_id,
                "title": h.title,
                "score": h.score,
                "passage": h.passage,
                "passage_id": h.passage_id,
                "dense": h.dense,
                "keyword": h.keyword,
            }
            for h in self.results
        ]
        d.pop("extra")
        return d


class Searcher:
    """Searches the live version of a data home; picks up a new ``CURRENT`` without restart."""

    def __init__(
        self,
        indexes_dir: Path,
        settings: SearchSettings,
        embedder_factory: Callable[[], Embedder] | None,
    ) -> None:
        self.indexes_dir = indexes_dir
        self.settings = settings
        self._embedder_factory = embedder_factory
        self._embedder: Embedder | None = None
        self._version: LoadedVersion | None = None
        self._lock = threading.Lock()

    def version(self) -> LoadedVersion:
        """The loaded live version, reloaded when ``CURRENT`` names another one."""
        name = current_version(self.indexes_dir)
        v = self._version
        if v is None or v.version != name:
            with self._lock:
                if self._version is None or self._version.version != name:
                    self._version = LoadedVersion(live_version_dir(self.indexes_dir))
                v = self._version
        return v

    def embedder(self) -> Embedder:
        if self._embedder is None:
            if self._embedder_factory is None:
                raise RuntimeError("no embedder configured")
            with self._lock:
                if self._embedder is None:
                    self._embedder = self._embedder_factory()
        return self._embedder

    def _query_vector(self, v: LoadedVersion, query: str) -> np.ndarray:
        emb = self.embedder()
        key = v.manifest["embedding"]["model_key"]
        if emb.info.key != key:
            raise RuntimeError(
                f"embedder is {emb.info.key} but version {v.version} was built with {key}"
            )
        return emb.embed_queries([query])[0]

    def search(self, query: str, k: int | None = None) -> SearchResponse:
        k = k or self.settings.default_k
        start = time.perf_counter()
        try:
            v = self.version()
        except Exception as exc:  # noqa: BLE001 - a query never raises
            return self._handoff(query, None, start, 2, f"no live version: {exc}")
        tokens = tokenize(query)
        level = 0
        error = None
        qvec: np.ndarray | None
        try:
            qvec = self._query_vector(v, query)
        except Exception as exc:  # noqa: BLE001 - degrade to BM25
            log.warning("search: embedder unavailable (%s); keyword-only fallback", exc)
            qvec, level, error = None, 1, f"embedder unavailable: {exc}"
        try:
            cands = v.candidates(qvec, tokens, n=self.settings.candidates)
            scores = v.fuse(cands, dense_available=qvec is not None)
            hits = v.hits(cands, scores, k, dense_available=qvec is not None)
        except Exception as exc:  # noqa: BLE001
            log.error("search: retrieval failed (%s); canned hand-off", exc)
            return self._handoff(query, v.version, start, 2, f"retrieval failed: {exc}")
        top = hits[0].score if hits else 0.0
        threshold = v.threshold if level == 0 else v.threshold * (1 - v.weight)
        handoff = not hits or top < threshold
        return SearchResponse(
            query=query,
            version=v.version,
            handoff=handoff,
            results=hits,
            latency_ms=round((time.perf_counter() - start) * 1000, 2),
            fallback_level=level,
            top_score=top,
            threshold=round(threshold, 4),
            message=self.settings.handoff_message if handoff else None,
            error=error,
        )

    def _handoff(
        self, query: str, version: str | None, start: float, level: int, error: str
    ) -> SearchResponse:
        return SearchResponse(
            query=query,
            version=version,
            handoff=True,
            results=[],
            latency_ms=round((time.perf_counter() - start) * 1000, 2),
            fallback_level=level,
            message=self.settings.handoff_message,
            error=error,
        )
