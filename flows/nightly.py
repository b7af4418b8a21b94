"""Flow ``kb-nightly``: pull → validate → clean → chunk → model → embed → index → review → gate →
account → publish → report. A version the quality gate blocks is reported and never published."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from kbflow_flows.build import build_and_publish, failures_reported
from kbflow_tasks import nightly as t
from kbflow_tasks.limits import slot
from prefect import flow

from kbflow.results import RunSummary
from kbflow.settings import load_settings, parse_run_date
from kbflow.store.home import DataHome, new_run_id


@flow(name="kb-nightly", log_prints=False)
def kb_nightly(
    source: str,
    run_date: str | None = None,
    home: str | None = None,
    run_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> RunSummary:
    """Build and publish a new index version from one KB export (a file or a snapshot folder).

    ``force`` publishes a version the quality gate blocked (recorded in its manifest). A failed
    or blocked run POSTs a notice to ``notify.webhook_url`` when one is set (``kbflow.notify``);
    the report shows whether it was sent."""
    settings = load_settings(home, overrides)
    data = DataHome.at(settings.home)
    day = parse_run_date(run_date)
    run_id = run_id or new_run_id()
    with data.run_lock():
        t.start_run(data, run_id, day)
        with failures_reported(data, run_id, day, settings):
            pulled = t.pull(data, run_id, source)
            # the same export as an earlier run's: its prepared input, and no CPU slot to take
            prepared = t.reuse_prepared(data, run_id, pulled, day, settings)
            reused = prepared["reused_from"]
            # a fleet's CPU limit (settings limits.cpu): one slot for the three stages
            with (
                nullcontext()
                if reused
                else slot(data, run_id, settings, "cpu", "validate+clean+chunk")
            ):
                t.validate(data, run_id, pulled, settings)
                t.clean(data, run_id, day, settings)
                chunked = t.chunk(data, run_id, settings)
            if not reused:
                t.record_prepared(data, run_id, prepared["key"], day)
            settings = t.choose_model(data, run_id, settings)
            if t.check_unchanged(data, run_id, chunked, settings):
                t.account(data, run_id, pulled)
                return t.report(data, run_id, day, "unchanged")
            return build_and_publish(data, run_id, day, pulled, settings, force)
