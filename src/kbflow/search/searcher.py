"""Search: the consumer of the live index version.

Embed the query, take dense and BM25 candidates, fuse with the version's calibrated weight,
optionally rerank the fused top candidates, return the top k. Under the version's hand-off
threshold the answer is a hand-off to a human. If the embedder fails or times out, BM25 alone
answers (fallback level 1); if that fails too, the canned hand-off (level 2). A query never
raises to the caller. Never starts Prefect.

A new ``CURRENT`` is loaded in a background thread while queries keep being answered by the
version already loaded, then swapped in with one assignment: a reload never fails or stalls a
query in flight.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed.adapter import adapter_key, space_key
from kbflow.embed.base import Embedder
from kbflow.embed.e5 import E5Embedder
from kbflow.embed.local import LocalEmbedder
from kbflow.index.bm25 import tokenize
from kbflow.index.version import Hit, LoadedVersion
from kbflow.settings import SearchSettings, Settings
from kbflow.store.home import DataHome
from kbflow.store.versions import CURRENT, current_version, live_version_dir

log = logging.getLogger(__name__)


# The version's ``manifest["embedding"]`` -> an embedder for that model.
EmbedderFactory = Callable[[dict[str, Any]], Embedder]


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
    reranked: bool = False
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
                **({"rerank": h.rerank} if h.rerank is not None else {}),
            }
            for h in self.results
        ]
        d.pop("extra")
        return d


class Searcher:
    """Searches the live version of a data home; picks up a new ``CURRENT`` without restart.

    Thread-safe: any number of threads may call :meth:`search` at once.
    """

    def __init__(
        self,
        indexes_dir: Path,
        settings: SearchSettings,
        embedder_factory: EmbedderFactory | None,
        reranker: Any | None = None,
    ) -> None:
        self.indexes_dir = indexes_dir
        self.settings = settings
        self._embedder_factory = embedder_factory
        self._embedders: dict[str, Embedder] = {}
        self._embedder_down_until = 0.0
        self._version: LoadedVersion | None = None
        self._current_stat: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self.load_error: str | None = None
        self.reranker = reranker
        # remote query embedders are called from here, so a stalled endpoint costs a query at
        # most ``embed_timeout`` seconds
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kbflow-query-embed")

    # --- versions ------------------------------------------------------------------------

    def _current_changed(self) -> bool:
        try:
            st = os.stat(self.indexes_dir / CURRENT)
        except FileNotFoundError:
            return self._version is not None or self._current_stat is None
        key = (st.st_ino, st.st_mtime_ns)
        return key != self._current_stat

    def _load_current(self) -> LoadedVersion:
        try:
            st = os.stat(self.indexes_dir / CURRENT)
            stat_key: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            stat_key = None
        name = current_version(self.indexes_dir)
        if self._version is not None and self._version.version == name:
            self._current_stat = stat_key
            return self._version
        v = LoadedVersion(live_version_dir(self.indexes_dir))
        self._version = v
        self._current_stat = stat_key
        log.info("search: version %s loaded", v.version)
        return v

    def _background_load(self) -> None:
        try:
            with self._lock:
                self._load_current()
            self.load_error = None
        except Exception as exc:  # noqa: BLE001 - keep serving the loaded version
            self.load_error = str(exc)
            log.error(
                "search: could not load the new live version (%s); still serving %s",
                exc,
                self._version.version if self._version else None,
            )
            try:
                st = os.stat(self.indexes_dir / CURRENT)
                self._current_stat = (st.st_ino, st.st_mtime_ns)  # do not retry on every query
            except FileNotFoundError:
                pass
        finally:
            self._loading = None

    def version(self, wait: bool = False) -> LoadedVersion:
        """The loaded live version. A changed ``CURRENT`` is loaded in the background while the
        loaded version keeps answering (``wait=True`` loads it before returning). The first
        call loads synchronously; raises when there is no loadable live version at all."""
        v = self._version
        if v is not None and not self._current_changed():
            return v
        if v is None or wait:
            with self._lock:
                return self._load_current()
        if self._loading is None:
            with self._lock:
                if self._loading is None:
                    self._loading = threading.Thread(
                        target=self._background_load, name="kbflow-version-loader", daemon=True
                    )
                    self._loading.start()
        return v

    # --- query embedding -----------------------------------------------------------------

    def embedder(self, info: dict[str, Any]) -> Embedder:
        """The query encoder of a version (``LoadedVersion.embedding``), one per model and
        adapter."""
        key = adapter_key(info)
        emb = self._embedders.get(key)
        if emb is None:
            if self._embedder_factory is None:
                raise RuntimeError("no query embedder configured")
            with self._lock:
                emb = self._embedders.get(key)
                if emb is None:
                    emb = self._embedders[key] = self._embedder_factory(info)
        if emb.info.key != space_key(info):
            raise RuntimeError(
                f"embedder is {emb.info.key} but the version was built with {space_key(info)}"
            )
        return emb

    def _query_vector(self, v: LoadedVersion, query: str) -> np.ndarray:
        if time.monotonic() < self._embedder_down_until:
            raise RuntimeError(
                "query embedder failed recently; retried after search.embed_retry_after"
            )
        try:
            emb = self.embedder(v.embedding)
            if isinstance(emb, LocalEmbedder | E5Embedder):  # in-process: nothing to time out
                return emb.embed_queries([query])[0]
            fut = self._pool.submit(emb.embed_queries, [query])
            try:
                return fut.result(timeout=self.settings.embed_timeout)[0]
            except FutureTimeout as exc:
                raise TimeoutError(
                    f"query embedding took longer than {self.settings.embed_timeout} s"
                ) from exc
        except Exception:
            self._embedder_down_until = time.monotonic() + self.settings.embed_retry_after
            raise

    # --- search --------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None) -> SearchResponse:
        k = k or self.settings.default_k
        start = time.perf_counter()
        try:
            v = self.version()
        except Exception as exc:  # noqa: BLE001 - a query never raises
            return self._handoff(query, None, start, 2, f"no live version: {exc}")
        level = 0
        error = None
        qvec: np.ndarray | None
        try:
            tokens = tokenize(query)
        except Exception as exc:  # noqa: BLE001
            return self._handoff(query, v.version, start, 2, f"query tokenizer failed: {exc}")
        try:
            qvec = self._query_vector(v, query)
        except Exception as exc:  # noqa: BLE001 - degrade to BM25
            log.warning("search: embedder unavailable (%s); keyword-only fallback", exc)
            qvec, level, error = None, 1, f"embedder unavailable: {exc}"
        rerank = self.reranker is not None and self.settings.rerank.enabled
        try:
            cands = v.candidates(qvec, tokens, n=self.settings.candidates)
            scores = v.fuse(cands, dense_available=qvec is not None)
            depth = max(k, self.settings.rerank.top_n) if rerank else k
            hits = v.hits(cands, scores, depth, dense_available=qvec is not None)
        except Exception as exc:  # noqa: BLE001
            log.error("search: retrieval failed (%s); canned hand-off", exc)
            return self._handoff(query, v.version, start, 2, f"retrieval failed: {exc}")
        top = hits[0].score if hits else 0.0
        reranked = False
        if rerank and len(hits) > 1:
            try:
                assert self.reranker is not None
                rs = self.reranker.scores(query, [h.passage for h in hits])
                for h, s in zip(hits, rs, strict=True):
                    h.rerank = round(float(s), 4)
                hits.sort(key=lambda h: -(h.rerank or 0.0))
                reranked = True
            except Exception as exc:  # noqa: BLE001 - keep the fused order
                log.warning("search: rerank failed (%s); fused order kept", exc)
                error = (
                    f"rerank failed: {exc}" if error is None else f"{error}; rerank failed: {exc}"
                )
        hits = hits[:k]
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
            reranked=reranked,
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

    def embedder_ok(self) -> bool:
        """False while the query embedder is in its back-off after a failure."""
        return time.monotonic() >= self._embedder_down_until

    def warm_up(self) -> None:
        """Load the live version and its query embedder now (not inside the first query)."""
        v = self.version(wait=True)
        self.embedder(v.embedding).embed_queries(["warm-up"])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_searcher(home: Path, settings: Settings) -> Searcher:
    """A ``Searcher`` over ``home/indexes`` that builds each version's query embedder from the
    configured backend with the version's model and dimension (remote backends: one attempt per
    query, bounded by ``search.embed_timeout``), and the reranker when it is enabled."""
    from kbflow.embed.adapter import make_version_embedder

    def factory(info: dict[str, Any]) -> Embedder:
        cfg = settings.embed.model_copy(
            update={"retries": 0, "request_timeout": settings.search.embed_timeout}
        )
        return make_version_embedder(cfg, info)

    reranker = None
    if settings.search.rerank.enabled:
        from kbflow.search.rerank import Reranker

        reranker = Reranker(settings.search.rerank)
    return Searcher(DataHome(home).indexes, settings.search, factory, reranker)
