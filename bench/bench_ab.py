#!/usr/bin/env python
"""The stage benchmark of two versions of the code, alternated in one run.

    python bench/bench_ab.py --baseline REF [--entries 10000] [--pairs 2] [--out JSON]

Runs ``bench_stages.py --entries N --no-embed`` (every stage real, the vectors synthetic: the
code under test is the pipeline, not the model) on one synthetic export, with ``REF``'s code and
its own ``bench_stages.py`` (extracted like ``run_all.py`` does), and with the working tree,
alternating (baseline, current, current, baseline, ...) ``--pairs`` times, each in a fresh
child process and data home. Reports the median per-stage wall seconds of each side and their
ratios, current / baseline: a change that should not change speed (a refactor) shows ratios
within the spread of the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def run_side(
    code: Path, bench: Path, entries: int, work: Path, out: Path, label: str
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBFLOW_")}
    env["KBFLOW_BENCH_CODE"] = label
    env["PYTHONPATH"] = os.pathsep.join([str(code / "src"), str(code)])
    env["HF_HUB_OFFLINE"] = "1"
    shutil.rmtree(work / "home", ignore_errors=True)
    cmd = [sys.executable, str(bench / "bench_stages.py"), "--entries", str(entries),
           "--no-embed", "--workdir", str(work), "--out", str(out), "--log-level", "WARNING"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):  # 1: one of bench_stages' own floors failed
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-3000:]}")
    res = json.loads(out.read_text(encoding="utf-8"))
    first = res["first_run"]
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "total_s": first["total_wall_s"],
        "stages": {s["stage"]: s["wall_s"] for s in first["stages"] if not s.get("not_a_stage")},
        "status": first["status"],
        "code": res.get("code", {}).get("source"),
    }


def main() -> int:
    from run_all import extract_code

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git ref of the code to compare with")
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results-ab.json")
    a = ap.parse_args()
    work = (a.workdir or Path(tempfile.mkdtemp(prefix="kbflow-ab-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = extract_code(work, a.baseline)
    sides = {"baseline": (base, base / "bench"), "current": (ROOT, HERE)}
    names = {"baseline": f"git {base.name.removeprefix('code-')}", "current": "working tree"}
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
    for i in range(a.pairs):
        for label in ("baseline", "current") if i % 2 == 0 else ("current", "baseline"):
            code, bench = sides[label]
            side_work = work / label
            side_work.mkdir(exist_ok=True)
            r = run_side(
                code, bench, a.entries, side_work, side_work / f"run-{i}.json", names[label]
            )
            runs[label].append(r)
            print(f"{label} #{i + 1}: {r['total_s']} s ({r['status']})", flush=True)
    stages = [
        s
        for s in runs["current"][0]["stages"]
        if all(s in r["stages"] for rs in runs.values() for r in rs)
    ]
    med = {
        label: {s: round(statistics.median(r["stages"][s] for r in rs), 3) for s in stages}
        | {"total": round(statistics.median(r["total_s"] for r in rs), 3)}
        for label, rs in runs.items()
    }
    ratios = {s: round(med["current"][s] / med["baseline"][s], 3) if med["baseline"][s] else None
              for s in [*stages, "total"]}  # fmt: skip
    result = {
        "command": "python bench/bench_ab.py " + " ".join(sys.argv[1:]),
        "baseline": a.baseline,
        "entries": a.entries,
        "pairs": a.pairs,
        "load_avg": os.getloadavg(),
        "runs": runs,
        "median_s": med,
        "current_vs_baseline": ratios,
    }
    a.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    for s in [*stages, "total"]:
        print(
            f"{s:>16}: baseline {med['baseline'][s]:>8} s  current {med['current'][s]:>8} s  ratio {ratios[s]}"
        )
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
