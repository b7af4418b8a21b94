"""Stage ``index``: build the version from the run's passages and cached vectors, then calibrate
it (``runs/<run_id>/index/``). The version is complete but not live: publishing is later."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from kbflow import __version__
from kbflow.contracts import (
    PASSAGE,
    read_table,
)
from kbflow.embed.cache import EmbeddingCache
from kbflow.embed.sglang import query_embed_settings
from kbflow.index.build import build_version, new_version_id
from kbflow.index.calibrate import calibrate_index
from kbflow.results import Built, Embedded, Pulled
from kbflow.runner import MARKER, run_stage
from kbflow.settings import Settings, settings_fingerprint
from kbflow.store import catalog
from kbflow.store.golden import run_golden
from kbflow.store.home import DataHome
from kbflow.store.versions import read_manifest, update_manifest


def index_stage(
    home: DataHome,
    run_id: str,
    run_date: date,
    pulled: Pulled,
    embedded: Embedded,
    settings: Settings,
) -> Built:
    def run(folder: Path) -> Built:
        passages = read_table(home.stage_dir(run_id, "chunk") / "passages.parquet", PASSAGE)
        info = embedded["model"]
        cache = EmbeddingCache(home.embeddings, info["model_key"], info["dim"])
        vectors = cache.get(passages.column("text_hash").to_pylist())
        chunk_summary = json.loads((home.stage_dir(run_id, "chunk") / MARKER).read_text())
        version = new_version_id(run_id)
        entries = len(set(passages.column("entry_id").to_pylist()))
        manifest = {
            "run_id": run_id,
            "run_date": run_date.isoformat(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "status": "built",
            "snapshot_id": pulled["snapshot_id"],
            "source_files": pulled["files"],
            "embedding": info,
            "settings": {
                "clean": settings.clean.model_dump(),
                "chunk": settings.chunk.model_dump(),
                "index": settings.index.model_dump(),
            },
            "settings_fingerprint": settings_fingerprint(settings),
            "passages_fingerprint": chunk_summary["fingerprint"],
            "counts": {"entries": entries, "passages": passages.num_rows},
            "overlay": chunk_summary.get("overlay") or {},
            "code_version": __version__,
        }
        vdir = build_version(home.indexes, version, passages, vectors, manifest, settings.index)
        n_passages = passages.num_rows
        del passages, vectors  # calibration reloads the version from disk; do not hold two copies
        golden = run_golden(home, run_id, pulled.get("source"), settings)
        with query_embed_settings(settings, info, need_queries=bool(golden)) as cal_settings:
            cal = calibrate_index(vdir, cal_settings, info, golden)
        update_manifest(vdir, calibration=cal)
        catalog.record_version(home.catalog_path, read_manifest(vdir))
        return {
            "version": version,
            "path": str(vdir),
            "passages": n_passages,
            "entries": entries,
            "calibration": cal,
        }

    return run_stage(home, run_id, "index", run)
