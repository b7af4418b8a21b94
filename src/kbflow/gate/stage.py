"""Stage ``gate``: score the new version against the live one and record the decision in its
manifest (``runs/<run_id>/gate/``), and what it found about the new version in the version's
memo (``kbflow.gate.memo``: tomorrow's gate asks it of the live version instead of loading it)."""

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
        from kbflow.gate.memo import LiveVersion, write_memo
        from kbflow.index.version import LoadedVersion

        golden = run_golden(home, run_id, None, settings)
        golden_set = run_golden_set(home, run_id)
        live_name = current_version(home.indexes)
        info = read_manifest(vdir)["embedding"]
        replay, replay_note = _replay_queries(home, settings, live_name, version)
        need = bool(golden) or bool(replay)
        with query_embed_settings(settings, info, need_queries=need) as cal_settings:
            new = LoadedVersion(vdir)
            live = (
                LiveVersion(live_version_dir(home.indexes))
                if live_name and live_name != version
                else None
            )
            queries = VersionQueryEncoder(cal_settings.embed)
            answers = VersionAnswerEncoder(queries, home.embeddings)
            result = gate_version(new, live, golden, settings.gate, queries, answers, replay)
        write_memo(vdir, result.pop("memo"))
        result["golden"] = golden_set
        if golden_set is None:
            result["notes"] = [NO_GOLDEN, *result.get("notes", [])]
        if replay_note:
            result["notes"] = [*result.get("notes", []), replay_note]
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


def _replay_queries(
    home: DataHome, settings: Settings, live_name: str | None, version: str
) -> tuple[list[Any], str | None]:
    """The logged queries the gate replays (``kbflow.gate.replay``), and a note when there are
    none to replay or the log could not be read (the gate goes on without them)."""
    if settings.gate.replay_queries <= 0 or not live_name or live_name == version:
        return [], None
    from kbflow.gate.replay import load_replay_queries
    from kbflow.store.spool import log_places

    _, segments = log_places(home.root, settings.logs)
    try:
        got = load_replay_queries(
            home.logs_path, segments, settings.gate.replay_queries, settings.gate.replay_days
        )
    except Exception as exc:  # noqa: BLE001 - the log is evidence, not a dependency
        log.warning("gate: the search log could not be read for the replay (%s)", exc)
        return [], f"replay: the search log could not be read ({exc}); not replayed"
    if not got:
        return [], f"replay: no search in the last {settings.gate.replay_days} days of the log"
    return got, None
