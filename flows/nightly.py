"""Flow ``kb-nightly``: pull → validate → clean → chunk → embed → index → account → publish → report."""

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
) -> dict[str, Any]:
    """Build and publish a new index version from one KB export (a file or a snapshot folder)."""
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
            if t.check_unchanged(data, run_id, chunked, settings):
                t.account(data, run_id, pulled)
                return t.report(data, run_id, day, "unchanged")
            embedded = t.embed(data, run_id, settings)
            built = t.index(data, run_id, day, pulled, embedded, settings)
            t.account(data, run_id, pulled)
            t.publish(data, run_id, built["version"], settings)
            return t.report(data, run_id, day, "published")
        except KbflowError as exc:
            t.report(data, run_id, day, "failed", str(exc))
            raise
