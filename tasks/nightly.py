"""Prefect tasks of ``kb-nightly``: thin wrappers, one call into ``kbflow.pipeline`` each.

Big data moves as files under ``runs/<run_id>/``; tasks return small summaries. Results are
not cached by Prefect: each stage's completion marker is what makes a retry skip finished work.
Quality and validation failures are never retried; only the embedding stage (which talks to a
server in production) retries.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import kbflow.pipeline as pipeline
from kbflow import notify as notify_core
from kbflow import review as review_core
from kbflow.errors import EndpointUnavailable, KbflowError
from kbflow.home import DataHome
from kbflow.report import nightly_markdown
from kbflow.settings import Settings


@task(name="start-run", cache_policy=NO_CACHE)
def start_run(home: DataHome, run_id: str, run_date: date) -> dict[str, Any]:
    return pipeline.start_run(home, run_id, run_date)


@task(name="pull", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def pull(home: DataHome, run_id: str, source: str) -> dict[str, Any]:
    out = pipeline.pull_stage(home, run_id, source)
    get_run_logger().info("pull: snapshot %s, %d files", out["snapshot_id"], len(out["files"]))
    return out


@task(name="validate", cache_policy=NO_CACHE)
def validate(
    home: DataHome, run_id: str, pulled: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    out = pipeline.validate_stage(home, run_id, pulled, settings)
    get_run_logger().info(
        "validate: %d rows, %d valid, %d quarantined",
        out["input"],
        out["valid"],
        out["quarantined"],
    )
    return out


@task(name="clean", cache_policy=NO_CACHE)
def clean(home: DataHome, run_id: str, run_date: date, settings: Settings) -> dict[str, Any]:
    out = pipeline.clean_stage(home, run_id, run_date, settings)
    get_run_logger().info("clean: %d entries to publish", out["entries"])
    return out


@task(name="chunk", cache_policy=NO_CACHE)
def chunk(home: DataHome, run_id: str, settings: Settings) -> dict[str, Any]:
    out = pipeline.chunk_stage(home, run_id, settings)
    get_run_logger().info("chunk: %d entries, %d passages", out["entries"], out["passages"])
    return out


@task(name="model", cache_policy=NO_CACHE)
def choose_model(home: DataHome, run_id: str, settings: Settings, fresh: bool = False) -> Settings:
    """The run's settings with ``embed.model`` resolved (``auto`` picks by the KB's language)."""
    out = pipeline.model_stage(home, run_id, settings, fresh)
    get_run_logger().info("model: %s (%s: %s)", out["model"], out["mode"], out["reason"])
    return pipeline.with_model(settings, out)


@task(name="check-unchanged", cache_policy=NO_CACHE)
def check_unchanged(
    home: DataHome, run_id: str, chunked: dict[str, Any], settings: Settings
) -> bool:
    pipeline.record_retired(home, run_id)
    return pipeline.is_unchanged(home, chunked, settings)


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
)
def embed(home: DataHome, run_id: str, settings: Settings) -> dict[str, Any]:
    out = pipeline.embed_stage(home, run_id, settings)
    get_run_logger().info("embed: %d embedded, %d cached", out["embedded"], out["cached"])
    return out


@task(name="index", cache_policy=NO_CACHE)
def index(
    home: DataHome,
    run_id: str,
    run_date: date,
    pulled: dict[str, Any],
    embedded: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    out = pipeline.index_stage(home, run_id, run_date, pulled, embedded, settings)
    get_run_logger().info("index: built %s (%d passages)", out["version"], out["passages"])
    return out


@task(name="review", cache_policy=NO_CACHE)
def review(home: DataHome, run_id: str, version: str, settings: Settings) -> dict[str, Any]:
    try:
        out = review_core.review_stage(home, run_id, version, settings)
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


@task(name="gate", cache_policy=NO_CACHE)
def gate(
    home: DataHome, run_id: str, version: str, settings: Settings, force: bool = False
) -> dict[str, Any]:
    out = pipeline.gate_stage(home, run_id, version, settings, force)
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


@task(name="account", cache_policy=NO_CACHE)
def account(home: DataHome, run_id: str, pulled: dict[str, Any]) -> dict[str, Any]:
    out = pipeline.account_stage(home, run_id, pulled)
    get_run_logger().info("account: %s", out)
    return out


@task(name="publish", cache_policy=NO_CACHE)
def publish(home: DataHome, run_id: str, version: str, settings: Settings) -> dict[str, Any]:
    out = pipeline.publish_stage(home, run_id, version, settings)
    get_run_logger().info("publish: %s live (was %s)", out["version"], out["previous"])
    return out


@task(name="notify", cache_policy=NO_CACHE)
def notify(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None,
    settings: Settings,
) -> dict[str, Any] | None:
    """POST the failure notice (its own retries; never raises, so never fails the flow)."""
    out = notify_core.notify_run(home, run_id, run_date, status, message, settings.notify)
    if out is not None:
        get_run_logger().info("notify: %s", notify_core.describe_notice(out))
    return out


@task(name="report", cache_policy=NO_CACHE)
def report(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None = None,
    notice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    summary = pipeline.report_stage(home, run_id, run_date, status, message, notice)
    create_markdown_artifact(
        key="kb-nightly-report",
        markdown=nightly_markdown(summary),
        description=f"kb-nightly {run_id}",
    )
    get_run_logger().info("report: %s, %s", status, summary["report"])
    return summary
