"""The ``openai`` embedding backend: any OpenAI-compatible ``/v1/embeddings`` endpoint(s).

Used directly (``--embedder openai --embed-url ...``) and by the ``sglang`` backend once its
workers answer. Texts are sorted by length and packed into requests by an estimated token
budget and an item count; each endpoint has ``max_in_flight`` requests in flight, and the
endpoints take batches from one shared queue, so a faster endpoint simply does more of them.

Failures: connection errors, timeouts, 429 and 5xx are retried with exponential backoff in
:func:`_with_retries` (the only retry loop); a request the server rejects for its size (413, or
a 400 saying the input is too long) is split in two; anything else raises ``EmbeddingError``.
The client itself never retries (``max_retries=0``), so every attempt is counted here.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from kbflow.embed.base import ModelInfo, format_query, truncate_normalize
from kbflow.errors import ConfigError, EmbeddingError, EndpointUnavailable
from kbflow.settings import EmbedSettings

log = logging.getLogger(__name__)


QWEN3_QUERY_TEMPLATE = "Instruct: {task}\nQuery:{query}"


#: Qwen3-Embedding's own default task text (English even for Chinese queries).
QWEN3_DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"


_BACKOFF_CAP_S = 60.0


#: Words of a 400 that means "too long": the tokenizer's "longer than the model's context
#: length" and SGLang's scheduler's "exceeds the maximum allowed length" among them.
_TOO_LONG_MARKERS = (
    "too long",
    "too many tokens",
    "maximum context",
    "context length",
    "maximum allowed length",
)


T = TypeVar("T")


class RequestTooLarge(Exception):
    """The server refused a request for its size; the caller splits it."""


#: A query format whose task is the whole prompt (a model folder's ``prompts.query``).
PROMPT_TEMPLATE = "{task}{query}"


def query_format(settings: EmbedSettings) -> tuple[str | None, str | None, str]:
    """``(query_template, task, where it came from)`` for the model being served: the explicit
    ``embed.query_instruction`` (``""`` = none; a whole prompt ends with ``:``, anything else
    is a task and is wrapped in Qwen's format), else the model folder's query prompt (``kbflow.embed.model_folder``), else, for an
    endpoint whose folder kbflow cannot read, Qwen's default task when the name says
    Qwen3-Embedding; otherwise none."""
    from kbflow.embed.model_folder import query_prompt

    given = settings.query_instruction
    if given == "":
        return None, None, "embed.query_instruction (none)"
    if given is not None:
        whole = given.rstrip().endswith(":")  # "Instruct: ...\nQuery:", "query: "
        template = PROMPT_TEMPLATE if whole else QWEN3_QUERY_TEMPLATE
        return template, given, "embed.query_instruction"
    if settings.model_path is not None:
        prompt = query_prompt(settings.model_path)
        where = f"{settings.model_path}/config_sentence_transformers.json"
        if prompt:
            return PROMPT_TEMPLATE, prompt, where
        return None, None, f"{where} (no query prompt)"
    if "qwen3-embedding" in settings.model.lower():
        return QWEN3_QUERY_TEMPLATE, QWEN3_DEFAULT_TASK, "the model name (no model folder given)"
    return None, None, "none (no model folder, no query_instruction)"


def languages_for(model: str) -> tuple[str, ...]:
    name = model.lower()
    if "minilm" in name and "multilingual" not in name:
        return ("en",)
    # Qwen3-Embedding, bge-m3, e5-multilingual and most served models today are multilingual.
    return ("multi",)


def estimate_tokens(text: str) -> int:
    """Cheap token estimate without the server's tokenizer: one per non-ASCII character (CJK
    is about one token per character), one per four ASCII characters, plus the special tokens."""
    ascii_chars = sum(1 for c in text if c < "\x80")
    return (len(text) - ascii_chars) + ascii_chars // 4 + 2


def pack_batches(texts: Sequence[str], batch_tokens: int, batch_items: int) -> list[list[int]]:
    """Indices of ``texts``, sorted by length, cut into batches of at most ``batch_items`` texts
    and ``batch_tokens`` estimated tokens (padded: items x longest). A single text over the
    budget gets a batch of its own. Every index appears exactly once."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        tokens = estimate_tokens(texts[i])
        padded = max(longest, tokens) * (len(current) + 1)
        if current and (len(current) >= batch_items or padded > batch_tokens):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, tokens)
    if current:
        batches.append(current)
    return batches


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def _is_too_large(exc: BaseException) -> bool:
    import openai

    if not isinstance(exc, openai.APIStatusError):
        return False
    if exc.status_code == 413:
        return True
    return exc.status_code == 400 and any(m in str(exc).lower() for m in _TOO_LONG_MARKERS)


def _with_retries(
    call: Callable[[], T],
    *,
    what: str,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; retry connection errors, timeouts, 429 and 5xx with exponential backoff
    and full jitter. Size rejections become ``RequestTooLarge``; other errors and exhausted
    retries become typed ``EmbeddingError``s."""
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if _is_too_large(exc):
                raise RequestTooLarge(str(exc)) from exc
            if not _is_transient(exc):
                raise EmbeddingError(f"{what} failed: {_describe(exc)}") from exc
            if attempt >= retries:
                raise EndpointUnavailable(
                    f"{what} failed after {attempt + 1} attempts: {_describe(exc)}"
                ) from exc
            delay = min(_BACKOFF_CAP_S, backoff * 2**attempt) * (0.5 + random.random() / 2)
            log.warning(
                "%s: %s; retry %d/%d in %.1fs", what, _describe(exc), attempt + 1, retries, delay
            )
            sleep(delay)
            attempt += 1


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


class OpenAIEmbedder:
    """Embeds through one or more OpenAI-compatible endpoints; see the module docstring.

    ``info.full_dim`` comes from one probe request at construction, so a wrong URL or model
    name fails here, before any work is queued. Vectors are truncated to ``dim`` and
    re-normalised on the client (works with any server; same as SGLang's Matryoshka option).
    """

    def __init__(self, settings: EmbedSettings, urls: Sequence[str] | None = None) -> None:
        import openai

        if settings.model == "auto":
            raise ConfigError(
                "embed.model 'auto' picks a bundled CPU model (local backend); name the model "
                "the endpoint serves: --model NAME or KBFLOW_EMBED__MODEL"
            )
        self.urls = [u.rstrip("/") for u in (urls if urls is not None else settings.urls)]
        if not self.urls:
            raise ConfigError(
                "the openai backend needs at least one endpoint: --embed-url http://HOST:PORT/v1"
            )
        # Local servers (SGLang, kbflow serve-embeddings) accept any key; the client insists on one.
        key = settings.api_key.get_secret_value() if settings.api_key else "EMPTY"
        self._clients = [
            openai.OpenAI(
                base_url=url, api_key=key, timeout=settings.request_timeout, max_retries=0
            )
            for url in self.urls
        ]
        self._settings = settings
        self.requests: Counter[str] = Counter()
        """Requests that got an answer, per endpoint URL."""
        self._lock = threading.Lock()
        probe = self._request(0, ["kbflow probe"])
        full_dim = int(probe.shape[1])
        dim = settings.dim or full_dim
        if dim > full_dim:
            raise ConfigError(f"--dim {dim} is larger than the model's {full_dim}")
        template, task, where = query_format(settings)
        log.info("query instruction from %s: %r", where, task)
        self.info = ModelInfo(
            name=settings.model,
            dim=dim,
            full_dim=full_dim,
            languages=languages_for(settings.model),
            query_template=template,
            task=task,
        )
        log.info(
            "openai backend: %s at %d endpoint(s) (%s), %d dims (of %d)",
            settings.model,
            len(self.urls),
            ", ".join(self.urls),
            dim,
            full_dim,
        )

    def _request(self, endpoint: int, texts: list[str]) -> np.ndarray:
        """One request with retries; full-size vectors in input order."""
        client = self._clients[endpoint]
        url = self.urls[endpoint]

        def call() -> np.ndarray:
            resp = client.embeddings.create(
                input=texts, model=self._settings.model, encoding_format="float"
            )
            return _vectors_from(resp, len(texts), url)

        out = _with_retries(
            call,
            what=f"embedding request to {url} ({len(texts)} texts)",
            retries=self._settings.retries,
            backoff=self._settings.retry_backoff,
        )
        with self._lock:
            self.requests[url] += 1
        return out

    def _embed_split(self, endpoint: int, texts: list[str]) -> np.ndarray:
        """``_request``, halving the batch while the server rejects it for its size."""
        try:
            return self._request(endpoint, texts)
        except RequestTooLarge as exc:
            if len(texts) == 1:
                raise EmbeddingError(
                    f"{self.urls[endpoint]} rejects a single text of {len(texts[0])} characters "
                    f"as too long ({exc}); lower chunk.max_tokens below the model's context"
                ) from exc
            half = len(texts) // 2
            log.info("request of %d texts too large for the server; split in two", len(texts))
            return np.vstack(
                [
                    self._embed_split(endpoint, texts[:half]),
                    self._embed_split(endpoint, texts[half:]),
                ]
            )

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        blank = [i for i, t in enumerate(texts) if not t.strip()]
        if blank:
            # SGLang refuses the whole request (400, "cannot be empty or whitespace only"): fail
            # here, before anything is sent, naming what the caller should have dropped.
            raise EmbeddingError(
                f"{len(blank)} of {len(texts)} texts are empty or whitespace only (first at "
                f"index {blank[0]}); an embedding server refuses them: drop them before embedding"
            )
        s = self._settings
        batches = pack_batches(texts, s.batch_tokens, s.batch_items)
        out = np.empty((len(texts), self.info.full_dim), dtype=np.float32)
        todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        for b in batches:
            todo.put(b)
        failed = threading.Event()
        alive = set(range(len(self._clients)))
        start = time.perf_counter()
        done = [0]

        def worker(endpoint: int) -> None:
            # Endpoints pull from one queue: work is shared by speed, and a failure stops the rest.
            while not failed.is_set():
                try:
                    idx = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    out[idx] = self._embed_split(endpoint, [texts[i] for i in idx])
                except EndpointUnavailable:
                    with self._lock:
                        alive.discard(endpoint)
                        others = bool(alive)
                    if not others:
                        failed.set()
                        raise
                    # Another endpoint is still answering: it takes this batch and the rest.
                    log.warning(
                        "%s is down; the other endpoints take its work", self.urls[endpoint]
                    )
                    todo.put(idx)
                    return
                except BaseException:
                    failed.set()
                    raise
                with self._lock:
                    done[0] += len(idx)
                    n = done[0]
                if n == len(texts) or n % 1024 < len(idx):
                    rate = n / max(time.perf_counter() - start, 1e-9)
                    log.debug(
                        "openai backend: %d/%d texts, %.0f/s, ETA %.0fs",
                        n,
                        len(texts),
                        rate,
                        (len(texts) - n) / rate,
                    )

        # Rounds: a batch handed back by an endpoint that went down after the others had
        # already finished is picked up by the next round on the endpoints still alive.
        while not todo.empty() and not failed.is_set():
            slots = [
                e
                for e in _interleave(len(self._clients), s.max_in_flight, todo.qsize())
                if e in alive
            ] or sorted(alive)[:1]
            with ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="embed") as pool:
                futures = [pool.submit(worker, e) for e in slots]
                try:
                    errors = [f.exception() for f in futures]
                except BaseException:  # KeyboardInterrupt: workers stop after their request
                    failed.set()
                    raise
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
        if done[0] != len(texts):  # pragma: no cover - a bug, not a server fault
            raise EmbeddingError(f"embedded {done[0]} of {len(texts)} texts")
        return truncate_normalize(out, self.info.dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([format_query(self.info, t) for t in texts])

    def close(self) -> None:
        for c in self._clients:
            c.close()


def _interleave(endpoints: int, per_endpoint: int, batches: int) -> list[int]:
    """Worker slots as endpoint numbers, round-robin (0, 1, 0, 1, ...), no more than batches."""
    slots = [e for _ in range(per_endpoint) for e in range(endpoints)]
    return slots[: max(1, min(len(slots), batches))]


def _vectors_from(resp: Any, n: int, url: str) -> np.ndarray:
    data = sorted(resp.data, key=lambda d: d.index)
    if len(data) != n or [d.index for d in data] != list(range(n)):
        raise EmbeddingError(f"{url} answered {len(data)} embeddings for {n} inputs")
    vecs = np.asarray([d.embedding for d in data], dtype=np.float32)
    if vecs.ndim != 2 or not np.isfinite(vecs).all():
        raise EmbeddingError(f"{url} answered malformed or non-finite embeddings")
    return vecs
