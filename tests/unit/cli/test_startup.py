"""The CLI's start-up path imports nothing heavy (the layers themselves are import-linter's
contracts in pyproject.toml, checked by `make lint`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_cli_reaches_flows_only_inside_functions():
    """The CLI is the core's one outer door to flows (import-linter allows kbflow.cli ->
    kbflow_flows); it must open it lazily, inside the commands that run a flow, so that
    ``kbflow --help``, ``search`` and ``eval`` never import Prefect."""
    heavy = {"prefect", "kbflow_flows", "kbflow_tasks", "kbflow_deployments", "faiss", "torch"}
    offenders = {}
    for path in sorted((ROOT / "src" / "kbflow" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)} | {
            a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
        }
        bad = {m for m in top if m and m.split(".")[0] in heavy}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_help_does_not_load_heavy_modules():
    code = (
        "import sys\nfrom kbflow.cli.main import build_parser\nbuild_parser().format_help()\n"
        "heavy = [m for m in ('prefect', 'torch', 'faiss', 'great_expectations', 'datasketch', 'sentence_transformers') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_flows_loads_no_heavy_library():
    """Deployment discovery imports flows/: it must not pay for torch, faiss, GX or datasketch."""
    code = (
        "import sys\nimport kbflow_flows.nightly\n"
        "heavy = [m for m in ('torch', 'faiss', 'great_expectations', 'datasketch', 'sentence_transformers', 'jieba') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])
