"""Stage ``index``: build the version from the run's passages and cached vectors, then calibrate
it (``runs/<run_id>/index/``). The version is complete but not live: publishing is later."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kbflow import __version__
from kbflow.contracts import (
    PASSAGE,
    read_table,
)
from kbflow.embed.cache import EmbeddingCache
from kbflow.embed.factory import embed_settings_for, make_embedder
from kbflow.embed.sglang import query_embed_settings
from kbflow.index.adapter import Fitted, fit_adapter
from kbflow.index.build import build_version, new_version_id
from kbflow.index.calibrate import calibrate_index, calibration_key
from kbflow.index.columns import StringColumn
from kbflow.index.incremental import Live, Plan, plan_reuse, write_passage_vectors
from kbflow.results import Built, Embedded, Pulled
from kbflow.runner import MARKER, run_stage
from kbflow.settings import Settings, settings_fingerprint
from kbflow.store import catalog
from kbflow.store.golden import GoldenQuery, calibration_queries, run_golden, sample_golden
from kbflow.store.home import DataHome
from kbflow.store.versions import current_version, read_manifest, update_manifest, version_dir


def stage_adapter(
    folder: Path,
    passages: pa.Table,
    vectors: np.ndarray,
    info: dict[str, Any],
    settings: Settings,
    golden: list[GoldenQuery],
) -> Fitted:
    """Train and judge the version's adapter (``kbflow.index.adapter``) on the run's passages,
    with the golden calibration queries (never the test split) as a second check."""
    built: list[Any] = []

    def embed_queries(texts: list[str]) -> np.ndarray:
        if not built:
            built.append(make_embedder(embed_settings_for(settings.embed, info)))
        return np.asarray(built[0].embed_queries(texts), dtype=np.float32)

    gold = sample_golden(calibration_queries(golden), settings.gate.max_golden_queries)
    return fit_adapter(
        # read lazily: most runs decide on the size alone that no adapter is trained
        StringColumn(passages.column("text")),
        StringColumn(passages.column("entry_id")),
        StringColumn(passages.column("kind")),
        StringColumn(passages.column("passage_id")),
        vectors,
        info,
        settings.adapter,
        folder,
        backend=settings.embed.backend,
        golden=[(q.query, q.expected) for q in gold if q.expected],
        embed_queries=embed_queries,
        threads=settings.embed.threads,
    )


def reused_calibration(
    plan: Plan, live: Live | None, settings: Settings, golden: list[GoldenQuery]
) -> dict[str, Any] | None:
    """The live version's calibration, for an incremental version that moved less than
    ``index.recalibrate_share`` of its base and calibrates on the same golden queries; None
    when it must calibrate itself. The gate still scores the new version on its own."""
    share = plan.report.get("delta_share", 1.0)
    if plan.dense is None or live is None or share > settings.index.recalibrate_share:
        return None
    cal = live.manifest.get("calibration") or {}
    if not cal or cal.get("key") != calibration_key(golden, settings):
        return None
    return {
        **cal,
        "reused_from": live.manifest["version"],
        "reused_because": (
            f"the version moved {plan.report['delta_share']:.1%} of its base "
            f"(index.recalibrate_share {settings.index.recalibrate_share:.0%}) "
            "and the golden calibration queries are the same"
        ),
    }


def index_stage(
    home: DataHome,
    run_id: str,
    run_date: date,
    pulled: Pulled,
    embedded: Embedded,
    settings: Settings,
) -> Built:
    def run(folder: Path) -> Built:
        source = home.stage_dir(run_id, "chunk") / "passages.parquet"
        # every column but what hits show (half the table at 100k entries): the version's
        # passages file is a copy of this one
        passages = read_table(source, PASSAGE, [c for c in PASSAGE.names if c != "display"])
        info = embedded["model"]
        cache = EmbeddingCache(home.embeddings, info["model_key"], info["dim"])
        name = current_version(home.indexes)
        live = Live.load(version_dir(home.indexes, name) if name else None)
        # written to the stage folder and mapped: an incremental build reads few of its rows
        vectors_path = folder / "vectors.npy"
        vectors = write_passage_vectors(cache, passages, live, info["model_key"], vectors_path)
        vectors_file: Path | None = vectors_path  # None once an adapter maps the vectors
        chunk_summary = json.loads((home.stage_dir(run_id, "chunk") / MARKER).read_text())
        version = new_version_id(run_id)
        entries = pc.count_distinct(passages.column("entry_id")).as_py()
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
        golden = run_golden(home, run_id, pulled.get("source"), settings)
        with query_embed_settings(settings, info, need_queries=bool(golden)) as cal_settings:
            fitted = stage_adapter(folder, passages, vectors, info, cal_settings, golden)
            if fitted.vectors is not None:
                vectors = fitted.vectors
                vectors_file = None
            manifest["adapter"] = adapter_report = fitted.report
            if fitted.embedding:
                manifest["embedding"] = {**info, "adapter": fitted.embedding}
            plan = plan_reuse(
                live,
                passages,
                manifest["embedding"],
                settings.index,
                adapter=fitted.folder is not None or fitted.vectors is not None,
            )
            vdir = build_version(
                home.indexes,
                version,
                passages,
                vectors,
                manifest,
                settings.index,
                fitted.folder,
                plan,
                passages_file=source,
                vectors_file=vectors_file,
            )
            n_passages = passages.num_rows
            del passages, vectors, fitted  # calibration reloads the version from disk
            vectors_path.unlink()  # the version holds it (linked) when it is its own
            cal = reused_calibration(plan, live, settings, golden) or calibrate_index(
                vdir, cal_settings, golden
            )
        update_manifest(vdir, calibration=cal)
        catalog.record_version(home.catalog_path, read_manifest(vdir))
        return {
            "version": version,
            "path": str(vdir),
            "passages": n_passages,
            "entries": entries,
            "calibration": cal,
            "adapter": adapter_report,
            "build": {**plan.report, "calibration_reused": "reused_from" in cal},
        }

    return run_stage(home, run_id, "index", run)
