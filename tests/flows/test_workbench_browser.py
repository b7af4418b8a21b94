"""The reviewers' workbench in a real headless browser (Debian's chromium, driven by Playwright
over its DevTools protocol; nothing is downloaded): ``kbflow review serve`` on a free loopback
port over a queue mined from real events, a reviewer filtering, accepting, editing and
rejecting; then the decisions table holds exactly those rows, the downloaded patch the accepted
ones, and with JavaScript off the queue and a contradiction still read. Screenshots of the
queue and of one contradiction are left under test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbflow.mining.suggest import export_patch, review_queue

from ..conftest import ROOT
from ..unit.workbench.queue_data import build_home, decision_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)",
)


@pytest.fixture(autouse=True)
def prefect_harness() -> None:
    """The workbench never starts Prefect: no ephemeral API for this module (it costs ~15 s)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``kbflow review serve`` (the real CLI, uvicorn) over a fresh home; its URL and home."""
    home = build_home(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbflow.cli", "review", "serve", "--home", str(home), "--port",
         str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/static/workbench.css", timeout=2).close()
            break
        except OSError:
            assert proc.poll() is None, proc.communicate()[0][-2000:]
            assert time.monotonic() < deadline, "the workbench did not start"
            time.sleep(0.1)
    try:
        yield url, home
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_reviewer_accepts_edits_and_rejects_in_the_browser(served, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    url, home = served
    logs = home / "logs.duckdb"
    ids = {r["kind"]: r["suggestion_id"] for r in review_queue(logs)}
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = ctx.new_page()
        page.on("console", lambda m: console.append(m.text))  # a CSP violation would be one
        page.goto(url + "/")
        assert page.locator("table.queue tbody tr").count() == 4
        page.screenshot(path=str(ARTIFACTS / "workbench-queue.png"), full_page=True)

        # filter to the mined week, open its first suggestion, accept it
        page.select_option("select[name=week]", "2026-W47")
        page.click("form.filters button")
        assert "week=2026-W47" in page.url
        assert page.locator("table.queue tbody tr").count() == 2
        page.click(f"a[href^='/s/{ids['similar_question']}']")
        assert "Parcel not here yet?" in page.inner_text("h1")
        page.fill("form.decision-form:not(.edit) input[name=reviewer]", "王小明")
        page.fill("form.decision-form:not(.edit) input[name=comment]", "常见说法")
        page.click("button[value=accept]")
        # on to the next open one of the filter: the confusion; edit it to the other entry
        assert f"/s/{ids['confusion']}" in page.url and "week=2026-W47" in page.url
        assert "Accepted" in page.inner_text(".flash")
        assert page.input_value("form.edit input[name=reviewer]") == "王小明"  # remembered
        page.fill("form.edit input[name=text]", "优惠券和发票有什么区别")
        page.fill("form.edit input[name=entry_id]", "coupon")
        page.click("button.b-edit")
        assert page.url.startswith(url + "/?") and "Edited" in page.inner_text(".flash")

        # the contradiction: both answers side by side; reject it
        page.goto(url + "/?kind=contradiction")
        page.click(f"a[href^='/s/{ids['contradiction']}']")
        sides = page.locator(".pair .side")
        assert sides.count() == 2
        assert (
            "7 个工作日" in sides.nth(0).inner_text() and "15 个工作日" in sides.nth(1).inner_text()
        )
        box_a, box_b = sides.nth(0).bounding_box(), sides.nth(1).bounding_box()
        assert box_a and box_b and box_a["x"] < box_b["x"] and box_a["y"] == box_b["y"]
        page.screenshot(path=str(ARTIFACTS / "workbench-contradiction.png"), full_page=True)
        page.fill("form.decision-form:not(.edit) input[name=comment]", "适用于不同支付方式")
        page.click("button[value=reject]")
        assert "Rejected" in page.inner_text(".flash")

        # the patch, downloaded from the page's link
        page.goto(url + "/")
        with page.expect_download() as info:
            page.click("header a[href='/export.csv']")
        patch = Path(info.value.path()).read_bytes().decode("utf-8-sig")

        # JavaScript off: reading still works
        nojs = browser.new_context(java_script_enabled=False).new_page()
        nojs.goto(url + "/?status=all")
        assert nojs.locator("table.queue tbody tr").count() == 4
        assert "decided · 已决定" in nojs.inner_text(".counts")
        nojs.goto(url + f"/s/{ids['contradiction']}")
        assert "退款将在 15 个工作日内退回信用卡" in nojs.inner_text(".pair")
        assert "reject" in nojs.inner_text("table.history")
        browser.close()

    assert console == []
    rows = decision_rows(logs)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (ids["similar_question"], "accept", "王小明"),
        (ids["confusion"], "edit", "王小明"),
        (ids["contradiction"], "reject", "王小明"),
    ]
    assert rows[1][3:5] == ("coupon", "优惠券和发票有什么区别")
    assert "Parcel not here yet?" in patch and "优惠券和发票有什么区别" in patch
    assert ids["contradiction"] not in patch
    assert export_patch(logs, tmp_path / "p.jsonl", "jsonl") == 2
    for name in ("workbench-queue", "workbench-contradiction"):
        shot = ARTIFACTS / f"{name}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
