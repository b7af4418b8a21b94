"""``bench/gpu_check.sh`` on a machine without a GPU: one line per check, what this host lacks
skipped with its reason, and the checks that need no GPU (the model folder's tokenizer, SGLang's
environment) really run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..gpuhost import tokenizer_folder, venv_with_sglang

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ["driver", "faiss", "tokenizer", "sglang", "workers", "rerank", "gone"]


def gpu_check(**env: str) -> tuple[int, dict[str, str]]:
    import sys

    run_env = {**os.environ, "PY": sys.executable, **env}
    for name in ("MODEL_PATH", "RERANK_MODEL_PATH", "KBFLOW_EMBED__SGLANG_PYTHON"):
        if name not in env:
            run_env.pop(name, None)
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        capture_output=True, text=True, env=run_env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    lines = {}
    for line in out.stdout.splitlines():
        status, name, *_ = line.split(maxsplit=2)
        lines[name] = line
    return out.returncode, lines


def test_on_a_cpu_host_every_check_prints_one_line_and_gpu_checks_skip(tmp_path: Path):
    rc, lines = gpu_check(
        MODEL_PATH=str(tokenizer_folder(tmp_path / "qwen", appends_end=True)),
        KBFLOW_EMBED__SGLANG_PYTHON=str(venv_with_sglang(tmp_path / "sg", "0.5.8")),
    )
    assert list(lines) == CHECKS and rc == 0, lines
    assert lines["driver"].startswith("SKIP") and "nvidia-smi" in lines["driver"]
    assert lines["faiss"].startswith("SKIP") and "sees no GPU" in lines["faiss"]
    assert lines["tokenizer"].startswith("PASS") and "<|endoftext|>" in lines["tokenizer"]
    assert lines["sglang"].startswith("PASS") and "SGLang 0.5.8" in lines["sglang"]
    assert all(lines[c].startswith("SKIP") for c in ("workers", "rerank", "gone"))


def test_a_stale_tokenizer_fails_the_check(tmp_path: Path):
    rc, lines = gpu_check(MODEL_PATH=str(tokenizer_folder(tmp_path / "old", appends_end=False)))
    assert rc == 1 and lines["tokenizer"].startswith("FAIL")
    assert "does not append <|endoftext|>" in lines["tokenizer"]
    assert lines["sglang"].startswith("SKIP") and "make sglang-venv" in lines["sglang"]
