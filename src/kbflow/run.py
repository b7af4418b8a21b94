"""A run's life: open it (clearing what an interrupted run left), close it, and the checks a
flow makes between stages (is the export unchanged against the live version; which entries
retire). Stages themselves are in their packages; a flow calls these through its tasks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from kbflow.contracts import (
    RAW_ROW,
    read_table,
)
from kbflow.embed.cache import remove_partial_shards
from kbflow.index.build import clean_stale_builds
from kbflow.publish.pointer import repair_history
from kbflow.results import Chunked, Prepared, Pulled, RunStarted
from kbflow.settings import Settings, settings_fingerprint
from kbflow.store import catalog
from kbflow.store.home import DataHome, atomic_write_text
from kbflow.store.versions import current_version, live_manifest

log = logging.getLogger(__name__)


def start_run(home: DataHome, run_id: str, run_date: date, flow: str = "kb-nightly") -> RunStarted:
    """Open the run in the catalog after clearing what an interrupted run left behind.

    Call it holding the data home's run lock (every flow that opens runs takes it): half-built
    versions, half-deleted versions and temp files are then ours to remove, runs still
    ``running`` are dead (closed as ``interrupted``), and a move of ``CURRENT`` the catalog
    missed is recorded.
    """
    removed = clean_stale_builds(home.indexes) + remove_partial_shards(home.embeddings)
    if removed:
        log.warning("removed files left by an interrupted run: %s", ", ".join(removed))
    interrupted = catalog.close_interrupted_runs(home.catalog_path)
    if interrupted:
        log.warning("runs %s had stopped without finishing; marked interrupted", interrupted)
    missed = catalog.reconcile_live_version(home.catalog_path, current_version(home.indexes))
    if missed:
        log.warning("CURRENT had moved from %s without a catalog record; recorded it", missed)
    if repair_history(home.indexes):
        log.warning("the live version was missing from indexes/HISTORY; appended it")
    catalog.open_run(home.catalog_path, run_id, flow, run_date)
    return {
        "run_id": run_id,
        "run_date": run_date.isoformat(),
        "live_version": current_version(home.indexes),
    }


def finish_run(
    home: DataHome, run_id: str, status: str, summary: dict[str, Any], message: str | None = None
) -> dict[str, Any]:
    summary = {**summary, "run_id": run_id, "status": status}
    if message:
        summary["message"] = message
    catalog.close_run(
        home.catalog_path,
        run_id,
        status,
        summary,
        snapshot_id=summary.get("snapshot_id"),
        version=summary.get("version"),
        message=message,
    )
    atomic_write_text(
        home.run_dir(run_id) / "summary.json",
        json.dumps(summary, ensure_ascii=False, indent=2, default=str),
    )
    return summary


def is_unchanged(home: DataHome, chunked: Chunked, settings: Settings) -> bool:
    """True when the live version already holds exactly these passages with this model/settings."""
    live = live_manifest(home)
    return bool(
        live
        and live.get("passages_fingerprint") == chunked["fingerprint"]
        and live.get("settings_fingerprint") == settings_fingerprint(settings)
    )


def retired_entries(home: DataHome, run_id: str) -> list[str]:
    """Entries of the live version that the new snapshot no longer contains at all."""
    live = current_version(home.indexes)
    if live is None:
        return []
    import pyarrow.parquet as pq

    old = set(
        pq.read_table(home.indexes / live / "passages.parquet", columns=["entry_id"])
        .column("entry_id")
        .to_pylist()
    )
    rows = read_table(home.stage_dir(run_id, "validate") / "rows.parquet", RAW_ROW)
    now = {i.strip() for i in rows.column("id").to_pylist() if i}
    return sorted(old - now)


def record_retired(home: DataHome, run_id: str) -> int:
    retired = retired_entries(home, run_id)
    atomic_write_text(
        home.run_dir(run_id) / "retired.json", json.dumps(retired, ensure_ascii=False)
    )
    return len(retired)


#: What a run leaves beside its stage folders once it has chunked: the key of its prepared
#: input, its run date and the day its date decisions change (``reuse_prepared``).
PREPARED = "prepared.json"

#: The stages whose outputs a later run of the same export reuses.
PREPARED_STAGES = ("validate", "clean", "chunk")

#: Core packages whose code makes those outputs: a change to any file in them is a new key.
_PREPARED_CODE = ("pull", "validate", "clean", "chunk", "contracts.py", "settings.py")


def prepared_key(home: DataHome, pulled: Pulled, settings: Settings) -> str:
    """sha256 over all that the validate, clean and chunk stages read apart from the run date:
    the snapshot's content, their settings, the reviewers' accepted similar questions (the
    overlay) and kbflow's code for them."""
    import kbflow

    overlay: list[dict[str, Any]] = []
    if settings.review.apply_accepted:
        from kbflow.store.decisions import QUESTION_KINDS, accepted_changes

        overlay = accepted_changes(home.logs_path, QUESTION_KINDS)
    code = hashlib.sha256()
    root = Path(kbflow.__file__).parent
    for name in _PREPARED_CODE:
        files = sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / name]
        for f in files:
            code.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    parts = {
        "snapshot": pulled["snapshot_sha256"],
        "settings": settings.model_dump(
            mode="json", by_alias=True, include={"validate_", "clean", "chunk"}
        ),
        "apply_accepted": settings.review.apply_accepted,
        "overlay": overlay,
        "code": code.hexdigest(),
        "kbflow": kbflow.__version__,
    }
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def record_prepared(home: DataHome, run_id: str, key: str, run_date: date) -> None:
    """Leave ``prepared.json`` in a run that chunked (``key`` from ``reuse_prepared``), for
    ``reuse_prepared`` of later runs."""
    from kbflow.runner import read_marker

    cleaned = read_marker(home, run_id, "clean") or {}
    atomic_write_text(
        home.run_dir(run_id) / PREPARED,
        json.dumps(
            {
                "key": key,
                "run_date": run_date.isoformat(),
                "stable_until": cleaned.get("stable_until"),
            }
        ),
    )


def reuse_prepared(
    home: DataHome, run_id: str, pulled: Pulled, run_date: date, settings: Settings
) -> Prepared:
    """When an earlier run prepared this same input (``prepared_key``) and no date decision of
    its clean stage changes between its run date and ``run_date`` (``stable_until``), link its
    validate, clean and chunk outputs into this run (hard links: nothing is copied, and stage
    outputs are never written again) with their markers, so those stages return its summaries
    at once. Returns the input's key (for ``record_prepared``) and that run's id, or None (the
    stages then run). A run whose stages already started (a resumed run) is left alone."""
    from kbflow.runner import MARKER

    key = prepared_key(home, pulled, settings)
    if any((home.run_dir(run_id) / s).exists() for s in PREPARED_STAGES):
        return {"key": key, "reused_from": None}
    runs = sorted((p for p in home.runs.iterdir() if p.name != run_id), reverse=True)
    for folder in runs:
        try:
            got = json.loads((folder / PREPARED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        until = got.get("stable_until")
        if (
            got.get("key") != key
            or date.fromisoformat(got["run_date"]) > run_date
            or (until is not None and run_date >= date.fromisoformat(until))
            or not all((folder / s / MARKER).is_file() for s in PREPARED_STAGES)
        ):
            continue
        for stage in PREPARED_STAGES:
            # linked into a temp folder and renamed: a stage folder is whole or absent
            tmp = home.run_dir(run_id) / f".{stage}.reuse"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(folder / stage, tmp, copy_function=_link)
            os.replace(tmp, home.run_dir(run_id) / stage)
        shutil.copy2(folder / PREPARED, home.run_dir(run_id) / PREPARED)
        log.info(
            "prepare: the export and settings are those of run %s (snapshot %s), and no date "
            "decision changes before %s: its validated, cleaned and chunked outputs are reused",
            folder.name,
            pulled["snapshot_sha256"][:12],
            until or "ever",
        )
        return {"key": key, "reused_from": folder.name}
    return {"key": key, "reused_from": None}


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links: a copy is as good
        shutil.copy2(src, dst)
