"""The documented GPU installs resolve: ``pip install --dry-run`` of kbflow's GPU environment
(``make gpu-venv``: ``pip install -e '.[gpu]'``) and of SGLang's own (``make sglang-venv``:
``pip install sglang==$(SGLANG_VERSION)``, for each version the Makefile can pick).

Resolved as on a fresh GPU host: ``pip --isolated`` (the public index only: this machine's local
wheel folders, its torch cap and its CPU build of torch stay out), ``--ignore-installed`` (as
into an empty environment), for this interpreter's platform, which must be what GPU hosts run:
Linux x86_64, CPython 3.11 (SGLang 0.5.23 ships cp311 wheels only).

The index here serves no PEP 658 metadata files, so plain pip downloads every wheel whole to
read its dependencies (1.7 GB for SGLang 0.5.23, about 5 GB for 0.5.8, torch and the CUDA
libraries). ``--use-feature=fast-deps`` reads each wheel's METADATA with HTTP range requests
instead: about 30 s and under 100 MB of traffic per resolution. The resolutions run side by
side, each once per session, shared by the tests that read it. Skipped, with pip's reason, when
the index is unreachable.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

import sglang_options as so  # noqa: E402

VERSIONS = so.pinned_versions() or ["0.5.8", "0.5.23"]

# The CUDA major version each SGLang release's wheels are built for: what the Makefile's driver
# rule assumes (0.5.23: CUDA 13, NVIDIA driver >= 580; 0.5.8: CUDA 12).
CUDA_MAJOR = {"0.5.8": 12, "0.5.23": 13}

# What each test resolves: the documented install commands, as pip arguments.
TARGETS = {
    "kbflow[gpu]": ("-e", f"{ROOT}[gpu]"),
    **{f"sglang=={v}": (f"sglang=={v}",) for v in VERSIONS},
}

Resolved = Callable[[str], dict[str, str]]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resolved]:
    """``resolved(target)`` -> ``{distribution: version}`` that pip would install for that
    entry of :data:`TARGETS`. All resolutions start together (they mostly wait on the
    network) and each runs once per session, whichever tests read it."""
    if (sys.platform, platform.machine(), sys.version_info[:2]) != ("linux", "x86_64", (3, 11)):
        pytest.skip(
            "the GPU installs target Linux x86_64 with CPython 3.11; this is "
            f"{sys.platform} {platform.machine()} {platform.python_version()}"
        )
    problem = so.index_problem(isolated=True)
    if problem:
        pytest.skip(f"the package index is unreachable: {problem}")
    out = tmp_path_factory.mktemp("pip-reports")
    started: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    for n, (target, pip_args) in enumerate(TARGETS.items()):
        report, log = out / f"{n}.json", out / f"{n}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run",
                 "--ignore-installed", "--use-feature=fast-deps", "--quiet",
                 "--report", str(report), *pip_args],
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        started[target] = (proc, report, log)
    done: dict[str, dict[str, str]] = {}

    def get(target: str) -> dict[str, str]:
        if target not in done:
            proc, report, log = started[target]
            try:
                proc.wait(timeout=900)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`pip install --dry-run {target}` took over 15 minutes")
            if proc.returncode != 0:
                said = [ln for ln in log.read_text().splitlines() if "fast-deps" not in ln]
                pytest.fail(f"`pip install {target}` does not resolve:\n" + "\n".join(said[-20:]))
            installs = json.loads(report.read_text(encoding="utf-8"))["install"]
            done[target] = {
                _canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in installs
            }
        return done[target]

    try:
        yield get
    finally:
        for proc, _, _ in started.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_kbflow_gpu_install_resolves_with_faiss_gpu_and_no_faiss_cpu(resolved: Resolved) -> None:
    got = resolved("kbflow[gpu]")
    assert "kbflow" in got
    assert got.get("faiss-gpu") == "1.15.1"
    # Both builds install the same files (faiss/_swigfaiss*.so): the GPU environment holds one.
    assert "faiss-cpu" not in got, f"faiss-cpu {got['faiss-cpu']} is pulled in beside faiss-gpu"


@pytest.mark.parametrize("version", VERSIONS)
def test_sglang_install_resolves(resolved: Resolved, version: str) -> None:
    got = resolved(f"sglang=={version}")
    assert got["sglang"] == version
    assert version in CUDA_MAJOR, f"SGLang {version}: say which CUDA it needs in CUDA_MAJOR"
    runtime = got.get("nvidia-cuda-runtime") or got.get("nvidia-cuda-runtime-cu12")
    assert runtime is not None, "no CUDA runtime among SGLang's dependencies"
    assert int(runtime.split(".")[0]) == CUDA_MAJOR[version], (
        f"SGLang {version} resolves the CUDA {runtime} runtime, not CUDA {CUDA_MAJOR[version]}: "
        "the Makefile's driver rule for SGLANG_VERSION needs another look"
    )
