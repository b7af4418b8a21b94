#!/usr/bin/env python
"""Stage benchmark of kb-nightly: our stage functions, in the flow's order, without Prefect.

    python bench/bench_stages.py --entries 100000 [--out bench/results-100000.json]
        [--embed | --no-embed | --embed-sample K] [--workdir DIR] [--profile clean,index]

Builds a synthetic export of N records from the sample KB (``bench/synth_export.py``), then runs
the stage functions (``kbflow.<package>.stage``) in-process, in the order ``flows/nightly.py`` calls them
(start_run, pull, validate, clean, chunk, model, check-unchanged, embed, index, account, publish,
report), twice: a first full run on a fresh data home, and a rerun on the same export, which
must find the passages unchanged and embed nothing. Per stage it records wall and CPU seconds,
items/s and the peak RSS. Prefect is never imported: the figures are our code's. The real CLI
adds Prefect's start-up (about 8 s per process, see FACTS.md) and its per-task overhead on top.

Prints a table and writes JSON (see bench/README.md for every field and the floors).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import platform
import pstats
import random
import resource
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# The embedded model must never be fetched (FACTS.md); set before anything imports transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from synth_export import write_export  # noqa: E402

log = logging.getLogger("bench")

DEFAULT_SAMPLE = ROOT / "examples" / "kb_zh" / "export"
SHARED_DATA = ROOT.parent / "shared" / "data"
#: Real Chinese KBs in ../shared/data that ``--realistic`` adds to the seeds.
REAL_KBS = ("baoxianzhidao", "taipei_faq", "esun_faq", "bq")


def realistic_seeds(sample: Path, folder: Path) -> Path:
    """A seed export of the sample's files plus ``REAL_KBS`` (copied: kbflow never follows a
    link out of an export folder), rebuilt in ``folder`` (under the workdir, never the repo)."""
    missing = [k for k in REAL_KBS if not (SHARED_DATA / k / "export" / "kb.jsonl").is_file()]
    if missing:
        raise SystemExit(
            f"--realistic needs {SHARED_DATA} (missing: {', '.join(missing)}); "
            "run without it to vary the sample alone"
        )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in sorted(sample.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            shutil.copyfile(f, folder / f.name)
    for k in REAL_KBS:
        shutil.copyfile(SHARED_DATA / k / "export" / "kb.jsonl", folder / f"{k}.jsonl")
    return folder


RUN_DATE = date(2026, 11, 24)  # the sample's run date: its expiry cases are written against it
HOME_MARKER = ".kbflow-bench"

#: The floors, as agreed for the nightly run on this 2-core machine.
FLOOR_ENTRIES = 100_000
FLOOR_VCC_SECONDS = 30.0  # validate + clean + chunk of 100k entries
FLOOR_PEAK_MIB = 4096.0  # 4 GiB, the process's peak RSS over both runs
FLOOR_RERUN_RATIO = 0.10  # rerun wall time / first run wall time
FLOOR_1M_ENTRIES = 1_000_000
FLOOR_1M_VCC_SECONDS = 180.0  # validate + clean + chunk of 1M entries (issue 19)
FLOOR_1M_PEAK_MIB = 6144.0  # 6 GiB, the process up to the end of chunk (issue 19)

NOTE = (
    "Stages run in-process, in flows/nightly.py's order, calling the stage functions directly without "
    "Prefect, so the figures measure kbflow's code only. The real `kbflow nightly` adds Prefect's "
    "start-up (about 8 s per process, ~14 s with a fresh PREFECT_HOME) and per-task overhead."
)

#: Stage name -> (what its items are, how to count them from the stage's summary).
ITEMS: dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]] = {
    "pull": ("MB", lambda s: sum(f["size"] for f in s["files"]) / 1e6),
    "validate": ("entries", lambda s: s["input"]),
    "clean": ("entries", lambda s: s["read"]),
    "chunk": ("entries", lambda s: s["entries"]),
    "embed": ("passages", lambda s: s["embedded"]),
    "index": ("passages", lambda s: s["passages"]),
    "account": ("rows", lambda s: s["input"]),
}


# --- memory --------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM, which ru_maxrss reports) to the current
    RSS, so the next reading is the peak of what runs in between. Linux only."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Meter:
    """Times stage calls and tracks peak RSS per stage and over the whole process."""

    def __init__(self, profile: set[str], profile_prefix: Path | None) -> None:
        self.process_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.profile = profile
        self.profile_prefix = profile_prefix
        self.profiles: dict[str, str] = {}

    def run(self, label: str, stage: str, fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        reset = _reset_peak()
        rss0 = _status_kib("VmRSS")
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        prof = cProfile.Profile() if stage in self.profile and label == "first" else None
        t0 = time.perf_counter()
        result = prof.runcall(fn) if prof is not None else fn()
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        peak = ru1.ru_maxrss  # KiB on Linux; the stage's own peak when the reset worked
        self.process_peak_kib = max(self.process_peak_kib, peak)
        rec: dict[str, Any] = {
            "stage": stage,
            "wall_s": round(wall, 3),
            "cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 3),
            "peak_rss_mib": round(peak / 1024, 1),
            "peak_is_stage_own": reset,
            "process_peak_rss_mib": round(self.process_peak_kib / 1024, 1),
            "rss_before_mib": round((rss0 or 0) / 1024, 1),
            "rss_after_mib": round((_status_kib("VmRSS") or 0) / 1024, 1),
            "load1": round(os.getloadavg()[0], 2),
        }
        if isinstance(result, dict):
            if "seconds" in result:
                rec["stage_seconds"] = result["seconds"]
            if stage in ITEMS:
                item, count = ITEMS[stage]
                n = count(result)
                rec["items"] = round(n, 3) if isinstance(n, float) else n
                rec["item"] = item
                rec["rate"] = round(n / wall, 1) if n is not None and wall > 0 else None
            rec["summary"] = result
        if prof is not None:
            rec["profile"] = self._dump_profile(stage, prof)
        log.info(
            "[bench] %s run: %s %.2f s (cpu %.2f s), peak RSS %.0f MiB",
            label,
            stage,
            wall,
            rec["cpu_s"],
            rec["peak_rss_mib"],
        )
        return result, rec

    def _dump_profile(self, stage: str, prof: cProfile.Profile) -> str | None:
        if self.profile_prefix is None:
            return None
        prof_path = self.profile_prefix.with_name(
            f"{self.profile_prefix.name}.profile-{stage}.prof"
        )
        txt_path = prof_path.with_suffix(".txt")
        prof.dump_stats(prof_path)
        with open(txt_path, "w", encoding="utf-8") as fh:
            st = pstats.Stats(prof, stream=fh)
            st.sort_stats("cumulative").print_stats(45)
            st.sort_stats("tottime").print_stats(30)
        return str(txt_path)


# --- embedding modes -----------------------------------------------------------------------


class _SyntheticEmbedder:
    """Random unit vectors of the real model's shape, for passages the benchmark does not embed
    (``--embed-sample`` / ``--no-embed``): index, account, publish and report then run for real."""

    def __init__(self, info: Any, seed: int) -> None:
        import numpy as np

        self.info = info
        self._rng = np.random.default_rng(seed)

    def embed_documents(self, texts: Sequence[str]) -> Any:
        import numpy as np

        v = self._rng.standard_normal((len(texts), self.info.dim), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_queries(self, texts: Sequence[str]) -> Any:
        return self.embed_documents(texts)


def prefill_cache(home: Any, run_id: str, settings: Any, sample: int, seed: int) -> dict[str, Any]:
    """Embed ``sample`` of the passages to embed for real (timed) and cache synthetic vectors
    for the rest, so that ``embed_stage`` finds everything cached. Returns the sample's rate."""
    from kbflow.contracts import PASSAGE, read_table
    from kbflow.embed.cache import EmbeddingCache, embed_missing
    from kbflow.embed.factory import make_embedder

    passages = read_table(home.stage_dir(run_id, "chunk") / "passages.parquet", PASSAGE)
    unique = dict(
        zip(
            passages.column("text_hash").to_pylist(),
            passages.column("text").to_pylist(),
            strict=True,
        )
    )
    t0 = time.perf_counter()
    embedder = make_embedder(settings.embed)
    load_s = time.perf_counter() - t0
    cache = EmbeddingCache(home.embeddings, embedder.info.key, embedder.info.dim)
    known = cache.known_hashes()
    todo = [h for h in unique if h not in known]
    picked = sorted(random.Random(seed).sample(range(len(todo)), min(sample, len(todo))))
    sample_hashes = [todo[i] for i in picked]
    out: dict[str, Any] = {
        "to_embed": len(todo),
        "sampled": len(sample_hashes),
        "model_load_s": round(load_s, 2),
    }
    if sample_hashes:
        stats = embed_missing([unique[h] for h in sample_hashes], sample_hashes, embedder, cache)
        out["sample_s"] = round(stats.seconds, 3)
        out["sample_rate"] = round(stats.embedded / stats.seconds, 1) if stats.seconds else None
    chosen = set(sample_hashes)
    rest = [h for h in todo if h not in chosen]
    t1 = time.perf_counter()
    embed_missing([unique[h] for h in rest], rest, _SyntheticEmbedder(embedder.info, seed), cache)
    out["synthetic"] = len(rest)
    out["synthetic_fill_s"] = round(time.perf_counter() - t1, 2)
    return out


# --- one nightly run -------------------------------------------------------------------------


def nightly_run(
    label: str,
    home: Any,
    source: str,
    settings: Any,
    run_date: date,
    meter: Meter,
    embed_mode: str,
    embed_sample: int,
    seed: int,
    stop_after: str | None = None,
) -> dict[str, Any]:
    """``flows/nightly.py``'s ``kb_nightly``, task for task, as plain calls. With
    ``stop_after``, the run ends after that stage (for sizes whose later stages cannot run
    here); its status is then ``stopped after <stage>``."""
    from kbflow.errors import KbflowError
    from kbflow.store.home import new_run_id
    from kbflow.store.versions import read_manifest

    run_id = new_run_id()
    stages: list[dict[str, Any]] = []

    def step(stage: str, fn: Callable[[], Any]) -> Any:
        result, rec = meter.run(label, stage, fn)
        stages.append(rec)
        if stage == stop_after:
            raise _Stopped(stage)
        return result

    t0 = time.perf_counter()
    try:
        summary = _run_stages(
            home, run_id, source, settings, run_date, step, meter, label, stages,
            embed_mode, embed_sample, seed, KbflowError,
        )  # fmt: skip
    except _Stopped:
        summary = {"status": f"stopped after {stop_after}"}
    prefill = next((s.pop("prefill") for s in stages if "prefill" in s), None)
    total = time.perf_counter() - t0
    run: dict[str, Any] = {
        "run_id": run_id,
        "status": summary["status"],
        "stages": stages,
        "total_wall_s": round(total, 3),
        "total_extrapolated": False,
        "embedded": summary.get("embedded", 0),
        "cached": summary.get("cached", 0),
        "rows": summary.get("rows"),
        "version": summary.get("version"),
    }
    if run["version"] and run["status"] == "published":
        manifest = read_manifest(home.indexes / run["version"])
        run["index_build"] = manifest.get("index", {}).get("build")
        run["calibration_reused"] = bool(manifest.get("calibration", {}).get("reused_from"))
    if stop_after is not None:
        run["unique_texts"] = _unique_texts(home, run_id)
    if prefill is not None:
        _extrapolate(run, prefill, embed_mode)
    return run


def flow_stages() -> list[str]:
    """The first run's stages, in order (what nightly_run times)."""
    return [
        "start_run", "pull", "reuse_prepared", "validate", "clean", "chunk", "record_prepared",
        "model", "check_unchanged", "embed", "index", "review", "gate", "account", "publish",
        "report",
    ]  # fmt: skip


class _Stopped(Exception):
    """Raised by ``nightly_run``'s step after its ``stop_after`` stage."""


def _unique_texts(home: Any, run_id: str) -> int | None:
    """Distinct passage texts of a run's chunk output (what an empty cache would embed)."""
    import pyarrow.parquet as pq

    path = home.stage_dir(run_id, "chunk") / "passages.parquet"
    if not path.is_file():
        return None
    return len(set(pq.read_table(path, columns=["text_hash"]).column("text_hash").to_pylist()))


def _run_stages(
    home: Any, run_id: str, source: str, settings: Any, run_date: date,
    step: Callable[[str, Callable[[], Any]], Any], meter: Meter, label: str,
    stages: list[dict[str, Any]], embed_mode: str, embed_sample: int, seed: int,
    KbflowError: type[Exception],
) -> dict[str, Any]:  # fmt: skip
    from kbflow.account import account_stage
    from kbflow.chunk.stage import chunk_stage
    from kbflow.clean.stage import clean_stage
    from kbflow.embed.stage import embed_stage, model_stage, with_model
    from kbflow.gate.stage import gate_stage
    from kbflow.index.stage import index_stage
    from kbflow.publish.stage import publish_stage
    from kbflow.pull.stage import pull_stage
    from kbflow.report.stage import report_stage
    from kbflow.review.stage import review_stage
    from kbflow.run import (
        is_unchanged,
        record_prepared,
        record_retired,
        reuse_prepared,
        start_run,
    )
    from kbflow.validate.stage import validate_stage

    with home.run_lock():
        step("start_run", lambda: start_run(home, run_id, run_date))
        try:
            pulled = step("pull", lambda: pull_stage(home, run_id, source))
            prepared = step(
                "reuse_prepared",
                lambda: reuse_prepared(home, run_id, pulled, run_date, settings),
            )
            step("validate", lambda: validate_stage(home, run_id, pulled, settings))
            step("clean", lambda: clean_stage(home, run_id, run_date, settings))
            chunked = step("chunk", lambda: chunk_stage(home, run_id, settings))
            if not prepared["reused_from"]:
                step(
                    "record_prepared",
                    lambda: record_prepared(home, run_id, prepared["key"], run_date),
                )
            choice = step("model", lambda: model_stage(home, run_id, settings))
            settings = with_model(settings, choice)

            def check_unchanged() -> bool:  # tasks/nightly.py's check-unchanged task
                record_retired(home, run_id)
                return is_unchanged(home, chunked, settings)

            if step("check_unchanged", check_unchanged):
                step("account", lambda: account_stage(home, run_id, pulled))
                summary = step("report", lambda: report_stage(home, run_id, run_date, "unchanged"))
            else:
                if embed_mode != "full":
                    k = embed_sample if embed_mode == "sample" else 0
                    prefill, rec = meter.run(
                        label,
                        "embed_sample_bench",
                        lambda: prefill_cache(home, run_id, settings, k, seed),
                    )
                    rec["not_a_stage"] = True
                    rec["prefill"] = prefill
                    stages.append(rec)
                embedded = step("embed", lambda: embed_stage(home, run_id, settings))
                built = step(
                    "index",
                    lambda: index_stage(home, run_id, run_date, pulled, embedded, settings),
                )
                step("review", lambda: review_stage(home, run_id, built["version"], settings))
                # Timed like any stage, its decision overridden (the flow's --force): on
                # synthetic or sampled vectors the quality it checks means nothing.
                step(
                    "gate",
                    lambda: gate_stage(home, run_id, built["version"], settings, force=True),
                )
                step("account", lambda: account_stage(home, run_id, pulled))
                step(
                    "publish",
                    lambda: publish_stage(home, run_id, built["version"], settings),
                )
                summary = step("report", lambda: report_stage(home, run_id, run_date, "published"))
        except KbflowError as exc:
            report_stage(home, run_id, run_date, "failed", str(exc))
            raise
    return summary


def _extrapolate(run: dict[str, Any], prefill: dict[str, Any], mode: str) -> None:
    """Replace the embed stage's figures by measured overhead + sampled rate x passages."""
    stages = {s["stage"]: s for s in run["stages"]}
    bench = stages["embed_sample_bench"]
    embed = stages["embed"]
    run["prefill"] = prefill
    embed["measured_wall_s"] = embed["wall_s"]
    total = run["total_wall_s"] - bench["wall_s"]
    if mode == "sample" and prefill.get("sampled"):
        # A cold process pays the model's import and load inside the embed stage; here the
        # prefill paid it, so it is added back.
        extra = (
            prefill["sample_s"] * prefill["to_embed"] / prefill["sampled"] + prefill["model_load_s"]
        )
        embed["wall_s"] = round(embed["wall_s"] + extra, 3)
        embed["items"] = prefill["to_embed"]
        embed["rate"] = prefill["sample_rate"]
        embed["extrapolated"] = True
        embed["note"] = (
            f"EXTRAPOLATED: {prefill['sampled']} of {prefill['to_embed']} passages embedded for real "
            f"in {prefill['sample_s']} s; wall = measured stage + model load ({prefill['model_load_s']} s) "
            "+ that rate x all passages"
        )
        run["total_wall_s"] = round(total + extra, 3)
        run["total_extrapolated"] = True
    else:
        embed["items"] = prefill["to_embed"]
        embed["rate"] = None
        embed["not_measured"] = True
        embed["note"] = (
            "NOT MEASURED (--no-embed): synthetic vectors; wall is the stage's overhead only"
        )
        run["total_wall_s"] = round(total, 3)
        run["embedding_not_measured"] = True


# --- the report ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    mem_kib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            mem_kib = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    except (OSError, StopIteration, ValueError):
        pass
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")),
                None,
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "memory_total_gib": round(mem_kib / 1024 / 1024, 2) if mem_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in (
        "kbflow",
        "prefect",
        "faiss-cpu",
        "duckdb",
        "pyarrow",
        "datasketch",
        "sentence-transformers",
        "torch",
        "transformers",
        "great-expectations",
        "bm25s",
        "jieba",
        "numpy",
        "pandas",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_fingerprint() -> dict[str, Any]:
    """sha256 over the measured code (src/kbflow, flows, tasks, sql, from where ``kbflow`` is
    imported: a snapshot when run_all.py made one) and the newest file's modification time, so
    that figures can be matched to the code they were taken on."""
    import hashlib

    import kbflow

    root = Path(kbflow.__file__).resolve().parents[2]
    h = hashlib.sha256()
    newest = 0.0
    files = 0
    for sub in ("src/kbflow", "flows", "tasks", "sql"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".sql"):
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
                newest = max(newest, p.stat().st_mtime)
                files += 1
    return {
        "sha256": h.hexdigest()[:16],
        "files": files,
        "root": str(root),
        "source": os.environ.get("KBFLOW_BENCH_CODE", "working tree"),
        "newest_mtime": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds")
        if files
        else None,
    }


def _stage_map(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stage"]: s for s in run["stages"]}


def evaluate_floors(result: dict[str, Any]) -> list[dict[str, Any]]:
    n = result["export"]["entries"]
    at_size = n >= FLOOR_ENTRIES
    first, rerun = result["first_run"], result["rerun"]
    fs = _stage_map(first)
    floors: list[dict[str, Any]] = []

    def floor(
        name: str,
        value: float | None,
        limit: float,
        unit: str,
        conclusive_pass: bool,
        note: str = "",
    ) -> None:
        if value is None or n > FLOOR_ENTRIES and unit != "ratio":
            passed = None  # time and memory floors are defined at 100k; a bigger KB may need more
            note = note or f"floor is defined at {FLOOR_ENTRIES} entries"
        elif value > limit:
            passed = False  # over the limit at or below the floor's size: a failure
        else:
            passed = True if conclusive_pass else None
        floors.append(
            {
                "name": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "passed": passed,
                "note": note,
            }
        )

    if not all(s in fs for s in ("validate", "clean", "chunk")):
        return floors  # stopped before the stages any floor is about
    vcc = round(sum(fs[s]["wall_s"] for s in ("validate", "clean", "chunk")), 3)
    floor(
        "validate+clean+chunk wall time",
        vcc,
        FLOOR_VCC_SECONDS,
        "s",
        at_size,
        ""
        if at_size
        else f"floor is defined at {FLOOR_ENTRIES} entries; below it only a failure is conclusive",
    )
    peak = max(
        s["process_peak_rss_mib"] for s in first["stages"] + (rerun["stages"] if rerun else [])
    )
    floor(
        "peak RSS of the process",
        peak,
        FLOOR_PEAK_MIB,
        "MiB",
        at_size,
        "max over every stage of both runs (ru_maxrss, reset per stage)"
        + ("" if at_size else f"; a pass below {FLOOR_ENTRIES} entries is not conclusive"),
    )
    if n >= FLOOR_1M_ENTRIES:  # issue 19: a million entries, linear and bounded
        floors.append(
            {
                "name": "validate+clean+chunk wall time at 1M entries",
                "value": vcc,
                "limit": FLOOR_1M_VCC_SECONDS,
                "unit": "s",
                "passed": vcc <= FLOOR_1M_VCC_SECONDS,
                "note": f"CPU {sum(fs[s]['cpu_s'] for s in ('validate', 'clean', 'chunk')):.1f} s",
            }
        )
        vcc_peak = max(fs[s]["process_peak_rss_mib"] for s in ("validate", "clean", "chunk"))
        floors.append(
            {
                "name": "validate+clean+chunk peak RSS at 1M entries",
                "value": vcc_peak,
                "limit": FLOOR_1M_PEAK_MIB,
                "unit": "MiB",
                "passed": vcc_peak <= FLOOR_1M_PEAK_MIB,
                "note": "ru_maxrss of the process up to the end of chunk",
            }
        )
    if rerun is None:
        return floors
    ratio = (
        round(rerun["total_wall_s"] / first["total_wall_s"], 4) if first["total_wall_s"] else None
    )
    if first.get("embedding_not_measured"):
        floors.append(
            {
                "name": "rerun / first run wall time",
                "value": ratio,
                "limit": FLOOR_RERUN_RATIO,
                "unit": "ratio",
                "passed": None,
                "note": "not judged: --no-embed, the first run's embedding was not measured",
            }
        )
    else:
        note = (
            "first run total includes an EXTRAPOLATED embed stage"
            if first["total_extrapolated"]
            else ""
        )
        floor("rerun / first run wall time", ratio, FLOOR_RERUN_RATIO, "ratio", True, note)
    floors.append(
        {
            "name": "rerun embeds no passage",
            "value": rerun["embedded"],
            "limit": 0,
            "unit": "passages",
            "passed": rerun["embedded"] == 0 and rerun["status"] == "unchanged",
            "note": f"rerun status {rerun['status']!r}",
        }
    )
    return floors


def accounting(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["first_run"]["rows"] or {}
    outcomes = {
        k: rows.get(k, 0) for k in ("indexed", "duplicate", "stale", "unpublished", "quarantined")
    }
    kinds = result["export"]["kinds"]
    return {
        "export_records": result["export"]["entries"],
        "input": rows.get("input"),
        **outcomes,
        "sums": rows.get("input") == sum(outcomes.values()) == result["export"]["entries"],
        "injected": {
            "duplicate (exact+near)": kinds["exact"] + kinds["near"],
            "stale (expired)": kinds["expired"],
            "unpublished (draft)": kinds["draft"],
            "quarantined (broken)": kinds["broken"],
        },
    }


def _fmt(v: Any, width: int, digits: int = 1) -> str:
    if v is None:
        s = "-"
    elif isinstance(v, float):
        s = f"{v:,.{digits}f}"
    elif isinstance(v, int):
        s = f"{v:,}"
    else:
        s = str(v)
    return s.rjust(width)


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"kbflow stage benchmark: {result['export']['entries']:,} entries, embed mode {result['embed_mode']}",
        NOTE,
        "",
    ]
    head = f"{'run':<6} {'stage':<20} {'wall s':>9} {'cpu s':>9} {'items':>11} {'rate /s':>10}  {'item':<9} {'stage peak':>10} {'proc peak':>10} {'load1':>6}"
    lines += [head, "-" * len(head)]
    for label, key in (("first", "first_run"), ("rerun", "rerun")):
        run = result[key]
        if run is None:
            continue
        for s in run["stages"]:
            name = s["stage"] + (
                " *" if s.get("extrapolated") else " (n/m)" if s.get("not_measured") else ""
            )
            if s.get("not_a_stage"):
                name = "(bench embed sample)"
            lines.append(
                f"{label:<6} {name:<20} {_fmt(s['wall_s'], 9, 2)} {_fmt(s['cpu_s'], 9, 2)} {_fmt(s.get('items'), 11)} "
                f"{_fmt(s.get('rate'), 10)}  {s.get('item', ''):<9} {_fmt(s['peak_rss_mib'], 10, 0)} "
                f"{_fmt(s['process_peak_rss_mib'], 10, 0)} {_fmt(s['load1'], 6, 2)}"
            )
        total = f"{run['total_wall_s']:,.2f}" + (
            " * (extrapolated)" if run["total_extrapolated"] else ""
        )
        lines.append(
            f"{label:<6} {'TOTAL':<20} {total:>9}   status={run['status']} embedded={run['embedded']}"
        )
        lines.append("")
    lines.append(
        "peak MiB: 'stage peak' = ru_maxrss reset before the stage; 'proc peak' = process maximum so far."
    )
    if any(s.get("extrapolated") for s in result["first_run"]["stages"]):
        lines.append("* EXTRAPOLATED from an embedded sample (see first_run.prefill in the JSON).")
    acc = result["accounting"]
    if acc is None:
        lines.append(f"\nstopped after {result['stop_after']}: no accounting, no rerun")
        lines.append(f"unique passage texts: {result['first_run'].get('unique_texts')}")
        acc = {}
    lines.append("")
    if acc:
        names = ("export_records", "input", "indexed", "duplicate", "stale", "unpublished")
        lines.append(
            "accounting (first run): "
            + ", ".join(f"{k}={acc[k]}" for k in (*names, "quarantined"))
            + f"; sums: {acc['sums']}"
        )
        lines.append(
            "injected by the generator: "
            + ", ".join(f"{k}={v}" for k, v in acc["injected"].items())
        )
    lines.append("")
    lines.append("floors:")
    for f in result["floors"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[f["passed"]]
        lines.append(
            f"  [{mark}] {f['name']}: {f['value']} {f['unit']} (limit {f['limit']})"
            + (f" - {f['note']}" if f["note"] else "")
        )
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--entries",
        type=int,
        default=100_000,
        help="records in the synthetic export (default 100000)",
    )
    p.add_argument(
        "--out", type=Path, help="JSON results path (default bench/results-<entries>.json)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--embed",
        dest="embed",
        action="store_true",
        default=True,
        help="embed every passage with the real model (default)",
    )
    g.add_argument(
        "--no-embed",
        dest="embed",
        action="store_false",
        help="synthetic vectors instead of embedding (embedding not measured)",
    )
    g.add_argument(
        "--embed-sample",
        type=int,
        metavar="K",
        help="embed K passages for real, extrapolate the embed stage to all (marked extrapolated)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="where the export and the data home go (kept); default a temp dir, removed",
    )
    p.add_argument("--keep", action="store_true", help="keep the default temp workdir")
    p.add_argument(
        "--sample",
        type=Path,
        default=DEFAULT_SAMPLE,
        help=f"sample export to vary (default {DEFAULT_SAMPLE})",
    )
    p.add_argument(
        "--realistic",
        action="store_true",
        help="vary ~5,500 real FAQ entries (the sample plus the Chinese KBs in "
        f"{SHARED_DATA}: {', '.join(REAL_KBS)}) instead of the sample's ~270: a million entries "
        "are then ~180 variants per seed, not ~3,700 (families of look-alikes far larger than "
        "real KBs have)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-date", type=date.fromisoformat, default=RUN_DATE)
    p.add_argument(
        "--profile",
        default="",
        help="comma-separated stages to run under cProfile in the first run "
        "(slows them; files next to --out)",
    )
    p.add_argument(
        "--stop-after",
        choices=["pull", "validate", "clean", "chunk"],
        help="end the first run after this stage and skip the rerun (sizes whose later stages "
        "cannot run on this machine; see run_all.py for how the rest is extrapolated)",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.entries < 1:
        p.error("--entries must be positive")
    if args.embed_sample is not None and args.embed_sample < 1:
        p.error("--embed-sample must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    embed_mode = "sample" if args.embed_sample is not None else "full" if args.embed else "none"
    out = args.out or HERE / f"results-{args.entries}.json"
    command = (
        shlex.join(["python", str(Path(sys.argv[0]))] + list(sys.argv[1:]))
        if argv is None
        else shlex.join(["python", "bench/bench_stages.py", *argv])
    )
    sample = args.sample.resolve()
    if not sample.is_dir():
        raise SystemExit(
            f"sample export {sample} not found; build it with `python examples/build_examples.py` "
            "or pass --sample DIR"
        )

    from kbflow.settings import load_settings
    from kbflow.store.home import DataHome

    keep = args.keep or args.workdir is not None
    work = (
        args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="kbflow-bench-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    export_dir = (
        work / f"export-{args.entries}-s{args.seed}{'-realistic' if args.realistic else ''}"
    )
    if args.realistic:
        sample = realistic_seeds(sample, work / "seeds-realistic")
    home_dir = work / "home"
    if home_dir.exists():
        if not (home_dir / HOME_MARKER).is_file():
            raise SystemExit(
                f"{home_dir} exists and was not made by this benchmark; refusing to delete it"
            )
        shutil.rmtree(home_dir)
    home_dir.mkdir(parents=True)
    (home_dir / HOME_MARKER).write_text(
        "data home of bench/bench_stages.py; deleted by the next run\n", encoding="utf-8"
    )
    env_overrides = sorted(k for k in os.environ if k.startswith("KBFLOW_"))
    if env_overrides:
        log.warning(
            "KBFLOW_ settings in the environment change what is measured: %s",
            ", ".join(env_overrides),
        )

    try:
        log.info("[bench] writing a %d-entry export to %s", args.entries, export_dir)
        _reset_peak()
        export = write_export(
            sample, export_dir, args.entries, seed=args.seed, run_date=args.run_date
        )
        gen_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log.info(
            "[bench] export: %s in %.1f s%s",
            export.files,
            export.seconds,
            " (reused)" if export.reused else "",
        )

        settings = load_settings(str(home_dir))  # as the flow does: KBFLOW_* env, then the home
        home = DataHome.at(settings.home)
        profile = {s.strip() for s in args.profile.split(",") if s.strip()}
        meter = Meter(profile, out.with_suffix("") if profile else None)
        out.parent.mkdir(parents=True, exist_ok=True)
        code = code_fingerprint()  # before the runs: the modules are imported as they are now
        load_start = os.getloadavg()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        first = nightly_run(
            "first",
            home,
            str(export_dir),
            settings,
            args.run_date,
            meter,
            embed_mode,
            args.embed_sample or 0,
            args.seed,
            args.stop_after,
        )
        rerun = (
            None
            if args.stop_after
            else nightly_run(
                "rerun",
                home,
                str(export_dir),
                settings,
                args.run_date,
                meter,
                embed_mode,
                args.embed_sample or 0,
                args.seed,
            )
        )
        home_bytes = sum(p.stat().st_size for p in home_dir.rglob("*") if p.is_file())
        try:
            import torch

            torch_threads: int | None = torch.get_num_threads()
        except ImportError:
            torch_threads = None
        result: dict[str, Any] = {
            "benchmark": "kbflow stage benchmark (bench/bench_stages.py)",
            "note": NOTE,
            "started_at": started,
            "command": command,
            "machine": {
                **machine_info(),
                "torch_threads": torch_threads,
                "load_avg_start": [round(x, 2) for x in load_start],
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            },
            "versions": package_versions(),
            "code": code,
            "embed_mode": embed_mode,
            "embed_sample": args.embed_sample,
            "settings": settings.model_dump(mode="json", exclude={"home"}),
            "env_overrides": env_overrides,
            "export": {
                **export.as_dict(),
                "dir": str(export_dir),
                "seeds": "realistic: sample + " + "+".join(REAL_KBS)
                if args.realistic
                else "sample",
                "generator_peak_rss_mib": round(gen_peak, 1),
            },
            "first_run": first,
            "rerun": rerun,
            "stop_after": args.stop_after,
            "rerun_ratio": round(rerun["total_wall_s"] / first["total_wall_s"], 4)
            if rerun and first["total_wall_s"]
            else None,
            "home_bytes": home_bytes,
            "workdir": str(work) if keep else None,
        }
        result["accounting"] = None if args.stop_after else accounting(result)
        result["floors"] = evaluate_floors(result)
        result["passed"] = all(f["passed"] is not False for f in result["floors"])
        out.write_text(
            json.dumps(result, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
        print(format_table(result))
        print(f"\nresults: {out}" + (f"\nworkdir kept: {work}" if keep else ""))
        return result
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res["passed"] else 1)
