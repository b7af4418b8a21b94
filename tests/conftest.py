"""Test-session set-up: a private Prefect home, no analytics, no network for models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Must happen before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="kbflow-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="kbflow-hypothesis-"))
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for var in list(os.environ):
    if var.startswith("KBFLOW_"):
        del os.environ[var]
# Versions are built without the per-version adapter unless a test asks for one (overrides
# {"adapter.mode": ...}): fine-tuning the English model costs 1-3 minutes per build on these
# 2 cores, and most tests are about other stages. tests/unit/index/test_adapter.py and
# tests/flows/test_adapter.py build with it.
os.environ["KBFLOW_ADAPTER__MODE"] = "off"

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def local_embedder():
    """The embedded default model, loaded once per session."""
    from kbflow.embed.local import LocalEmbedder
    from kbflow.settings import EmbedSettings

    return LocalEmbedder(EmbedSettings(model="all-MiniLM-L6-v2"))


def shared_set(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (public eval data lives beside the repo in ../shared/data)")
    return path
