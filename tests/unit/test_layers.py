"""The core never imports Prefect; the CLI's start-up path imports nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_prefect_flows_or_tasks():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & {"prefect", "flows", "tasks"})
        for p in (ROOT / "src" / "kbflow").rglob("*.py")
        if p.name not in ("cli.py", "cli_mine.py", "cli_embed.py", "cli_backfill.py")  # the CLI
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_reaches_flows_only_inside_functions():
    tree = ast.parse((ROOT / "src" / "kbflow" / "cli.py").read_text(encoding="utf-8"))
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)} | {
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    }
    assert not {
        m for m in top if m and m.split(".")[0] in {"prefect", "flows", "tasks", "faiss", "torch"}
    }


def test_help_does_not_load_heavy_modules():
    code = (
        "import sys\nfrom kbflow.cli import build_parser\nbuild_parser().format_help()\n"
        "heavy = [m for m in ('prefect', 'torch', 'faiss', 'great_expectations', 'datasketch', 'sentence_transformers') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_flows_loads_no_heavy_library():
    """Deployment discovery imports flows/: it must not pay for torch, faiss, GX or datasketch."""
    code = (
        "import sys\nimport flows.nightly\n"
        "heavy = [m for m in ('torch', 'faiss', 'great_expectations', 'datasketch', 'sentence_transformers', 'jieba') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])
