"""A real local HTTP server that receives webhook POSTs (http.server in a thread).

``script`` lists what each request gets in turn: an HTTP status, or ``("sleep", seconds,
status)`` to answer late; once the script is used up every request gets 200. Each request's
path, headers and JSON body are kept in ``received``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "T0KEN-5ecret-c0ffee"  # the part of the URL that must never be written anywhere


@dataclass
class Webhook:
    url: str
    port: int
    script: list[Any] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def webhook_server(script: list[Any] | None = None) -> Iterator[Webhook]:
    hook: Webhook

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            step = hook.script.pop(0) if hook.script else 200
            if isinstance(step, tuple):
                _, seconds, step = step
                time.sleep(seconds)
            hook.received.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "json": json.loads(body),
                    "answered": step,
                }
            )
            self.send_response(step)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}' if step < 300 else b'{"error": "try later"}')

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    hook = Webhook(f"http://127.0.0.1:{port}/hooks/{TOKEN}?key={TOKEN}", port, list(script or []))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
