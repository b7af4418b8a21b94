"""The main job as a newcomer runs it: ``make demo`` (the nightly flow on the bundled Chinese
sample, searches, the eval, simulated logs and the weekly mining), in a data home of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_runs_the_main_job_end_to_end(tmp_path: Path):
    if not (ROOT / ".venv" / ".installed").is_file():
        pytest.skip("make demo runs in the project's .venv, which `make test` builds")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    out = subprocess.run(
        ["make", "-s", "demo", f"DEMO_HOME={tmp_path / 'demo'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "published" in text and "hit@1" in text
    assert 'kbflow search "我单子咋还没到"' in text and "hand-off to a human" in text
    # the weekly part ran on the simulated week and wrote its report
    assert "2026-W47" in text
    assert list((tmp_path / "demo" / "reports").rglob("*W47*"))
