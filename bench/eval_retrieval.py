"""Retrieval quality of the embedded default on every public set with a golden file.

For each set under ``../shared/data`` (never copied into the repo), and the bundled samples
(``kb_zh``, ``kb_en`` from examples/): run ``kbflow nightly`` on its export into a fresh data
home (golden.jsonl beside the export is picked up, so its non-test splits calibrate the
version; ``embed.model`` is ``auto`` unless ``--model`` names one), then score the test split
fused, dense-only and BM25-only, the queries embedded with the version's own model: hit@1/@3/@10,
MRR, and the hand-off AUROC / precision / recall at the calibrated threshold.

    python bench/eval_retrieval.py --out bench/results-eval.json [--sets clinc150,bq,kb_zh] [--workdir DIR] [--model NAME]

Writes the JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FLOORS = {
    "clinc150": {"hit@1": 0.80, "auroc": 0.85},
    "banking77": {"hit@1": 0.78},
    "bq": {"hit@3": 0.28},
    "esun_faq": {"hit@1": 0.82},
    "kb_zh": {"hit@1": 0.78},
}


SAMPLES = {"kb_zh": ROOT / "examples" / "kb_zh", "kb_en": ROOT / "examples" / "kb_en"}


def set_dir(name: str) -> Path:
    return SAMPLES.get(name, DATA / name)


def available_sets() -> list[str]:
    shared = (
        sorted(p.name for p in DATA.iterdir() if (p / "golden.jsonl").is_file())
        if DATA.is_dir()
        else []
    )
    return shared + [n for n, p in SAMPLES.items() if (p / "golden.jsonl").is_file()]


def build(
    name: str, home: Path, model: str | None = None, adapter: str | None = None
) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if model:
        env["KBFLOW_EMBED__MODEL"] = model
    if adapter:
        env["KBFLOW_ADAPTER__MODE"] = adapter
    cmd = [
        sys.executable, "-m", "kbflow.cli", "nightly", "--home", str(home),
        "--source", str(set_dir(name) / "export"), "--run-date", "2026-11-24", "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode not in (0, 3):
        raise RuntimeError(f"nightly on {name} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def score(name: str, home: Path) -> dict[str, Any]:
    from kbflow.embed.adapter import make_version_embedder
    from kbflow.gate.evaluate import evaluate
    from kbflow.index.version import LoadedVersion
    from kbflow.settings import EmbedSettings
    from kbflow.store.golden import load_golden
    from kbflow.store.versions import live_version_dir

    version = LoadedVersion(live_version_dir(home / "indexes"))
    info = version.manifest["embedding"]
    embedder = make_version_embedder(EmbedSettings(), version.embedding)
    queries = load_golden(set_dir(name) / "golden.jsonl", "test")
    start = time.perf_counter()
    vectors = embedder.embed_queries([q.query for q in queries])
    embed_s = time.perf_counter() - start
    res: dict[str, Any] = {
        "model": info["model_key"],
        "model_choice": (info.get("choice") or {}).get("reason"),
        "n_test": len(queries),
        "query_embed_s": round(embed_s, 1),
    }
    for mode, weight, vecs in (
        ("fused", None, vectors),
        ("dense", 1.0, vectors),
        ("bm25", 0.0, None),
    ):
        m = evaluate(version, queries, vecs, weight=weight)
        m.pop("failures")
        res[mode] = m
    res["adapter"] = version.manifest.get("adapter")
    cal = version.manifest.get("calibration", {})
    res["calibration"] = {
        k: cal.get(k)
        for k in (
            "dense_weight",
            "handoff_threshold",
            "threshold_method",
            "method",
            "golden_queries",
        )
    }
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sets", help="comma-separated set names (default: every set with a golden file)"
    )
    ap.add_argument("--workdir", type=Path, help="where the data homes go (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-eval.json")
    ap.add_argument("--model", help="embed.model for every set (default: auto, by language)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets = args.sets.split(",") if args.sets else available_sets()
    if not sets:
        print(f"no evaluation sets under {DATA}", file=sys.stderr)
        return 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kbflow-eval-"))
    results: dict[str, Any] = {}
    for name in sets:
        t0 = time.perf_counter()
        summary = build(name, work / name, args.model)
        results[name] = {
            "status": summary["status"],
            "build_s": round(time.perf_counter() - t0, 1),
            **score(name, work / name),
        }
        print(f"{name}: {json.dumps(results[name]['fused'])}", file=sys.stderr, flush=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    lines = [
        "| set | model | test queries | fused hit@1 / @3 / @10 | MRR | dense hit@1 / @3 | bm25 hit@1 / @3 | dense weight | hand-off AUROC | hand-off precision / recall @ threshold |",
        "|---|---|---:|---|---:|---|---|---:|---:|---|",
    ]
    for name, r in results.items():
        f, d, b = r["fused"], r["dense"], r["bm25"]
        h = f.get("handoff") or {}
        lines.append(
            f"| {name} | {r.get('model', '–')} | {f['n']} (+{f['n_out_of_scope']} OOS) | {f['hit@1']} / {f['hit@3']} / {f['hit@10']} | {f['mrr']} "
            f"| {d['hit@1']} / {d['hit@3']} | {b['hit@1']} / {b['hit@3']} | {r['calibration']['dense_weight']} "
            f"| {h.get('auroc', '–')} | {h.get('precision', '–')} / {h.get('recall', '–')} @ {h.get('threshold', '–')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
