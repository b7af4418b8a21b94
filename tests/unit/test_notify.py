"""Failure notices against a real local HTTP server: retried on 5xx, timeouts and refused
connections, not on other 4xx; never raises; the webhook URL never leaves the settings."""

from __future__ import annotations

import logging
import socket
from datetime import date
from pathlib import Path

import pytest

from kbflow.errors import ConfigError
from kbflow.notify import describe_notice, notify_run, redact_url, send_notice
from kbflow.settings import NotifySettings, load_settings
from kbflow.store.home import DataHome

from ..webhook import TOKEN, webhook_server


def _settings(url: str, **kw: float) -> NotifySettings:
    return NotifySettings(webhook_url=url, retry_backoff=0.01, **kw)  # type: ignore[arg-type]


def test_a_5xx_is_retried_and_the_json_arrives_intact(caplog: pytest.LogCaptureFixture) -> None:
    payload = {"event": "kb-nightly.failed", "run_id": "r1", "text": "验证失败"}
    caplog.set_level(logging.DEBUG)
    with webhook_server([503, 502]) as hook:
        out = send_notice(payload, _settings(hook.url))
    assert out == {"sent": True, "url": f"http://127.0.0.1:{hook.port}/…", "status": 200,
                   "attempts": 3}  # fmt: skip
    assert [r["answered"] for r in hook.received] == [503, 502, 200]
    assert all(r["json"] == payload for r in hook.received)
    assert {r["content_type"] for r in hook.received} == {"application/json"}
    assert hook.received[0]["path"] == f"/hooks/{TOKEN}?key={TOKEN}"  # the real URL was used
    assert TOKEN not in caplog.text and "retrying" in caplog.text


def test_a_client_error_is_not_retried_and_does_not_raise() -> None:
    with webhook_server([404]) as hook:
        out = send_notice({"event": "x"}, _settings(hook.url))
    assert len(hook.received) == 1
    assert out is not None and out["sent"] is False and out["error"] == "HTTP 404"
    assert (
        describe_notice(out) == f"NOT sent to http://127.0.0.1:{hook.port}/…: HTTP 404 (1 attempt)"
    )


def test_a_late_answer_times_out_and_is_retried() -> None:
    with webhook_server([("sleep", 1.0, 200)]) as hook:
        out = send_notice({"event": "x"}, _settings(hook.url, timeout=0.3))
    assert out is not None and out["sent"] and out["attempts"] == 2


def test_nobody_listening_is_retried_then_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    slept: list[float] = []
    out = send_notice({"event": "x"}, _settings(url, retries=2), sleep=slept.append)
    assert out is not None and out["sent"] is False and out["attempts"] == 3
    assert "ConnectionRefused" in out["error"] and out["status"] is None
    assert slept == [0.01, 0.02]  # exponential backoff between attempts
    assert TOKEN not in str(out) and TOKEN not in caplog.text
    assert "NOT sent" in caplog.text


def test_no_webhook_configured_sends_nothing(tmp_path: Path) -> None:
    home = DataHome.at(tmp_path)
    assert notify_run(home, "r", date(2026, 11, 24), "failed", "x", NotifySettings()) is None


def test_notice_payload_says_what_is_live(tmp_path: Path) -> None:
    home = DataHome.at(tmp_path)
    (home.indexes / "CURRENT").write_text("v20261123-020000-abc\n")
    with webhook_server() as hook:
        out = notify_run(home, "run-9", date(2026, 11, 24), "blocked", "hit@3 dropped",
                         _settings(hook.url))  # fmt: skip
    assert out is not None and out["sent"]
    got = hook.received[0]["json"]
    assert got["event"] == "kb-nightly.blocked" and got["run_id"] == "run-9"
    assert got["live_version"] == "v20261123-020000-abc" and got["run_date"] == "2026-11-24"
    assert got["report"].endswith("nightly-run-9.html")
    assert "hit@3 dropped" in got["text"] and "keeps serving" in got["text"]


def test_redacted_url_keeps_only_scheme_host_and_port() -> None:
    assert redact_url(f"https://bot:{TOKEN}@hooks.example.com/x/{TOKEN}?k={TOKEN}") == (
        "https://hooks.example.com/…"
    )
    assert redact_url(f"http://[::1]:8080/{TOKEN}") == "http://[::1]:8080/…"


def test_webhook_url_setting_is_secret_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBFLOW_NOTIFY__WEBHOOK_URL", f"https://hooks.example.com/{TOKEN}")
    settings = load_settings()
    assert settings.notify.webhook_url is not None
    assert settings.notify.webhook_url.get_secret_value().endswith(TOKEN)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    monkeypatch.setenv("KBFLOW_NOTIFY__WEBHOOK_URL", f"ftp://{TOKEN}/x")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "notify.webhook_url" in str(err.value) and TOKEN not in str(err.value)
