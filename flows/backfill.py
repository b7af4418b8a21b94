"""Flows ``kb-backfill`` and ``kb-reembed``.

``kb-backfill`` plans units (landed exports of a date range, one re-embed, or ISO weeks) and
runs each as its own flow run: ``kb-nightly`` per export (with the export's date as run date),
``kb-reembed`` for a re-embed, ``kb-weekly-mining`` per week. The order, the ledger (a unit
already done is skipped, so triggering the same backfill twice does the work once) and the
failure summary are ``kbflow.backfill``'s; this module only says which flow runs a unit.

``kb-reembed`` builds a new version of the live snapshot with another model or dimension
(blue/green): the live version answers until the new one passes the gate and is published.
It shares the nightly build path (``kbflow_flows.build``): accounted, gated, notified alike.
"""

from __future__ import annotations

from typing import Any

from kbflow_flows.build import build_and_publish, failures_reported
from kbflow_flows.nightly import kb_nightly
from kbflow_flows.weekly import kb_weekly_mining
from kbflow_tasks import backfill as t
from kbflow_tasks import nightly as nt
from prefect import flow
from prefect.states import State

from kbflow.backfill.request import parse_request
from kbflow.backfill.units import UnitRun, UnitRunner, backfill_lock, run_units
from kbflow.results import RunSummary
from kbflow.settings import load_settings, parse_run_date
from kbflow.store.home import DataHome, new_run_id


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
    request = parse_request(exports_from, exports_to, reembed, model, dim, weeks)
    data = DataHome.at(load_settings(home).home)
    with backfill_lock(data):
        units = t.plan(data, request, overrides or {}, force)
        results = run_units(
            data, units, _runners(str(data.root), overrides or {}, force), new_run_id
        )
    return t.summary(request.kind, results)


def _runners(home: str, overrides: dict[str, Any], force: bool) -> dict[str, UnitRunner]:
    """The flow run of each kind of unit, its Prefect state read as a ``UnitRun``."""

    def ran(state: State[Any]) -> UnitRun:
        flow_run_id = state.state_details.flow_run_id
        return UnitRun(state.is_completed(), state.result(raise_on_failure=False),
                       str(flow_run_id) if flow_run_id else None)  # fmt: skip

    # a backfill rebuilds each version from scratch (index.incremental off): it replays history,
    # and what it publishes must not depend on which version happened to be live
    full = {**overrides, "index.incremental": False}
    return {
        "exports": lambda unit, run_id, ready: ran(
            kb_nightly(
                source=ready["source"],
                run_date=unit["run_date"],
                home=home,
                run_id=run_id,
                overrides=full,
                force=force,
                return_state=True,
            )
        ),  # fmt: skip
        "reembed": lambda unit, run_id, ready: ran(
            kb_reembed(
                home=home,
                model=unit["model"],
                dim=unit["dim"],
                overrides=full,
                force=force,
                run_id=run_id,
                return_state=True,
            )
        ),  # fmt: skip
        "weeks": lambda unit, run_id, ready: ran(
            kb_weekly_mining(
                week=unit["week"], home=home, overrides=overrides or None, return_state=True
            )
        ),  # fmt: skip
    }


@flow(name="kb-reembed", log_prints=False)
def kb_reembed(
    home: str | None = None,
    model: str | None = None,
    dim: int | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> RunSummary:
    """Blue/green re-embed: the live version's passages (its run's chunk output) embedded with
    ``model`` and/or ``dim`` into a new version, gated against the live one, published only
    if it passes (or ``force``). The live version serves until then, and after a block."""
    data = DataHome.at(load_settings(home, overrides).home)
    run_id = run_id or new_run_id()
    with data.run_lock():
        settings = load_settings(home, t.reembed_overrides(data, model, dim, overrides))
        forked = t.start_reembed(data, run_id)
        day = parse_run_date(forked["run_date"])
        with failures_reported(data, run_id, day, settings):
            settings = nt.choose_model(data, run_id, settings, fresh=True)
            return build_and_publish(data, run_id, day, forked["pulled"], settings, force)
