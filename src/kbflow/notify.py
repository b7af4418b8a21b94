"""Failure notice: a failed or blocked ``kb-nightly`` run POSTs plain JSON to a webhook.

The webhook URL is a secret (chat and incident webhooks carry their token in the URL): it is
read from ``Settings.notify.webhook_url`` (``KBFLOW_NOTIFY__WEBHOOK_URL``), and only its
redacted form (``scheme://host:port/…``) is ever logged, returned or written to a report.

Sending never raises: a notice that cannot be delivered is logged and described in the result
(``sent: false`` with the reason), which the run report shows. Connection errors, timeouts,
429 and 5xx are retried with backoff; another 4xx or a redirect is not (a second try would get
the same answer).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from kbflow.results import Notice
from kbflow.settings import NotifySettings
from kbflow.store.home import DataHome

log = logging.getLogger(__name__)


RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


_MAX_BACKOFF = 30.0


_USER_AGENT = "kbflow-notify/1"


def redact_url(url: str) -> str:
    """``https://hooks.example.com/…``: scheme, host and port only (no user, path or query)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be replayed as a GET without its body: report it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send_notice(
    payload: dict[str, Any], settings: NotifySettings, sleep: Any = time.sleep
) -> Notice | None:
    """POST ``payload`` as JSON to ``settings.webhook_url``.

    Returns None when no webhook is configured, else ``{"sent", "url" (redacted), "status"
    (last HTTP status or None), "attempts", "error" (when not sent)}``. Never raises.
    """
    if settings.webhook_url is None:
        return None
    url = settings.webhook_url.get_secret_value()
    shown = redact_url(url)
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    status: int | None = None
    error = "not attempted"
    attempts = 0
    for attempt in range(settings.retries + 1):
        attempts = attempt + 1
        retryable = True
        try:
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            )
            with _OPENER.open(request, timeout=settings.timeout) as response:
                status = int(response.status)
                response.read(65536)
            log.info("notify: notice sent to %s (HTTP %d, attempt %d)", shown, status, attempts)
            return {"sent": True, "url": shown, "status": status, "attempts": attempts}
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = f"HTTP {exc.code}"
            retryable = exc.code in RETRYABLE_STATUS
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, TLS, timeout
            status = None
            reason = getattr(exc, "reason", exc)
            error = f"{type(reason).__name__}: {reason}"
        except Exception as exc:  # noqa: BLE001 - a notice must never break the run
            error = f"{type(exc).__name__}: {exc}"
            retryable = False
        error = error.replace(url, shown)  # never echo the secret, whatever the library said
        if not retryable or attempt == settings.retries:
            break
        delay = min(_MAX_BACKOFF, settings.retry_backoff * 2**attempt)
        log.warning(
            "notify: %s answered %s (attempt %d); retrying in %.1f s", shown, error, attempts, delay
        )
        sleep(delay)
    log.error("notify: notice to %s NOT sent after %d attempt(s): %s", shown, attempts, error)
    return {"sent": False, "url": shown, "status": status, "attempts": attempts, "error": error}


def notice_payload(
    home: DataHome, run_id: str, run_date: date, status: str, message: str | None
) -> dict[str, Any]:
    """The notice of a run that ended ``status`` (``failed`` or ``blocked``): what happened,
    what is live now (it keeps serving) and where the report will be. ``text`` is a one-line
    summary that chat webhooks (Slack, Mattermost, Feishu-style bots) display as is."""
    from kbflow.store.versions import current_version

    try:
        live = current_version(home.indexes)
    except Exception:  # noqa: BLE001 - a broken CURRENT is itself worth reporting, not fatal
        live = None
    built = home.run_dir(run_id) / "index" / "_SUCCESS.json"
    version = None
    if built.is_file():
        try:
            version = json.loads(built.read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError):
            version = None
    what = "blocked by the quality gate" if status == "blocked" else "failed"
    text = (
        f"kb-nightly run {run_id} ({run_date.isoformat()}) {what}: {message or 'see the report'}. "
        f"Live version {live or '(none)'} keeps serving."
    )
    return {
        "event": f"kb-nightly.{status}",
        "flow": "kb-nightly",
        "run_id": run_id,
        "run_date": run_date.isoformat(),
        "status": status,
        "message": message,
        "version": version,
        "live_version": live,
        "report": str(home.reports / f"nightly-{run_id}.html"),
        "home": str(home.root),
        "text": text,
    }


def notify_run(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None,
    settings: NotifySettings,
) -> Notice | None:
    """Send the notice of a failed or blocked run; the result goes into the run's report.
    Never raises (see ``send_notice``); None when no webhook is configured."""
    if settings.webhook_url is None:
        return None
    try:
        payload = notice_payload(home, run_id, run_date, status, message)
    except Exception as exc:  # noqa: BLE001 - still tell someone, with what we know
        log.warning("notify: could not assemble the full notice (%s)", exc)
        payload = {"event": f"kb-nightly.{status}", "run_id": run_id, "message": message}
    return send_notice(payload, settings)


def describe_notice(notice: Mapping[str, Any] | None) -> str | None:
    """One line for reports: ``sent to http://host:port/… (HTTP 200, 2 attempts)``."""
    if not notice:
        return None
    attempts = notice.get("attempts", 1)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if notice.get("sent"):
        return f"sent to {notice.get('url')} (HTTP {notice.get('status')}, {tries})"
    return f"NOT sent to {notice.get('url')}: {notice.get('error')} ({tries})"
