"""``kbflow serve``: the HTTP search service over the live index version (FastAPI).

``POST /search`` answers a query (never an error for a query the index cannot answer: the
answer says its fallback level and whether it hands off), ``POST /click`` records a click on a
result, ``GET /health`` says which version is live and whether the query embedder answers.
Every search and click is queued to ``logs.duckdb`` by a ``LogWriter`` (batched in a
background thread: logging never slows or fails a request, and nothing is lost when the weekly
mining reads the file, see ``kbflow.store.logs``). A new ``CURRENT`` is picked up by the
``Searcher`` in the background while requests in flight finish on the old version.
Never starts Prefect. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from kbflow.search.searcher import Searcher, make_searcher
from kbflow.settings import Settings
from kbflow.store.home import DataHome
from kbflow.store.logs import LogWriter

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
    writer: LogWriter | None = None,
) -> FastAPI:
    """The service for data home ``home``. ``searcher``/``writer`` default to the configured
    ones (tests pass their own to share a loaded model)."""
    searcher = searcher or make_searcher(home, settings)
    state: dict[str, Any] = {"writer": writer}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state["writer"] is None:
            state["writer"] = LogWriter(DataHome(home).logs_path)
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
        query_id = state["writer"].log_search(res, req.session_id, req.user_id)
        return {"query_id": query_id, **res.as_dict()}

    @app.post("/click")
    def click(req: ClickRequest) -> dict[str, Any]:
        state["writer"].log_click(
            req.query_id, req.entry_id, req.position, req.session_id, req.user_id
        )
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
            "logged_events": writer.written if writer is not None else 0,
        }

    return app


def serve(home: Path, settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the service with uvicorn until interrupted (SIGINT/SIGTERM flush the log queue)."""
    import uvicorn

    app = create_app(home, settings)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
