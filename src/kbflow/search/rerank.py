"""Optional rerank stage: SGLang's ``/v1/rerank`` (Qwen3-Reranker) over the fused top candidates.

Protocol (SGLang ``V1RerankReqInput`` / ``RerankResponse``, from SGLang 0.5.8): ``POST
{url}/v1/rerank`` with ``{"query": str, "documents": [str], "instruct"?: str, "top_n"?: int,
"return_documents"?: bool}``; the answer is a JSON list of ``{"score", "document"?, "index",
"meta_info"?}``, best first, ``index`` pointing into ``documents``. Servers that wrap the list
as ``{"results": [{"index", "relevance_score"}]}`` (Cohere/Jina style) are read too.

The reranker only reorders: the hand-off decision stays on the fused score, whose threshold is
calibrated per version. A reranker that fails or times out leaves the fused order and says so;
it never fails a query.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from kbflow.errors import KbflowError
from kbflow.settings import RerankSettings

log = logging.getLogger(__name__)


class RerankError(KbflowError):
    """The rerank endpoint failed, timed out or answered something that is not a ranking."""


class Reranker:
    """Client of one ``/v1/rerank`` endpoint (one request per query, no retries: a query waits
    for at most ``timeout`` seconds, then keeps its fused order)."""

    def __init__(self, settings: RerankSettings) -> None:
        if not settings.url:
            raise RerankError("search.rerank.url is not set; point it at an SGLang rerank server")
        self.settings = settings
        base = settings.url.rstrip("/")
        self.endpoint = base + ("/rerank" if base.endswith("/v1") else "/v1/rerank")

    def scores(self, query: str, documents: list[str]) -> list[float]:
        """One relevance score per document, in the order given. Raises ``RerankError``."""
        if not documents:
            return []
        body: dict[str, Any] = {"query": query, "documents": documents, "return_documents": False}
        if self.settings.instruct:
            body["instruct"] = self.settings.instruct
        if self.settings.model:
            body["model"] = self.settings.model
        req = urllib.request.Request(
            self.endpoint,
            data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        key = self.settings.api_key
        if key is not None:
            req.add_header("Authorization", f"Bearer {key.get_secret_value()}")
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RerankError(f"rerank endpoint {self.endpoint} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RerankError(f"rerank endpoint {self.endpoint} unreachable: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise RerankError(f"rerank endpoint {self.endpoint} answered non-JSON") from exc
        return parse_rerank_response(payload, len(documents))


def parse_rerank_response(payload: Any, n: int) -> list[float]:
    """Scores in document order from an SGLang list (or a ``{"results": [...]}`` wrapper)."""
    items = payload.get("results") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise RerankError(f"rerank answer is not a list of results: {str(payload)[:200]}")
    scores: list[float | None] = [None] * n
    for item in items:
        try:
            i = int(item["index"])
            s = float(item["score"] if "score" in item else item["relevance_score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RerankError(f"rerank result without index/score: {str(item)[:200]}") from exc
        if not 0 <= i < n:
            raise RerankError(f"rerank result index {i} outside 0..{n - 1}")
        scores[i] = s
    if any(s is None for s in scores):
        raise RerankError(
            f"rerank answer scored {sum(s is not None for s in scores)} of {n} documents"
        )
    return [float(s) for s in scores if s is not None]
