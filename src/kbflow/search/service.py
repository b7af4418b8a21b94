"""``kbflow serve``: the HTTP search service over the live index version (FastAPI).

``POST /search`` answers a query (never an error for a query the index cannot answer: the
answer says its fallback level and whether it hands off), ``POST /click`` records a click on a
result, ``GET /health`` says which version is live and whether the query embedder answers.
Every search and click is appended to the process's own spool file before the request is
answered, and rolled into Parquet log segments in the background (``kbflow.store.spool``): a
``kill -9`` loses no answered event, and any number of processes on any number of hosts log at
once. A new ``CURRENT`` is picked up by the ``Searcher`` in the background while requests in
flight finish on the old version. ``serve(..., workers=N)`` runs N uvicorn worker processes,
each with its own searcher, spool and reload; uvicorn restarts a worker that dies.
Never starts Prefect. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from kbflow.search.searcher import Searcher, make_searcher
from kbflow.settings import Settings, load_settings
from kbflow.store.spool import SpoolWriter, open_writer

log = logging.getLogger(__name__)


class SearchRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=2000, description="the user's question")
    k: int | None = Field(None, ge=1, le=50, description="results to return (default 3)")
    session_id: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, max_length=200)


class ClickRequest(BaseModel):
    query_id: str = Field(..., min_length=1, max_length=100, description="from /search")
    entry_id: str = Field(..., min_length=1, max_length=500)
    position: int | None = Field(None, ge=1, le=1000, description="1-based rank clicked")
    session_id: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, max_length=200)


def create_app(
    home: Path,
    settings: Settings,
    searcher: Searcher | None = None,
    writer: SpoolWriter | None = None,
) -> FastAPI:
    """The service for data home ``home``. ``searcher``/``writer`` default to the configured
    ones (tests pass their own searcher to share a loaded model)."""
    searcher = searcher or make_searcher(home, settings)
    state: dict[str, Any] = {"writer": writer}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state["writer"] is None:
            state["writer"] = open_writer(home, settings.logs)
        try:
            searcher.warm_up()
        except Exception as exc:  # noqa: BLE001 - serve anyway; /health and answers say why
            log.warning("serve: not ready yet (%s); answering with fallbacks until it is", exc)
        yield
        state["writer"].close()
        searcher.close()

    app = FastAPI(
        title="kbflow search",
        description="Semantic search over the live knowledge-base index version.",
        lifespan=lifespan,
    )

    @app.post("/search")
    def search(req: SearchRequest) -> dict[str, Any]:
        res = searcher.search(req.query, req.k)
        try:
            query_id = state["writer"].log_search(res, req.session_id, req.user_id)
        except OSError as exc:  # no answer that is not logged
            log.error("serve: the search log cannot be written: %s", exc)
            raise HTTPException(
                503, "the search log cannot be written (disk full?); retry"
            ) from exc
        return {"query_id": query_id, **res.as_dict()}

    @app.post("/click")
    def click(req: ClickRequest) -> dict[str, Any]:
        try:
            state["writer"].log_click(
                req.query_id, req.entry_id, req.position, req.session_id, req.user_id
            )
        except OSError as exc:
            log.error("serve: the click log cannot be written: %s", exc)
            raise HTTPException(503, "the click log cannot be written (disk full?); retry") from exc
        return {"ok": True}

    @app.get("/health")
    def health() -> dict[str, Any]:
        try:
            v = searcher.version()
        except Exception as exc:  # noqa: BLE001
            return {"status": "no-version", "version": None, "error": str(exc)}
        writer = state["writer"]
        embedder_ok = searcher.embedder_ok()
        return {
            "status": "ok" if embedder_ok and not searcher.load_error else "degraded",
            "version": v.version,
            "model_key": v.manifest["embedding"]["model_key"],
            "entries": len(v.entry_ids),
            "passages": v.n_passages,
            "embedder": "ok" if embedder_ok else "down (keyword-only answers, fallback level 1)",
            "load_error": searcher.load_error,
            "pid": os.getpid(),
            "logged_events": writer.written if writer is not None else 0,
        }

    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (``serve(workers=N)``): data home and settings
    from ``KBFLOW_HOME`` and the other ``KBFLOW_*`` variables the parent set."""
    settings = load_settings(os.environ["KBFLOW_HOME"])
    return create_app(settings.home, settings)


def serve(
    home: Path,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
) -> None:
    """Run the service with uvicorn until interrupted (SIGINT/SIGTERM roll the spools).

    With ``workers`` > 1, uvicorn starts that many processes on one socket (each loads the
    index and model: memory grows with N) and restarts any that dies; they read their
    settings from the ``KBFLOW_*`` environment, so settings given only as Python objects
    must be exported there first (``kbflow serve`` does for its options)."""
    import uvicorn

    if workers > 1:
        os.environ["KBFLOW_HOME"] = str(home)
        uvicorn.run(
            "kbflow.search.service:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
        )
        return
    uvicorn.run(
        create_app(home, settings), host=host, port=port, log_level="info", access_log=False
    )
