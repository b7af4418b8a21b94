"""Many KBs on a work pool: ``--kbs`` small KBs (``bench/fleet_kbs.py``: copies of the samples
with edits, one whose export is broken and one whose gate blocks) through ``kb-fleet`` on a
local Prefect server's work pool, first with 1 worker and then with 2, in one run, each from
scratch (new homes, new server).

    python bench/bench_fleet.py --kbs 30 --workers 1,2 --out bench/results-fleet.json

Per worker count: the fleet run's wall time, every KB's state and run seconds, how long runs
waited for the global concurrency limits' slots and the most runs that held each limit at once
(never above its size). The ratio of wall times is the figure to read: the machine's cores
bound it (2 workers on 2 cores share them)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_kbs import run_on_pool, write_fleet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"embed": 1, "cpu": 2}
#: The per-version adapter fine-tunes the English model four times per English KB (about
#: 90 s each here; bench/bench_adapter.py measures it): off, so the figures are the fleet's.
DEFAULTS = {"adapter.mode": "off"}


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def one(kbs: int, workers: int, work: Path) -> dict[str, Any]:
    registry = write_fleet(work, kbs, limits=LIMITS, broken=3, blocked=5, defaults=DEFAULTS)
    out, wall = run_on_pool(work, registry, workers)
    report = json.loads((work / "fleet-reports" / "latest.json").read_text("utf-8"))
    slots = [
        json.loads(line)
        for path in (work / "homes").glob("*/runs/*/slots.jsonl")
        for line in path.read_text().splitlines()
    ]
    states: dict[str, int] = {}
    for row in report["kbs"]:
        states[row["state"]] = states.get(row["state"], 0) + 1
    return {
        "workers": workers,
        "exit_code": out.returncode,
        "wall_s": round(wall, 1),
        "states": states,
        "kbs": {
            r["kb"]: {"state": r["state"], "seconds": r["seconds"], "version": r["version"]}
            for r in report["kbs"]
        },
        "run_seconds_sum": round(sum(r["seconds"] or 0 for r in report["kbs"]), 1),
        "limits": {
            kind: {
                "size": LIMITS[kind],
                "held": sum(1 for s in slots if s["kind"] == kind),
                "most_at_once": most_at_once(
                    [(s["acquired"], s["released"]) for s in slots if s["kind"] == kind]
                ),
                "waited_s": round(sum(s["waited_s"] for s in slots if s["kind"] == kind), 1),
            }
            for kind in LIMITS
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kbs", type=int, default=30, help="how many KBs (default 30)")
    ap.add_argument("--workers", default="1,2", help="worker counts, in order (default 1,2)")
    ap.add_argument("--workdir", type=Path, help="where the fleets go (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-fleet.json")
    args = ap.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="kbflow-fleet-"))
    runs = []
    for n in [int(w) for w in args.workers.split(",")]:
        work = base / f"workers-{n}"
        if work.exists():
            raise SystemExit(f"{work} exists: give an empty --workdir")
        work.mkdir(parents=True)
        runs.append(one(args.kbs, n, work))
        r = runs[-1]
        print(f"{n} worker(s): {r['wall_s']} s, states {r['states']}, limits "
              f"{ {k: v['most_at_once'] for k, v in r['limits'].items()} }", flush=True)  # fmt: skip
    result: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "kbs": args.kbs,
        "limits": LIMITS,
        "defaults": DEFAULTS,
        "runs": runs,
    }
    if len(runs) >= 2:
        result["speedup"] = round(runs[0]["wall_s"] / runs[-1]["wall_s"], 2)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}" + (f"; speedup {result['speedup']}x" if "speedup" in result else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
