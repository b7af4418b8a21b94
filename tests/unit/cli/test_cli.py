from __future__ import annotations

from pathlib import Path

import pytest

from kbflow.cli.main import build_parser, main


def test_every_command_has_help():
    parser = build_parser()
    for cmd in ("nightly", "search", "eval", "versions", "rollback", "runs"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([cmd, "--help"])
        assert exc.value.code == 0


def test_search_without_a_published_version_is_one_clear_line(tmp_path: Path, capsys):
    assert main(["search", "--home", str(tmp_path), "退款"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kbflow nightly" in err[0] and "Traceback" not in err[0]


def test_bad_run_date_fails_before_prefect_starts(tmp_path: Path, capsys):
    code = main(
        ["nightly", "--home", str(tmp_path), "--source", str(tmp_path), "--run-date", "24/11/2026"]
    )
    assert code != 0
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert not (tmp_path / "catalog.duckdb").exists()


def test_versions_on_empty_home(tmp_path: Path, capsys):
    assert main(["versions", "--home", str(tmp_path)]) == 0
    assert "no index versions" in capsys.readouterr().out
