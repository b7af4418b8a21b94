"""Trigger a run of a kbflow deployment on the Prefect server, without waiting for it."""

from __future__ import annotations

from typing import Any

from kbflow.backfill.request import params_hash, parse_request

BACKFILL = "kb-backfill/backfill"


def submit_backfill(parameters: dict[str, Any], deployment: str = BACKFILL) -> dict[str, Any]:
    """Create a run of the ``kb-backfill`` deployment on the Prefect server (``PREFECT_API_URL``)
    without waiting for it. Its idempotency key is the hash of ``parameters``: submitting the
    same backfill again returns the flow run already created instead of a second one. A
    malformed request is refused here (``ConfigError``), not by a worker later."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    parse_request(
        parameters.get("exports_from"),
        parameters.get("exports_to"),
        bool(parameters.get("reembed")),
        parameters.get("model"),
        parameters.get("dim"),
        parameters.get("weeks"),
    )
    key = "kb-backfill-" + params_hash("submit", parameters)
    run = run_deployment(
        deployment, parameters=parameters, idempotency_key=key, timeout=0, as_subflow=False
    )
    assert isinstance(run, FlowRun)  # called from sync code: the run, not a coroutine
    return {"flow_run_id": str(run.id), "name": run.name, "idempotency_key": key}
