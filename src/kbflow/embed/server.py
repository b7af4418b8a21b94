"""``kbflow serve-embeddings``: an OpenAI-compatible embeddings server over the local CPU model.

Speaks the subset of the OpenAI API that SGLang's embedding server speaks: ``POST
/v1/embeddings`` (``input`` a string or a list of strings; ``encoding_format`` float or base64),
``GET /v1/models``, ``GET /health`` (200 once the model is loaded: the port only opens then).
It serves teams without a GPU, and it is the real server behind the tests of the ``openai`` and
``sglang`` backends. ``GET /stats`` counts requests and inputs.

The fault options (``FaultOptions``) exist for tests and drills only: fail the first N
requests, fail every request after N, answer slowly, exit the process mid-run, reject large
requests with 413, or change every vector slightly (a "new model build").
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kbflow.embed.base import Embedder
from kbflow.embed.local import DEFAULT_MODEL
from kbflow.embed.openai import estimate_tokens

if TYPE_CHECKING:
    from fastapi import FastAPI
import argparse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultOptions:
    """Faults injected on demand (tests and drills; all off by default)."""

    fail_first: int = 0
    """Answer the first N embedding requests with ``fail_status``."""
    fail_after: int | None = None
    """Answer every embedding request after the first N good ones with ``fail_status``."""
    fail_status: int = 503
    delay_ms: int = 0
    """Sleep this long before answering each embedding request."""
    exit_after: int | None = None
    """Exit the process (as a crash would) on the embedding request after the first N."""
    max_batch_tokens: int | None = None
    """Reject requests over this many estimated tokens with 413 (as a gateway would)."""
    too_long_as_sglang: bool = False
    """Reject them as SGLang's scheduler does instead: 400, "exceeds the maximum allowed length"."""
    perturb: float = 0.0
    """Add this much of one fixed random direction to every vector, then re-normalise."""


def blank_input_message(texts: list[str], single: bool = False) -> str | None:
    """SGLang's answer (status 400, these words: ``serving_embedding._validate_request``) to an
    empty or whitespace-only input, so tests against this server see what production sees."""
    for i, text in enumerate(texts):
        if not text.strip():
            where = "" if single else f" at index {i}"
            return f"Input{where} cannot be empty or whitespace only"
    return None


def create_app(embedder: Embedder, model_name: str, faults: FaultOptions | None = None) -> FastAPI:
    """The ASGI app over ``embedder``; vectors are the model's full size, L2-normalised."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    faults = faults or FaultOptions()
    app = FastAPI(title="kbflow embeddings", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    stats = {"requests": 0, "inputs": 0, "failed": 0, "seen": 0}
    direction = np.random.default_rng(12345).standard_normal(embedder.info.full_dim)
    direction = (direction / np.linalg.norm(direction)).astype(np.float32)

    def error(status: int, message: str, kind: str = "server_error") -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": kind, "code": status}}, status_code=status
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    def get_stats() -> dict[str, int]:
        with lock:
            return dict(stats)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "owned_by": "kbflow"}],
        }

    @app.post("/v1/embeddings")
    def embeddings(body: dict[str, Any]) -> Response:
        with lock:
            stats["seen"] += 1
            seen = stats["seen"]
        if faults.exit_after is not None and seen > faults.exit_after:
            log.error("fault injection: exiting on request %d", seen)
            os._exit(17)
        if faults.delay_ms:
            threading.Event().wait(faults.delay_ms / 1000)
        if seen <= faults.fail_first or (
            faults.fail_after is not None and seen > faults.fail_after
        ):
            with lock:
                stats["failed"] += 1
            return error(faults.fail_status, f"fault injection: request {seen} refused")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return error(
                400, "input must be a non-empty string or list of strings", "invalid_request_error"
            )
        if blank := blank_input_message(texts, single=isinstance(raw, str)):
            return error(400, blank, "BadRequestError")
        if body.get("model") not in (None, model_name):
            return error(
                404, f"model {body.get('model')!r} is not served here", "invalid_request_error"
            )
        if faults.max_batch_tokens is not None:
            tokens = sum(estimate_tokens(t) for t in texts)
            if tokens > faults.max_batch_tokens and faults.too_long_as_sglang:
                return error(
                    400,
                    f"Input length ({tokens} tokens) exceeds the maximum allowed length "
                    f"({faults.max_batch_tokens} tokens)",
                    "BadRequestError",
                )
            if tokens > faults.max_batch_tokens:
                return error(413, f"request too large: {tokens} tokens", "invalid_request_error")
        with lock:  # one encode at a time: torch already uses every core for one batch
            vecs = embedder.embed_documents(texts)
        if faults.perturb:
            vecs = vecs + faults.perturb * direction
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs.astype(np.float32)
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                if as_base64
                else v.tolist(),
            }
            for i, v in enumerate(vecs)
        ]
        n_tokens = sum(estimate_tokens(t) for t in texts)
        with lock:
            stats["requests"] += 1
            stats["inputs"] += len(texts)
        payload = {
            "object": "list",
            "data": data,
            "model": model_name,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }
        # json.dumps directly: FastAPI's encoder walks every float and is several times slower.
        return Response(json.dumps(payload), media_type="application/json")

    return app


def serve_embeddings(
    host: str = "127.0.0.1",
    port: int = 8000,
    model_dir: Path | None = None,
    model_name: str = DEFAULT_MODEL,
    threads: int | None = None,
    faults: FaultOptions | None = None,
    pid_file: Path | None = None,
) -> None:
    """Load the model, then serve until interrupted (blocking). The port opens only after the
    model is loaded, so ``/health`` never answers for a server that cannot embed."""
    import uvicorn

    from kbflow.embed.e5 import E5Embedder, is_e5
    from kbflow.embed.local import LocalEmbedder
    from kbflow.settings import EmbedSettings

    settings = EmbedSettings(model=model_name, threads=threads)
    embedder: Embedder
    if is_e5(model_name) and model_dir is None:
        # the bundled multilingual model; inputs get its "query: " prefix, like the local backend
        embedder = E5Embedder(settings)
    else:
        embedder = LocalEmbedder(settings, model_dir=model_dir)
    if faults and faults != FaultOptions():
        log.warning("fault injection is on: %s", faults)
    if pid_file:
        pid_file.write_text(str(os.getpid()), encoding="utf-8")
    app = create_app(embedder, model_name, faults)
    log.info("serving %s on http://%s:%d/v1", model_name, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m kbflow.embed.server ...``: the same options as ``kbflow serve-embeddings``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kbflow.embed.server")
    add_serve_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run_serve_embeddings(args)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """Options of ``serve-embeddings`` (shared with ``python -m kbflow.embed.server``)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2, hash-checked)",
    )
    p.add_argument(
        "--model-name",
        default=None,
        metavar="NAME",
        help="model id served (default all-MiniLM-L6-v2; multilingual-e5-small serves the "
        "bundled multilingual model)",
    )
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    p.add_argument("--pid-file", type=Path, default=None, metavar="FILE", help="write the pid here")
    t = p.add_argument_group("fault injection (tests and drills only)")
    t.add_argument(
        "--fail-first", type=int, default=0, metavar="N", help="refuse the first N requests"
    )
    t.add_argument(
        "--fail-after", type=int, default=None, metavar="N", help="refuse every request after N"
    )
    t.add_argument(
        "--fail-status", type=int, default=503, metavar="CODE", help="status of refusals (503)"
    )
    t.add_argument("--delay-ms", type=int, default=0, metavar="MS", help="answer this much later")
    t.add_argument(
        "--exit-after", type=int, default=None, metavar="N", help="crash on the request after N"
    )
    t.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        metavar="N",
        help="answer 413 to requests over N estimated tokens",
    )
    t.add_argument(
        "--too-long-as-sglang",
        action="store_true",
        help="answer them 400 'exceeds the maximum allowed length', as SGLang's scheduler does",
    )
    t.add_argument(
        "--perturb", type=float, default=0.0, metavar="X", help="shift every vector by X (drift)"
    )


def run_serve_embeddings(args: argparse.Namespace) -> int:
    from kbflow.embed.local import DEFAULT_MODEL

    serve_embeddings(
        host=args.host,
        port=args.port,
        model_dir=args.model_dir,
        model_name=args.model_name or DEFAULT_MODEL,
        threads=args.threads,
        faults=FaultOptions(
            fail_first=args.fail_first,
            fail_after=args.fail_after,
            fail_status=args.fail_status,
            delay_ms=args.delay_ms,
            exit_after=args.exit_after,
            max_batch_tokens=args.max_batch_tokens,
            too_long_as_sglang=args.too_long_as_sglang,
            perturb=args.perturb,
        ),
        pid_file=args.pid_file,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
