"""The embedding backends' command-line options (wired into ``kbflow.cli`` by the lead)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from kbflow.cli.embed import add_nightly_options, add_serve_embeddings_command, overrides_from_args
from kbflow.settings import load_settings


def nightly_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_nightly_options(p)
    return p


def test_nightly_options_are_one_group_with_every_backend_option():
    p = nightly_parser()
    (group,) = [g for g in p._action_groups if g.title == "embedding backend"]
    flags = {s for a in group._group_actions for s in a.option_strings}
    assert flags == {"--embedder", "--embed-url", "--model-path", "--gpus", "--model"}
    assert p.parse_args(["--embedder", "local"]).embedder == "local"


def test_absent_options_override_nothing():
    assert overrides_from_args(nightly_parser().parse_args([])) == {}


def test_options_become_dotted_overrides_that_validate():
    args = nightly_parser().parse_args(
        ["--embedder", "openai", "--embed-url", "http://a:1/v1", "--embed-url", "http://b:2/v1"]
        + ["--model", "Qwen3-Embedding-4B", "--gpus", "2", "--model-path", "/models/q"]
    )
    over = overrides_from_args(args)
    assert over == {
        "embed.backend": "openai",
        "embed.urls": ["http://a:1/v1", "http://b:2/v1"],
        "embed.model_path": "/models/q",
        "embed.gpus": 2,
        "embed.model": "Qwen3-Embedding-4B",
    }
    embed = load_settings(None, over).embed
    assert embed.urls == ["http://a:1/v1", "http://b:2/v1"] and embed.gpus == 2


def test_serve_embeddings_command_registers_its_handler():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    table: dict = {}
    add_serve_embeddings_command(sub, table)
    args = parser.parse_args(["serve-embeddings", "--port", "9001", "--fail-first", "2"])
    assert args.host == "127.0.0.1" and args.port == 9001 and args.fail_first == 2
    from kbflow.embed.server import run_serve_embeddings

    assert table["serve-embeddings"] is run_serve_embeddings


def test_module_imports_nothing_heavy():
    code = (
        "import sys, kbflow.cli.embed; "
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'openai', 'prefect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
