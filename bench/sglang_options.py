"""SGLang's launch options, read off SGLang's own argument parser, for the tests.

    python bench/sglang_options.py                  # the versions the Makefile pins (SGLANG_VERSION)
    python bench/sglang_options.py 0.5.8 0.5.23     # these versions, from the package index
    python bench/sglang_options.py --wheel W.whl    # one version, from a downloaded wheel

writes ``tests/deploy/sglang_options.json``: for each version, the wheel it came from (file name
and sha256) and every option of ``python -m sglang.launch_server`` (its ``nargs``, ``choices``,
``type``, whether it is required, its argparse action), as the parser that
``sglang.srt.server_args.ServerArgs.add_cli_args`` builds reports them. The tests check kbflow's
worker and reranker command lines against that record where SGLang's parser cannot run.

The parser comes from SGLang itself, imported in a throwaway virtual environment that has the
SGLang wheel (no dependencies) and the few packages ``sglang.srt.server_args`` imports, not its
GPU stack (flashinfer, sgl-kernel, CUDA Python): an AST over ``add_argument`` calls would miss
0.5.23's options, which are generated from dataclass fields (``srt/arg_groups``). What each
version needs was found by importing it on a CPU machine (see :data:`RECIPES`):

- 0.5.23 imports beside the CPU build of torch 2.13.0 (``triton`` is imported at the top of
  ``srt/utils/common.py``, so it is needed, but not a GPU): about 2.1 GB, 1.5 minutes.
- 0.5.8 also imports ``torchvision`` (``srt/configs`` -> ``srt/multimodal/internvl_utils.py``),
  and PyPI's torchvision loads ``libtorch_cuda.so``: beside the CPU torch it fails with
  ``operator torchvision::nms does not exist``. It needs a CUDA build of torch (2.14.1 with
  torchvision 0.29.1 and the NVIDIA libraries, which imports without a GPU): about 5.8 GB,
  2.5 minutes where those wheels lie on disk, and some 3 GB of downloads where they do not.

Environments are kept under ``--cache`` (default: ``$TMPDIR/kbflow-sglang-envs``), one folder
per version and recipe, completed by a marker file written last, so a rerun reuses them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
OPTIONS_FILE = ROOT / "tests" / "deploy" / "sglang_options.json"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "kbflow-sglang-envs"
PIP = (sys.executable, "-m", "pip")
PUBLIC_INDEX = "https://pypi.org/simple"
COMPLETE = ".kbflow-complete"


@dataclass(frozen=True)
class Recipe:
    """What one SGLang version needs beside its wheel for ``sglang.srt.server_args`` to import
    on a CPU. ``local`` is installed without an index (``--no-index``: only a wheel already on
    this machine's disk will do, never a multi-GB download); ``pins`` come from wherever pip
    finds them. Both without dependencies: the pins are a complete, frozen set."""

    local: tuple[str, ...]
    pins: tuple[str, ...]
    size: str
    in_tests: bool
    """Cheap enough for the test suite to build (otherwise the tests use the record)."""


def _pins(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_COMMON = _pins(
    "aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 annotated-types==0.8.0 "
    "anyio==4.16.0 asttokens==3.0.2 attrs==26.1.0 certifi==2026.10.19.post1 "
    "charset-normalizer==3.5.3 distro==1.9.0 executing==2.3.0 filelock==4.3.2 frozenlist==1.8.0 "
    "fsspec==2026.9.0 h11==0.16.0 hf-xet==1.8.0 httpcore==1.0.9 httpx==0.29.0 idna==3.21 "
    "ipython==9.19.1 ipython_pygments_lexers==1.1.1 jedi==0.20.1 Jinja2==3.1.6 jiter==0.19.0 "
    "MarkupSafe==3.0.4 matplotlib-inline==0.2.2 mpmath==1.3.0 msgspec==0.23.0 multidict==7.2.1 "
    "networkx==3.6.1 numpy==2.4.6 orjson==3.13.0 packaging==26.4 parso==0.8.7 "
    "partial-json-parser==0.2.1.1.post7 pexpect==4.9.0 pillow==13.0.0 prompt_toolkit==3.0.53 "
    "propcache==0.5.4 psutil==7.2.2 ptyprocess==0.7.0 pure_eval==0.2.4 pybase64==1.5.1 "
    "pydantic==2.14.4 pydantic_core==2.50.5 Pygments==2.21.0 PyYAML==6.0.4 pyzmq==27.3.0 "
    "regex==2026.12.2 requests==2.34.2 safetensors==0.8.0 sniffio==1.3.1 stack-data==0.6.3 "
    "starlette==1.10.0 sympy==1.14.0 tqdm==4.70.1 traitlets==5.16.1 typing-inspection==0.4.5 "
    "typing_extensions==4.16.0 urllib3==2.8.0 wcwidth==0.9.5 yarl==1.25.1"
)

RECIPES: dict[str, Recipe] = {
    "0.5.23": Recipe(
        local=("torch==2.13.0",),  # the CPU build, in the machine's local wheel folder
        pins=(
            *_COMMON,
            *_pins(
                "annotated-doc==0.0.7 click==8.5.1 huggingface_hub==1.33.0 markdown-it-py==4.3.0 "
                "mdurl==0.1.2 openai==2.8.0 rich==15.0.0 shellingham==1.5.4 tokenizers==0.23.2 "
                "transformers==5.19.0 triton==3.6.0 typer==0.29.2"
            ),
        ),
        size="about 2.1 GB, 1.5 minutes",
        in_tests=True,
    ),
    "0.5.8": Recipe(
        local=(),
        pins=(
            *_COMMON,
            *_pins(
                "cuda-bindings==13.5.0 cuda-pathfinder==1.9.1 cuda-toolkit==13.0.3.0 dill==0.4.1 "
                "huggingface_hub==0.36.2 nvidia-cublas==13.1.1.3 nvidia-cuda-cupti==13.0.85 "
                "nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 "
                "nvidia-cudnn-cu13==9.24.0.43 nvidia-cufft==12.0.0.61 nvidia-cufile==1.15.1.6 "
                "nvidia-curand==10.4.0.35 nvidia-cusolver==12.0.4.66 nvidia-cusparse==12.6.3.3 "
                "nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.30.7 nvidia-nvjitlink==13.5.37 "
                "nvidia-nvshmem-cu13==3.4.5 nvidia-nvtx==13.0.85 openai==2.6.1 sentencepiece==0.2.3 "
                "tokenizers==0.22.2 torch==2.14.1 torchvision==0.29.1 transformers==4.57.1 "
                "triton==3.8.0"
            ),
        ),
        size="about 5.8 GB (a CUDA build of torch and the NVIDIA libraries), 2.5 minutes",
        in_tests=False,
    ),
}


class EnvUnavailable(RuntimeError):
    """SGLang's parser environment cannot be built here: a part that must come from this
    machine's disk is not there, or no recipe says what the version needs."""


def pinned_versions(makefile: Path = MAKEFILE) -> list[str]:
    """The SGLang versions the Makefile's ``SGLANG_VERSION`` assignment can pick (every
    ``X.Y.Z`` on that line), oldest first; empty when the Makefile has no such line."""
    found: set[str] = set()
    if makefile.is_file():
        for line in makefile.read_text(encoding="utf-8").splitlines():
            if re.match(r"\s*SGLANG_VERSION\s*[?:+]?=", line):
                found.update(re.findall(r"\b\d+\.\d+\.\d+\b", line))
    return sorted(found, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def index_problem(timeout: float = 15.0, isolated: bool = False) -> str | None:
    """None when the package index answers with SGLang's project page, else why not (pip
    itself only says "No matching distribution" when it cannot connect). The index is
    ``PIP_INDEX_URL`` or PyPI; PyPI alone when ``isolated`` (as ``pip --isolated`` sees it)."""
    index = PUBLIC_INDEX if isolated else os.environ.get("PIP_INDEX_URL", PUBLIC_INDEX)
    url = index.rstrip("/") + "/sglang/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def _run_pip(args: Sequence[str], what: str, error: type[Exception] = RuntimeError) -> None:
    done = subprocess.run([*PIP, *args], capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        tail = "\n".join(ln for ln in done.stderr.splitlines() if "is ignored" not in ln)[-2000:]
        raise error(f"{what}: pip exited {done.returncode}\n{tail}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two test sessions at once build it once
        yield


def env_dir(version: str, cache: Path = DEFAULT_CACHE) -> Path:
    recipe = json.dumps(asdict(RECIPES[version]), sort_keys=True)
    return cache / f"sglang-{version}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def is_built(version: str, cache: Path = DEFAULT_CACHE) -> bool:
    """Whether :func:`build_env` has this version's environment ready (no index needed)."""
    return version in RECIPES and (env_dir(version, cache) / COMPLETE).is_file()


def build_env(version: str, cache: Path = DEFAULT_CACHE, wheel: Path | None = None) -> Path:
    """The Python of a virtual environment in which SGLang ``version``'s ``server_args``
    imports (built once, reused while its recipe is unchanged). ``wheel``: install SGLang from
    this file instead of the index. Raises ``EnvUnavailable`` when a part cannot be had here,
    ``RuntimeError`` when pip fails otherwise."""
    if version not in RECIPES:
        raise EnvUnavailable(
            f"no recipe for SGLang {version}: find what its server_args imports on a CPU and "
            f"add it to RECIPES in {Path(__file__).name}"
        )
    recipe = RECIPES[version]
    home = env_dir(version, cache)
    python = home / "bin" / "python"
    with _locked(home.with_name(home.name + ".lock")):
        if (home / COMPLETE).is_file():
            return python
        for stale in cache.glob(f"sglang-{version}-*"):
            if stale.is_dir():  # an unfinished build or an older recipe of this version
                shutil.rmtree(stale)
        venv.EnvBuilder(with_pip=False).create(home)
        target = ["--python", str(python), "install", "--quiet", "--no-deps"]
        download = home / "wheel"
        if wheel is None:
            _run_pip(
                ["download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(download),
                 f"sglang=={version}"],
                f"downloading sglang=={version}",
            )  # fmt: skip
            (wheel,) = download.glob("sglang-*.whl")
        if recipe.local:
            _run_pip(
                [*target, "--no-index", *recipe.local],
                f"{' '.join(recipe.local)} from this machine's disk (not downloaded: several GB "
                "as a CUDA build)",
                EnvUnavailable,
            )
        _run_pip([*target, *recipe.pins], f"SGLang {version}'s parser dependencies")
        _run_pip([*target, str(wheel)], f"installing {wheel.name}")
        (home / "wheel.json").write_text(
            json.dumps({"wheel": wheel.name, "sha256": _sha256(wheel)}), encoding="utf-8"
        )
        shutil.rmtree(download, ignore_errors=True)
        (home / COMPLETE).write_text(version + "\n", encoding="utf-8")
    return python


# Runs inside SGLang's environment: builds the parser exactly as ``prepare_server_args`` does
# (``ServerArgs.add_cli_args`` on a plain ArgumentParser), then lists its options and parses
# each command line given, recording argparse's own error for one it refuses.
PROBE = r"""
import argparse, contextlib, importlib.metadata, io, json, re, sys
from sglang.srt.server_args import ServerArgs

request = json.load(sys.stdin)
parser = argparse.ArgumentParser()
ServerArgs.add_cli_args(parser)

def plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)

options = {}
for action in parser._actions:
    choices = None
    if action.choices is not None:
        choices = sorted((plain(c) for c in action.choices), key=lambda c: (str(type(c)), str(c)))
    for name in action.option_strings:
        options[name] = {
            "dest": action.dest,
            "nargs": action.nargs,
            "choices": choices,
            "type": None if action.type is None else re.sub(
                r" at 0x[0-9a-f]+", "", getattr(action.type, "__name__", str(action.type))),
            "required": action.required,
            "action": type(action).__name__,
        }

parsed = []
for argv in request["argv"]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(argv)
    except SystemExit as exc:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        parsed.append({"ok": False, "code": exc.code, "error": lines[-1] if lines else ""})
    else:
        parsed.append({"ok": True, "args": {k: plain(v) for k, v in vars(ns).items()}})

with open(request["out"], "w") as f:
    json.dump({"version": importlib.metadata.version("sglang"), "options": options,
               "parsed": parsed}, f)
"""


def run_parser(python: Path, argvs: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """SGLang's own parser in ``python``'s environment: ``{"version", "options": {option:
    spec}, "parsed": [{"ok": True, "args": {dest: value}} | {"ok": False, "error": line}]}``,
    one parse result per command line in ``argvs`` (arguments after ``-m sglang.launch_server``)."""
    with tempfile.TemporaryDirectory(prefix="sglang-probe-") as tmp:
        out = Path(tmp) / "out.json"
        done = subprocess.run(
            [str(python), "-c", PROBE],
            input=json.dumps({"argv": [list(a) for a in argvs], "out": str(out)}),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"SGLang's parser did not run ({python}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
_CONVERT = {"int": int, "float": float, "str": str}


def _is_option(token: str) -> bool:
    return token.startswith("-") and not _NEGATIVE_NUMBER.match(token)


def check_argv(options: Mapping[str, Mapping[str, Any]], argv: Sequence[str]) -> dict[str, Any]:
    """``argv`` (the arguments after ``-m sglang.launch_server``) checked against a recorded
    option list the way argparse would: every option known (by its full name; argparse's
    prefix matching is not relied on), a value where the option takes one and none where it
    does not, values of the option's ``type`` and among its ``choices``, required options
    present. Returns ``{dest: value}`` for the options given (a list for multi-value options,
    True for flags); raises ``ValueError`` naming the first problem."""
    given: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not _is_option(token):
            raise ValueError(f"unexpected argument {token!r}: SGLang's server takes none")
        name, has_inline, inline = token.partition("=")
        spec = options.get(name)
        if spec is None:
            raise ValueError(f"unrecognized option {name}")
        nargs = spec["nargs"]
        following: list[str] = []
        while i + len(following) < len(argv) and not _is_option(argv[i + len(following)]):
            following.append(argv[i + len(following)])
        if has_inline:
            if nargs == 0:
                raise ValueError(f"{name} takes no value, got {inline!r}")
            values = [inline]
        elif nargs == 0:
            values = []
        elif nargs is None or isinstance(nargs, int):
            want = 1 if nargs is None else nargs
            if len(following) < want:
                raise ValueError(f"{name} expects {want} value(s), got {len(following)}")
            values = following[:want]
        elif nargs == "?":
            values = following[:1]
        elif nargs in ("*", "+"):
            if nargs == "+" and not following:
                raise ValueError(f"{name} expects at least one value")
            values = following
        else:
            raise ValueError(f"{name}: nargs={nargs!r} is not handled by this check")
        i += 0 if has_inline else len(values)
        converted = [_checked_value(name, spec, v) for v in values]
        if nargs == 0:
            # BooleanOptionalAction (0.5.23) pairs --x with --no-x
            negative = spec["action"] == "BooleanOptionalAction" and name.startswith("--no-")
            given[spec["dest"]] = not negative
        elif nargs is None or (nargs == "?" and converted):
            given[spec["dest"]] = converted[0]
        else:
            given[spec["dest"]] = converted
    for name, spec in options.items():
        if spec["required"] and spec["dest"] not in given:
            raise ValueError(f"the required option {name} is missing")
    return given


def _checked_value(name: str, spec: Mapping[str, Any], value: str) -> Any:
    convert = _CONVERT.get(spec["type"] or "str")
    try:
        typed: Any = convert(value) if convert else value
    except ValueError as exc:
        raise ValueError(f"{name}: {value!r} is not a valid {spec['type']}") from exc
    choices = spec["choices"]
    if choices is not None:
        allowed = choices if convert else [str(c) for c in choices]
        if typed not in allowed:
            raise ValueError(f"{name}: {value!r} is not one of {choices}")
    return typed


ABOUT = (
    "Options of `python -m sglang.launch_server` per SGLang version, one option a line, read off "
    "SGLang's own parser; regenerate with `python bench/sglang_options.py` after changing "
    "SGLANG_VERSION in the Makefile."
)


def render_record(record: Mapping[str, Mapping[str, Any]]) -> str:
    """The JSON of ``tests/deploy/sglang_options.json``, one option a line (readable diffs)."""
    out = ["{", f' "about": {json.dumps(ABOUT)},', ' "versions": {']
    versions = sorted(record, key=_version_key)
    for i, version in enumerate(versions):
        entry = record[version]
        out.append(f"  {json.dumps(version)}: {{")
        out += [
            f"   {json.dumps(k)}: {json.dumps(entry[k])}," for k in ("wheel", "sha256", "source")
        ]
        out.append('   "options": {')
        options = sorted(entry["options"].items())
        out += [
            f"    {json.dumps(name)}: {json.dumps(spec)}" + ("," if j < len(options) - 1 else "")
            for j, (name, spec) in enumerate(options)
        ]
        out += ["   }", "  }" + ("," if i < len(versions) - 1 else "")]
    return "\n".join([*out, " }", "}"]) + "\n"


def _torch_of(recipe: Recipe) -> str:
    return ", ".join(p for p in (*recipe.local, *recipe.pins) if p.startswith(("torch", "triton")))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("versions", nargs="*", help="SGLang versions (default: the Makefile's)")
    ap.add_argument("--wheel", type=Path, action="append", default=[], help="an SGLang wheel")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where environments live")
    ap.add_argument("-o", "--output", type=Path, default=OPTIONS_FILE)
    args = ap.parse_args(argv)

    wheels = {w.name.split("-")[1]: w.resolve() for w in args.wheel}
    versions = sorted({*args.versions, *wheels} or set(pinned_versions()), key=_version_key)
    if not versions:
        ap.error("no versions given and no SGLANG_VERSION in the Makefile")
    record: dict[str, Any] = {}
    if args.output.is_file():
        record = json.loads(args.output.read_text(encoding="utf-8")).get("versions", {})
    for version in versions:
        print(f"SGLang {version}: environment ({RECIPES[version].size} the first time)")
        python = build_env(version, args.cache, wheels.get(version))
        result = run_parser(python)
        if result["version"] != version:
            raise SystemExit(f"the environment holds SGLang {result['version']}, not {version}")
        origin = json.loads((python.parents[1] / "wheel.json").read_text(encoding="utf-8"))
        record[version] = {
            **origin,
            "source": "the argparse parser of ServerArgs.add_cli_args, SGLang imported on a "
            f"CPU beside {_torch_of(RECIPES[version])} (bench/sglang_options.py)",
            "options": result["options"],
        }
        print(f"  {len(result['options'])} options, wheel {origin['wheel']} {origin['sha256']}")
    args.output.write_text(render_record(record), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
