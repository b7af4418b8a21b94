"""``kbflow serve-reranker``: Qwen3-Reranker on SGLang for ``kbflow serve --rerank-url``.

Imports nothing heavy at module level (``kbflow --help`` must stay instant).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from kbflow.errors import ConfigError
from kbflow.search.rerank_server import check_reranker_sglang, reranker_command

log = logging.getLogger(__name__)


def add_serve_reranker_command(subparsers: Any, command_table: dict[str, Any]) -> None:
    """Register ``serve-reranker`` on the CLI's subparsers and its handler in the table."""
    p = subparsers.add_parser(
        "serve-reranker",
        help="run Qwen3-Reranker on SGLang (/v1/rerank) with kbflow's prompt template",
        description="Start `python -m sglang.launch_server` for a Qwen3-Reranker model folder "
        "with kbflow's qwen3_reranker.jinja (Qwen's documented prompt) and a bounded share of "
        "GPU memory, in place of this process: signals reach SGLang and its exit code is "
        "kbflow's. Point `kbflow serve --rerank-url http://HOST:PORT` at it. Arguments after "
        "`--` go to SGLang as they are. Never starts Prefect.",
    )
    p.add_argument(
        "--model-path",
        required=True,
        type=Path,
        metavar="DIR",
        help="the model folder (e.g. Qwen3-Reranker-4B)",
    )
    p.add_argument("--port", type=int, default=30010, help="port (default 30010)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--mem-fraction",
        type=float,
        default=0.15,
        metavar="F",
        help="share of the GPU memory free at start for weights and KV cache "
        "(SGLang's --mem-fraction-static; default 0.15; README: Rerank)",
    )
    p.add_argument(
        "--python",
        type=Path,
        default=None,
        metavar="PY",
        help="the Python of SGLang's environment (default KBFLOW_EMBED__SGLANG_PYTHON, else this "
        "Python)",
    )
    p.add_argument(
        "--print-command",
        action="store_true",
        help="print the command (shell-quoted) and exit without starting it",
    )
    p.add_argument(
        "sglang_args",
        nargs="*",
        metavar="SGLANG_ARG",
        help="more SGLang options, after `--` (e.g. -- --context-length 8192)",
    )
    command_table["serve-reranker"] = run_serve_reranker


def run_serve_reranker(args: argparse.Namespace) -> int:
    python: Path | None = args.python
    if python is None:
        from kbflow.settings import load_settings

        python = load_settings().embed.sglang_python or Path(sys.executable)
    cmd = reranker_command(
        str(python),
        args.model_path,
        args.port,
        host=args.host,
        mem_fraction=args.mem_fraction,
        extra=args.sglang_args,
    )
    if args.print_command:
        print(shlex.join(cmd))
        return 0
    if not args.model_path.is_dir():
        raise ConfigError(f"--model-path {args.model_path} is not a folder (the model to serve)")
    version = check_reranker_sglang(python)
    log.info("SGLang %s: %s", version, shlex.join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # exec, not a child: SIGINT/SIGTERM go straight to SGLang, which stops its own
        # scheduler processes, and its exit status is the command's.
        os.execv(cmd[0], cmd)
    except OSError as exc:
        raise ConfigError(f"cannot start {cmd[0]}: {exc}") from exc
