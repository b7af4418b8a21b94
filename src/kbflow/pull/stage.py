"""Stage ``pull``: land the export and record it in the catalog (``runs/<run_id>/pull/``)."""

from __future__ import annotations

import logging
from pathlib import Path

from kbflow.pull.discover import discover_export
from kbflow.pull.land import land_export
from kbflow.results import LandedFile, Pulled
from kbflow.runner import run_stage
from kbflow.store import catalog
from kbflow.store.home import DataHome

log = logging.getLogger(__name__)


def pull_stage(home: DataHome, run_id: str, source: str) -> Pulled:
    def run(folder: Path) -> Pulled:
        landed = land_export(source, home.raw)
        files: list[LandedFile] = [
            {"name": f.name, "sha256": f.sha256, "size": f.size, "format": f.format}
            for f in landed.files
        ]
        catalog.record_export(
            home.catalog_path, landed.snapshot_id, landed.snapshot_sha256, source, files
        )
        log.info(
            "pull: snapshot %s, %d files, %s",
            landed.snapshot_id,
            len(files),
            "already landed" if landed.already_landed else "landed",
        )
        return {
            "snapshot_id": landed.snapshot_id,
            "snapshot_sha256": landed.snapshot_sha256,
            "root": str(landed.root),
            "files": files,
            "already_landed": landed.already_landed,
            "source": source,
        }

    return run_stage(home, run_id, "pull", run)


def discover(source: str) -> list[str]:
    return [f.name for f in discover_export(source)]
