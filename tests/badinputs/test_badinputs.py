"""Every bad export of the corpus (``corpus.py``) gives its expected outcome, and nothing else.

Each case runs through the core stages (pull → validate → clean → chunk → account → report,
``kbflow.<package>.stage``, no Prefect) into a fresh data home. Whatever the case, the run must:

- stop with exactly the expected ``KbflowError`` (one line of message), or complete with the
  expected quarantine reasons, and never raise anything else;
- account for every input row (``account_stage`` checks the sum; the test re-adds it);
- read and write nothing outside the source folder and the data home: an audit hook records
  every file the Python code opens, renames or removes, the test folder around the source is
  compared before and after (native writers such as Arrow and DuckDB do not pass the hook), and
  the content a symlink points at outside the source never reaches the data home;
- write a nightly HTML report in which no user text became markup.

A few cases also go through the real CLI: one line on stderr, no traceback, the error's exit
code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kbflow.account import account_stage
from kbflow.chunk.stage import chunk_stage
from kbflow.clean.stage import clean_stage
from kbflow.contracts import CLEAN_ENTRY, OUTCOMES, PASSAGE, QUARANTINE_ROW, read_table
from kbflow.errors import KbflowError
from kbflow.pull.stage import pull_stage
from kbflow.report.stage import report_stage
from kbflow.run import start_run
from kbflow.settings import Settings
from kbflow.store.home import DataHome
from kbflow.validate.stage import validate_stage

from ..unit.helpers import assert_report_markup_is_ours
from .corpus import CASES, OUTSIDE_MARKER, Case

RUN_DATE = date(2026, 11, 24)
RUN_ID = "20261124T020000-badin0"
# --- file-access watch ----------------------------------------------------------------------

_WRITE_EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.symlink", "os.chmod",
                 "os.truncate", "os.link", "shutil.copyfile", "shutil.rmtree"}  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class _Watch:
    active: bool = False
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)


_watch = _Watch()


def _path_arg(value: Any) -> str | None:
    if isinstance(value, str | bytes | os.PathLike):
        try:
            return os.path.realpath(os.fsdecode(value))
        except (TypeError, ValueError):
            return None
    return None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watch.active or not args:
        return
    if event == "open":
        path = _path_arg(args[0])
        if path is None:
            return
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writing = any(c in mode for c in "wax+") or bool(flags & _WRITE_FLAGS)
        (_watch.writes if writing else _watch.reads).append(path)
    elif event in _WRITE_EVENTS:
        for arg in args[:2]:
            path = _path_arg(arg)
            if path is not None:
                _watch.writes.append(path)


sys.addaudithook(_audit)


@contextmanager
def watching() -> Iterator[_Watch]:
    _watch.reads.clear()
    _watch.writes.clear()
    _watch.active = True
    try:
        yield _watch
    finally:
        _watch.active = False


def tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of everything under ``root`` but ``skip``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _inside(path: str, root: Path) -> bool:
    return os.path.commonpath([path, str(root)]) == str(root)


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    error: KbflowError | None
    rows: dict[str, int] = field(default_factory=dict)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    passages: list[dict[str, Any]] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)
    blank: int = 0
    report: str = ""


def run_case(source: Path, root: Path) -> Run:
    """pull → validate → clean → chunk → account, then the report, as the nightly flow does."""
    settings = Settings()
    home = DataHome.at(root)
    start_run(home, RUN_ID, RUN_DATE)
    error: KbflowError | None = None
    try:
        pulled = pull_stage(home, RUN_ID, str(source))
        validated = validate_stage(home, RUN_ID, pulled, settings)
        clean_stage(home, RUN_ID, RUN_DATE, settings)
        chunk_stage(home, RUN_ID, settings)
        rows = account_stage(home, RUN_ID, pulled)
    except KbflowError as exc:
        error = exc
    summary = report_stage(
        home, RUN_ID, RUN_DATE, "failed" if error else "ok", str(error) if error else None
    )
    run = Run(error=error, report=Path(summary["report"]).read_text(encoding="utf-8"))
    if error is not None:
        return run
    stage = home.runs / RUN_ID
    run.rows = rows
    run.quarantine = read_table(
        stage / "validate" / "quarantine.parquet", QUARANTINE_ROW
    ).to_pylist()
    run.entries = read_table(stage / "clean" / "entries.parquet", CLEAN_ENTRY).to_pylist()
    run.passages = read_table(stage / "chunk" / "passages.parquet", PASSAGE).to_pylist()
    run.encodings = validated["encodings"]
    run.blank = validated["blank_lines"]
    return run


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_its_expected_outcome(case: Case, tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    case.build(src)
    root = tmp_path / "home"
    before = tree(tmp_path, skip=root)
    with watching() as watch:
        try:
            run = run_case(src, root)
        except Exception as exc:  # noqa: BLE001 - the point: nothing but KbflowError escapes
            pytest.fail(f"{case.name}: unexpected {type(exc).__name__}: {exc}")

    # --- the outcome
    if case.error is not None:
        assert run.error is not None, f"{case.name}: expected {case.error.__name__}, run completed"
        assert type(run.error) is case.error, f"{type(run.error).__name__}: {run.error}"
        message = str(run.error)
        assert re.search(case.match, message), message
        assert "\n" not in message and "Traceback" not in message
    else:
        assert run.error is None, f"{case.name}: {type(run.error).__name__}: {run.error}"
        reasons: dict[str, int] = {}
        for q in run.quarantine:
            reasons[q["expectation"]] = reasons.get(q["expectation"], 0) + 1
            assert q["detail"], q
        assert reasons == case.quarantined, run.quarantine
        # every input row has exactly one outcome (account_stage raises otherwise); check the sum
        assert sum(run.rows[o] for o in OUTCOMES) == run.rows["input"]
        assert run.rows["quarantined"] == len(run.quarantine)
        if case.indexed is not None:
            assert run.rows["indexed"] == case.indexed, run.rows
        if case.blank is not None:
            assert run.blank == case.blank
        indexed = {e["entry_id"] for e in run.entries}
        assert {p["entry_id"] for p in run.passages} == indexed
        for e in run.entries:
            for text in (e["title"], e["answer"]):
                text.encode("utf-8")  # no lone surrogates reach the index
                assert "\x00" not in text
        if case.check is not None:
            case.check(run)

    # --- nothing outside the source and the data home
    assert tree(tmp_path, skip=root) == before, "files outside the data home changed"
    outside = tmp_path / "outside"
    for path in watch.reads + watch.writes:
        assert not _inside(path, outside), f"touched {path}, outside the source"
        assert not re.search(r"passwd|shadow|system32", path), f"an id became a path: {path}"
    for path in watch.writes:
        if _inside(path, tmp_path):
            assert _inside(path, root), f"wrote {path}, outside the data home"
    for written in root.rglob("*"):
        assert not re.search(r"passwd|shadow|system32", str(written)), written
        if written.is_file() and written.stat().st_size < 50_000_000:
            assert OUTSIDE_MARKER.encode() not in written.read_bytes(), written

    # --- the report: user text is text, never markup
    assert_report_markup_is_ours(run.report)


def test_the_corpus_has_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
    assert sum(1 for c in CASES if c.error is None) >= 15  # quarantine paths, not only errors


# --- through the CLI ------------------------------------------------------------------------


def kbflow(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # As a user runs it: the test session's PREFECT_LOGGING_LEVEL is not theirs.
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "kbflow.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("name", "code", "line"),
    [
        ("symlink_file_out_of_source", 2, r"^kbflow: leak\.jsonl in .* outside the export folder"),
        ("unsupported_file", 2, r"^kbflow: notes\.txt: unsupported file type"),
        ("empty_file", 11, r"^kbflow: run \S+ failed: export rejected: the export has no rows"),
    ],
)
def test_cli_reports_one_clear_line_and_no_traceback(
    name: str, code: int, line: str, tmp_path: Path
) -> None:
    case = next(c for c in CASES if c.name == name)
    src = tmp_path / "export"
    src.mkdir()
    case.build(src)
    out = kbflow("nightly", "--source", str(src), "--run-date", "2026-11-24", home=tmp_path / "h")
    assert out.returncode == code, out.stderr[-3000:]
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("kbflow:")]
    assert len(errors) == 1 and re.search(line, errors[0]), out.stderr[-3000:]
