"""The per-version adapter, measured: every set with a golden file built twice in one run, with
``adapter.mode=off`` and with the default (``auto``), test split scored as ``kbflow eval`` does
(fused, the version's own query encoder, adapter included).

    python bench/bench_adapter.py --out bench/results-adapter.json [--sets clinc150,hwu64] [--workdir DIR]

Writes the JSON (per set: both builds' metrics, build seconds, the adapter's decision and
figures, the difference) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_retrieval import ROOT, available_sets, build, score  # noqa: E402

MODES = ("off", "auto")


def run_set(name: str, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        t0 = time.perf_counter()
        summary = build(name, work / f"{name}-{mode}", adapter=mode)
        out[mode] = {
            "status": summary["status"],
            "build_s": round(time.perf_counter() - t0, 1),
            **score(name, work / f"{name}-{mode}"),
        }
    off, on = out["off"]["fused"], out["auto"]["fused"]
    out["delta"] = {
        k: round(on[k] - off[k], 4) for k in ("hit@1", "hit@3", "mrr") if k in on and k in off
    }
    if "handoff" in on and "handoff" in off:
        out["delta"]["auroc"] = round(on["handoff"]["auroc"] - off["handoff"]["auroc"], 4)
    out["delta"]["build_s"] = round(out["auto"]["build_s"] - out["off"]["build_s"], 1)
    return out


def cost(entries: int, questions: int = 3, dim: int = 384, seed: int = 0) -> dict[str, Any]:
    """Time and peak memory of training and judging a linear adapter (what ``auto`` picks above
    ``adapter.finetune_max_passages``) for a KB of ``entries`` entries with one answer passage
    and ``questions`` similar questions each. Vectors are random unit vectors with each entry's
    passages near a shared centre (the cost does not depend on what they mean); run in a child
    process so that its peak RSS is its own."""
    import resource

    import numpy as np

    from kbflow.index.adapter import fit_adapter
    from kbflow.settings import AdapterSettings

    rng = np.random.default_rng(seed)
    per = questions + 1
    centre = rng.normal(size=(entries, dim)).astype(np.float32)
    vecs = np.repeat(centre, per, axis=0) + rng.normal(size=(entries * per, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ents = [f"e{i}" for i in range(entries) for _ in range(per)]
    kinds = ["answer" if j == 0 else "question" for _ in range(entries) for j in range(per)]
    texts = [f"e{i} q{j} {rng.integers(10**9)}" for i in range(entries) for j in range(per)]
    ids = [f"e{i}:{j}" for i in range(entries) for j in range(per)]
    info = {"model": "m", "dim": dim, "full_dim": dim, "model_key": f"m@{dim}"}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit_adapter(
            texts, ents, kinds, ids, vecs, info, AdapterSettings(mode="linear"), Path(tmp)
        )
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    w = np.eye(dim, dtype=np.float32)
    q = vecs[:1]
    t1 = time.perf_counter()
    for _ in range(1000):
        q @ w.T
    per_query_us = (time.perf_counter() - t1) * 1000
    return {
        "entries": entries,
        "passages": len(texts),
        "question_groups": fitted.report.get("question_groups"),
        "fit_s": round(seconds, 1),
        "peak_rss_mib": round(peak),
        "rss_before_mib": round(before),
        "vectors_mib": round(vecs.nbytes / 2**20),
        "adapter_file_kib": round(dim * dim * 4 / 1024),
        "query_overhead_us": round(per_query_us, 1),
        "kept": fitted.report.get("kept"),
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| set | model | adapter | hit@1 off → on | hit@3 | MRR | hand-off AUROC | build s off / on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        off, on = r["off"]["fused"], r["auto"]["fused"]
        ad = r["auto"].get("adapter") or {}
        kept = f"{ad.get('kind')} {'kept' if ad.get('kept') else 'refused'}"
        auroc = f"{off['handoff']['auroc']} → {on['handoff']['auroc']}" if "handoff" in on else "–"
        lines.append(
            f"| {name} | {r['auto']['model']} | {kept} | {off['hit@1']} → {on['hit@1']} "
            f"({r['delta']['hit@1'] * 100:+.2f}) | {off['hit@3']} → {on['hit@3']} "
            f"| {off['mrr']} → {on['mrr']} | {auroc} | {r['off']['build_s']} / {r['auto']['build_s']} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sets", help="comma-separated set names (default: every set with a golden file)"
    )
    ap.add_argument("--workdir", type=Path, help="where the data homes go (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-adapter.json")
    ap.add_argument(
        "--cost",
        help="comma-separated KB sizes (entries) to measure the linear adapter's cost at, "
        "instead of the sets; writes to --out",
    )
    ap.add_argument("--cost-one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cost_one:
        print(json.dumps(cost(args.cost_one)))
        return 0
    if args.cost:
        import subprocess

        out = {}
        for n in (int(x) for x in args.cost.split(",")):
            child = subprocess.run(
                [sys.executable, __file__, "--cost-one", str(n)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            out[str(n)] = json.loads(child.stdout.strip().splitlines()[-1])
            print(json.dumps(out[str(n)]), file=sys.stderr, flush=True)
            args.out.write_text(json.dumps(out, indent=2))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets = args.sets.split(",") if args.sets else available_sets()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kbflow-adapter-"))
    results: dict[str, Any] = {}
    for name in sets:
        results[name] = run_set(name, work)
        print(f"{name}: {json.dumps(results[name]['delta'])}", file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
