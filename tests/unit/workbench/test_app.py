"""The workbench app over a queue mined from real events (FastAPI's TestClient: the real app,
real DuckDB file, real live version; no browser). Every bad input is a 4xx page and writes
nothing; all text is escaped; a token gates everything when one is set."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kbflow.errors import ConfigError
from kbflow.mining.suggest import decide, review_queue
from kbflow.workbench.app import create_app

from .queue_data import XSS, build_home, copy_home, decision_rows, form_fields

BASE = "http://127.0.0.1:8700"
TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_home(tmp_path_factory.mktemp("workbench"))


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    return copy_home(template, tmp_path)


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(home), base_url=BASE) as c:
        yield c


def queue_ids(home: Path) -> dict[str, str]:
    return {r["kind"]: r["suggestion_id"] for r in review_queue(home / "logs.duckdb")}


def test_queue_by_impact_with_filters_and_pages(client: TestClient, home: Path):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in r.text
    # highest impact first: the contradiction (9), the similar question (3), the confusion (2)
    rows = [line for line in r.text.splitlines() if line.startswith('  <tr class="kind-')]
    assert [x.split('"')[1] for x in rows] == [
        "kind-contradiction", "kind-similar_question", "kind-confusion", "kind-gap",
    ]  # fmt: skip
    assert "queue;dur=" in r.headers["server-timing"]
    r = client.get("/?kind=confusion")
    assert "kind-confusion" in r.text and "kind-similar_question" not in r.text
    r = client.get("/?category=退款")
    assert "kind-contradiction" in r.text and "kind-confusion" not in r.text
    r = client.get("/?week=2026-W47")
    assert "kind-similar_question" in r.text and "kind-contradiction" not in r.text
    assert "Nothing matches" in client.get("/?status=decided").text
    assert client.get("/?status=maybe").status_code == 422
    assert client.get("/?page=x").status_code == 422
    assert client.get("/?page=7").status_code == 200  # past the end: the last page


def test_detail_shows_evidence_entries_and_both_answers(client: TestClient, home: Path):
    ids = queue_ids(home)
    page = client.get(f"/s/{ids['similar_question']}").text
    assert "Parcel not here yet?" in page and "parcel not here yet" in page  # example queries
    assert "Where is my order?" in page  # the live version's entry, with its questions
    assert "track my shipment" in page
    page = client.get(f"/s/{ids['confusion']}").text
    assert "Why can&#39;t I use my coupon?" in page and "How do I get an invoice?" in page
    page = client.get(f"/s/{ids['contradiction']}").text
    assert '<div class="pair">' in page
    a, b = (
        page.index("退款将在 7 个工作日内原路退回"),
        page.index("退款将在 15 个工作日内退回信用卡"),
    )
    assert a < b
    assert "7 个工作日" in page and "Facts that differ" in page
    assert client.get("/s/" + "0" * 32).status_code == 404


def test_text_is_escaped_everywhere(client: TestClient, home: Path):
    gap = queue_ids(home)["gap"]
    for page in (client.get("/").text, client.get(f"/s/{gap}").text):
        assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<img src=x" not in page and "<b>bold</b>" not in page
    csp = client.get("/").headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_accept_edit_reject_defer_and_the_export(client: TestClient, home: Path):
    ids = queue_ids(home)
    logs = home / "logs.duckdb"

    def post(kind: str, decision: str, **fields: str):
        page = client.get(f"/s/{ids[kind]}?kind=").text
        form = {**form_fields(page, decision), "reviewer": "王小明", **fields}
        return client.post(f"/s/{ids[kind]}/decide", data=form, follow_redirects=False)

    r = post("similar_question", "accept", comment="好")
    assert r.status_code == 303 and r.headers["location"].startswith("/s/")
    assert "done=accept" in r.headers["location"]
    assert post("gap", "defer").status_code == 303
    r = post("confusion", "edit", text="发票和优惠券的区别", entry_id="coupon")
    assert r.status_code == 303
    r = post("contradiction", "reject", comment="两条适用不同支付方式")
    assert r.status_code == 303
    rows = decision_rows(logs)
    assert [(x[0], x[1]) for x in rows] == [
        (ids["similar_question"], "accept"), (ids["gap"], "defer"),
        (ids["confusion"], "edit"), (ids["contradiction"], "reject"),
    ]  # fmt: skip
    assert rows[0][2] == "王小明" and rows[2][3:5] == ("coupon", "发票和优惠券的区别")
    # the reviewer's name is remembered for the next form
    assert 'value="王小明"' in client.get(f"/s/{ids['gap']}").text
    csv = client.get("/export.csv")
    assert csv.status_code == 200 and csv.content.startswith(b"\xef\xbb\xbf")
    body = csv.content.decode("utf-8-sig")
    assert "Parcel not here yet?" in body and "发票和优惠券的区别" in body
    assert "两条适用不同支付方式" not in body  # rejected: not in the patch
    assert client.get("/export.jsonl").text.count("\n") == 2
    assert client.get("/export.exe").status_code == 404
    # decided ones leave the open queue; the history shows on the page
    assert "kind-similar_question" not in client.get("/").text
    page = client.get(f"/s/{ids['confusion']}").text
    assert "Decided:" in page and "<form" not in page.split("Decision · 决定")[1]


def bad_inputs(client: TestClient, home: Path) -> dict[str, tuple[int, object]]:
    """Each bad request, its status. The suggestion ``sim`` is already accepted first."""
    ids = queue_ids(home)
    sim, conf, gap = ids["similar_question"], ids["confusion"], ids["gap"]
    good = form_fields(client.get(f"/s/{conf}").text, "accept") | {"reviewer": "ana"}
    decide(home / "logs.duckdb", sim, "accept", "bo", decision_id="f" * 32)
    deferred = form_fields(client.get(f"/s/{gap}").text, "defer") | {"reviewer": "ana"}
    assert client.post(f"/s/{gap}/decide", data=deferred, follow_redirects=False).status_code == 303

    def post(sid: str, form: dict[str, str], **kw: object) -> int:
        return client.post(f"/s/{sid}/decide", data=form, follow_redirects=False, **kw).status_code  # type: ignore[arg-type]

    return {
        "unknown suggestion": (404, post("0" * 32, good)),
        "double submit": (409, post(gap, deferred)),
        "already decided": (409, post(sim, good | {"decision_id": "a" * 32})),
        "no csrf token": (403, post(conf, {k: v for k, v in good.items() if k != "csrf"})),
        "wrong csrf token": (403, post(conf, good | {"csrf": "0" * 64})),
        "cross-site origin": (403, post(conf, good, headers={"Origin": "http://evil.example"})),
        "not a form": (415, client.post(f"/s/{conf}/decide", json=good).status_code),
        "no reviewer": (422, post(conf, good | {"reviewer": " "})),
        "unknown decision": (422, post(conf, good | {"decision": "delete"})),
        "no decision id": (400, post(conf, good | {"decision_id": "1"})),
        "edit changing nothing": (422, post(conf, good | {"decision": "edit"})),
        "edit to an entry not live": (422, post(conf, good | {"decision": "edit", "entry_id": "nope"})),
        "huge form": (413, post(conf, good | {"comment": "x" * 70_000})),
    }  # fmt: skip


def test_bad_inputs_are_clear_4xx_and_write_nothing(client: TestClient, home: Path):
    logs = home / "logs.duckdb"
    results = bad_inputs(client, home)
    before = decision_rows(logs)
    assert len(before) == 2  # the accept and the defer made above, nothing from the bad ones
    assert {k: got for k, (_, got) in results.items()} == {
        k: want for k, (want, _) in results.items()
    }
    assert decision_rows(logs) == before
    r = client.post("/s/" + "0" * 32 + "/decide", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 403 and "Reload the page" in r.text and "<!DOCTYPE html>" in r.text


def test_a_token_gates_every_request(home: Path):
    app = create_app(home, token=TOKEN, host="0.0.0.0")
    with TestClient(app, base_url="http://kb.example:8700") as c:
        r = c.get("/")
        assert r.status_code == 401 and "?token=" in r.text and TOKEN not in r.text
        assert c.get("/?token=wrong-token-000000000").status_code == 401
        assert c.get("/export.csv").status_code == 401
        assert c.get("/static/workbench.css").status_code == 200  # no secret in a stylesheet
        r = c.get(f"/?kind=gap&token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/?kind=gap"
        cookie = r.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert TOKEN not in cookie
        assert c.get("/").status_code == 200  # the cookie carries it now
    with TestClient(app, base_url="http://kb.example:8700") as c:
        assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_an_empty_home_shows_an_empty_queue(tmp_path: Path):
    with pytest.raises(ConfigError, match="no data home"):
        create_app(tmp_path / "missing")
    (tmp_path / "new").mkdir()
    with TestClient(create_app(tmp_path / "new"), base_url=BASE) as c:
        r = c.get("/")
        assert r.status_code == 200 and "The queue is empty" in r.text
        assert c.get("/export.csv").content.decode("utf-8-sig").startswith("entry_id,field")


def test_loopback_without_token_answers_loopback_names_only(home: Path):
    app = create_app(home)
    with TestClient(app, base_url="http://localhost:8700") as c:
        assert c.get("/").status_code == 200
    with TestClient(app, base_url="http://rebound.example") as c:  # DNS rebinding
        assert c.get("/").status_code == 400


def test_non_loopback_bind_without_a_token_is_refused(home: Path):
    with pytest.raises(ConfigError, match="without a token"):
        create_app(home, host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(home, token="short", host="10.0.0.5")
    res = subprocess.run(
        [sys.executable, "-m", "kbflow.cli", "review", "serve", "--home", str(home), "--host",
         "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]  # one line, no traceback
    assert "without a token" in res.stderr and "KBFLOW_REVIEW_TOKEN" in res.stderr
