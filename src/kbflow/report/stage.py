"""Stage ``report``: the run summary, assembled from the stage markers, written as the run's HTML
report and ``runs/<run_id>/summary.json``, and the run closed in the catalog."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, cast

import pyarrow as pa

from kbflow.contracts import (
    DEDUP_MERGE,
    OUTCOMES,
    QUARANTINE_ROW,
    STALE_ENTRY,
)
from kbflow.results import Notice, RunSummary
from kbflow.run import finish_run
from kbflow.runner import read_marker, read_optional
from kbflow.store.home import DataHome
from kbflow.store.versions import current_version, read_manifest


def report_stage(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None = None,
    notice: Notice | None = None,
) -> RunSummary:
    """Assemble the run summary from the stage markers, write the HTML report, close the run.

    Returns the summary the CLI prints: ``run_id``, ``status``, ``version``, ``rows``
    (input/indexed/duplicate/stale/unpublished/quarantined), ``embedded``, ``cached``,
    ``retired``, ``report`` and ``timings``; ``notice`` (``kbflow.notify.send_notice``'s
    result, the webhook URL redacted) when a failure notice was sent or attempted.
    """
    m = {
        s: read_marker(home, run_id, s)
        for s in (
            "pull",
            "validate",
            "clean",
            "chunk",
            "model",
            "embed",
            "index",
            "review",
            "gate",
            "publish",
            "account",
        )
    }
    account = m["account"] or {}
    rows = {k: account.get(k, 0) for k in ("input", *OUTCOMES)}
    if not account and m["validate"]:
        rows["input"] = m["validate"].get("input", 0)
        rows["quarantined"] = m["validate"].get("quarantined", 0)
    live = current_version(home.indexes)
    index = m["index"] or {}
    publish = m["publish"] or {}
    retired_path = home.run_dir(run_id) / "retired.json"
    retired = json.loads(retired_path.read_text()) if retired_path.is_file() else []
    version = publish.get("version") or (live if status == "unchanged" else index.get("version"))
    summary: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "version": version,
        "run_date": run_date.isoformat(),
        "previous_version": publish.get("previous"),
        "snapshot_id": (m["pull"] or {}).get("snapshot_id"),
        "rows": rows,
        "embedded": (m["embed"] or {}).get("embedded", 0),
        "cached": (m["embed"] or {}).get("cached", 0),
        "embed_per_second": (m["embed"] or {}).get("per_second"),
        "model_key": ((m["embed"] or {}).get("model") or {}).get("model_key"),
        "model_choice": {
            k: (m["model"] or {}).get(k) for k in ("model", "mode", "reason", "switched")
        }
        if m["model"]
        else None,
        "retired": len(retired),
        "overlay": (m["chunk"] or {}).get("overlay"),
        "calibration": index.get("calibration"),
        "adapter": index.get("adapter"),
        "index_build": index.get("build"),
        "gate": _gate_summary(m["gate"], home, index.get("version")),
        "timings": {s: v["seconds"] for s, v in m.items() if v and "seconds" in v},
    }
    if message:
        summary["message"] = message
    if notice:
        summary["notice"] = notice
    report_path = home.reports / f"nightly-{run_id}.html"
    summary["report"] = str(report_path)
    vdir, cdir = home.run_dir(run_id) / "validate", home.run_dir(run_id) / "clean"
    prev_cal = None
    if publish.get("previous") and (home.indexes / publish["previous"]).is_dir():
        prev_cal = read_manifest(home.indexes / publish["previous"]).get("calibration")
    from kbflow.report.nightly import write_nightly_report
    from kbflow.review.stage import report_inputs

    review = report_inputs(home, run_id)
    summary["review"] = review.pop("summary")
    merges = [
        t
        for t in (
            read_optional(vdir / "merges.parquet", DEDUP_MERGE),
            read_optional(cdir / "merges.parquet", DEDUP_MERGE),
        )
        if t is not None
    ]
    write_nightly_report(
        report_path,
        summary,
        quarantine=read_optional(vdir / "quarantine.parquet", QUARANTINE_ROW),
        merges=pa.concat_tables(merges) if merges else None,
        stale=read_optional(cdir / "stale.parquet", STALE_ENTRY),
        retired=retired,
        previous_calibration=prev_cal,
        **review,
    )
    return cast(RunSummary, finish_run(home, run_id, status, summary, message))


def _gate_summary(
    gate: dict[str, Any] | None, home: DataHome, version: str | None
) -> dict[str, Any] | None:
    if gate is None:
        return None
    forced = False
    if version and (home.indexes / version).is_dir():
        forced = bool(read_manifest(home.indexes / version).get("gate", {}).get("forced"))
    return {**gate, "forced": forced}
