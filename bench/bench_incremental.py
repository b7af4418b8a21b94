#!/usr/bin/env python
"""Incremental reruns of kb-nightly: what a night costs when little changed.

    python bench/bench_incremental.py --entries 100000 [--full-embed-sample 1000]
        [--embed-cap 3000] [--workdir DIR] [--out bench/results-incremental-100000.json]

One data home, five nightly runs in a row, each through ``bench_stages.nightly_run`` (our stage
functions in flows/nightly.py's order, no Prefect):

1. ``full``: the synthetic export (``synth_export.write_export``) on an empty home. Its embed
   stage is EXTRAPOLATED from ``--full-embed-sample`` passages embedded for real (the rest get
   synthetic vectors, as ``bench_stages.py --embed-sample``); every other stage is measured.
2. ``no_change``: the same export again (a new run id): must end ``unchanged``, embed nothing.
3. ``changed_1pct``: 1% of the records' answers edited (``synth_export.derive_export``).
4. ``changed_10pct``: 10% more edited, on top of the 1% export.
5. ``deleted_one``: the 10% export less one entry.

Runs 3-5 embed what the cache lacks. When that is at most ``--embed-cap`` texts, all of them go
through the real model (measured: the figure is model load + embedding + the rest, as in a real
run); above the cap, ``--embed-cap`` of them are embedded for real and the rest extrapolated
(marked). For each run: wall time (total and per stage), passages, texts embedded, and the
ratios against the full run. Floors: no change <= 10% of the full run's time and 0 embedded;
1% changed embeds <= 1.5% of the full run's passages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import bench_stages as bs  # noqa: E402
from synth_export import derive_export, write_export  # noqa: E402

log = logging.getLogger("bench.incremental")

FLOOR_NO_CHANGE_RATIO = 0.10  # no-change rerun wall time / full build wall time
FLOOR_1PCT_EMBED_SHARE = 0.015  # texts embedded by the 1% run / passages of the full build
FLOOR_1PCT_WALL_S = 60.0  # 1% changed at 100k: wall seconds apart from the embed stage (issue 19)
FLOOR_NO_CHANGE_S = 16.0  # no-change rerun at 100k: wall seconds
FLOOR_PEAK_MIB = 3072.0  # peak RSS of any nightly run at 100k entries (issue 19: <= 3 GB)
FLOORS_AT = 100_000  # the absolute floors are judged at this size or above

#: (scenario, share of records edited, records deleted), applied to the previous scenario's export.
SCENARIOS: list[tuple[str, float, int]] = [
    ("no_change", 0.0, 0),
    ("changed_1pct", 0.01, 0),
    ("changed_10pct", 0.10, 0),
    ("deleted_one", 0.0, 1),
]


def _passages(run: dict[str, Any]) -> int | None:
    for s in run["stages"]:
        if s["stage"] == "chunk":
            return int(s["summary"]["passages"])
    return None


def _texts_embedded(run: dict[str, Any]) -> int:
    """Texts this run had to embed: with a bench prefill, the prefill's count (the stage then
    finds them cached); otherwise the embed stage's own count."""
    pre = run.get("prefill")
    return int(pre["to_embed"]) if pre else int(run.get("embedded") or 0)


def _summarise(name: str, run: dict[str, Any], full: dict[str, Any] | None) -> dict[str, Any]:
    pre = run.get("prefill")
    all_real = bool(pre) and pre.get("sampled") == pre.get("to_embed")
    out: dict[str, Any] = {
        "scenario": name,
        "status": run["status"],
        "total_wall_s": run["total_wall_s"],
        "total_extrapolated": run["total_extrapolated"] and not all_real,
        "passages": _passages(run),
        "texts_embedded": _texts_embedded(run),
        "texts_embedded_for_real": (pre or {}).get("sampled", run.get("embedded") or 0),
        "stages": {s["stage"]: s["wall_s"] for s in run["stages"] if not s.get("not_a_stage")},
        "peak_rss_mib": max(s["peak_rss_mib"] for s in run["stages"]),
        "peak_stage": max(run["stages"], key=lambda s: s["peak_rss_mib"])["stage"],
    }
    if run.get("index_build"):
        out["index_build"] = run["index_build"]
        out["calibration_reused"] = run.get("calibration_reused", False)
    if all_real and pre["to_embed"]:
        out["note"] = (
            f"all {pre['to_embed']} texts embedded for real in the bench prefill; the embed "
            "row is prefill time + model load + the stage's own (cached) pass: measured"
        )
    if full is not None:
        out["time_vs_full"] = round(run["total_wall_s"] / full["total_wall_s"], 4)
        fp = _passages(full) or 0
        out["embedded_vs_full_passages"] = round(out["texts_embedded"] / fp, 5) if fp else None
        ft = _texts_embedded(full)
        out["embedded_vs_full_embedded"] = round(out["texts_embedded"] / ft, 5) if ft else None
    return out


def evaluate_floors(
    scen: dict[str, dict[str, Any]], mode: str, entries: int = FLOORS_AT
) -> list[dict[str, Any]]:
    floors: list[dict[str, Any]] = []
    nc = scen.get("no_change")
    at_size = entries >= FLOORS_AT
    if nc:
        floors.append(
            {
                "name": "no-change rerun wall seconds",
                "value": nc["total_wall_s"],
                "limit": FLOOR_NO_CHANGE_S,
                "passed": nc["total_wall_s"] <= FLOOR_NO_CHANGE_S if at_size else None,
                "note": "" if at_size else f"judged at >= {FLOORS_AT:,} entries",
            }
        )
        judged = mode != "none"
        floors.append(
            {
                "name": "no-change rerun / full build wall time",
                "value": nc["time_vs_full"],
                "limit": FLOOR_NO_CHANGE_RATIO,
                "passed": nc["time_vs_full"] <= FLOOR_NO_CHANGE_RATIO if judged else None,
                "note": "full build total includes an EXTRAPOLATED embed stage"
                if judged
                else "not judged: --no-embed, the full build's embedding was not measured",
            }
        )
        floors.append(
            {
                "name": "no-change rerun embeds no passage",
                "value": nc["texts_embedded"],
                "limit": 0,
                "passed": nc["texts_embedded"] == 0 and nc["status"] == "unchanged",
                "note": f"status {nc['status']!r}",
            }
        )
    one = scen.get("changed_1pct")
    if one:
        floors.append(
            {
                "name": "1% changed: texts embedded / full build passages",
                "value": one["embedded_vs_full_passages"],
                "limit": FLOOR_1PCT_EMBED_SHARE,
                "passed": one["embedded_vs_full_passages"] <= FLOOR_1PCT_EMBED_SHARE,
                "note": f"{one['texts_embedded']} texts of {scen['full']['passages']} passages",
            }
        )
        rest = round(one["total_wall_s"] - one["stages"].get("embed", 0.0), 3)
        floors.append(
            {
                "name": "1% changed: wall seconds apart from embedding its new texts",
                "value": rest,
                "limit": FLOOR_1PCT_WALL_S,
                "passed": rest <= FLOOR_1PCT_WALL_S if at_size else None,
                "note": f"index build {one.get('index_build', {}).get('mode', '?')}"
                + ("" if at_size else f"; judged at >= {FLOORS_AT:,} entries"),
            }
        )
    if scen:
        name, worst = max(scen.items(), key=lambda kv: kv[1]["peak_rss_mib"])
        floors.append(
            {
                "name": "peak RSS of a nightly run, MiB",
                "value": worst["peak_rss_mib"],
                "limit": FLOOR_PEAK_MIB,
                "passed": worst["peak_rss_mib"] <= FLOOR_PEAK_MIB if at_size else None,
                "note": f"the {name} run, in its {worst.get('peak_stage', '?')} stage (max over "
                "the runs; ru_maxrss reset before each stage)"
                + ("" if at_size else f"; judged at >= {FLOORS_AT:,} entries"),
            }
        )
    return floors


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"kbflow incremental reruns: {result['entries']:,} entries "
        f"(full build embed extrapolated from {result['full_embed_sample']} texts)",
        "",
        f"{'scenario':<14} {'status':<10} {'wall s':>10} {'vs full':>8} {'passages':>9} "
        f"{'embedded':>9} {'real':>6} {'emb/full passages':>18}",
    ]
    for name, s in result["scenarios"].items():
        build = s.get("index_build") or {}
        lines.append(
            f"{name:<14} {s['status']:<10} {s['total_wall_s']:>10,.1f}"
            f"{'*' if s['total_extrapolated'] else ' '}"
            f"{s.get('time_vs_full', 1.0):>7.4f} {s['passages'] or 0:>9,} {s['texts_embedded']:>9,} "
            f"{s['texts_embedded_for_real']:>6,} {s.get('embedded_vs_full_passages', 1.0):>18.5f}"
            + (f"  index {build['mode']} ({build.get('reason', '')})" if build else "")
        )
    lines.append("* includes an EXTRAPOLATED embed stage")
    lines.append("")
    for f in result["floors"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[f["passed"]]
        lines.append(f"  [{mark}] {f['name']}: {f['value']} (limit {f['limit']})")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--full-embed-sample", type=int, default=1000, metavar="K")
    p.add_argument("--embed-cap", type=int, default=3000, metavar="C")
    p.add_argument(
        "--no-embed",
        action="store_true",
        help="synthetic vectors everywhere (quick checks: times then exclude embedding)",
    )
    p.add_argument("--out", type=Path)
    p.add_argument("--workdir", type=Path, help="export and home go there and are kept")
    p.add_argument("--sample", type=Path, default=bs.DEFAULT_SAMPLE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-date", type=date.fromisoformat, default=bs.RUN_DATE)
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    if a.entries < 100:
        p.error("--entries must be at least 100 (1% of it must be a record)")
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    out = args.out or HERE / f"results-incremental-{args.entries}.json"
    command = shlex.join(
        ["python", "bench/bench_incremental.py", *(sys.argv[1:] if argv is None else argv)]
    )
    from kbflow.settings import load_settings
    from kbflow.store.home import DataHome

    keep = args.workdir is not None
    work = (
        args.workdir.resolve()
        if args.workdir
        else Path(tempfile.mkdtemp(prefix="kbflow-bench-incr-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    home_dir = work / "home"
    if home_dir.exists():
        if not (home_dir / bs.HOME_MARKER).is_file():
            raise SystemExit(f"{home_dir} exists and was not made by a benchmark; not deleting it")
        shutil.rmtree(home_dir)
    home_dir.mkdir(parents=True)
    (home_dir / bs.HOME_MARKER).write_text("data home of bench/bench_incremental.py\n")
    try:
        base = work / f"export-{args.entries}-s{args.seed}"
        export = write_export(
            args.sample.resolve(), base, args.entries, seed=args.seed, run_date=args.run_date
        )
        settings = load_settings(str(home_dir))
        home = DataHome.at(settings.home)
        meter = bs.Meter(set(), None)
        load_start = os.getloadavg()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        log.info("[incremental] full build of %d entries", args.entries)
        runs: dict[str, dict[str, Any]] = {}
        mode = "none" if args.no_embed else "sample"
        runs["full"] = bs.nightly_run(
            "full", home, str(base), settings, args.run_date, meter, mode,
            args.full_embed_sample, args.seed,
        )  # fmt: skip
        derived: dict[str, Any] = {}
        current = base
        for i, (name, change, delete) in enumerate(SCENARIOS):
            if change or delete:
                nxt = work / f"export-{args.entries}-s{args.seed}-{name}"
                stats = derive_export(current, nxt, change, delete, seed=args.seed + i)
                derived[name] = stats.as_dict()
                current = nxt
            log.info("[incremental] %s", name)
            runs[name] = bs.nightly_run(
                name, home, str(current), settings, args.run_date, meter, mode,
                args.embed_cap, args.seed + 100 + i,
            )  # fmt: skip
        scenarios = {"full": _summarise("full", runs["full"], None)}
        for name, *_ in SCENARIOS:
            scenarios[name] = _summarise(name, runs[name], runs["full"])
        for name, stats in derived.items():
            scenarios[name]["derived_export"] = stats
        result: dict[str, Any] = {
            "benchmark": "kbflow incremental reruns (bench/bench_incremental.py)",
            "note": bs.NOTE,
            "started_at": started,
            "command": command,
            "entries": args.entries,
            "full_embed_sample": args.full_embed_sample,
            "embed_cap": args.embed_cap,
            "embed_mode": mode,
            "machine": {
                **bs.machine_info(),
                "load_avg_start": [round(x, 2) for x in load_start],
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            },
            "versions": bs.package_versions(),
            "code": bs.code_fingerprint(),
            "export": export.as_dict(),
            "scenarios": scenarios,
            "runs": runs,
        }
        result["floors"] = evaluate_floors(scenarios, mode, args.entries)
        result["passed"] = all(f["passed"] is not False for f in result["floors"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(result, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
        print(format_table(result))
        print(f"\nresults: {out}")
        return result
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    res = main()
    sys.exit(0 if res["passed"] else 1)
