"""Stage ``publish``: make the gated version live and record it (``runs/<run_id>/publish/``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kbflow.publish.pointer import (
    publish_version,
)
from kbflow.results import Published
from kbflow.runner import run_stage
from kbflow.settings import Settings
from kbflow.store import catalog
from kbflow.store.home import DataHome
from kbflow.store.versions import update_manifest


def publish_stage(home: DataHome, run_id: str, version: str, settings: Settings) -> Published:
    def run(folder: Path) -> Published:
        vdir = home.indexes / version
        previous = publish_version(home.indexes, version, settings.index.keep_versions)
        # Marked after the switch: a run killed in between leaves a live version still marked
        # "built", never a version marked "published" that never went live. The next run
        # records the missed catalog event (catalog.reconcile_live_version).
        update_manifest(
            vdir, status="published", published_at=datetime.now(UTC).isoformat(timespec="seconds")
        )
        catalog.record_publish_event(home.catalog_path, "publish", version, previous, run_id)
        return {"version": version, "previous": previous}

    return run_stage(home, run_id, "publish", run)
