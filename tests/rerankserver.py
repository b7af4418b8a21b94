"""A real HTTP server speaking SGLang's ``/v1/rerank`` protocol (SGLang needs a GPU).

Request ``{"query": str, "documents": [str], "instruct"?, "top_n"?, "return_documents"?}``
(SGLang's ``V1RerankReqInput``); answer a JSON list of ``{"score", "document", "index",
"meta_info"}`` (``RerankResponse``), best first. Scores here: 1.0 for a document containing
``favourite``, else the share of query characters found in the document, so a test can make
the reranker disagree with the fused order on purpose. ``status``/``delay_s`` inject faults.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RerankServer:
    favourite: str = ""
    status: int = 200
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def score(self, query: str, doc: str) -> float:
        if self.favourite and self.favourite in doc:
            return 1.0
        chars = set(query.lower()) - {" "}
        return round(len(chars & set(doc.lower())) / max(1, len(chars)) * 0.9, 4)

    def start(self) -> RerankServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/v1/rerank":
                    return self._send(404, {"detail": "Not Found"})
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    req = json.loads(raw)
                    query, docs = req["query"], req["documents"]
                    if not isinstance(query, str) or not all(isinstance(d, str) for d in docs):
                        raise TypeError("query must be a string, documents a list of strings")
                except (KeyError, TypeError, json.JSONDecodeError) as exc:
                    return self._send(422, {"detail": str(exc)})
                server.requests.append(req)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if server.status != 200:
                    return self._send(server.status, {"object": "error", "message": "injected"})
                results = [
                    {
                        "score": server.score(query, d),
                        "document": d if req.get("return_documents", True) else None,
                        "index": i,
                        "meta_info": {"id": f"r{i}", "prompt_tokens": len(d)},
                    }
                    for i, d in enumerate(docs)
                ]
                results.sort(key=lambda r: -r["score"])
                top_n = req.get("top_n")
                return self._send(200, results[:top_n] if top_n else results)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
