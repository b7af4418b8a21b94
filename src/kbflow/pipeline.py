"""The nightly stages as plain functions over the data home (no Prefect here).

Each stage reads its inputs from files under ``runs/<run_id>/``, writes its outputs there
(Parquet with explicit schemas) and writes its completion marker ``_SUCCESS.json`` last; called
again for the same run it returns the recorded summary instead of redoing the work. Every
function returns a small JSON-able summary, never tables or vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from kbflow import __version__, catalog
from kbflow.calibrate import calibrate_index
from kbflow.chunk import chunk_entries
from kbflow.clean import clean_rows
from kbflow.contracts import (
    CLEAN_ENTRY,
    DEDUP_MERGE,
    OUTCOMES,
    PASSAGE,
    QUARANTINE_ROW,
    RAW_ROW,
    ROW_OUTCOME,
    STALE_ENTRY,
    read_table,
    table_from_rows,
    write_table,
)
from kbflow.drift import check_drift
from kbflow.embed import (
    EmbeddingCache,
    describe,
    embed_missing,
    open_embedder,
    remove_partial_shards,
)
from kbflow.errors import AccountingError, ConfigError, KbflowError
from kbflow.evaluate import GoldenQuery, load_golden
from kbflow.home import DataHome, atomic_write_text, storage_error
from kbflow.index import (
    build_version,
    clean_stale_builds,
    new_version_id,
    read_manifest,
    update_manifest,
)
from kbflow.publish import (
    current_version,
    live_version_dir,
    publish_version,
    repair_history,
)
from kbflow.settings import Settings
from kbflow.sources import discover_export, land_export, read_export
from kbflow.validate import validate_rows

log = logging.getLogger(__name__)

MARKER = "_SUCCESS.json"
GOLDEN = "golden.jsonl"


def _stage(
    home: DataHome, run_id: str, stage: str, fn: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``fn(stage_dir)`` unless the stage already completed for this run."""
    folder = home.stage_dir(run_id, stage)
    marker = folder / MARKER
    if marker.is_file():
        log.info("%s: already complete for run %s, skipped", stage, run_id)
        return json.loads(marker.read_text(encoding="utf-8"))
    start = time.perf_counter()
    try:
        summary = fn(folder)
        summary["seconds"] = round(time.perf_counter() - start, 3)
        atomic_write_text(marker, json.dumps(summary, ensure_ascii=False, default=str))
    except (OSError, duckdb.IOException) as exc:
        # A full disk or a read-only folder is an operator's problem, not a bug: one clear line.
        raise storage_error(f"{stage} stage", home.root, exc) from exc
    return summary


def settings_fingerprint(settings: Settings) -> str:
    """Hash of every setting that changes what a version contains."""
    parts = {
        "clean": settings.clean.model_dump(),
        "chunk": settings.chunk.model_dump(),
        "embed": {
            k: v
            for k, v in settings.embed.model_dump().items()
            if k in ("backend", "model", "dim", "query_instruction")
        },
        "index": settings.index.model_dump(exclude={"keep_versions"}),
        "code": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# --- run bookkeeping -------------------------------------------------------------------------


def start_run(
    home: DataHome, run_id: str, run_date: date, flow: str = "kb-nightly"
) -> dict[str, Any]:
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


def live_manifest(home: DataHome) -> dict[str, Any] | None:
    if current_version(home.indexes) is None:
        return None
    return read_manifest(live_version_dir(home.indexes))


# --- 1. pull ---------------------------------------------------------------------------------


def pull_stage(home: DataHome, run_id: str, source: str) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
        landed = land_export(source, home.raw)
        files = [
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

    return _stage(home, run_id, "pull", run)


def discover(source: str) -> list[str]:
    return [f.name for f in discover_export(source)]


# --- 2. validate -----------------------------------------------------------------------------


def validate_stage(
    home: DataHome, run_id: str, pulled: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
        from kbflow.sources import ExportFile

        files = [ExportFile(**f) for f in pulled["files"]]
        read = read_export(Path(pulled["root"]), files)
        live = live_manifest(home)
        live_entries = live["counts"]["entries"] if live else None
        write_table(read.rows, folder / "rows.parquet", RAW_ROW)
        result = validate_rows(
            read.rows, settings.validation, live_entries, parse_quarantine=read.quarantine
        )
        write_table(result.valid, folder / "valid.parquet", RAW_ROW)
        write_table(result.quarantine, folder / "quarantine.parquet", QUARANTINE_ROW)
        write_table(result.outcomes, folder / "outcomes.parquet", ROW_OUTCOME)
        write_table(result.merges, folder / "merges.parquet", DEDUP_MERGE)
        (folder / "expectations.json").write_text(
            json.dumps(result.expectations, indent=2), encoding="utf-8"
        )
        return {
            **result.counts,
            # Blank lines and all-empty records are not rows (no row_id); counted so they show.
            "blank_lines": read.counts["blank_lines"],
            "encodings": read.encodings,
            "expectations": result.expectations,
        }

    return _stage(home, run_id, "validate", run)


def record_failed_validation(home: DataHome, run_id: str, pulled: dict[str, Any]) -> None:
    """After a batch-level failure, keep the parsed rows' quarantine visible in the catalog."""
    folder = home.stage_dir(run_id, "validate")
    q = (
        read_table(folder / "quarantine.parquet", QUARANTINE_ROW)
        if (folder / "quarantine.parquet").is_file()
        else QUARANTINE_ROW.empty_table()
    )
    catalog.record_row_facts(
        home.catalog_path,
        run_id,
        ROW_OUTCOME.empty_table(),
        q,
        DEDUP_MERGE.empty_table(),
        STALE_ENTRY.empty_table(),
    )


# --- 3. clean --------------------------------------------------------------------------------


def clean_stage(home: DataHome, run_id: str, run_date: date, settings: Settings) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
        valid = read_table(home.stage_dir(run_id, "validate") / "valid.parquet", RAW_ROW)
        res = clean_rows(valid, run_date, settings.clean)
        write_table(res.entries, folder / "entries.parquet", CLEAN_ENTRY)
        write_table(res.merges, folder / "merges.parquet", DEDUP_MERGE)
        write_table(res.stale, folder / "stale.parquet", STALE_ENTRY)
        write_table(res.outcomes, folder / "outcomes.parquet", ROW_OUTCOME)
        return {**res.counts, "entries": res.entries.num_rows}

    return _stage(home, run_id, "clean", run)


# --- 4. chunk --------------------------------------------------------------------------------


def chunk_stage(home: DataHome, run_id: str, settings: Settings) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
        entries = read_table(home.stage_dir(run_id, "clean") / "entries.parquet", CLEAN_ENTRY)
        passages = chunk_entries(entries, settings.chunk)
        write_table(passages, folder / "passages.parquet", PASSAGE)
        kinds = pc.value_counts(passages.column("kind")).to_pylist() if passages.num_rows else []
        return {
            "entries": entries.num_rows,
            "passages": passages.num_rows,
            "by_kind": {k["values"]: k["counts"] for k in kinds},
            "fingerprint": passages_fingerprint(passages),
        }

    return _stage(home, run_id, "chunk", run)


def passages_fingerprint(passages: pa.Table) -> str:
    pairs = sorted(
        zip(
            passages.column("passage_id").to_pylist(),
            passages.column("text_hash").to_pylist(),
            passages.column("display").to_pylist(),
            strict=True,
        )
    )
    h = hashlib.sha256()
    for pid, th, disp in pairs:
        h.update(
            f"{pid}\x1f{th}\x1f{hashlib.sha256((disp or '').encode()).hexdigest()}\x1e".encode()
        )
    return h.hexdigest()


def is_unchanged(home: DataHome, chunked: dict[str, Any], settings: Settings) -> bool:
    """True when the live version already holds exactly these passages with this model/settings."""
    live = live_manifest(home)
    return bool(
        live
        and live.get("passages_fingerprint") == chunked["fingerprint"]
        and live.get("settings_fingerprint") == settings_fingerprint(settings)
    )


# --- 5. embed --------------------------------------------------------------------------------


def entry_texts(passages: pa.Table) -> list[str]:
    """One text per entry (its passages' texts joined, in order), what the language is read off."""
    texts: dict[str, list[str]] = {}
    for e, t in zip(
        passages.column("entry_id").to_pylist(), passages.column("text").to_pylist(), strict=True
    ):
        parts = texts.setdefault(e, [])
        if sum(map(len, parts)) < 600:
            parts.append(t)
    return ["\n".join(p) for p in texts.values()]


def model_stage(
    home: DataHome, run_id: str, settings: Settings, fresh: bool = False
) -> dict[str, Any]:
    """Which model this run embeds with (``kbflow.languages.choose_model``): the KB's language
    mix from the chunk stage's passages, the live version's model, ``embed.model``. Recorded
    once per run (a resumed run keeps its choice). ``fresh`` (re-embeds) decides by language
    whatever the live version uses. Returns ``ModelChoice.as_dict()``."""
    from kbflow.languages import choose_model, language_mix

    def run(folder: Path) -> dict[str, Any]:
        passages = read_table(home.stage_dir(run_id, "chunk") / "passages.parquet", PASSAGE)
        mix = language_mix(entry_texts(passages))
        live = live_manifest(home)
        live_info = (live or {}).get("embedding")
        choice = choose_model(settings.embed, mix, live_info, fresh=fresh)
        if fresh and live_info and not choice.switched:
            dim = settings.embed.dim or live_info.get("full_dim")
            if dim == live_info.get("dim"):
                raise ConfigError(
                    f"{choice.reason}: {choice.model}, which the live version already uses at "
                    f"{live_info.get('dim')} dimensions; nothing to re-embed"
                )
        log.info("model: %s (%s: %s)", choice.model, choice.mode, choice.reason)
        return choice.as_dict()

    return _stage(home, run_id, "model", run)


def with_model(settings: Settings, choice: dict[str, Any]) -> Settings:
    """``settings`` with ``embed.model`` set to the chosen model (``auto`` resolved)."""
    return settings.model_copy(
        update={"embed": settings.embed.model_copy(update={"model": choice["model"]})}
    )


def embed_stage(home: DataHome, run_id: str, settings: Settings) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
        passages = read_table(home.stage_dir(run_id, "chunk") / "passages.parquet", PASSAGE)
        # For sglang the workers live exactly as long as this block, even if embedding fails.
        with open_embedder(settings.embed) as embedder:
            cache = EmbeddingCache(home.embeddings, embedder.info.key, embedder.info.dim)
            # Before any vector is written: a backend whose output changed stops the run here.
            check_drift(embedder, cache.dir)
            stats = embed_missing(
                passages.column("text").to_pylist(),
                passages.column("text_hash").to_pylist(),
                embedder,
                cache,
                group_size=settings.embed.shard_texts,
            )
        log.info(
            "embed: %d passages, %d unique texts, %d cached, %d embedded (%.0f/s)",
            stats.passages,
            stats.unique_texts,
            stats.cached,
            stats.embedded,
            stats.per_second,
        )
        choice = _marker(home, run_id, "model")
        return {
            "passages": stats.passages,
            "unique_texts": stats.unique_texts,
            "cached": stats.cached,
            "embedded": stats.embedded,
            "per_second": round(stats.per_second, 1),
            "model": {**describe(embedder.info), **({"choice": choice} if choice else {})},
        }

    return _stage(home, run_id, "embed", run)


@contextmanager
def calibration_settings(
    settings: Settings, info: dict[str, Any], need_queries: bool = False
) -> Iterator[Settings]:
    """Settings under which calibration and the gate can embed queries. Models with a query
    instruction, and golden queries (``need_queries``), need the backend again; for ``sglang``
    that means workers, started for the length of the block and stopped after it (held-out
    similar questions of other models reuse the stored passage vectors, no backend)."""
    embed = settings.embed
    if (
        not (need_queries or (info.get("query_template") and info.get("task")))
        or embed.backend != "sglang"
        or embed.urls
    ):
        yield settings
        return
    from kbflow.sglang_worker import run_workers

    with run_workers(embed) as urls:
        yield settings.model_copy(
            update={"embed": embed.model_copy(update={"backend": "openai", "urls": urls})}
        )


# --- 6. index --------------------------------------------------------------------------------


def index_stage(
    home: DataHome,
    run_id: str,
    run_date: date,
    pulled: dict[str, Any],
    embedded: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
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
            "code_version": __version__,
        }
        vdir = build_version(home.indexes, version, passages, vectors, manifest, settings.index)
        n_passages = passages.num_rows
        del passages, vectors  # calibration reloads the version from disk; do not hold two copies
        golden = run_golden(home, run_id, pulled.get("source"), settings)
        with calibration_settings(settings, info, need_queries=bool(golden)) as cal_settings:
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

    return _stage(home, run_id, "index", run)


def resolve_golden(source: str | None, settings: Settings) -> Path | None:
    """The KB's golden queries: ``gate.golden`` when set, else ``golden.jsonl`` beside a local
    export folder (``<kb>/golden.jsonl`` for ``--source <kb>/export``), else None."""
    if settings.gate.golden is not None:
        if not settings.gate.golden.is_file():
            raise ConfigError(
                f"gate.golden {settings.gate.golden} does not exist; fix the path or unset it"
            )
        return settings.gate.golden
    if not source or "://" in source:
        return None
    folder = Path(source).expanduser()
    candidate = (folder if folder.is_dir() else folder.parent).parent / "golden.jsonl"
    return candidate if candidate.is_file() else None


def run_golden(
    home: DataHome, run_id: str, source: str | None, settings: Settings
) -> list[GoldenQuery]:
    """Golden queries of this run, frozen in ``runs/<run_id>/golden.jsonl`` on first use so a
    resumed run calibrates and gates on the same queries."""
    frozen = home.run_dir(run_id) / GOLDEN
    if not frozen.is_file():
        path = resolve_golden(source, settings)
        if path is None:
            return []
        atomic_write_text(frozen, path.read_text(encoding="utf-8"))
        log.info("gate: golden queries from %s", path)
    return load_golden(frozen)


# --- 7. gate ---------------------------------------------------------------------------------


def gate_stage(
    home: DataHome, run_id: str, version: str, settings: Settings, force: bool = False
) -> dict[str, Any]:
    """Score the new version against the live one (``kbflow.gate``) and record the decision in
    its manifest: ``status`` stays ``built`` when it may be published, ``blocked`` otherwise.
    ``force`` publishes a failing version anyway and records ``gate.forced`` in the manifest.
    Returns the gate result plus ``publish`` (bool) and ``forced``.
    """
    vdir = home.indexes / version

    def run(folder: Path) -> dict[str, Any]:
        if not settings.gate.enabled:
            return {"passed": True, "skipped": True, "reasons": [], "checks": {}, "failing": []}
        from kbflow.gate import VersionQueryEncoder, gate_version
        from kbflow.retrieval import LoadedVersion

        golden = run_golden(home, run_id, None, settings)
        live_name = current_version(home.indexes)
        info = read_manifest(vdir)["embedding"]
        with calibration_settings(settings, info, need_queries=bool(golden)) as cal_settings:
            new = LoadedVersion(vdir)
            live = (
                LoadedVersion(live_version_dir(home.indexes))
                if live_name and live_name != version
                else None
            )
            result = gate_version(
                new, live, golden, settings.gate, VersionQueryEncoder(cal_settings.embed)
            )
        log.info(
            "gate: %s%s",
            "passed" if result["passed"] else "BLOCKED",
            "" if result["passed"] else " (" + "; ".join(result["reasons"]) + ")",
        )
        return result

    result = _stage(home, run_id, "gate", run)
    publish = bool(result["passed"] or force)
    forced = bool(force and not result["passed"])
    if forced:
        log.warning("gate: version %s failed the gate and is published anyway (--force)", version)
    update_manifest(
        vdir,
        status="built" if publish else "blocked",
        gate={k: v for k, v in result.items() if k != "failing"} | {"forced": forced},
    )
    return {**result, "publish": publish, "forced": forced}


# --- 8. publish ------------------------------------------------------------------------------


def publish_stage(home: DataHome, run_id: str, version: str, settings: Settings) -> dict[str, Any]:
    def run(folder: Path) -> dict[str, Any]:
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

    return _stage(home, run_id, "publish", run)


# --- 8. account ------------------------------------------------------------------------------


def account_stage(
    home: DataHome, run_id: str, pulled: dict[str, Any], indexed_status: str = "indexed"
) -> dict[str, Any]:
    """Combine every stage's row outcomes, check each input row has exactly one, store them.

    ``indexed_status`` is what canonical published rows count as ("indexed"). Raises
    ``AccountingError`` when the outcomes do not sum to the input rows.
    """

    def run(folder: Path) -> dict[str, Any]:
        vdir = home.stage_dir(run_id, "validate")
        cdir = home.stage_dir(run_id, "clean")
        rows = read_table(vdir / "rows.parquet", RAW_ROW)
        quarantine = read_table(vdir / "quarantine.parquet", QUARANTINE_ROW)
        v_out = read_table(vdir / "outcomes.parquet", ROW_OUTCOME)
        c_out = read_table(cdir / "outcomes.parquet", ROW_OUTCOME)
        q_out = table_from_rows(
            [
                {
                    "row_id": r["row_id"],
                    "entry_id": r["entry_id"],
                    "outcome": "quarantined",
                    "reason": r["expectation"],
                    "detail": r["detail"],
                }
                for r in quarantine.to_pylist()
            ],
            ROW_OUTCOME,
        )
        outcomes = pa.concat_tables([q_out, v_out, c_out])
        ids = outcomes.column("row_id").to_pylist()
        n_input = rows.num_rows + _parse_only(rows, quarantine)
        if len(ids) != len(set(ids)):
            dup = [i for i in set(ids) if ids.count(i) > 1][:5]
            raise AccountingError(f"rows with two outcomes: {dup}")
        if len(ids) != n_input:
            seen = set(ids)
            missing = [r for r in rows.column("row_id").to_pylist() if r not in seen][:5]
            raise AccountingError(
                f"{n_input} input rows but {len(ids)} outcomes (e.g. no outcome for rows {missing})"
            )
        counts = {o: 0 for o in OUTCOMES}
        for o in outcomes.column("outcome").to_pylist():
            counts[o] += 1
        if sum(counts.values()) != n_input:
            raise AccountingError(f"outcomes {counts} do not sum to {n_input} input rows")
        merges = pa.concat_tables(
            [
                read_table(vdir / "merges.parquet", DEDUP_MERGE),
                read_table(cdir / "merges.parquet", DEDUP_MERGE),
            ]
        )
        stale = read_table(cdir / "stale.parquet", STALE_ENTRY)
        write_table(outcomes, folder / "outcomes.parquet", ROW_OUTCOME)
        catalog.record_row_facts(home.catalog_path, run_id, outcomes, quarantine, merges, stale)
        return {"input": n_input, **counts}

    return _stage(home, run_id, "account", run)


def _parse_only(rows: pa.Table, quarantine: pa.Table) -> int:
    """Quarantined rows the reader could not parse (they have no line in rows.parquet)."""
    parsed = set(rows.column("row_id").to_pylist())
    return sum(1 for r in quarantine.column("row_id").to_pylist() if r not in parsed)


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


def error_status(exc: BaseException) -> str:
    """Status of a run that raised: ``failed`` (validation rejects and crashes alike)."""
    return "failed"


__all__ = [
    "KbflowError",
    "account_stage",
    "chunk_stage",
    "clean_stage",
    "embed_stage",
    "finish_run",
    "gate_stage",
    "index_stage",
    "is_unchanged",
    "publish_stage",
    "pull_stage",
    "retired_entries",
    "start_run",
    "validate_stage",
]


# --- 9. report -------------------------------------------------------------------------------


def _marker(home: DataHome, run_id: str, stage: str) -> dict[str, Any] | None:
    path = home.run_dir(run_id) / stage / MARKER
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _maybe(path: Path, schema: pa.Schema) -> pa.Table | None:
    return read_table(path, schema) if path.is_file() else None


def report_stage(
    home: DataHome,
    run_id: str,
    run_date: date,
    status: str,
    message: str | None = None,
    notice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the run summary from the stage markers, write the HTML report, close the run.

    Returns the summary the CLI prints: ``run_id``, ``status``, ``version``, ``rows``
    (input/indexed/duplicate/stale/unpublished/quarantined), ``embedded``, ``cached``,
    ``retired``, ``report`` and ``timings``; ``notice`` (``kbflow.notify.send_notice``'s
    result, the webhook URL redacted) when a failure notice was sent or attempted.
    """
    m = {
        s: _marker(home, run_id, s)
        for s in (
            "pull",
            "validate",
            "clean",
            "chunk",
            "model",
            "embed",
            "index",
            "review",
            "gate",
            "publish",
            "account",
        )
    }
    account = m["account"] or {}
    rows = {k: account.get(k, 0) for k in ("input", *OUTCOMES)}
    if not account and m["validate"]:
        rows["input"] = m["validate"].get("input", 0)
        rows["quarantined"] = m["validate"].get("quarantined", 0)
    live = current_version(home.indexes)
    index = m["index"] or {}
    publish = m["publish"] or {}
    retired_path = home.run_dir(run_id) / "retired.json"
    retired = json.loads(retired_path.read_text()) if retired_path.is_file() else []
    version = publish.get("version") or (live if status == "unchanged" else index.get("version"))
    summary: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "version": version,
        "run_date": run_date.isoformat(),
        "previous_version": publish.get("previous"),
        "snapshot_id": (m["pull"] or {}).get("snapshot_id"),
        "rows": rows,
        "embedded": (m["embed"] or {}).get("embedded", 0),
        "cached": (m["embed"] or {}).get("cached", 0),
        "embed_per_second": (m["embed"] or {}).get("per_second"),
        "model_key": ((m["embed"] or {}).get("model") or {}).get("model_key"),
        "model_choice": {
            k: (m["model"] or {}).get(k) for k in ("model", "mode", "reason", "switched")
        }
        if m["model"]
        else None,
        "retired": len(retired),
        "calibration": index.get("calibration"),
        "gate": _gate_summary(m["gate"], home, index.get("version")),
        "timings": {s: v["seconds"] for s, v in m.items() if v and "seconds" in v},
    }
    if message:
        summary["message"] = message
    if notice:
        summary["notice"] = notice
    report_path = home.reports / f"nightly-{run_id}.html"
    summary["report"] = str(report_path)
    vdir, cdir = home.run_dir(run_id) / "validate", home.run_dir(run_id) / "clean"
    prev_cal = None
    if publish.get("previous") and (home.indexes / publish["previous"]).is_dir():
        prev_cal = read_manifest(home.indexes / publish["previous"]).get("calibration")
    from kbflow.report import write_nightly_report
    from kbflow.review import report_inputs

    review = report_inputs(home, run_id)
    summary["review"] = review.pop("summary")
    merges = [
        t
        for t in (
            _maybe(vdir / "merges.parquet", DEDUP_MERGE),
            _maybe(cdir / "merges.parquet", DEDUP_MERGE),
        )
        if t is not None
    ]
    write_nightly_report(
        report_path,
        summary,
        quarantine=_maybe(vdir / "quarantine.parquet", QUARANTINE_ROW),
        merges=pa.concat_tables(merges) if merges else None,
        stale=_maybe(cdir / "stale.parquet", STALE_ENTRY),
        retired=retired,
        previous_calibration=prev_cal,
        **review,
    )
    return finish_run(home, run_id, status, summary, message)


def _gate_summary(
    gate: dict[str, Any] | None, home: DataHome, version: str | None
) -> dict[str, Any] | None:
    if gate is None:
        return None
    forced = False
    if version and (home.indexes / version).is_dir():
        forced = bool(read_manifest(home.indexes / version).get("gate", {}).get("forced"))
    return {**gate, "forced": forced}


def record_retired(home: DataHome, run_id: str) -> int:
    retired = retired_entries(home, run_id)
    atomic_write_text(
        home.run_dir(run_id) / "retired.json", json.dumps(retired, ensure_ascii=False)
    )
    return len(retired)


def today_in(tz: str = "Asia/Shanghai") -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(tz)).date()
