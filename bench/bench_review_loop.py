"""The review loop measured end to end (issue 17): does a week of users' clicks, mined and
accepted, make the next morning's index better on questions it has never seen?

For each set (the bundled sample ``kb_zh``, and ``clinc150`` and ``hwu64`` from ../shared/data,
never copied into the repo; a set whose folder is absent is skipped with the reason), in a fresh
data home under ``--workdir``, through the real command line (``python -m kbflow.cli``, each
command its own process, as an operator runs them):

1. ``kbflow nightly`` on the set's export, run date 2026-11-24 (its golden.jsonl beside the
   export is picked up: the non-test splits calibrate the version and the gate scores it);
2. ``kbflow eval --split test``: hit@1, hit@3, MRR, hand-off AUROC (*before*); and
   ``--split valid``, the questions the week will ask (their hit@3 bounds what users who
   click only in the top 3 can teach the index);
3. ``kbflow simulate-logs --split valid --week 2026-W48``: every valid query as one week of
   SIMULATED traffic (``kbflow.mining.simulate.simulate_split_traffic``: each query in 1 to 5
   sessions, P(k) proportional to 1/k^1.5, seeded; users click the right entry only when it is
   in their top 3, with probability 1.0 / 0.6 / 0.35 by rank, never another entry);
4. ``kbflow mine --week 2026-W48``: the review queue;
5. every similar-question and confusion suggestion in the queue accepted (the kinds the
   overlay applies; ``kbflow.mining.suggest.decide``, in process: one ``kbflow review decide``
   process per suggestion would only add start-up time); all of them met the default evidence
   rule (``mining.suggest_min_sessions``: 2 distinct sessions) or they would not be in the
   queue; suggestions of other kinds, if any, are counted and left open;
6. ``kbflow nightly`` again on the same export, run date 2026-12-01: the overlay adds the
   accepted questions; the run must publish and its manifest's ``overlay`` says how many applied;
7. ``kbflow eval --split test`` and ``--split valid`` again (*after*): the test split says
   what the loop did for questions nobody asked yet, the valid split for the week's own.

    python bench/bench_review_loop.py [--sets kb_zh,clinc150,hwu64] [--seed 0]
        [--workdir bench/.work/review-loop] [--out bench/results-review-loop.json]

Writes the JSON after each set (a long run stopped midway keeps what it measured) and prints a
markdown table. Nothing is asserted here (tests/flows/test_review_loop.py asserts); each set's
``checks`` say whether hit@1 rose by at least 3 points and the hand-off AUROC did not fall.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {
    "kb_zh": ROOT / "examples" / "kb_zh",
    "clinc150": DATA / "clinc150",
    "hwu64": DATA / "hwu64",
}
WEEK = "2026-W48"  # Mon 2026-11-23 .. Sun 2026-11-29, Asia/Shanghai
BEFORE_DATE = "2026-11-24"
AFTER_DATE = "2026-12-01"
REVIEWER = "bench-review-loop"
#: The suggestion kinds whose accepted text the next nightly adds as a similar question.
OVERLAY_KINDS = ("similar_question", "confusion")
MIN_GAIN_POINTS = 3.0


def kbflow(args: list[str], work: Path) -> tuple[dict[str, Any], float]:
    """Run one ``kbflow`` command with ``--json``; its parsed output and wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBFLOW_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        }
    )
    cmd = [sys.executable, "-m", "kbflow.cli", *args, "--json"]
    start = time.perf_counter()
    # cwd outside the checkout: ``python -m`` puts the cwd first on sys.path, and a frozen copy
    # of the code on PYTHONPATH (run_all.py) must not be shadowed by the working tree
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, cwd=work)
    seconds = round(time.perf_counter() - start, 1)
    # nightly exits 3 when the gate blocks: still a JSON summary, recorded as such
    if out.returncode not in (0, 3) or not out.stdout.strip():
        raise RuntimeError(
            f"kbflow {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}"
        )
    return json.loads(out.stdout), seconds


def metrics(res: dict[str, Any]) -> dict[str, Any]:
    handoff = res.get("handoff") or {}
    return {
        "n": res["n"],
        "n_out_of_scope": res["n_out_of_scope"],
        "hit@1": res["hit@1"],
        "hit@3": res["hit@3"],
        "mrr": res["mrr"],
        # None where the split has no out-of-scope queries (hwu64): nothing to separate
        "auroc": handoff.get("auroc"),
        "handoff_threshold": handoff.get("threshold"),
    }


def handoffs(home: Path, golden: Path) -> dict[str, Any]:
    """The live version's hand-offs on the test split at its own calibrated threshold, as
    ``kbflow serve`` would answer (fused top score under the threshold): the share of answerable
    queries handed off, and of out-of-scope ones (None without any). In process: ``kbflow
    eval`` reports these only for a split with out-of-scope queries, and the threshold moves
    when the overlay adds questions (it is calibrated on held-out similar questions)."""
    import numpy as np

    from kbflow.embed.adapter import make_version_embedder
    from kbflow.index.bm25 import tokenize
    from kbflow.index.version import LoadedVersion
    from kbflow.settings import EmbedSettings
    from kbflow.store.golden import load_golden
    from kbflow.store.versions import live_version_dir

    version = LoadedVersion(live_version_dir(home / "indexes"))
    embedder = make_version_embedder(EmbedSettings(), version.embedding)
    queries = load_golden(golden, "test")
    vectors = embedder.embed_queries([q.query for q in queries])
    handed = {True: 0, False: 0}
    total = {True: 0, False: 0}
    for q, vec in zip(queries, vectors, strict=True):
        scores = version.fuse(version.candidates(vec, tokenize(q.query), n=50), None)
        top = float(np.max(scores)) if len(scores) else 0.0
        total[bool(q.expected)] += 1
        handed[bool(q.expected)] += top < version.threshold
    return {
        "threshold": round(version.threshold, 4),
        "answerable_handed_off": round(handed[True] / total[True], 4) if total[True] else None,
        "out_of_scope_handed_off": round(handed[False] / total[False], 4) if total[False] else None,
    }


def manifest(home: Path, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (home / "indexes" / version / "manifest.json").read_text(encoding="utf-8")
    )
    return data


def accept_all(logs: Path) -> dict[str, Any]:
    """Accept every open suggestion of ``OVERLAY_KINDS``; counts by kind, the evidence they had,
    and the open suggestions of other kinds (left alone)."""
    from kbflow.mining.suggest import decide, review_queue

    by_kind: dict[str, int] = {}
    other: dict[str, int] = {}
    sessions: list[int] = []
    for s in review_queue(logs, open_only=True):
        if s["kind"] not in OVERLAY_KINDS:
            other[s["kind"]] = other.get(s["kind"], 0) + 1
            continue
        decide(logs, s["suggestion_id"], "accept", REVIEWER)
        by_kind[s["kind"]] = by_kind.get(s["kind"], 0) + 1
        sessions.append(int(s["n_sessions"]))
    return {
        "accepted": len(sessions),
        "by_kind": by_kind,
        "other_kinds_left_open": other,
        "min_sessions": min(sessions, default=None),
        "mean_sessions": round(sum(sessions) / len(sessions), 2) if sessions else None,
    }


def run_set(name: str, work: Path, seed: int) -> dict[str, Any]:
    folder = SETS[name]
    export, golden = folder / "export", folder / "golden.jsonl"
    home = work / name
    shutil.rmtree(home, ignore_errors=True)
    h = ["--home", str(home)]
    seconds: dict[str, float] = {}

    def step(label: str, args: list[str]) -> dict[str, Any]:
        out, seconds[label] = kbflow(args, work)
        print(f"  {name}: {label} {seconds[label]} s", file=sys.stderr, flush=True)
        return out

    first = step("nightly_before", ["nightly", *h, "--source", str(export),
                                    "--run-date", BEFORE_DATE])  # fmt: skip
    if first["status"] != "published":
        raise RuntimeError(f"{name}: the first nightly did not publish: {first}")
    test = ["eval", *h, "--golden", str(golden), "--split", "test"]
    valid = ["eval", *h, "--golden", str(golden), "--split", "valid"]
    before = metrics(step("eval_before", test))
    valid_before = metrics(step("eval_valid_before", valid))
    start = time.perf_counter()
    handoff_before = handoffs(home, golden)
    seconds["handoffs_before"] = round(time.perf_counter() - start, 1)
    traffic = step("simulate", ["simulate-logs", *h, "--week", WEEK, "--split", "valid",
                                "--golden", str(golden), "--seed", str(seed)])  # fmt: skip
    mined = step("mine", ["mine", *h, "--week", WEEK])
    start = time.perf_counter()
    accepted = accept_all(home / "logs.duckdb")
    seconds["accept"] = round(time.perf_counter() - start, 1)
    second = step("nightly_after", ["nightly", *h, "--source", str(export),
                                    "--run-date", AFTER_DATE])  # fmt: skip
    after = metrics(step("eval_after", test))
    valid_after = metrics(step("eval_valid_after", valid))
    start = time.perf_counter()
    handoff_after = handoffs(home, golden)
    seconds["handoffs_after"] = round(time.perf_counter() - start, 1)
    m1 = manifest(home, first["version"])
    m2 = manifest(home, second["version"]) if second.get("version") else {}
    gain = round(100 * (after["hit@1"] - before["hit@1"]), 2)
    auroc_ok = None if before["auroc"] is None else after["auroc"] >= before["auroc"]
    calibration_keys = ("dense_weight", "handoff_threshold", "threshold_method", "golden_queries")
    return {
        "model": m1["embedding"]["model_key"],
        "versions": [first["version"], second.get("version")],
        "nightly_after": {k: second.get(k) for k in ("status", "message", "embedded", "cached")},
        "traffic": {k: v for k, v in traffic.items() if k not in ("logs", "week")},
        "mined": {
            "searches": mined["metrics"]["n_queries"],
            "clicks": mined["metrics"]["n_clicks"],
            "suggestions": mined.get("suggestions"),
        },
        **accepted,
        "overlay": m2.get("overlay"),
        "passages": [m1["counts"]["passages"], (m2.get("counts") or {}).get("passages")],
        "calibration": {
            "before": {k: m1["calibration"].get(k) for k in calibration_keys},
            "after": {k: (m2.get("calibration") or {}).get(k) for k in calibration_keys},
        },
        "before": before,
        "after": after,
        "hit@1_gain_points": gain,
        "valid": {"before": valid_before, "after": valid_after},
        "handoffs": {"before": handoff_before, "after": handoff_after},
        "checks": {
            f"hit@1 +{MIN_GAIN_POINTS:g} points": gain >= MIN_GAIN_POINTS,
            "auroc not lower": auroc_ok,
            "published with the overlay": second.get("status") == "published"
            and bool((m2.get("overlay") or {}).get("applied")),
        },
        "seconds": seconds,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| set | test queries | hit@1 before → after | hit@3 | MRR | hand-off AUROC | "
        "valid queries (2+ sessions / clicked in 2+) | valid hit@1 (hit@3 before) | "
        "accepted (similar / confusion) | overlay applied | loop s |",
        "|---|---:|---|---|---|---|---|---|---|---:|---:|",
    ]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * 9)
            continue
        b, a, t, k = r["before"], r["after"], r["traffic"], r["by_kind"]
        vb, va = r["valid"]["before"], r["valid"]["after"]

        def pair(key: str, b: dict[str, Any] = b, a: dict[str, Any] = a) -> str:
            return "–" if b[key] is None else f"{b[key]} → {a[key]}"

        lines.append(
            f"| {name} | {b['n']} (+{b['n_out_of_scope']} OOS) | {pair('hit@1')} "
            f"({r['hit@1_gain_points']:+} pts) | {pair('hit@3')} | {pair('mrr')} | "
            f"{pair('auroc')} | {t['queries']} ({t['repeated']} / {t['clicked_in_2_sessions']}) "
            f"| {vb['hit@1']} → {va['hit@1']} ({vb['hit@3']}) | {r['accepted']} ({k.get('similar_question', 0)} / {k.get('confusion', 0)}) | "
            f"{(r['overlay'] or {}).get('applied')} | {sum(r['seconds'].values()):.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--seed", type=int, default=0, help="the simulated traffic's seed")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".work" / "review-loop")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-review-loop.json")
    a = ap.parse_args()
    names = a.sets.split(",")
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        ap.error(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    doc: dict[str, Any] = {
        "command": "python bench/bench_review_loop.py " + " ".join(sys.argv[1:]),
        "week": WEEK,
        "run_dates": [BEFORE_DATE, AFTER_DATE],
        "seed": a.seed,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "sets": results,
    }
    for name in names:
        if not (SETS[name] / "golden.jsonl").is_file():
            results[name] = {"skipped": f"{SETS[name]} is absent (../shared/data beside the repo)"}
            print(f"{name}: skipped, {results[name]['skipped']}", file=sys.stderr, flush=True)
        else:
            print(f"{name}: the loop in {work / name}", file=sys.stderr, flush=True)
            results[name] = run_set(name, work, a.seed)
            r = results[name]
            print(
                f"{name}: hit@1 {r['before']['hit@1']} -> {r['after']['hit@1']} "
                f"({r['hit@1_gain_points']:+} points), AUROC {r['before']['auroc']} -> "
                f"{r['after']['auroc']}; {r['accepted']} accepted, overlay {r['overlay']}",
                file=sys.stderr,
                flush=True,
            )
        a.out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
