"""Flow ``kb-fleet``: the nightly of every KB of a registry that is due, each as its own
``kb-nightly`` flow run, then one fleet report.

Deployed (``deployments/prefect.yaml``: ``kb-fleet/fleet`` every 15 minutes), the KBs' runs go
to the ``kb-nightly/fleet-kb`` deployment's work pool, so they spread over as many workers as
the pool has; the registry's ``limits`` size the Prefect global concurrency limits that bound
embedding and CPU-heavy stages across all of them. Without a deployment (``deployment=None``:
``kbflow fleet run`` on a machine without a Prefect server) the KBs run here, one after another,
as subflows. Either way each KB is isolated by its data home, and one KB failing or blocked by
its gate never stops the others: the fleet run fails (``FleetFailed``) only after every KB ran
and the report is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kbflow_flows.nightly import kb_nightly
from kbflow_tasks import fleet as t
from prefect import flow
from prefect.runtime import flow_run

from kbflow.errors import FleetFailed
from kbflow.fleet.registry import load_registry
from kbflow.fleet.status import last_started

FLEET_KB = "kb-nightly/fleet-kb"


@flow(name="kb-fleet", log_prints=False)
def kb_fleet(
    registry: str,
    kbs: Sequence[str] | None = None,
    every: bool = False,
    deployment: str | None = FLEET_KB,
    poll_s: float = 5.0,
) -> dict[str, Any]:
    """Run the nightly of every due KB of ``registry`` (a KB is due when its schedule fired
    since its last run started), or of the KBs named in ``kbs``, or of all with ``every``.
    Returns the fleet report's path and every KB's row."""
    reg = load_registry(registry)
    now = datetime.now(UTC)
    chosen = reg.select(kbs) if kbs or every else reg.due(now, last_started(reg.kbs))
    started = time.perf_counter()
    if reg.limits:
        t.ensure_limits(reg)
    if deployment:
        by_hand = str(flow_run.get_id() or now.isoformat()) if kbs or every else None
        outcomes = t.wait(t.submit(chosen, reg, deployment, now, by_hand), poll_s)
    else:
        outcomes = {}
        for kb in chosen:
            state = kb_nightly(
                source=kb.source,
                home=str(kb.home),
                overrides=kb.overrides(reg.limit_names),
                return_state=True,
            )
            outcomes[kb.name] = t.outcome(str(state.state_details.flow_run_id or ""), state)
    ran = [kb.name for kb in chosen]
    run: dict[str, Any] = {
        "started_at": now.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "ran": ran,
        "deployment": deployment,
    }
    out = {**t.report(reg, outcomes, run), "run": run}
    failed = [r["kb"] for r in out["kbs"] if r["kb"] in ran and r["state"] == "failed"]
    if failed:
        raise FleetFailed(
            f"{len(failed)} of {len(chosen)} KBs failed ({', '.join(failed)}); the others ran. "
            f"See {out['report']}"
        )
    return out
