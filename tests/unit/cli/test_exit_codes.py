"""Exit codes: one per kind of outcome, the same list in ``--help`` and the README."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from kbflow.cli.main import build_parser, prefect_failure
from kbflow.errors import (
    BLOCKED_EXIT,
    EXIT_CODES,
    PREFECT_EXIT,
    KbflowError,
    ValidationFailed,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def test_blocked_validation_and_prefect_failures_have_distinct_codes():
    codes = {BLOCKED_EXIT, ValidationFailed.exit_code, PREFECT_EXIT, KbflowError.exit_code, 1}
    assert len(codes) == 5
    assert len(EXIT_CODES) == len(set(EXIT_CODES))


def test_the_readme_and_help_list_every_code():
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README.read_text(encoding="utf-8"), re.M))
    assert sorted(int(c) for c in table) == sorted(EXIT_CODES)
    helptext = build_parser().format_help()
    for code, what in EXIT_CODES.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(what)}$", helptext, re.M), code


def test_prefect_machinery_failures_are_one_line_and_others_are_not():
    locked = prefect_failure(sqlite3.OperationalError("database is locked"))
    assert locked is not None and "locked by another process" in locked
    assert prefect_failure(RuntimeError("something else")) is None
    assert prefect_failure(ValueError("database is locked")) is None
