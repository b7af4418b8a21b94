"""kbflow settings: one pydantic-settings model, env prefix ``KBFLOW_``, a sub-model per stage.

Loaded once by the CLI or a flow and passed down; core code never reads the environment.
Nested values use ``__`` in environment variables, e.g. ``KBFLOW_CLEAN__NEAR_DUP_THRESHOLD=0.8``.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kbflow import __version__
from kbflow.errors import ConfigError
from kbflow.lsh import optimal_lsh_params


class ValidateSettings(BaseModel):
    max_bad_row_fraction: float = Field(0.2, ge=0, le=1)
    """Stop the run when more than this share of rows fails row-level checks."""
    max_shrink_fraction: float = Field(0.3, ge=0, le=1)
    """Stop the run when the export has this much fewer valid entries than the live version."""
    max_title_chars: int = 500
    max_answer_chars: int = 200_000


class CleanSettings(BaseModel):
    shingle_size: int = Field(2, ge=1, le=8)
    """Character n-gram size for MinHash (NFKC character bigrams suit short Chinese titles)."""
    num_perm: int = Field(128, ge=16, le=1024)
    lsh_threshold: float = Field(0.5, gt=0, lt=1)
    """LSH candidate threshold; candidates are then verified by exact Jaccard."""
    near_dup_threshold: float = Field(0.8, gt=0, le=1)
    """Exact Jaccard (title + answer shingles) at or above which two entries are merged."""
    lsh_bands: int = 0
    lsh_rows: int = 0
    lsh_max_bucket: int = Field(128, ge=2)
    """LSH buckets with more entries than this (a family of templated entries) are split by a
    second band instead of compared all pairs with all: clean time stays linear in the KB."""
    expiry_phrases: bool = True

    @model_validator(mode="after")
    def _derive_bands(self) -> CleanSettings:
        # Same optimisation as datasketch's: minimise false positive + false negative mass.
        if self.lsh_bands == 0 or self.lsh_rows == 0:
            self.lsh_bands, self.lsh_rows = optimal_lsh_params(self.lsh_threshold, self.num_perm)
        if self.lsh_bands * self.lsh_rows > self.num_perm:
            raise ValueError(
                f"lsh_bands*lsh_rows ({self.lsh_bands}*{self.lsh_rows}) exceeds num_perm {self.num_perm}"
            )
        return self


class ChunkSettings(BaseModel):
    max_tokens: int = Field(256, ge=32, le=32_000)
    """Token budget per passage (the prefix included). 256 = what all-MiniLM-L6-v2 reads; raise it
    for long-context models such as Qwen3-Embedding."""
    min_tokens: int = Field(48, ge=0)
    """Sections shorter than this are joined with the next one under the same parent."""
    long_answer_tokens: int = Field(256, ge=32)
    """Answers longer than this are split at headings and paragraphs."""


class EmbedSettings(BaseModel):
    backend: Literal["local", "openai", "sglang"] = "local"
    model: str = "auto"
    """Model name. ``auto`` (``local`` backend only): the KB's language picks a bundled model
    when a version is built, all-MiniLM-L6-v2 for English, multilingual-e5-small for Chinese
    and every other language (``kbflow.embed.choose``); either name picks it explicitly."""
    auto_threshold: float = Field(0.5, gt=0, lt=1)
    """``auto``: share of English entries at or above which the English model is chosen."""
    auto_hysteresis: float = Field(0.1, ge=0, lt=0.5)
    """``auto``: once chosen, a model is kept until the English share moves this far past
    ``auto_threshold`` (a KB near the threshold does not switch models every night)."""
    dim: int | None = Field(None, ge=1)
    """Matryoshka dimension (truncate then re-normalise); None = the model's full size."""
    batch_size: int = Field(64, ge=1)
    query_instruction: str | None = None
    """Text put before every query (never before documents). None: the model folder's own
    (``config_sentence_transformers.json``, ``prompts.query``; Qwen3-Embedding ships
    ``Instruct: {task}\\nQuery:``) when ``model_path`` is given; without a folder (``openai``
    endpoints) Qwen3-Embedding names get Qwen's default task. ``""``: none. A value ending in
    ``:`` is the whole prompt; any other is a task, wrapped as ``Instruct: {task}\\nQuery:``."""
    device: str = "cpu"
    threads: int | None = None
    urls: list[str] = Field(default_factory=list)
    """``openai``: base URLs of OpenAI-compatible endpoints (``http://host:port/v1``); work is
    shared across them. ``sglang``: left empty (the flow starts the workers). URLs are logged
    and shown in errors, so they may not carry credentials (``user:key@``) or a query: the key
    goes in ``api_key``."""
    api_key: SecretStr | None = Field(default_factory=lambda: _api_key_from_env())
    """From ``KBFLOW_EMBED__API_KEY``, else ``OPENAI_API_KEY``; never a default, never logged."""
    model_path: Path | None = None
    """``sglang``: the model folder the worker loads (e.g. a Qwen3-Embedding checkout)."""
    gpus: int = Field(1, ge=1)
    """``sglang``: one worker per GPU. With more than one, each worker gets one of the GPUs this
    process may use (its ``CUDA_VISIBLE_DEVICES``, in order; 0..gpus-1 when unset)."""
    sglang_python: Path | None = None
    """``sglang``: the Python of SGLang's own environment (``make sglang-venv`` builds
    ``.venv-sglang``: SGLang pins torch, transformers and openai versions kbflow cannot share).
    None: this Python. Checked before a worker starts: it must exist and carry SGLang
    >= 0.5.5."""
    mem_fraction: float = Field(0.6, gt=0, lt=1)
    """``sglang``: share of each GPU's memory a worker takes for weights and cache
    (``--mem-fraction-static``). SGLang's own default (~0.9) leaves nothing for FAISS's GPU
    training or a reranker on the same GPU; see README "GPU runbook"."""
    launch_command: list[str] = Field(
        default_factory=lambda: [
            "{python}",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "{model_path}",
            "--is-embedding",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--mem-fraction-static",
            "{mem_fraction}",
        ]
    )
    """``sglang``: the worker command; ``{python}`` (``sglang_python``), ``{model_path}``,
    ``{host}``, ``{port}``, ``{gpu}`` and ``{mem_fraction}`` are filled in. Point it at a
    container or another launcher if needed."""
    launch_extra_args: list[str] = Field(default_factory=list)
    """Appended to ``launch_command`` (e.g. ``["--disable-radix-cache"]``)."""
    startup_timeout: float = Field(900.0, gt=0)
    """Seconds a worker may take to answer ``/health`` with 200 (model load, CUDA graphs)."""
    request_timeout: float = Field(120.0, gt=0)
    """Seconds per embedding request before it counts as failed (and is retried)."""
    max_in_flight: int = Field(4, ge=1)
    """Concurrent requests per endpoint."""
    batch_tokens: int = Field(16_384, ge=1)
    """Estimated tokens per request (texts are sorted by length, so batches pad little)."""
    batch_items: int = Field(256, ge=1)
    """Texts per request."""
    retries: int = Field(6, ge=0)
    """Retries of a request after a connection error, timeout, 429 or 5xx."""
    retry_backoff: float = Field(1.0, ge=0)
    """First backoff in seconds; doubled after each retry (capped at 60 s), with jitter."""
    shard_texts: int = Field(2048, ge=1)
    """Texts per embedding-cache shard. Each shard is written (atomically) as soon as its texts
    are embedded, so a run killed mid-embedding loses at most this much work."""

    @field_validator("urls")
    @classmethod
    def _plain_urls(cls, urls: list[str]) -> list[str]:
        return [plain_url(u) for u in urls]


def plain_url(url: str) -> str:
    """``url`` if it is a plain ``http(s)://host[:port][/path]``; raises ``ValueError`` (without
    echoing the URL, which may hold a secret) when it carries credentials, a query or a
    fragment, or is not http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an endpoint URL must look like http://host:port/path")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            "an endpoint URL may not carry credentials (user:key@), a query or a fragment: "
            "URLs are logged; put the key in the api_key setting (KBFLOW_EMBED__API_KEY)"
        )
    return url


def _api_key_from_env() -> SecretStr | None:
    # Settings are the one place that reads the environment; OPENAI_API_KEY is what every
    # OpenAI-compatible tool already sets, KBFLOW_EMBED__API_KEY (read by pydantic-settings) wins.
    value = os.environ.get("OPENAI_API_KEY")
    return SecretStr(value) if value else None


class IndexSettings(BaseModel):
    #: Settings that change how a version is built, not what it answers: left out of the
    #: settings fingerprint and of the check that a live version's segments can be reused.
    REUSE_NEUTRAL: ClassVar[tuple[str, ...]] = (
        "keep_versions",
        "incremental",
        "max_delta_share",
        "recalibrate_share",
    )

    flat_max: int = 50_000
    """Up to this many vectors: exact Flat inner product."""
    hnsw_max: int = 1_000_000
    """Up to this many: HNSW32; above: IVF."""
    keep_versions: int = Field(5, ge=1)
    device: Literal["auto", "cpu", "gpu"] = "auto"
    """Where FAISS trains IVF indexes (above ``hnsw_max``): ``auto`` on a GPU when the loaded
    FAISS build sees one (``kbflow[gpu]``), ``gpu`` refuses to build without one (set it on GPU
    hosts: a CPU build installed over the GPU one is caught), ``cpu`` never. A failed GPU
    training falls back to the CPU with a warning."""
    dense_second_weight: float = Field(0.5, ge=0, le=1)
    """Weight of an entry's second-best passage in its dense score, ``(best + w·second)/(1+w)``.
    Measured with the default model on ../shared/data test splits, dense only, hit@1 / hit@3 with
    w = 0 vs 0.5: clinc150 0.800 / 0.927 vs 0.808 / 0.933, banking77 0.779 / 0.900 vs
    0.786 / 0.902. BM25 keeps the best passage (no gain on bq)."""
    hub_weight: float | None = Field(None, ge=0, le=2)
    """Hub correction of dense scores: ``cos(q, p) - hub_weight * hub(p)``, where ``hub(p)`` is
    the mean cosine of passage ``p`` to its ``hub_neighbors`` nearest passages (CSLS-style: a
    passage that is close to everything is no evidence for any one query). None = the model's
    own: 0.5 for multilingual-e5-small, whose cosines are compressed (unrelated Chinese pairs
    score 0.85-0.9), 0 for every other model. Measured (test splits, dense hit@1 / hit@3,
    weight 0 vs 0.5): e5 on bq 0.128 / 0.253 vs 0.132 / 0.270, kb_zh 0.81 / 0.95 vs
    0.86 / 0.96; MiniLM on clinc150 0.811 / 0.946 vs 0.812 / 0.939."""
    hub_neighbors: int = Field(30, ge=1, le=200)
    incremental: bool = True
    """Build a version from the live one's work where it can (``kbflow.index.incremental``):
    its BM25 tokens, its dense base segment plus a delta and tombstones, its calibration.
    ``kbflow nightly --full-rebuild`` (and backfills, re-embeds) turn it off for one run."""
    max_delta_share: float = Field(0.1, ge=0, le=1)
    """Past this share of the base segment (delta passages plus tombstones) a version is built
    from scratch and becomes the next base."""
    recalibrate_share: float = Field(0.05, ge=0, le=1)
    """An incremental version that moved less than this share of the base (and has the same
    golden calibration queries) keeps the live version's calibration; the gate still scores it."""
    bm25_k1: float = Field(1.5, gt=0)
    bm25_b: float = Field(1.0, ge=0, le=1)
    """Full length normalisation suits short FAQ questions. Measured on ../shared/data test
    splits, BM25 only, hit@1 / hit@3: bq 0.106 / 0.241 (k1 1.2, b 0.75: 0.110 / 0.237),
    esun_faq 0.74 / 0.86 (0.70 / 0.88), clinc150 0.614 / 0.782 (0.610 / 0.781)."""


class AdapterSettings(BaseModel):
    """The per-version adapter (``kbflow.index.adapter``): retrieval tuned on the KB's own
    questions, kept only when it wins on questions it never trained on."""

    mode: Literal["auto", "finetune", "linear", "off"] = "auto"
    """``finetune`` fine-tunes a copy of the bundled English model on the KB's questions and
    re-embeds the version's passages with it (KBs up to ``finetune_max_passages``); ``linear``
    learns a map applied to query vectors only (any model, nothing re-embedded; opt-in: it did
    not carry over to real queries on the Chinese sets); ``auto`` is ``finetune`` where it can
    run and no adapter elsewhere; ``off`` builds versions as before. Measured
    (bench/results-adapter.json): see README, "The per-version adapter"."""
    folds: int = Field(4, ge=2, le=10)
    """Question groups (an entry's question with its near copies) split into this many folds;
    each fold is scored by an adapter trained on the others. The adapter the version ships is
    the first fold's, so that fold's questions stay held out for calibration and the self-check."""
    min_gain: float = Field(0.005, ge=0, le=1)
    """Keep the adapter only when held-out hit@1 rises by at least this and the paired gain is
    above twice its standard error."""
    max_golden_drop: float = Field(0.005, ge=0, le=1)
    """...and hit@1 on the golden calibration queries (when there are 30 or more) does not fall
    by more than this."""
    min_questions: int = Field(40, ge=4)
    """Fewer question groups than this: nothing to learn from; no adapter."""
    max_questions: int = Field(20_000, ge=100)
    """Questions trained on (a seeded sample of groups when there are more)."""
    finetune_max_passages: int = Field(5_000, ge=0)
    """Above this many passages ``auto`` builds without an adapter: fine-tuning re-embeds every
    passage once per fold (5,000 passages: about 40 s a fold on 2 cores)."""
    finetune_epochs: int = Field(1, ge=1, le=10)
    finetune_lr: float = Field(2e-5, gt=0)
    finetune_pairs_per_entry: int = Field(40, ge=1)
    finetune_max_pairs: int = Field(4_000, ge=64)
    """Training pairs per fold (a seeded sample when the KB gives more): bounds the time."""
    linear_steps: int = Field(200, ge=1)
    """Optimiser steps of the linear map (batches of 256 questions against their entries and
    2,048 other passages): the same budget for 100 questions or 20,000."""
    linear_lambda: float = Field(1e-4, ge=0)
    """Pull of the linear map toward the identity (squared Frobenius distance)."""


class GateSettings(BaseModel):
    enabled: bool = True
    golden: Path | None = None
    """The KB's golden queries (JSONL ``{"query", "expected": [ids], "split"}``). Unset: a
    ``golden.jsonl`` beside the export folder (``<kb>/golden.jsonl`` for ``--source <kb>/export``)
    is used when there is one. Splits other than ``test`` also calibrate the version."""
    min_hit_at_3: float = Field(0.2, ge=0, le=1)
    """Block publishing when hit@3 on the golden or the self-check set is under this. The default
    only catches a broken build; raise it to your KB's level once you know it."""
    max_drop: float = Field(0.05, ge=0, le=1)
    """Block publishing when hit@3 drops by more than this against the live version."""
    max_alignment_drop: float = Field(0.05, ge=0, le=1)
    """Block publishing when the answer alignment (``kbflow.gate.alignment``: the share of an
    entry's title and questions that rank its own answer in the top 3 among the answers alone)
    drops by more than this against the live version on the entries both have. A misaligned
    entry costs about 0.8 of its share (bench/results-alignment.json)."""
    alignment_entries: int = Field(2000, ge=0)
    """Entries sampled for the alignment check (seeded, the same every run); their answers are
    embedded once and cached. 0 turns the check off."""
    max_golden_queries: int = Field(2000, ge=0)
    """Answerable golden queries scored per version (a seeded sample when there are more: on
    clinc150's 7,450 the gate took 155 s on 2 cores, most of it embedding queries)."""
    self_check_queries: int = Field(1000, ge=0)
    """Held-out similar questions scored per version (a seeded sample when there are more)."""
    failing_shown: int = Field(30, ge=0)
    """Queries shown side by side (live vs new) in the report."""
    replay_queries: int = Field(2000, ge=0)
    """Distinct logged queries (the most asked first) replayed on the candidate and the live
    version each nightly (``kbflow.gate.replay``). 0 turns the replay off."""
    replay_days: int = Field(7, ge=1)
    """Days of the search log the replay draws from."""
    max_replay_loss: float = Field(0.05, ge=0, le=1)
    """Block publishing when more than this share of the replayed queries with click evidence
    lose the entry users clicked from the top 3 (it was in the live version's top 3)."""
    replay_min_evidence: int = Field(20, ge=1)
    """Fewer replayed queries with click evidence than this: the replay is reported, not
    judged (a share of a handful of queries is noise)."""


class RerankSettings(BaseModel):
    enabled: bool = False
    url: str | None = None
    """Base URL of an SGLang server running Qwen3-Reranker (``http://host:port``); see README.
    No credentials or query in it (it is logged): the key goes in ``api_key``."""
    model: str | None = None
    instruct: str | None = None
    """Task text for Qwen3-Reranker (SGLang's default is a web-search instruction)."""
    top_n: int = Field(50, ge=1)
    """Fused candidates sent to the reranker; the top k of its order are returned."""
    timeout: float = Field(2.0, gt=0)
    """Seconds a query waits for the reranker before keeping the fused order."""
    api_key: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _plain_url(cls, url: str | None) -> str | None:
        return None if url is None else plain_url(url)


class SearchSettings(BaseModel):
    candidates: int = 50
    default_k: int = 3
    embed_timeout: float = Field(2.0, gt=0)
    """Seconds a query waits for a remote (openai/sglang) query embedder before BM25 answers alone
    (fallback level 1). The local model runs in-process and has no timeout."""
    embed_retry_after: float = Field(30.0, ge=0)
    """After the query embedder fails, queries go straight to BM25 for this many seconds before
    it is tried again (so an outage does not add a timeout to every query)."""
    rerank: RerankSettings = Field(default_factory=lambda: RerankSettings())
    handoff_threshold: float = 0.35
    """Used when a version has no calibrated threshold."""
    max_answerable_handoff: float = Field(0.1, ge=0, le=1)
    """Calibration with out-of-scope golden queries: the threshold hands off at most this share
    of the answerable calibration queries (within that, it separates the two best)."""
    handoff_message: str = (
        "抱歉，这个问题我暂时无法回答，已为您转接人工客服。/ Connecting you to a human agent."
    )


class ReviewSettings(BaseModel):
    """The review stage: semantic near-duplicates and contradicting answers (``kbflow.review``)."""

    enabled: bool = True
    expiring_days: int = Field(14, ge=0)
    """The weekly review queue lists entries whose ``expires_at`` falls within this many days
    after the mined week (``kind = expiring``)."""
    apply_accepted: bool = True
    """Add the similar questions reviewers accepted (``kbflow review``) to the run's entries
    before chunking: the overlay (``kbflow.chunk.overlay``), recorded per run and in the
    manifest. Off: the index holds the export as it is."""
    false_pair_rate: float = Field(0.05, gt=0, lt=1)
    """Share of entries that may be listed with a partner that means something else; the
    threshold is calibrated per version to keep it (see ``kbflow.review.semantic``). At 1% the
    embedded English model needs 0.92 on examples/kb_en and finds almost nothing."""
    k_neighbors: int = Field(10, ge=1, le=200)
    """Nearest title/similar-question vectors of other entries looked at per vector."""
    max_pairs: int = Field(5000, ge=1)
    """At most this many semantic pairs per version (the highest scores)."""
    min_positives: int = Field(20, ge=1)
    """Fewer same-entry paraphrase pairs (title/similar questions) than this, or fewer than
    ``min_entries`` entries: the model's default threshold instead of a calibrated one."""
    min_entries: int = Field(30, ge=2)
    calibration_pairs: int = Field(20_000_000, ge=100)
    """At most this many random entry pairs are scored as negatives (every pair when the KB
    has fewer); the pass takes as many as reading the threshold off them needs (10 above it:
    ``200 * entries`` at the default rate), at least 100k."""
    max_vectors_per_entry: int = Field(8, ge=1)
    """Vectors per entry (title first) used when scoring calibration pairs."""
    max_threshold: float = Field(0.999, gt=0, le=1)
    """A calibrated threshold above this (only near-identical texts would pass) means the model
    cannot separate paraphrases from unrelated entries on this KB (the English model on Chinese
    maps unrelated titles to ~1.0): no semantic pairs. Not lower: multilingual-e5-small scores
    unrelated Chinese pairs 0.85-0.9 and paraphrases up to 0.99, so its thresholds sit near
    0.96-0.98 (a fixed 0.98 once ruled it out)."""
    default_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"all-MiniLM-L6-v2": 0.9, "multilingual-e5-small": 0.97}
    )
    """Per model (key ``name@dim`` or name) when calibration has too little data (fewer than
    ``min_entries`` entries). multilingual-e5-small: 0.97, its best-F1 cosine on lcqmc's
    labelled pairs (precision 0.78, recall 0.88; ``bench/eval_dedup_pairs.py``)."""
    default_threshold: float = Field(0.9, gt=0, le=1)
    """For models without an entry in ``default_thresholds``."""
    exact_search_max: int = Field(20_000, ge=1)
    """Up to this many vectors the neighbour search is exact (Flat); above, IVF."""
    nprobe: int = Field(1, ge=1)
    """IVF lists probed per query above ``exact_search_max`` (each list holds about sqrt(n)
    vectors, and every vector is a query, so a pair is missed only when each lies outside the
    other's list). bench/bench_semantic.py at 100k entries: 1 probe finds 98.8% of the injected
    duplicate pairs in 42 s of search, 2 probes 100% in 59 s (2 shared cores)."""


class NotifySettings(BaseModel):
    """Failure notice of ``kb-nightly``: a failed or blocked run POSTs plain JSON to a webhook."""

    webhook_url: SecretStr | None = None
    """Where the notice goes; a secret (webhook URLs carry tokens): set it with
    ``KBFLOW_NOTIFY__WEBHOOK_URL`` on the worker, never as a flow parameter. Logs, reports and
    run summaries show only ``scheme://host:port/…``. Unset: no notice."""
    timeout: float = Field(10.0, gt=0)
    """Seconds per attempt."""
    retries: int = Field(3, ge=0)
    """Retries after a connection error, a timeout, 429 or 5xx (never after another 4xx)."""
    retry_backoff: float = Field(1.0, ge=0)
    """First backoff in seconds; doubled after each retry (capped at 30 s)."""

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            parts = urlsplit(url.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("notify.webhook_url must be an http(s):// URL")  # not echoed
        return url


class LimitsSettings(BaseModel):
    """Prefect global concurrency limits a run holds (``kb-fleet`` sets them for its KBs; see
    ``kbflow.fleet``). Unset: the run holds none, as a single KB's nightly always did."""

    embed: str | None = None
    """Held while embedding: the embed stage, or a GPU worker's whole life on ``sglang``."""
    cpu: str | None = None
    """Held by each CPU-heavy stage: validate, clean, chunk, index, review, gate."""
    wait_s: float | None = Field(None, gt=0)
    """Give up (the run fails, saying which limit) after waiting this long for a slot; unset:
    wait as long as it takes."""


class MiningSettings(BaseModel):
    """Settings of ``kb-weekly-mining`` (``KBFLOW_MINING__*``)."""

    timezone: str = "Asia/Shanghai"
    min_impressions: int = Field(20, ge=1)
    """An answer is flagged only with at least this many top-3 impressions in the week."""
    ctr_threshold: float = Field(0.10, ge=0, le=1)
    sample_queries: int = Field(3, ge=1)
    example_queries: int = Field(5, ge=1)
    p95_alert_ms: float = 300.0
    fallback_alert_rate: float = 0.15
    handoff_alert_rate: float = 0.15
    ks_alert_threshold: float = Field(0.15, gt=0, le=1)
    """Two-sample KS statistic of top-1 scores, this week against last, above which we alert.
    With 10k+ queries a week any real shift of the score distribution exceeds it; sampling
    noise stays near 1.36/sqrt(n) (about 0.02 at n = 10k)."""
    min_ks_samples: int = Field(50, ge=1)
    histogram_bins: int = Field(20, ge=2, le=200)
    cluster_threshold: float = Field(0.4, gt=0, lt=1)
    """Jaccard similarity of character-bigram sets above which two gap queries are one topic."""
    num_perm: int = Field(128, ge=16)
    max_gap_queries: int = Field(50_000, ge=1)
    """Distinct gap queries clustered by characters (without the version's encoder)."""
    min_topic_events: int = Field(2, ge=1)
    """A gap query that groups with no other is a topic of its own only when asked in at least
    this many gap searches; otherwise it goes to the "other" cluster."""
    gap_vector_queries: int = Field(1_000, ge=1)
    """The most frequent distinct gap queries embedded with the live version's query encoder
    and clustered by meaning (``kbflow.mining.cluster``); the rest are counted as unclustered.
    1,000 short queries take about 10 s with multilingual-e5-small on 2 busy cores."""
    duckdb_memory_limit: str = "3GB"
    duckdb_threads: int | None = None
    suggest_min_sessions: int = Field(2, ge=1)
    """A query becomes a "similar question of E" suggestion when users clicked E for it in at
    least this many distinct sessions of the week (``kbflow.mining.suggest``)."""
    confusion_max_gap: float = Field(0.05, ge=0)
    """A click on an entry that scored within this of the entry ranked first is a confusion."""
    resurface_factor: float = Field(2.0, ge=1)
    """A decided (accepted, edited, rejected) suggestion comes back only when its sessions grow
    past this factor times what they were when it was decided."""


class LogSettings(BaseModel):
    """Where serving processes put search and click events (``KBFLOW_LOGS__*``; see
    ``kbflow.store.spool``)."""

    segments: str | None = None
    """Folder or fsspec URL (``s3://bucket/kbflow/segments``, with s3fs installed) of the
    Parquet log segments; every host serving one KB writes to the same place. Default
    ``<home>/logs/segments``."""
    spool_dir: Path | None = None
    """Local folder of the per-process spool files (default ``<home>/logs/spool``). Keep it on
    the host's own disk: orphaned spools are found by file locks."""
    roll_interval_s: float = Field(300.0, gt=0)
    """Each serving process starts a new segment this often (one file per process per
    interval, per kind and UTC day)."""
    fsync: bool = False
    """fsync the spool after every event: survives power loss too, not only a killed process;
    costs a disk flush per request."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KBFLOW_",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # errors never echo a value: it may be a key or a webhook URL
    )

    home: Path = Path(".kbflow")
    validate_: ValidateSettings = Field(
        default_factory=lambda: ValidateSettings(), alias="validate"
    )
    clean: CleanSettings = Field(default_factory=lambda: CleanSettings())
    chunk: ChunkSettings = Field(default_factory=lambda: ChunkSettings())
    embed: EmbedSettings = Field(default_factory=lambda: EmbedSettings())
    index: IndexSettings = Field(default_factory=lambda: IndexSettings())
    adapter: AdapterSettings = Field(default_factory=lambda: AdapterSettings())
    search: SearchSettings = Field(default_factory=lambda: SearchSettings())
    gate: GateSettings = Field(default_factory=lambda: GateSettings())
    review: ReviewSettings = Field(default_factory=lambda: ReviewSettings())
    notify: NotifySettings = Field(default_factory=lambda: NotifySettings())
    mining: MiningSettings = Field(default_factory=lambda: MiningSettings())
    logs: LogSettings = Field(default_factory=lambda: LogSettings())
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings())

    @property
    def validation(self) -> ValidateSettings:
        return self.validate_


def load_settings(home: str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """``Settings`` from ``KBFLOW_*`` variables, then ``home`` and dotted ``overrides``
    (``{"embed.dim": 256}``) on top. Raises ``ConfigError`` with the field at fault."""
    from pydantic import ValidationError

    try:
        base = Settings()
        data = base.model_dump(by_alias=True)
        if home:
            data["home"] = home
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"invalid setting {'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
        ) from exc


def parse_run_date(value: str | date | None) -> date:

    if value is None or value == "":
        return today_in()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"--run-date {value!r} is not a date; use YYYY-MM-DD") from exc


def today_in(tz: str = "Asia/Shanghai") -> date:

    return datetime.now(ZoneInfo(tz)).date()


def settings_fingerprint(settings: Settings) -> str:
    """Hash of every setting that changes what a version contains."""
    parts = {
        "clean": settings.clean.model_dump(),
        "chunk": settings.chunk.model_dump(),
        "embed": {
            k: v
            for k, v in settings.embed.model_dump().items()
            if k in ("backend", "model", "dim", "query_instruction")
        },
        "index": settings.index.model_dump(exclude=set(IndexSettings.REUSE_NEUTRAL)),
        "adapter": settings.adapter.model_dump(),
        "code": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
