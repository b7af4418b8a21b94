"""Flows ``kb-backfill`` and ``kb-reembed``.

``kb-backfill`` plans units (landed exports of a date range, one re-embed, or ISO weeks) and
runs each as its own flow run: ``kb-nightly`` per export (with the export's date as run date),
``kb-reembed`` for a re-embed, ``kb-weekly-mining`` per week. A ledger in the catalog keyed by
(kind, unit, parameter hash) skips units already done, so triggering the same backfill twice
does the work once; ``submit_backfill`` adds a Prefect idempotency key when the backfill is
sent to the ``kb-backfill`` deployment, so the same request also makes one flow run.

``kb-reembed`` builds a new version of the live snapshot with another model or dimension
(blue/green): the live version answers until the new one passes the gate and is published.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows.nightly import kb_nightly
from flows.weekly import kb_weekly_mining
from kbflow import backfill as core
from kbflow.errors import BackfillFailed, KbflowError
from kbflow.home import DataHome, new_run_id
from kbflow.runconfig import load_settings, parse_run_date
from tasks import backfill as t
from tasks import nightly as nt

DEPLOYMENT = "kb-backfill/backfill"


@flow(name="kb-backfill", log_prints=False)
def kb_backfill(
    home: str | None = None,
    exports_from: str | None = None,
    exports_to: str | None = None,
    reembed: bool = False,
    model: str | None = None,
    dim: int | None = None,
    weeks: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run one backfill: ``exports_from``/``exports_to`` (YYYY-MM-DD) replays the landed
    exports dated in that range, oldest first; ``reembed`` with ``model`` and/or ``dim``
    re-embeds the live snapshot; ``weeks`` (``2026-W40..2026-W47``) re-mines those weeks.

    ``overrides`` go to every unit's flow (settings for exports and re-embeds, mining settings
    for weeks); ``force`` publishes versions the gate blocks. Fails with ``BackfillFailed``
    after running every unit when some failed (triggering it again redoes only those)."""
    request = core.parse_request(exports_from, exports_to, reembed, model, dim, weeks)
    data = DataHome.at(load_settings(home).home)
    with core.backfill_lock(data):
        units = t.plan(data, request, overrides or {}, force)
        results = [_run_unit(data, unit, overrides or {}, force) for unit in units]
    summary = core.summarize(request.kind, results)
    failed = [r for r in results if r["outcome"] == "failed"]
    if failed:
        raise BackfillFailed(
            f"{len(failed)} of {len(results)} backfill units failed: "
            + "; ".join(f"{r['unit']}: {r.get('message')}" for r in failed)
        )
    return summary


def _run_unit(
    data: DataHome, unit: dict[str, Any], overrides: dict[str, Any], force: bool
) -> dict[str, Any]:
    """One unit, one flow run; its outcome goes to the ledger."""
    if unit["done"]:
        return t.skip_unit(unit)
    run_id = new_run_id()
    ready = t.begin_unit(data, unit, run_id)
    home = str(data.root)
    state: State[Any]
    match unit["kind"]:
        case "exports":
            state = kb_nightly(source=ready["source"], run_date=unit["run_date"], home=home,
                               run_id=run_id, overrides=overrides, force=force,
                               return_state=True)  # fmt: skip
        case "reembed":
            state = kb_reembed(home=home, model=unit["model"], dim=unit["dim"],
                               overrides=overrides, force=force, run_id=run_id,
                               return_state=True)  # fmt: skip
        case _:
            state = kb_weekly_mining(week=unit["week"], home=home, overrides=overrides or None,
                                     return_state=True)  # fmt: skip
    result = state.result(raise_on_failure=False)
    flow_run_id = state.state_details.flow_run_id
    return t.finish_unit(data, unit, run_id, state.is_completed(), result,
                         str(flow_run_id) if flow_run_id else None)  # fmt: skip


@flow(name="kb-reembed", log_prints=False)
def kb_reembed(
    home: str | None = None,
    model: str | None = None,
    dim: int | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Blue/green re-embed: the live version's passages (its run's chunk output) embedded with
    ``model`` and/or ``dim`` into a new version, gated against the live one, published only
    if it passes (or ``force``). The live version serves until then, and after a block."""
    data = DataHome.at(load_settings(home, overrides).home)
    run_id = run_id or new_run_id()
    with data.run_lock():
        settings = load_settings(home, t.reembed_overrides(data, model, dim, overrides))
        forked = t.start_reembed(data, run_id)
        day = parse_run_date(forked["run_date"])
        try:
            settings = nt.choose_model(data, run_id, settings, fresh=True)
            embedded = nt.embed(data, run_id, settings)
            built = nt.index(data, run_id, day, forked["pulled"], embedded, settings)
            nt.review(data, run_id, built["version"], settings)
            gate = nt.gate(data, run_id, built["version"], settings, force)
            if not gate["publish"]:
                return nt.report(data, run_id, day, "blocked", "; ".join(gate["reasons"]))
            nt.publish(data, run_id, built["version"], settings)
            return nt.report(data, run_id, day, "published")
        except KbflowError as exc:
            nt.report(data, run_id, day, "failed", str(exc))
            raise


def submit_backfill(parameters: dict[str, Any], deployment: str = DEPLOYMENT) -> dict[str, Any]:
    """Create a run of the ``kb-backfill`` deployment on the Prefect server (``PREFECT_API_URL``)
    without waiting for it. Its idempotency key is the hash of ``parameters``: submitting the
    same backfill again returns the flow run already created instead of a second one."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    core.parse_request(
        parameters.get("exports_from"),
        parameters.get("exports_to"),
        bool(parameters.get("reembed")),
        parameters.get("model"),
        parameters.get("dim"),
        parameters.get("weeks"),
    )  # a malformed request is refused here, not by a worker later
    key = "kb-backfill-" + core.params_hash("submit", parameters)
    run = run_deployment(
        deployment, parameters=parameters, idempotency_key=key, timeout=0, as_subflow=False
    )
    assert isinstance(run, FlowRun)  # called from sync code: the run, not a coroutine
    return {"flow_run_id": str(run.id), "name": run.name, "idempotency_key": key}
