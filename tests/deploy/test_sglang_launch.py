"""kbflow's SGLang command lines, as SGLang's own argument parser takes them.

What ``python -m sglang.launch_server`` gets from kbflow is built by kbflow's real functions:
one embedding worker, several (``worker_devices`` picks each one's ``CUDA_VISIBLE_DEVICES``;
their command lines differ only in ``--port``), both with ``launch_extra_args``, and the
reranker (``kbflow.search.rerank_server.reranker_command``). Each is checked for every SGLang
version the Makefile pins (``SGLANG_VERSION``):

- against that version's recorded option list (``sglang_options.json`` beside this file, read
  off SGLang's parser by ``bench/sglang_options.py``, with the wheel's sha256): every option
  known, a value where one is needed and none where not, of the option's type and among its
  choices. No network.
- by SGLang's own parser (``ServerArgs.add_cli_args``, as ``prepare_server_args`` builds it),
  where it imports on a CPU: 0.5.23, in a throwaway environment of its wheel, the CPU build of
  torch and what ``server_args`` imports (about 2 GB and 1.5 minutes once per machine, then
  reused from ``$TMPDIR/kbflow-sglang-envs``). The same run checks that the record still matches
  the parser. 0.5.8's parser also imports torchvision, which from PyPI needs a CUDA build of
  torch (about 5.8 GB): skipped, with that reason; its record was read off that parser all the
  same. Without the package index these skip too, with pip's reason.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kbflow.embed.sglang import HOST, worker_command, worker_devices
from kbflow.settings import EmbedSettings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

import sglang_options as so  # noqa: E402

RECORDED: dict[str, Any] = json.loads(so.OPTIONS_FILE.read_text(encoding="utf-8"))["versions"]
VERSIONS = so.pinned_versions() or sorted(RECORDED, key=lambda v: tuple(map(int, v.split("."))))

SGLANG_PYTHON = "/opt/kbflow/.venv-sglang/bin/python"
EMBED_MODEL = Path("/models/Qwen3-Embedding-4B")
RERANK_MODEL = Path("/models/Qwen3-Reranker-4B")
EXTRA = ["--disable-radix-cache"]
RERANK_SERVER = ROOT / "src" / "kbflow" / "search" / "rerank_server.py"


@dataclass(frozen=True)
class Launch:
    name: str
    argv: list[str]  # what follows `python -m sglang.launch_server`
    port: int
    device: str | None  # the worker's CUDA_VISIBLE_DEVICES; None: inherited
    embedding: bool


def _after_launcher(cmd: list[str]) -> list[str]:
    assert cmd[:3] == [SGLANG_PYTHON, "-m", "sglang.launch_server"], cmd
    return cmd[3:]


def worker_launches(gpus: int, visible: str | None, first_port: int) -> list[Launch]:
    """The command lines ``start_worker`` runs for ``gpus`` workers in a process that sees
    ``visible`` as its ``CUDA_VISIBLE_DEVICES``: the device from ``worker_devices`` (as
    ``run_workers`` picks it), the command from ``worker_command``."""
    settings = EmbedSettings(
        backend="sglang",
        model_path=EMBED_MODEL,
        sglang_python=Path(SGLANG_PYTHON),
        gpus=gpus,
        launch_extra_args=EXTRA,
    )
    launches = []
    for gpu, device in enumerate(worker_devices(gpus, visible)):
        port = first_port + gpu
        cmd = worker_command(settings, port, device if device is not None else gpu)
        launches.append(Launch(f"worker {gpu} of {gpus}", _after_launcher(cmd), port, device, True))
    return launches


def reranker_launches() -> list[Launch]:
    """The reranker's command line (``kbflow serve-reranker``), while its module is in the tree."""
    if not RERANK_SERVER.is_file():
        return []
    from kbflow.search.rerank_server import reranker_command

    cmd = reranker_command(SGLANG_PYTHON, RERANK_MODEL, 30100)
    return [Launch("reranker", _after_launcher(cmd), 30100, None, False)]


def all_launches() -> list[Launch]:
    return [
        *worker_launches(1, None, 30001),
        *worker_launches(3, "4,5,6", 30010),
        *reranker_launches(),
    ]


# Command lines SGLang must refuse (argparse exits 2), and why; the record check must too.
BAD = {
    "unknown option": ["--model-path", str(EMBED_MODEL), "--no-such-option"],
    "missing value": ["--model-path", str(EMBED_MODEL), "--port"],
    "value not an int": ["--model-path", str(EMBED_MODEL), "--port", "30oo1"],
    "value to a flag": ["--model-path", str(EMBED_MODEL), "--is-embedding=yes"],
    "value not a choice": ["--model-path", str(EMBED_MODEL), "--load-format", "no-such-format"],
    "stray argument": ["--model-path", str(EMBED_MODEL), "--is-embedding", "yes"],
}


def check_parsed(launch: Launch, args: Mapping[str, Any]) -> None:
    """What SGLang (or the record check) made of ``launch``'s command line."""
    assert args["port"] == launch.port, launch.name
    assert args["host"] == HOST
    if launch.embedding:
        assert args["model_path"] == str(EMBED_MODEL)
        assert args["is_embedding"] is True
        assert args["mem_fraction_static"] == 0.6
        assert args["disable_radix_cache"] is True  # launch_extra_args reached the server
    else:
        assert args["model_path"] == str(RERANK_MODEL)
        assert args.get("is_embedding") in (None, False)  # the reranker runs in generation mode
        assert args["chat_template"].endswith(".jinja")
        assert args["mem_fraction_static"] == 0.15


def test_several_workers_differ_only_in_port_and_device() -> None:
    (one,) = worker_launches(1, "2,3", 30001)
    assert one.device is None  # a single worker keeps the process's own devices
    several = worker_launches(3, "4,5,6", 30010)
    assert [w.device for w in several] == ["4", "5", "6"]
    assert len({w.port for w in several}) == 3
    without_port = [[a for a in w.argv if a != str(w.port)] for w in [one, *several]]
    assert all(argv == without_port[0] for argv in without_port)
    assert all(w.argv[-len(EXTRA) :] == EXTRA for w in several)


def test_the_reranker_command_is_checked_while_its_module_exists() -> None:
    if not RERANK_SERVER.is_file():
        pytest.skip(f"{RERANK_SERVER.relative_to(ROOT)} is not in this tree")
    (rerank,) = reranker_launches()
    assert "--is-embedding" not in rerank.argv


def test_the_record_holds_each_pinned_version_with_its_wheel() -> None:
    pinned = so.pinned_versions()
    if not pinned:
        pytest.skip("the Makefile has no SGLANG_VERSION line to compare the record with")
    assert sorted(RECORDED) == sorted(pinned), (
        "tests/deploy/sglang_options.json is not for the Makefile's SGLang versions: run "
        "`python bench/sglang_options.py`"
    )
    for version, entry in RECORDED.items():
        assert entry["wheel"].startswith(f"sglang-{version}-")
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        assert len(entry["options"]) > 100


@pytest.mark.parametrize("version", VERSIONS)
def test_command_lines_fit_the_recorded_options(version: str) -> None:
    assert version in RECORDED, (
        f"no recorded options of SGLang {version}: run bench/sglang_options.py"
    )
    options = RECORDED[version]["options"]
    for launch in all_launches():
        check_parsed(launch, so.check_argv(options, launch.argv))
        named = [a.partition("=")[0] for a in launch.argv if a.startswith("--")]
        deprecated = [n for n in named if "Deprecated" in options[n]["action"]]
        assert not deprecated, f"{launch.name}: SGLang {version} deprecates {deprecated}"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_record_check_refuses_bad_command_lines(version: str) -> None:
    assert version in RECORDED, (
        f"no recorded options of SGLang {version}: run bench/sglang_options.py"
    )
    options = RECORDED[version]["options"]
    for why, argv in BAD.items():
        try:
            so.check_argv(options, argv)
        except ValueError:
            continue
        pytest.fail(f"the record check accepted a command line with a {why}: {argv}")


@pytest.fixture(scope="module", params=VERSIONS)
def sglang_parser(request: pytest.FixtureRequest) -> dict[str, Any]:
    """SGLang's own parser run on every good and bad command line, once per version."""
    version: str = request.param
    recipe = so.RECIPES.get(version)
    if recipe is None:
        pytest.fail(f"no recipe for SGLang {version} in bench/sglang_options.py (RECIPES)")
    if not recipe.in_tests:
        pytest.skip(
            f"SGLang {version}'s parser needs {recipe.size} to import on a CPU, too much for the "
            f"tests; checked against its recorded options (`python bench/sglang_options.py "
            f"{version}` runs the parser itself)"
        )
    problem = None if so.is_built(version) else so.index_problem()
    if problem:
        pytest.skip(
            f"the package index is unreachable, SGLang's parser cannot be installed: {problem}"
        )
    try:
        python = so.build_env(version)
    except so.EnvUnavailable as exc:
        pytest.skip(f"SGLang {version}'s parser environment cannot be built here: {exc}")
    launches = all_launches()
    result = so.run_parser(python, [launch.argv for launch in launches] + list(BAD.values()))
    return {
        "version": version,
        "python": python,
        "result": result,
        "good": dict(zip((launch.name for launch in launches), result["parsed"], strict=False)),
        "bad": dict(zip(BAD, result["parsed"][len(launches) :], strict=True)),
    }


def test_sglang_parser_accepts_kbflow_command_lines(sglang_parser: dict[str, Any]) -> None:
    assert sglang_parser["result"]["version"] == sglang_parser["version"]
    for launch in all_launches():
        parsed = sglang_parser["good"][launch.name]
        assert parsed["ok"], f"SGLang refused {launch.name}: {parsed['error']}"
        check_parsed(launch, parsed["args"])


def test_sglang_parser_refuses_what_the_record_check_refuses(sglang_parser: dict[str, Any]) -> None:
    for why, parsed in sglang_parser["bad"].items():
        assert not parsed["ok"] and parsed["code"] == 2, (
            f"SGLang accepted a command line with a {why}"
        )


def test_the_record_matches_sglang_parser(sglang_parser: dict[str, Any]) -> None:
    version = sglang_parser["version"]
    entry = RECORDED[version]
    wheel = json.loads((sglang_parser["python"].parents[1] / "wheel.json").read_text())
    assert wheel == {"wheel": entry["wheel"], "sha256": entry["sha256"]}
    assert sglang_parser["result"]["options"] == entry["options"], (
        f"SGLang {version}'s options differ from tests/deploy/sglang_options.json: run "
        f"`python bench/sglang_options.py {version}`"
    )
