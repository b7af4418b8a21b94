"""Command-line options for the embedding backends, and ``kbflow serve-embeddings``.

Kept apart from ``kbflow.cli`` so the backends' options live next to each other; imports nothing
heavy at module level (``kbflow --help`` must stay instant).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_nightly_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--embedder``, ``--embed-url``, ``--model-path``, ``--gpus`` and ``--model``."""
    g = parser.add_argument_group("embedding backend")
    g.add_argument(
        "--embedder",
        choices=["local", "openai", "sglang"],
        default=None,
        help="local: the bundled CPU model (default); openai: OpenAI-compatible endpoint(s) "
        "given with --embed-url; sglang: start SGLang worker(s) on this host's GPU(s) for the run",
    )
    g.add_argument(
        "--embed-url",
        action="append",
        default=None,
        metavar="URL",
        help="base URL of an OpenAI-compatible endpoint, e.g. http://10.0.0.5:30000/v1 "
        "(repeat for several; work is shared). Key: KBFLOW_EMBED__API_KEY or OPENAI_API_KEY",
    )
    g.add_argument(
        "--model-path",
        type=Path,
        default=None,
        metavar="DIR",
        help="sglang: model folder the worker loads (e.g. Qwen3-Embedding-4B)",
    )
    g.add_argument(
        "--gpus", type=int, default=None, metavar="N", help="sglang: one worker per GPU (default 1)"
    )
    g.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="local: auto (default: the KB's language picks all-MiniLM-L6-v2 for English, "
        "multilingual-e5-small otherwise) or either name; openai/sglang: the model the endpoint "
        "serves (required), recorded in the index",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted settings overrides for the options given (absent options are left out)."""
    pairs = {
        "embed.backend": getattr(args, "embedder", None),
        "embed.urls": getattr(args, "embed_url", None),
        "embed.model_path": str(args.model_path) if getattr(args, "model_path", None) else None,
        "embed.gpus": getattr(args, "gpus", None),
        "embed.model": getattr(args, "model", None),
    }
    return {k: v for k, v in pairs.items() if v is not None}


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """Options of ``serve-embeddings`` (shared with ``python -m kbflow.embed_server``)."""
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
        "--perturb", type=float, default=0.0, metavar="X", help="shift every vector by X (drift)"
    )


def run_serve_embeddings(args: argparse.Namespace) -> int:
    from kbflow.embed import DEFAULT_MODEL
    from kbflow.embed_server import FaultOptions, serve_embeddings

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
            perturb=args.perturb,
        ),
        pid_file=args.pid_file,
    )
    return 0


def add_serve_embeddings_command(subparsers: Any, command_table: dict[str, Any]) -> None:
    """Register ``serve-embeddings`` on the CLI's subparsers and its handler in the table
    (``dict[str, Any]``: the CLI's table is inferred with its functions' exact types)."""
    p = subparsers.add_parser(
        "serve-embeddings",
        help="serve the local CPU model over an OpenAI-compatible /v1/embeddings API",
        description="An OpenAI-compatible embeddings server (POST /v1/embeddings, GET /v1/models, "
        "GET /health) over the local CPU model. Binds 127.0.0.1 unless --host says otherwise. "
        "Never starts Prefect.",
    )
    add_serve_options(p)
    command_table["serve-embeddings"] = run_serve_embeddings
