"""Prefect tasks of ``kb-nightly`` and ``kb-reembed``: thin wrappers, one call into the stage's
package each (``kbflow.<stage>.stage``), one summary log line.

Big data moves as files under ``runs/<run_id>/``; tasks return the stages' typed summaries
(``kbflow.results``). Results are not cached by Prefect: each stage's completion marker is what
makes a retry skip finished work. Quality and validation failures are never retried; only the
stages that talk to a server (pull from object storage, embed) retry, and only for what a second
try can fix. Every task has a timeout sized for its stage at a million entries on one worker
(``bench/RESULTS.md``), so a hung stage fails the run instead of holding the run lock forever.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date
from typing import Any

from kbflow_tasks.limits import slot
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from kbflow import notify as notify_core
from kbflow import run as run_core
from kbflow.account import account_stage
from kbflow.chunk.stage import chunk_stage
from kbflow.clean.stage import clean_stage
from kbflow.embed.stage import embed_stage, model_stage, with_model
from kbflow.errors import EndpointUnavailable, KbflowError
from kbflow.gate.stage import gate_stage
from kbflow.index.stage import index_stage
from kbflow.publish.stage import publish_stage
from kbflow.pull.stage import pull_stage
from kbflow.report.nightly import nightly_markdown
from kbflow.report.stage import report_stage
from kbflow.results import (
    Accounted,
    Built,
    Chunked,
    Cleaned,
    Embedded,
    Gated,
    Notice,
    Prepared,
    Published,
    Pulled,
    Reviewed,
    RunStarted,
    RunSummary,
    Validated,
)
from kbflow.review.stage import review_stage
from kbflow.settings import Settings
from kbflow.store.home import DataHome
from kbflow.validate.stage import validate_stage

MINUTE, HOUR = 60, 3600


@task(name="start-run", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def start_run(home: DataHome, run_id: str, run_date: date, flow: str = "kb-nightly") -> RunStarted:
    out = run_core.start_run(home, run_id, run_date, flow)
    get_run_logger().info("start-run: %s, live version %s", run_id, out["live_version"])
    return out


@task(name="pull", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, timeout_seconds=HOUR)
def pull(home: DataHome, run_id: str, source: str) -> Pulled:
    out = pull_stage(home, run_id, source)
    get_run_logger().info("pull: snapshot %s, %d files", out["snapshot_id"], len(out["files"]))
    return out


@task(name="reuse-prepared", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def reuse_prepared(
    home: DataHome, run_id: str, pulled: Pulled, run_date: date, settings: Settings
) -> Prepared:
    """An earlier run's validate/clean/chunk outputs when it prepared this same input
    (``kbflow.run.reuse_prepared``), and the input's key."""
    got = run_core.reuse_prepared(home, run_id, pulled, run_date, settings)
    if got["reused_from"] is not None:
        get_run_logger().info(
            "prepare: same export as run %s: its prepared input is reused", got["reused_from"]
        )
    return got


@task(name="record-prepared", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def record_prepared(home: DataHome, run_id: str, key: str, run_date: date) -> None:
    run_core.record_prepared(home, run_id, key, run_date)


@task(name="validate", cache_policy=NO_CACHE, timeout_seconds=HOUR)
def validate(home: DataHome, run_id: str, pulled: Pulled, settings: Settings) -> Validated:
    out = validate_stage(home, run_id, pulled, settings)
    get_run_logger().info(
        "validate: %d rows, %d valid, %d quarantined",
        out["input"],
        out["valid"],
        out["quarantined"],
    )
    return out


@task(name="clean", cache_policy=NO_CACHE, timeout_seconds=HOUR)
def clean(home: DataHome, run_id: str, run_date: date, settings: Settings) -> Cleaned:
    out = clean_stage(home, run_id, run_date, settings)
    get_run_logger().info("clean: %d entries to publish", out["entries"])
    return out


@task(name="chunk", cache_policy=NO_CACHE, timeout_seconds=HOUR)
def chunk(home: DataHome, run_id: str, settings: Settings) -> Chunked:
    out = chunk_stage(home, run_id, settings)
    get_run_logger().info("chunk: %d entries, %d passages", out["entries"], out["passages"])
    return out


@task(name="model", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def choose_model(home: DataHome, run_id: str, settings: Settings, fresh: bool = False) -> Settings:
    """The run's settings with ``embed.model`` resolved (``auto`` picks by the KB's language)."""
    out = model_stage(home, run_id, settings, fresh)
    get_run_logger().info("model: %s (%s: %s)", out["model"], out["mode"], out["reason"])
    return with_model(settings, out)


@task(name="check-unchanged", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def check_unchanged(home: DataHome, run_id: str, chunked: Chunked, settings: Settings) -> bool:
    retired = run_core.record_retired(home, run_id)
    unchanged = run_core.is_unchanged(home, chunked, settings)
    get_run_logger().info("check-unchanged: %s (%d entries retired)", unchanged, retired)
    return unchanged


def _embed_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry the embed stage only for what a second try can fix (an endpoint that stayed down,
    a worker that crashed); a drift, a bad setting or a rejected input fails at once."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, KbflowError) or isinstance(exc, EndpointUnavailable)


@task(
    name="embed",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=_embed_retryable,
    timeout_seconds=12 * HOUR,  # a first build of a million entries on one GPU host
)
def embed(home: DataHome, run_id: str, settings: Settings) -> Embedded:
    # on sglang the build holds the embed slot for the GPU workers' whole life (flows/build.py)
    with (
        nullcontext()
        if settings.embed.backend == "sglang"
        else slot(home, run_id, settings, "embed", "embed")
    ):
        out = embed_stage(home, run_id, settings)
    get_run_logger().info("embed: %d embedded, %d cached", out["embedded"], out["cached"])
    return out


@task(name="index", cache_policy=NO_CACHE, timeout_seconds=4 * HOUR)
def index(
    home: DataHome,
    run_id: str,
    run_date: date,
    pulled: Pulled,
    embedded: Embedded,
    settings: Settings,
) -> Built:
    out = index_stage(home, run_id, run_date, pulled, embedded, settings)
    get_run_logger().info("index: built %s (%d passages)", out["version"], out["passages"])
    return out


@task(name="review", cache_policy=NO_CACHE, timeout_seconds=2 * HOUR)
def review(home: DataHome, run_id: str, version: str, settings: Settings) -> Reviewed:
    try:
        out = review_stage(home, run_id, version, settings)
    except Exception as exc:  # noqa: BLE001 - advisory: a review failure never blocks publishing
        get_run_logger().error("review: failed (%s); the run goes on without review lists", exc)
        return {"error": str(exc)}
    get_run_logger().info(
        "review: %s: %d contradictions, %d semantic pairs (threshold %s)",
        version,
        out.get("contradictions", 0),
        out.get("semantic_pairs", 0),
        (out.get("calibration") or {}).get("threshold"),
    )
    return out


@task(name="gate", cache_policy=NO_CACHE, timeout_seconds=2 * HOUR)
def gate(home: DataHome, run_id: str, version: str, settings: Settings, force: bool) -> Gated:
    out = gate_stage(home, run_id, version, settings, force)
    log = get_run_logger()
    if out["passed"]:
        log.info("gate: %s passed %s", version, {k: v["new"] for k, v in out["checks"].items()})
    else:
        log.warning(
            "gate: %s %s: %s",
            version,
            "failed, published anyway (force)" if out["forced"] else "BLOCKED",
            "; ".join(out["reasons"]),
        )
    return out


@task(name="account", cache_policy=NO_CACHE, timeout_seconds=HOUR)
def account(home: DataHome, run_id: str, pulled: Pulled) -> Accounted:
    out = account_stage(home, run_id, pulled)
    get_run_logger().info("account: %s", out)
    return out


@task(name="publish", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def publish(home: DataHome, run_id: str, version: str, settings: Settings) -> Published:
    out = publish_stage(home, run_id, version, settings)
    get_run_logger().info("publish: %s live (was %s)", out["version"], out["previous"])
    return out


@task(name="notify", cache_policy=NO_CACHE, timeout_seconds=10 * MINUTE)
def notify(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None,
    settings: Settings,
) -> Notice | None:
    """POST the failure notice (its own retries; never raises, so never fails the flow)."""
    out = notify_core.notify_run(home, run_id, run_date, status, message, settings.notify)
    if out is not None:
        get_run_logger().info("notify: %s", notify_core.describe_notice(out))
    return out


@task(name="report", cache_policy=NO_CACHE, timeout_seconds=30 * MINUTE)
def report(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None = None,
    notice: Notice | None = None,
) -> RunSummary:
    summary = report_stage(home, run_id, run_date, status, message, notice)
    create_markdown_artifact(
        key="kb-nightly-report",
        markdown=nightly_markdown(summary),
        description=f"kb-nightly {run_id}",
    )
    get_run_logger().info("report: %s, %s", status, summary.get("report"))
    return summary
