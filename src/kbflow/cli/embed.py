"""Command-line options for the embedding backends, and ``kbflow serve-embeddings``.

Kept apart from ``kbflow.cli`` so the backends' options live next to each other; imports nothing
heavy at module level (``kbflow --help`` must stay instant).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kbflow.embed.server import add_serve_options, run_serve_embeddings


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
