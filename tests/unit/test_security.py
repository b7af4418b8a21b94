"""Security defaults, each shown on the real thing.

- servers bind 127.0.0.1 unless told otherwise (``kbflow serve``, ``kbflow serve-embeddings``,
  the SGLang workers the flow starts);
- API keys never appear in logs (DEBUG included), reports, manifests or any file of the data
  home, and endpoint URLs may not carry credentials (they are logged);
- SQL takes bound parameters only (every ``execute`` in the code gets a named SQL file or a
  constant statement, never formatted text);
- reports escape all user text;
- nothing loads pickles (no pickle-capable loader in the code, and a planted pickle in an index
  version is refused without running);
- only files inside the data home are loaded as indexes.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kbflow.account import account_stage
from kbflow.chunk.stage import chunk_stage
from kbflow.clean.stage import clean_stage
from kbflow.cli.main import build_parser
from kbflow.contracts import DEDUP_MERGE, QUARANTINE_ROW, STALE_ENTRY, table_from_rows
from kbflow.embed.sglang import free_port, worker_command
from kbflow.embed.stage import embed_stage
from kbflow.errors import ConfigError, IndexError_
from kbflow.index.stage import index_stage
from kbflow.publish.stage import publish_stage
from kbflow.pull.stage import pull_stage
from kbflow.report.nightly import write_nightly_report
from kbflow.report.stage import report_stage
from kbflow.report.weekly import write_weekly_report
from kbflow.run import start_run
from kbflow.settings import EmbedSettings, Settings, load_settings
from kbflow.store.home import DataHome
from kbflow.store.versions import CURRENT, current_version, list_versions, live_version_dir
from kbflow.validate.stage import validate_stage

from ..conftest import ROOT
from ..embedserver import shared_server
from .helpers import assert_report_markup_is_ours, tiny_version

CODE_DIRS = [ROOT / "src" / "kbflow", ROOT / "flows", ROOT / "tasks"]
SECRET = "sk-kbflow-SECRET-9d41c7e0"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


def python_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in d.rglob("*.py"))


# --- servers bind loopback ----------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port:  # 0A = LISTEN
                    found.add(addr)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


def test_every_server_defaults_to_loopback() -> None:
    parser = build_parser()
    for command in ("serve", "serve-embeddings"):
        args = parser.parse_args([command])
        assert args.host == "127.0.0.1", command
    from kbflow.embed.server import serve_embeddings
    from kbflow.search.service import serve

    for fn in (serve, serve_embeddings):
        assert inspect.signature(fn).parameters["host"].default == "127.0.0.1"
    cmd = worker_command(EmbedSettings(backend="sglang", model_path=Path("/m")), 30000, 0)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


def test_embedding_server_started_without_host_listens_on_loopback_only() -> None:
    server = shared_server()  # python -m kbflow.embed.server --port N: no --host given
    assert listening_addresses(server.port) <= LOOPBACK and listening_addresses(server.port)


def test_search_service_started_without_host_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbflow.cli", "serve", "--home", str(tmp_path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not listening_addresses(port):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "kbflow serve did not start listening"
            time.sleep(0.2)
        assert listening_addresses(port) <= LOOPBACK
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status in (200, 503)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# --- secrets ------------------------------------------------------------------------------------


KB = [
    ("How do I reset my password?", "Open Settings, tap Security and choose Reset password.",
     ["forgot password", "reset login"]),
    ("Where is my parcel?", "Track it under Orders; the courier scan appears within a day.",
     ["track order", "parcel missing"]),
    ("Can I pay by bank transfer?", "Yes, choose Bank transfer at checkout.", ["pay by wire"]),
    ("How long is the warranty?", "Every device has a two year warranty.", ["warranty length"]),
    ("Do you ship abroad?", "We deliver to forty countries.", ["international shipping"]),
]  # fmt: skip


def write_kb(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "kb.jsonl").write_text(
        "".join(
            json.dumps({"id": f"e{i}", "title": t, "answer": a, "similar_questions": q}) + "\n"
            for i, (t, a, q) in enumerate(KB)
        ),
        encoding="utf-8",
    )
    return folder


def test_api_key_is_in_no_log_report_manifest_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole run through the openai backend, every logger at DEBUG (httpx, openai too)."""
    server = shared_server()
    monkeypatch.setenv("KBFLOW_EMBED__API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    settings = load_settings(
        str(tmp_path / "home"),
        {"embed.backend": "openai", "embed.urls": [server.url], "embed.model": "all-MiniLM-L6-v2"},
    )
    assert settings.embed.api_key is not None
    assert settings.embed.api_key.get_secret_value() == SECRET  # the key is really in use
    home = DataHome.at(settings.home)
    run_id, day = "20261124T020000-secret", date(2026, 11, 24)
    start_run(home, run_id, day)
    pulled = pull_stage(home, run_id, str(write_kb(tmp_path / "export")))
    validate_stage(home, run_id, pulled, settings)
    clean_stage(home, run_id, day, settings)
    chunk_stage(home, run_id, settings)
    embedded = embed_stage(home, run_id, settings)
    built = index_stage(home, run_id, day, pulled, embedded, settings)
    account_stage(home, run_id, pulled)
    publish_stage(home, run_id, built["version"], settings)
    summary = report_stage(home, run_id, day, "published")
    assert summary["status"] == "published" and embedded["embedded"] > 0
    assert any(r.name.startswith(("httpx", "openai")) for r in caplog.records)  # DEBUG was on
    texts = [caplog.text, json.dumps(summary), repr(settings), str(settings.model_dump())]
    for text in texts:
        assert SECRET not in text
    files = [p for p in home.root.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any(p.suffix == ".html" for p in files)
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p


@pytest.mark.parametrize(
    "url",
    [
        "http://embed:s3cr3t-pw@127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1?api-key=s3cr3t-pw",
        "http://127.0.0.1:8000/v1#s3cr3t-pw",
        "file:///etc/passwd",
    ],
)
def test_endpoint_urls_carrying_secrets_are_refused_without_echoing_them(url: str) -> None:
    for dotted in ("embed.urls", "search.rerank.url"):
        value: Any = [url] if dotted == "embed.urls" else url
        with pytest.raises(ConfigError) as info:
            load_settings(None, {dotted: value})
        assert "s3cr3t" not in str(info.value) and "passwd" not in str(info.value)
        assert dotted in str(info.value)


# --- SQL takes bound parameters only ------------------------------------------------------------


def _sql_arg_is_safe(arg: ast.expr, assigned: dict[str, list[ast.expr]]) -> bool:
    """A constant statement, ``load_sql(...)``, or a name only ever bound to one of those."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return "{" not in arg.value and "%" not in arg.value
    if isinstance(arg, ast.Call) and getattr(arg.func, "id", None) == "load_sql":
        return True
    if isinstance(arg, ast.Name) and arg.id in assigned:
        return all(_sql_arg_is_safe(v, {}) for v in assigned[arg.id])
    return False


def _runs_sql(func: ast.Attribute) -> bool:
    """``x.execute``/``x.executemany``/``x.sql``, and ``query`` on a DuckDB-looking receiver
    (``lsh.query`` is not SQL)."""
    if func.attr in ("execute", "executemany", "sql"):
        return True
    receiver = func.value.id if isinstance(func.value, ast.Name) else ""
    return func.attr == "query" and receiver in ("duckdb", "con", "conn", "cur", "cursor", "db")


def sql_calls_with_formatted_text(paths: list[Path] | None = None) -> list[str]:
    bad = []
    for path in python_files() if paths is None else paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                continue
            assigned: dict[str, list[ast.expr]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            assigned.setdefault(target.id, []).append(node.value)
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and _runs_sql(node.func)
                    and node.args
                    and not _sql_arg_is_safe(node.args[0], assigned)
                ):
                    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    bad.append(f"{where}:{node.lineno}: {ast.unparse(node)[:90]}")
    return sorted(set(bad))


def test_sql_is_run_from_named_files_with_bound_parameters_only() -> None:
    assert sql_calls_with_formatted_text() == []
    # and the named files take values as $parameters, never Python placeholders
    for path in sorted((ROOT / "sql").rglob("*.sql")):
        text = re.sub(r"--.*", "", path.read_text(encoding="utf-8"))
        assert not re.search(r"\{[a-z_]*\}|%s|%\([a-z_]+\)s", text), path


def test_the_sql_scan_catches_formatted_statements(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f(con, name):\n"
        "    con.execute(f\"select * from runs where run_id = '{name}'\")\n"
        "    q = 'select ' + name\n"
        "    con.sql(q)\n"
        "    con.execute(load_sql('catalog/select_runs'), {'limit': 3})\n",
        encoding="utf-8",
    )
    assert [f.split(":")[1] for f in sql_calls_with_formatted_text([probe])] == ["2", "4"]


# --- reports escape user text -------------------------------------------------------------------


def assert_no_markup_from(html: str) -> None:
    assert_report_markup_is_ours(html)
    assert "&lt;script&gt;" in html  # the text is there, as text


def test_nightly_report_escapes_every_user_text(tmp_path: Path) -> None:
    h = HOSTILE
    summary = {
        "run_id": h, "status": h, "version": h, "run_date": h, "previous_version": h,
        "snapshot_id": h, "model_key": h, "message": h, "rows": {"input": 1, "quarantined": 1},
        "timings": {h: 1.0}, "calibration": {"method": h, "self_check": {"hit@1": h}},
    }  # fmt: skip
    path = write_nightly_report(
        tmp_path / "r.html",
        summary,
        quarantine=table_from_rows(
            [
                {
                    "row_id": 1,
                    "source_file": h,
                    "entry_id": h,
                    "expectation": h,
                    "detail": h,
                    "raw": h,
                }
            ],
            QUARANTINE_ROW,
        ),
        merges=table_from_rows(
            [
                {
                    "kind": h,
                    "canonical_id": h,
                    "merged_id": h,
                    "canonical_title": h,
                    "merged_title": h,
                }
            ],
            DEDUP_MERGE,
        ),
        stale=table_from_rows(
            [{"entry_id": h, "title": h, "reason": h, "evidence": h, "stale_since": h}], STALE_ENTRY
        ),
        retired=[h],
    )
    assert_no_markup_from(path.read_text(encoding="utf-8"))


def test_weekly_report_escapes_every_user_text(tmp_path: Path) -> None:
    h = HOSTILE
    path = write_weekly_report(
        tmp_path / "w.html",
        h,
        [{"start_at": h, "end_at": h, "n_queries": 3, "ctr": 0.1, "p95_ms": 12.0}],
        [{"entry_id": h, "flagged": True, "impressions": 9, "ctr": 0.0, "sample_queries": [h]}],
        [{"cluster_id": 1, "label": h, "size": 4, "example_queries": [h], "nearest_entry_id": h}],
    )
    assert_no_markup_from(path.read_text(encoding="utf-8"))


# --- nothing loads pickles ----------------------------------------------------------------------

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def pickle_capable_calls(paths: list[Path] | None = None) -> list[str]:
    bad = []
    for path in python_files() if paths is None else paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in _PICKLE_MODULES for n in names):
                    bad.append(f"{where}:{node.lineno}: imports {names}")
            if not isinstance(node, ast.Call):
                continue
            call = ast.unparse(node.func)
            kwargs = {k.arg: k.value for k in node.keywords}
            if call in ("torch.load", "pd.read_pickle", "pandas.read_pickle"):
                bad.append(f"{where}:{node.lineno}: {call}")
            if "allow_pickle" in kwargs and not (
                isinstance(kwargs["allow_pickle"], ast.Constant)
                and kwargs["allow_pickle"].value is False
            ):
                bad.append(f"{where}:{node.lineno}: allow_pickle is not False")
            if call in ("np.load", "numpy.load") and "allow_pickle" not in kwargs:
                bad.append(f"{where}:{node.lineno}: np.load without allow_pickle=False")
    return bad


def test_no_code_path_can_unpickle() -> None:
    assert pickle_capable_calls() == []
    # the bundled model loads from safetensors only (torch.load would unpickle a .bin)
    from kbflow.embed.local import default_model_dir

    files = {p.suffix for p in default_model_dir().rglob("*") if p.is_file()}
    assert ".safetensors" in files and not files & {".bin", ".pt", ".pth", ".pkl", ".pickle"}


def test_the_pickle_scan_catches_every_loader(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import joblib\n"
        "from pickle import loads\n"
        "np.load(p)\n"
        "np.load(p, allow_pickle=True)\n"
        "torch.load(p)\n"
        "np.load(p, mmap_mode='r', allow_pickle=False)\n",
        encoding="utf-8",
    )
    found = [f.split(":")[1] for f in pickle_capable_calls([probe])]
    assert found == ["1", "2", "3", "4", "5"]


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("planted", ["vectors.npy", "bm25"])
def test_a_pickle_planted_in_a_version_is_refused_unrun(planted: str, tmp_path: Path) -> None:
    from kbflow.index.version import LoadedVersion

    vdir = tiny_version(tmp_path / "indexes", "v1")
    LoadedVersion(vdir)  # loads before tampering
    marker = tmp_path / "pwned"
    target = (
        vdir / planted if planted.endswith(".npy") else sorted((vdir / planted).glob("*.npy"))[0]
    )
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    with open(target, "wb") as fh:
        np.save(fh, payload, allow_pickle=True)
    if planted == "vectors.npy":
        # a loaded version reads its vectors from its FAISS segments; the stages that read
        # vectors.npy (the next version's reuse, the review) read rows of it, refused here
        from kbflow.index.columns import read_rows

        LoadedVersion(vdir)
        with pytest.raises(ValueError, match="allow_pickle"):
            read_rows(target, np.arange(1), np.zeros((1, 8), np.float32), np.arange(1))
    else:
        # np.load(allow_pickle=False) refuses object arrays (memory-mapped or not) before
        # unpickling
        with pytest.raises(ValueError, match="allow_pickle|memory-mapped"):
            LoadedVersion(vdir)
    assert not marker.exists()


# --- only files inside the data home are loaded as indexes --------------------------------------


@pytest.fixture
def home_with_live(tmp_path: Path) -> DataHome:
    home = DataHome.at(tmp_path / "home")
    tiny_version(home.indexes, "v1")
    (home.indexes / CURRENT).write_text("v1\n", encoding="utf-8")
    live_version_dir(home.indexes)  # loadable as is
    return home


def elsewhere_version(tmp_path: Path) -> Path:
    """A complete version outside the data home, with a marker in its manifest."""
    outside = tiny_version(tmp_path / "elsewhere", "vout")
    manifest = json.loads((outside / "manifest.json").read_text())
    (outside / "manifest.json").write_text(json.dumps({**manifest, "note": "OUTSIDE"}))
    return outside


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ("relative_current", r"'\.\./elsewhere/vout' is not a version name"),
        ("absolute_current", r"is not a version name"),
        ("symlinked_version_dir", r"version vlink in .* leads to .*outside the data home"),
        ("symlinked_file_in_version", r"vectors\.npy in version v1 links to .*outside"),
        ("symlinked_indexes_dir", r"is a link to .*outside the data home"),
        ("symlinked_current", r"CURRENT must be a plain file"),
    ],
)
def test_indexes_outside_the_data_home_are_refused(
    attack: str, message: str, home_with_live: DataHome, tmp_path: Path
) -> None:
    home = home_with_live
    outside = elsewhere_version(tmp_path)
    current = home.indexes / CURRENT
    match attack:
        case "relative_current":
            current.write_text("../elsewhere/vout\n")
        case "absolute_current":
            current.write_text(f"{outside}\n")
        case "symlinked_version_dir":
            (home.indexes / "vlink").symlink_to(outside, target_is_directory=True)
            current.write_text("vlink\n")
        case "symlinked_file_in_version":
            (home.indexes / "v1" / "vectors.npy").unlink()
            (home.indexes / "v1" / "vectors.npy").symlink_to(outside / "vectors.npy")
        case "symlinked_indexes_dir":
            real = home.indexes.rename(tmp_path / "moved-indexes")
            home.indexes.symlink_to(real, target_is_directory=True)
        case "symlinked_current":
            current.unlink()
            (tmp_path / "fake-current").write_text("v1\n")
            current.symlink_to(tmp_path / "fake-current")
    with pytest.raises(IndexError_, match=message):
        live_version_dir(home.indexes)
    # the outside version is never listed either
    if attack != "symlinked_current":
        assert "vlink" not in {v.version for v in list_versions(home.indexes)}
    # search never loads it: a hand-off with the reason, not results from elsewhere
    from kbflow.search.searcher import make_searcher

    searcher = make_searcher(home.root, Settings())
    res = searcher.search("where is my parcel")
    assert res.handoff and res.results == [] and res.fallback_level == 2
    assert "OUTSIDE" not in json.dumps(res.as_dict())


def test_cli_refuses_an_outside_current_with_one_line(home_with_live: DataHome) -> None:
    (home_with_live.indexes / CURRENT).write_text("../../etc\n")
    assert current_version(home_with_live.indexes) == "../../etc"
    out = subprocess.run(
        [sys.executable, "-m", "kbflow.cli", "search", "x", "--home", str(home_with_live.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == IndexError_.exit_code, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "kbflow: '../../etc' is not a version name (a folder name under indexes/, never a "
        "path); refusing to load it"
    ]
