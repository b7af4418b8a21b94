"""kbflow as a user installs it: a wheel built from this checkout, installed into a fresh virtual
environment outside the source tree, runs the nightly flow on the sample export.

The fresh environment gets kbflow from the wheel only; its dependencies (torch, Prefect, ...)
come from the project's own environment through a path entry, which makes none of that
environment's ``.pth`` hooks run, so its editable kbflow (the source tree) stays invisible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from ..conftest import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (built,) = out.glob("kbflow-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "kbflow-env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    (site / "kbflow-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_wheel_holds_the_packages_and_their_data_under_project_names(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"kbflow", "kbflow_flows", "kbflow_tasks", "kbflow_deployments"}
    assert "kbflow/sql/catalog/create_tables.sql" in names  # SQL as package data
    assert "kbflow/sql/mining/select_gap_clusters.sql" in names
    assert "kbflow_deployments/prefect.yaml" in names
    assert "kbflow/py.typed" in names


def test_an_installed_kbflow_runs_the_nightly_flow_outside_the_source_tree(
    installed: Path, tmp_path: Path
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBFLOW_") and k != "PYTHONPATH"}
    where = subprocess.run(
        [str(installed), "-c",
         "import kbflow, kbflow_flows.nightly, kbflow.store.sql as s, importlib.util as u;"
         "from kbflow_deployments.deploy import flow_of;"
         "print(kbflow.__file__); print(s.SQL_DIR); print(len(s.list_sql()));"
         "print(flow_of('flows/nightly.py:kb_nightly').name);"
         "print([m for m in ('flows', 'tasks', 'deployments') if u.find_spec(m)])"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    env_root = installed.parents[1]
    assert Path(where[0]).is_relative_to(env_root) and not Path(where[0]).is_relative_to(ROOT)
    assert Path(where[1]).is_relative_to(env_root) and int(where[2]) > 40
    assert where[3] == "kb-nightly"  # the deployment entrypoint resolves to the installed flow
    assert where[4] == "[]"  # no generic top-level packages
    home = tmp_path / "home"
    out = subprocess.run(
        [str(installed), "-m", "kbflow.cli", "nightly", "--home", str(home),
         "--source", str(EXAMPLES / "kb_zh" / "export"), "--run-date", "2026-11-24", "--json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["status"] == "published" and summary["rows"]["input"] == 336
    assert (home / "indexes" / summary["version"] / "manifest.json").is_file()
