"""A re-embed (``kb-reembed``) forks the live version's run after its chunk stage: the new run
starts with a copy of that run's pull, validate, clean, chunk and account outputs (and its
frozen golden queries), embeds every passage with the new model or dimension, builds a new
version beside the live one, gates it against the live version (each scored with its own
model) and publishes it only if it passes. Until then the live version keeps answering."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import date
from typing import Any

from kbflow.backfill.request import params_hash
from kbflow.errors import ConfigError, NoLiveVersion
from kbflow.results import Forked, Pulled
from kbflow.runner import MARKER
from kbflow.store.home import DataHome

log = logging.getLogger(__name__)


#: Stages of the live version's run that a re-embed starts from (everything before embed).
FORKED_STAGES = ("pull", "validate", "clean", "chunk", "account")


def reembed_unit(
    home: DataHome,
    model: str | None,
    dim: int | None,
    overrides: dict[str, Any],
    force: bool,
) -> dict[str, Any]:
    """The re-embed unit of the live version: keyed by the live snapshot's passages and the
    target model, so it stays the same unit after its version went live."""
    live = live_manifest_of(home)
    info = live["embedding"]
    target = model or info["model"]
    unit = f"{live['passages_fingerprint'][:16]}:{target}@{dim or 'full'}"
    return {
        "kind": "reembed",
        "unit": unit,
        "params_hash": params_hash(
            "reembed", {"model": target, "dim": dim, "overrides": overrides, "force": force}
        ),
        "model": target,
        "dim": dim,
        "live_version": live["version"],
        "live_model_key": info["model_key"],
    }


def live_manifest_of(home: DataHome) -> dict[str, Any]:
    from kbflow.store.versions import current_version, live_version_dir, read_manifest

    live = current_version(home.indexes)
    if live is None:
        raise NoLiveVersion(
            f"nothing to re-embed: no version is published in {home.root}; run kbflow nightly first"
        )
    manifest = read_manifest(live_version_dir(home.indexes))
    return {**manifest, "version": live}


def reembed_overrides(
    home: DataHome, model: str | None, dim: int | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Settings overrides of a re-embed of the live version: the new model and dimension, a full
    index build, and the live version's own clean and chunk settings (its passages are reused as they are, so
    the new manifest must describe them truthfully). Raises ``ConfigError`` when the live
    version already uses that model and dimension."""
    live = live_manifest_of(home)
    info = live["embedding"]
    target = model or info["model"]
    # ``auto`` is resolved by the re-embed's model stage, which refuses the live model itself
    if target == info["model"] and (dim or info.get("full_dim")) == info["dim"]:
        raise ConfigError(
            f"the live version {live['version']} already uses {info['model_key']}; "
            "nothing to re-embed (give another --model or --dim)"
        )
    used = live.get("settings", {})
    return {
        **(overrides or {}),
        **{section: used[section] for section in ("clean", "chunk") if section in used},
        "embed.model": target,
        "embed.dim": dim,
        "index.incremental": False,  # another model's vectors: nothing of the live index applies
    }


def start_reembed(home: DataHome, run_id: str) -> Forked:
    """Open run ``run_id`` (flow ``kb-reembed``) as a fork of the live version's run: copy its
    stage outputs up to chunk and its frozen golden queries. Call it holding the run lock.

    Returns ``run_date`` (the live run's), ``pulled`` (its pull summary), ``live_version`` and
    ``source_run``. Raises ``ConfigError`` when the live run's outputs are gone."""
    from kbflow.run import start_run

    live = live_manifest_of(home)
    source_run = live["run_id"]
    src = home.run_dir(source_run)
    if not (src / "chunk" / "passages.parquet").is_file() or not (src / "chunk" / MARKER).is_file():
        raise ConfigError(
            f"the live version {live['version']} was built by run {source_run}, whose outputs "
            f"under {src} are gone; run kbflow nightly (the next version can be re-embedded)"
        )
    run_date = date.fromisoformat(live["run_date"])
    start_run(home, run_id, run_date, flow="kb-reembed")
    dst = home.run_dir(run_id)
    for stage in FORKED_STAGES:
        if (src / stage / MARKER).is_file() and not (dst / stage / MARKER).is_file():
            shutil.copytree(src / stage, dst / stage, dirs_exist_ok=True)
    for name in ("golden.jsonl", "retired.json"):
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)
    pulled: Pulled = json.loads((dst / "pull" / MARKER).read_text(encoding="utf-8"))
    log.info(
        "reembed: run %s starts from run %s (live version %s, %s)",
        run_id,
        source_run,
        live["version"],
        live["embedding"]["model_key"],
    )
    return {
        "run_date": run_date.isoformat(),
        "pulled": pulled,
        "live_version": live["version"],
        "live_model_key": live["embedding"]["model_key"],
        "source_run": source_run,
    }
