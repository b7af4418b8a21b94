"""The workbench web app (FastAPI, server-rendered Jinja2 pages with autoescape, one CSS file,
no script): the review queue by impact with filters and pages, each suggestion's evidence and
decision history, and the forms that append decisions (``kbflow.mining.suggest.decide``).

- ``GET /`` the queue (``kind``, ``category``, ``week``, ``status`` open/decided/all,
  ``page``); ``GET /s/{id}`` one suggestion; ``POST /s/{id}/decide`` a decision, answered with
  a 303 to the next open suggestion; ``GET /export.{csv,jsonl,xlsx}`` the accepted changes.
- With a token (``create_app(token=...)``; ``serve`` requires one off loopback) every request
  carries it: ``?token=`` once (kept in an HttpOnly, SameSite=Strict cookie; the URL is
  redirected without it), or ``Authorization: Bearer``; otherwise 401. Without one, only
  loopback Host headers are answered (a DNS-rebinding page cannot reach the workbench).
- Every POST carries a CSRF token (HMAC of a per-browser cookie under a per-process key) and a
  fresh decision id (the idempotency key: a double submit is 409); a cross-origin Origin or
  Referer is refused. Errors are HTML pages with their 4xx status; nothing is written then.
- One lock serializes this process's DuckDB work (one writer; a read-only and a read-write
  connection to one file cannot coexist in a process). ``Server-Timing`` carries the server
  time of each page (``queue``: reading the queue; ``total``).

Forms are parsed from ``application/x-www-form-urlencoded`` bodies with ``urllib.parse``:
the pages send nothing else, and python-multipart (what FastAPI's ``Form`` needs) would be a
runtime dependency for that alone.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from kbflow.errors import ConfigError, DecisionConflict, UnknownSuggestion
from kbflow.mining.suggest import DECISIONS, decide, export_patch, review_queue
from kbflow.store.home import DataHome
from kbflow.store.logs import LogLockedError, connect_logs
from kbflow.store.sql import fetch_table, load_sql
from kbflow.workbench.entries import live_entries
from kbflow.workbench.security import Guard, check_bind, host_name, is_loopback, same_origin
from kbflow.workbench.views import (
    KIND_LABELS,
    PAGE_SIZE,
    STATUSES,
    QueueFilter,
    is_open,
    next_open,
    parse_evidence,
    queue_page,
)

log = logging.getLogger(__name__)

AUTH_COOKIE = "kbflow_wb_auth"
BROWSER_COOKIE = "kbflow_wb_browser"
REVIEWER_COOKIE = "kbflow_wb_reviewer"

#: A decision form is a few fields; anything larger is not one of ours.
MAX_FORM_BYTES = 64 * 1024
MAX_TEXT_CHARS = 1000
MAX_COMMENT_CHARS = 2000
MAX_NAME_CHARS = 100
FORM_FIELDS = ("csrf", "decision_id", "decision", "reviewer", "comment", "text", "entry_id", "back")
_DECISION_ID = re.compile(r"[0-9a-f]{32}")

EXPORTS = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

#: No script, no frame, no third party: the pages need none of them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

BUSY = "The review tables are locked by another process (the weekly mining?); retry in a minute."

DONE_MESSAGES = {
    "accept": "Accepted · 已采纳",
    "edit": "Edited and accepted · 已修改采纳",
    "reject": "Rejected · 已拒绝",
    "defer": "Deferred · 已推迟",
}


class PageError(Exception):
    """An error answered as an HTML page with ``status`` (nothing was written)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def create_app(
    home: Path, token: str | None = None, host: str = "127.0.0.1", tz: str = "Asia/Shanghai"
) -> FastAPI:
    """The workbench over data home ``home`` (its ``logs.duckdb`` and live version). ``host`` is
    where it will be bound: off loopback a ``token`` is required (``ConfigError``). Times are
    shown in ``tz`` (``mining.timezone``)."""
    check_bind(host, token)
    if not home.is_dir():
        raise ConfigError(f"no data home at {home} (`kbflow nightly` and `kbflow mine` make one)")
    zone = ZoneInfo(tz)
    data = DataHome(home)
    guard = Guard(token)
    # Without a token the loopback bind is the only gate: a Host header naming another name
    # is a DNS-rebinding page reaching 127.0.0.1, refused.
    check_host = not guard.needs_token and is_loopback(host)
    db_lock = threading.Lock()

    @contextmanager
    def db() -> Iterator[None]:
        """This process's DuckDB work, one at a time; a file held by another process is 503."""
        with db_lock:
            try:
                yield
            except LogLockedError as exc:
                raise PageError(503, "Busy", BUSY) from exc

    env = Environment(
        loader=PackageLoader("kbflow.workbench", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(kind_label=lambda k: KIND_LABELS.get(k, k), statuses=STATUSES, tz=tz)
    env.filters["when"] = lambda t: t.astimezone(zone).strftime("%Y-%m-%d %H:%M") if t else ""
    css = (files("kbflow.workbench") / "static" / "workbench.css").read_bytes()

    app = FastAPI(title="kbflow review workbench", docs_url=None, redoc_url=None, openapi_url=None)

    @contextmanager
    def timed(request: Request, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            request.state.timings[name] = (time.perf_counter() - t0) * 1000

    def queue(request: Request) -> list[dict[str, Any]]:
        with timed(request, "queue"), db():
            return review_queue(data.logs_path)

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        with timed(request, "render"):
            html = env.get_template(template).render(
                csrf=guard.csrf_token(request.state.browser_id), **ctx
            )
        return HTMLResponse(html, status_code=status)

    def error_page(request: Request, e: PageError) -> HTMLResponse:
        html = env.get_template("error.html").render(
            status=e.status, title=e.title, message=e.message, needs_token=e.status == 401
        )
        return HTMLResponse(html, status_code=e.status)

    @app.middleware("http")
    async def gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        t0 = time.perf_counter()
        request.state.timings = {}
        try:
            response = await admit(request) or await call_next(request)
        except PageError as e:
            response = error_page(request, e)
        total = (time.perf_counter() - t0) * 1000
        timings = {**request.state.timings, "total": total}
        response.headers["Server-Timing"] = ", ".join(
            f"{k};dur={v:.1f}" for k, v in timings.items()
        )
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        response.headers.setdefault("Cache-Control", "no-store")
        if request.state.new_browser:
            response.set_cookie(
                BROWSER_COOKIE, request.state.browser_id, httponly=True, samesite="strict"
            )
        # the path only: a query string may carry the token
        log.info("workbench: %s %s %d in %.0f ms", request.method, request.url.path,
                 response.status_code, total)  # fmt: skip
        return response

    async def admit(request: Request) -> Response | None:
        """None to go on, or the answer (a redirect that drops ``?token=``); raises PageError."""
        browser_id = request.cookies.get(BROWSER_COOKIE, "")
        request.state.new_browser = not browser_id
        request.state.browser_id = browser_id or guard.new_browser_id()
        if check_host and not is_loopback(host_name(request.headers.get("host", ""))):
            raise PageError(
                400, "Unexpected host", "This workbench answers on loopback names only."
            )
        if request.url.path.startswith("/static/") or not guard.needs_token:
            return None
        given = request.query_params.get("token")
        if given is not None:
            if not guard.token_ok(given):
                raise PageError(401, "Token needed", "The token in the address is wrong.")
            rest = urlencode([(k, v) for k, v in parse_qsl(request.url.query) if k != "token"])
            to = request.url.path + (f"?{rest}" if rest else "")
            response = RedirectResponse(to, status_code=303)
            response.set_cookie(
                AUTH_COOKIE, guard.session_value(), httponly=True, samesite="strict"
            )
            return response
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and guard.token_ok(auth[7:].strip()):
            return None
        if guard.session_ok(request.cookies.get(AUTH_COOKIE, "")):
            return None
        raise PageError(401, "Token needed", "This workbench needs its access token.")

    @app.exception_handler(PageError)
    async def on_page_error(request: Request, e: PageError) -> Response:
        return error_page(request, e)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, e: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        return error_page(request, PageError(e.status_code, titles.get(e.status_code, "Error"),
                                             str(e.detail)))  # fmt: skip

    @app.get("/static/workbench.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css; charset=utf-8",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    def queue_view(request: Request) -> HTMLResponse:
        f = filter_from(dict(request.query_params))
        p = queue_page(queue(request), f)
        return page(request, "queue.html", f=f, p=p, page_size=PAGE_SIZE,
                    done=done_message(request), back=f.query())  # fmt: skip

    @app.get("/s/{suggestion_id}", response_class=HTMLResponse)
    def suggestion_view(request: Request, suggestion_id: str) -> HTMLResponse:
        f = filter_from(dict(request.query_params))
        s = find(queue(request), suggestion_id)
        with timed(request, "history"), db():
            history = decision_history(data.logs_path, suggestion_id)
        with timed(request, "entries"):
            entries = live_entries(data.indexes, [s["entry_id"], s["other_entry_id"] or ""])
        return page(
            request,
            "detail.html",
            s=s,
            f=f,
            back=f.query(),
            evidence=parse_evidence(s["kind"], s["detail"]),
            history=history,
            entries=entries,
            is_open=is_open(s),
            decisions=[d for d in DECISIONS if d != "edit"],
            decision_id=secrets.token_hex(16),
            edit_id=secrets.token_hex(16),
            reviewer=unquote(request.cookies.get(REVIEWER_COOKIE, ""))[:MAX_NAME_CHARS],
            done=done_message(request),
        )

    @app.post("/s/{suggestion_id}/decide")
    async def decide_view(request: Request, suggestion_id: str) -> Response:
        check_origin(request)
        form = await read_form(request)
        if not guard.csrf_ok(request.cookies.get(BROWSER_COOKIE, ""), form.get("csrf", "")):
            raise PageError(403, "Form expired", "This form's security token is missing or "
                            "out of date (the workbench restarted?). Reload the page and decide "
                            "again; nothing was written.")  # fmt: skip
        decision, reviewer = form.get("decision", ""), form.get("reviewer", "").strip()
        decision_id = form.get("decision_id", "")
        if not _DECISION_ID.fullmatch(decision_id):
            raise PageError(400, "Bad form", "The form has no valid decision id; reload the page.")
        if decision not in DECISIONS:
            raise PageError(422, "Unknown decision", f"“{decision[:40]}” is not one of "
                            f"{', '.join(DECISIONS)}; nothing was written.")  # fmt: skip
        for name, limit in (("reviewer", MAX_NAME_CHARS), ("comment", MAX_COMMENT_CHARS),
                            ("text", MAX_TEXT_CHARS), ("entry_id", MAX_NAME_CHARS * 5)):  # fmt: skip
            if len(form.get(name, "")) > limit:
                raise PageError(422, "Too long", f"The {name} has more than {limit} characters.")
        if not reviewer:
            raise PageError(422, "Who decides?", "Give your name as the reviewer; nothing was "
                            "written.")  # fmt: skip
        entry_id = form.get("entry_id", "").strip()
        if decision == "edit" and entry_id:
            known = await run_in_threadpool(live_entries, data.indexes, [entry_id])
            if known is not None and entry_id not in known:
                raise PageError(422, "Unknown entry", f"Entry “{entry_id}” is not in the live "
                                "index version; nothing was written.")  # fmt: skip
        f = filter_from(dict(parse_qsl(form.get("back", ""))))

        def write() -> str | None:
            with db():
                try:
                    decide(data.logs_path, suggestion_id, decision, reviewer,
                           comment=form.get("comment", "").strip() or None,
                           text=form.get("text", "") if decision == "edit" else None,
                           entry_id=entry_id if decision == "edit" else None,
                           decision_id=decision_id, exact=True)  # fmt: skip
                except UnknownSuggestion as exc:
                    raise PageError(404, "No such suggestion", str(exc)) from exc
                except DecisionConflict as exc:
                    raise PageError(409, "Already decided", str(exc)) from exc
                except ConfigError as exc:
                    message = str(exc)
                    if decision == "edit" and "must change" in message:
                        message = "An edit must change the text or the entry; nothing was written."
                    raise PageError(422, "Cannot record this decision", message) from exc
                try:  # written: where to go next is a convenience
                    return next_open(review_queue(data.logs_path), f, suggestion_id)
                except LogLockedError:
                    return None

        nxt = await run_in_threadpool(write)
        query = "&".join(q for q in (f.query(page=1), urlencode({"done": decision,
                          "prev": suggestion_id[:12]})) if q)  # fmt: skip
        response = RedirectResponse(f"/s/{nxt}?{query}" if nxt else f"/?{query}", status_code=303)
        response.set_cookie(REVIEWER_COOKIE, quote(reviewer), max_age=365 * 86400,
                            httponly=True, samesite="strict")  # fmt: skip
        return response

    @app.get("/export.{fmt}")
    def export_view(request: Request, fmt: str) -> Response:
        if fmt not in EXPORTS:
            raise PageError(404, "Not found", f"No export as {fmt[:10]!r}: csv, jsonl or xlsx.")
        with tempfile.TemporaryDirectory(prefix="kbflow-wb-") as tmp, db():
            out = Path(tmp) / f"patch.{fmt}"
            export_patch(data.logs_path, out, fmt)
            body = out.read_bytes()
        name = f"kbflow-patch-{datetime.now():%Y%m%d-%H%M}.{fmt}"
        return Response(body, media_type=EXPORTS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    def check_origin(request: Request) -> None:
        source = request.headers.get("origin") or request.headers.get("referer")
        if source and not same_origin(source, request.headers.get("host", "")):
            raise PageError(403, "Cross-site request", "This form was not sent from the "
                            "workbench itself; nothing was written.")  # fmt: skip

    return app


def filter_from(params: dict[str, str]) -> QueueFilter:
    try:
        return QueueFilter.from_params(params)
    except ConfigError as exc:
        raise PageError(422, "Bad filter", str(exc)) from exc


def find(rows: list[dict[str, Any]], suggestion_id: str) -> dict[str, Any]:
    for r in rows:
        if r["suggestion_id"] == suggestion_id:
            return r
    raise PageError(404, "No such suggestion", f"No suggestion {suggestion_id[:40]!r} in the "
                    "review queue (the weekly mining writes them).")  # fmt: skip


def done_message(request: Request) -> str | None:
    done = request.query_params.get("done", "")
    prev = request.query_params.get("prev", "")
    if done not in DONE_MESSAGES or not re.fullmatch(r"[0-9a-f]{1,12}", prev):
        return None
    return f"{DONE_MESSAGES[done]}: {prev}"


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as one value per field; 415/413/400 for anything else."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise PageError(415, "Not a form", "Decisions are sent by the page's forms only.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PageError(413, "Too large", "This form is larger than any decision form.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PageError(413, "Too large", "This form is larger than any decision form.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PageError(400, "Bad form", "The form could not be read.") from exc
    if any(len(v) > 1 for v in fields.values()):
        raise PageError(400, "Bad form", "A form field was sent twice.")
    return {k: v[0] for k, v in fields.items() if k in FORM_FIELDS}


def decision_history(logs_path: Path, suggestion_id: str) -> list[dict[str, Any]]:
    """Every decision on ``suggestion_id``, oldest first."""
    with connect_logs(logs_path, retry_s=30.0) as con:
        con.execute(load_sql("suggest/create_suggestion_tables"))
        return fetch_table(
            con, "workbench/select_suggestion_decisions", {"suggestion_id": suggestion_id}
        ).to_pylist()


def serve(
    home: Path,
    host: str = "127.0.0.1",
    port: int = 8700,
    token: str | None = None,
    tz: str = "Asia/Shanghai",
) -> None:
    """Run the workbench with uvicorn until interrupted. Refuses (``ConfigError``) a
    non-loopback ``host`` without a ``token``. No access log: a first URL carries the token."""
    import uvicorn

    app = create_app(home, token, host, tz)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
