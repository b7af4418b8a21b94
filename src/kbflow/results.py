"""What the stages hand each other: one typed summary per stage (``TypedDict``, JSON as it is).

A stage writes its summary as its completion marker (``runs/<run_id>/<stage>/_SUCCESS.json``,
``kbflow.runner``) and returns it; the next stage, the Prefect task wrapping it and the flow read
it through these types, so mypy checks every key a flow or task uses (``pulled["root"]``,
``built["version"]``, ``gate["publish"]``). Big data never travels here: tables and vectors are
files under the run folder. The pyarrow schemas of those files are in ``kbflow.contracts``.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

RunStatus = Literal["published", "unchanged", "blocked", "failed"]


class StageSummary(TypedDict):
    """What every stage summary carries once ``kbflow.runner.run_stage`` has timed it."""

    seconds: NotRequired[float]


class RunStarted(TypedDict):
    run_id: str
    run_date: str
    live_version: str | None


class LandedFile(TypedDict):
    name: str
    sha256: str
    size: int
    format: str


class Pulled(StageSummary):
    """``pull``: the export snapshot landed under ``raw/``."""

    snapshot_id: str
    snapshot_sha256: str
    root: str
    files: list[LandedFile]
    already_landed: bool
    source: str


class Validated(StageSummary):
    """``validate``: rows read, rows valid, rows quarantined, and the expectations' results."""

    input: int
    valid: int
    quarantined: int
    blank_lines: int
    encodings: dict[str, str]
    expectations: list[dict[str, Any]]


class Prepared(TypedDict):
    """``kbflow.run.reuse_prepared``: the key of the run's prepared input (validate, clean,
    chunk) and the earlier run whose outputs it reused (None: its stages run)."""

    key: str
    reused_from: str | None


class Cleaned(StageSummary):
    """``clean``: what became of the valid rows (each exactly one outcome), entries kept."""

    read: int
    indexed: int
    duplicate: int
    stale: int
    unpublished: int
    entries: int
    blank_similar_questions: int
    """Empty or whitespace-only similar questions dropped (never embedded: SGLang refuses them)."""
    stable_until: str | None
    """ISO day from which a date decision would go the other way (None: never); until then a
    later run of the same export reuses this run's outputs (``kbflow.run.reuse_prepared``)."""


class Chunked(StageSummary):
    """``chunk``: passages made of the entries, and the fingerprint that says "unchanged"."""

    entries: int
    passages: int
    by_kind: dict[str, int]
    fingerprint: str
    overlay: dict[str, int]
    """Accepted review questions this run: applied, retired (the export carries them), dropped."""


class ModelChosen(StageSummary):
    """``model``: the embedding model of the run and why (``kbflow.embed.choose.ModelChoice``)."""

    model: str
    mode: Literal["explicit", "auto", "kept"]
    reason: str
    language: dict[str, Any]
    threshold: float
    live_model: str | None
    switched: bool


class Embedded(StageSummary):
    """``embed``: texts embedded and taken from the cache; ``model`` is what the manifest
    records as ``embedding`` (``kbflow.embed.base.describe`` plus the choice)."""

    passages: int
    unique_texts: int
    cached: int
    embedded: int
    per_second: float
    model: dict[str, Any]
    drift: dict[str, Any]
    """``kbflow.embed.drift.DriftCheck.as_dict()``: canaries vs stored, and on first use vs a
    reference computed another way (which one, and the cosine)."""


class Built(StageSummary):
    """``index``: the new version folder, built and calibrated, not yet live."""

    version: str
    path: str
    passages: int
    entries: int
    calibration: dict[str, Any]
    adapter: dict[str, Any]
    """``kbflow.index.adapter``'s decision: kind, kept, reason, held-out and golden figures."""
    build: dict[str, Any]
    """``kbflow.index.incremental``'s plan: mode (incremental or full) and why, the base
    version, delta passages, tombstones, tokens reused."""


class Reviewed(StageSummary, total=False):
    """``review`` (advisory): semantic pairs and contradictions of the version, or ``error``
    when the stage failed (the run goes on without review lists)."""

    version: str
    enabled: bool
    semantic_pairs: int
    contradictions: int
    calibration: dict[str, Any]
    error: str


class Gated(StageSummary):
    """``gate``: the verdict on the new version against the live one (``kbflow.gate.check``);
    ``publish`` says whether it goes live (passed, or ``--force``)."""

    passed: bool
    reasons: list[str]
    checks: dict[str, Any]
    failing: list[dict[str, Any]]
    publish: bool
    forced: bool
    skipped: NotRequired[bool]
    failing_total: NotRequired[int]
    live_version: NotRequired[str | None]
    notes: NotRequired[list[str]]
    alignment: NotRequired[dict[str, Any] | None]
    """``kbflow.gate.alignment.check_alignment``: answers against their own questions."""
    golden: NotRequired[dict[str, Any] | None]
    """The data home's golden set the gate used (``GoldenSet.as_dict()``); None: none."""


class Published(StageSummary):
    """``publish``: the version now live and the one it replaced."""

    version: str
    previous: str | None


class Accounted(StageSummary):
    """``account``: every input row has exactly one outcome; these are their counts."""

    input: int
    indexed: int
    duplicate: int
    stale: int
    unpublished: int
    quarantined: int


class Forked(TypedDict):
    """A re-embed's run, opened as a fork of the live version's run up to its chunk stage."""

    run_date: str
    pulled: Pulled
    live_version: str
    live_model_key: str
    source_run: str


class RunSummary(TypedDict, total=False):
    """What a nightly or re-embed run ends with (``kbflow.report.stage.report_stage``): printed by
    ``kbflow nightly --json``, stored in ``runs/<run_id>/summary.json`` and the catalog."""

    run_id: str
    status: RunStatus
    version: str | None
    run_date: str
    previous_version: str | None
    snapshot_id: str | None
    rows: dict[str, int]
    embedded: int
    cached: int
    embed_per_second: float | None
    model_key: str | None
    model_choice: dict[str, Any] | None
    retired: int
    calibration: dict[str, Any] | None
    gate: dict[str, Any] | None
    timings: dict[str, float]
    message: str
    notice: dict[str, Any]
    report: str
    review: dict[str, Any] | None


class Notice(TypedDict, total=False):
    """The failure notice's outcome (``kbflow.notify.send_notice``), the webhook URL redacted."""

    event: str
    url: str
    status: int | None
    attempts: int
    sent: bool
    error: str
