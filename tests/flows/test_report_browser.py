"""The nightly and weekly HTML reports in a real headless browser (Debian's chromium).

Each report must load with no console message at all (the pages carry no scripts, so any
message is an error: a blocked resource, an injected script), draw every chart (every <svg> of
the source is in the rendered DOM with its bars), and leave a screenshot under test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kbflow.contracts import QUARANTINE_ROW, table_from_rows
from kbflow.mining.export import render_week_report
from kbflow.mining.mine import mine_week
from kbflow.report.nightly import write_nightly_report

from ..conftest import ROOT
from ..unit.mining.test_mining import WEEK, build_week

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)",
)


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root in CI containers
            "--disable-gpu",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def open_report(path: Path, name: str) -> str:
    """Render ``path``: return its DOM; assert no console output; keep a screenshot."""
    url = path.resolve().as_uri()
    dom = chromium(url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    res = chromium(url, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars")
    assert res.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return dom.stdout


def charts(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def assert_every_chart_drawn(source: str, dom: str, expected: int) -> None:
    assert len(charts(source)) == expected
    drawn = charts(dom)
    assert len(drawn) == expected
    for svg in drawn:
        assert svg.count("<rect") >= 1, svg[:200]


def test_console_detector_catches_errors(tmp_path: Path):
    """The check below is only worth something if a broken page does fail it."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefined()</script></body></html>")
    res = chromium(page.as_uri(), "--dump-dom")
    assert any("notDefined" in m for m in console_messages(res.stderr))


def test_weekly_report_renders(tmp_path: Path):
    logs = tmp_path / "logs.duckdb"
    build_week(logs)
    mine_week(logs, WEEK)
    path = render_week_report(logs, WEEK, tmp_path / "weekly")
    dom = open_report(path, "weekly-report")
    assert_every_chart_drawn(path.read_text(encoding="utf-8"), dom, expected=4)
    assert "<script>alert(1)</script>" not in dom and "&lt;script&gt;alert(1)" in dom


def test_nightly_report_renders(tmp_path: Path):
    q = table_from_rows(
        [{"row_id": 1, "source_file": "kb.jsonl", "source_line": 2, "entry_id": "<script>x()</script>",
          "expectation": "expect_x", "detail": "<img src=x onerror=alert(2)>"}],
        QUARANTINE_ROW,
    )  # fmt: skip
    summary = {
        "run_id": "r1",
        "status": "published",
        "rows": {"input": 3, "indexed": 2, "quarantined": 1},
        "timings": {"validate": 1.5, "embed": 3.0},
    }
    path = write_nightly_report(tmp_path / "nightly.html", summary, quarantine=q)
    dom = open_report(path, "nightly-report")
    assert_every_chart_drawn(path.read_text(encoding="utf-8"), dom, expected=2)
    assert "<img" not in dom
