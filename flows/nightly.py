"""Flow ``kb-nightly``: pull → validate → clean → chunk → model → embed → index → review → gate →
account → publish → report. A version the quality gate blocks is reported and never published."""

from __future__ import annotations

from typing import Any

from prefect import flow

from kbflow.errors import KbflowError
from kbflow.home import DataHome, new_run_id
from kbflow.runconfig import load_settings, parse_run_date
from tasks import nightly as t


@flow(name="kb-nightly", log_prints=False)
def kb_nightly(
    source: str,
    run_date: str | None = None,
    home: str | None = None,
    run_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
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
        try:
            pulled = t.pull(data, run_id, source)
            t.validate(data, run_id, pulled, settings)
            t.clean(data, run_id, day, settings)
            chunked = t.chunk(data, run_id, settings)
            settings = t.choose_model(data, run_id, settings)
            if t.check_unchanged(data, run_id, chunked, settings):
                t.account(data, run_id, pulled)
                return t.report(data, run_id, day, "unchanged")
            embedded = t.embed(data, run_id, settings)
            built = t.index(data, run_id, day, pulled, embedded, settings)
            t.review(data, run_id, built["version"], settings)
            gate = t.gate(data, run_id, built["version"], settings, force)
            t.account(data, run_id, pulled)
            if not gate["publish"]:
                reasons = "; ".join(gate["reasons"])
                notice = t.notify(data, run_id, day, "blocked", reasons, settings)
                return t.report(data, run_id, day, "blocked", reasons, notice)
            t.publish(data, run_id, built["version"], settings)
            return t.report(data, run_id, day, "published")
        except KbflowError as exc:
            notice = t.notify(data, run_id, day, "failed", str(exc), settings)
            t.report(data, run_id, day, "failed", str(exc), notice)
            raise
        except Exception as exc:  # a bug: it keeps its traceback, and on-call still hears of it
            t.notify(data, run_id, day, "failed", f"{type(exc).__name__}: {exc}", settings)
            raise
