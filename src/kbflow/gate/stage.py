"""Stage ``gate``: score the new version against the live one and record the decision in its
manifest (``runs/<run_id>/gate/``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kbflow.embed.sglang import query_embed_settings
from kbflow.results import Gated
from kbflow.runner import run_stage
from kbflow.settings import Settings
from kbflow.store.golden import NO_GOLDEN, run_golden, run_golden_set
from kbflow.store.home import DataHome
from kbflow.store.versions import current_version, live_version_dir, read_manifest, update_manifest

log = logging.getLogger(__name__)


def gate_stage(
    home: DataHome, run_id: str, version: str, settings: Settings, force: bool = False
) -> Gated:
    """Score the new version against the live one (``kbflow.gate``) and record the decision in
    its manifest: ``status`` stays ``built`` when it may be published, ``blocked`` otherwise.
    ``force`` publishes a failing version anyway and records ``gate.forced`` in the manifest.
    Returns the gate result plus ``publish`` (bool) and ``forced``.
    """
    vdir = home.indexes / version

    def run(folder: Path) -> dict[str, Any]:
        if not settings.gate.enabled:
            return {"passed": True, "skipped": True, "reasons": [], "checks": {}, "failing": []}
        from kbflow.gate.check import VersionAnswerEncoder, VersionQueryEncoder, gate_version
        from kbflow.index.version import LoadedVersion

        golden = run_golden(home, run_id, None, settings)
        golden_set = run_golden_set(home, run_id)
        live_name = current_version(home.indexes)
        info = read_manifest(vdir)["embedding"]
        with query_embed_settings(settings, info, need_queries=bool(golden)) as cal_settings:
            new = LoadedVersion(vdir)
            live = (
                LoadedVersion(live_version_dir(home.indexes))
                if live_name and live_name != version
                else None
            )
            queries = VersionQueryEncoder(cal_settings.embed)
            answers = VersionAnswerEncoder(queries, home.embeddings)
            result = gate_version(new, live, golden, settings.gate, queries, answers)
        result["golden"] = golden_set
        if golden_set is None:
            result["notes"] = [NO_GOLDEN, *result.get("notes", [])]
        log.info(
            "gate: %s%s",
            "passed" if result["passed"] else "BLOCKED",
            "" if result["passed"] else " (" + "; ".join(result["reasons"]) + ")",
        )
        return result

    result = run_stage(home, run_id, "gate", run)
    publish = bool(result["passed"] or force)
    forced = bool(force and not result["passed"])
    if forced:
        log.warning("gate: version %s failed the gate and is published anyway (--force)", version)
    update_manifest(
        vdir,
        status="built" if publish else "blocked",
        gate={k: v for k, v in result.items() if k != "failing"} | {"forced": forced},
    )
    return {**result, "publish": publish, "forced": forced}  # type: ignore[typeddict-item]
