#!/usr/bin/env python
"""Precision and recall of kbflow's duplicate detection on labelled question pairs.

    python bench/eval_dedup_pairs.py [--sets bq lcqmc] [--sample 4000] [--out PATH]

For each set, ``../shared/data/<set>/dedup_pairs.jsonl`` (``{"a", "b", "label"}``, 1 = same
meaning; public research data, never copied into the repo) is sampled (seeded), and every
distinct question becomes one KB entry (title = answer = the question, as the shared sets do
for entries without answers). Then:

* **MinHash** (the lexical path): ``kbflow.clean.dedup.clean_rows`` with the project's settings, as
  the clean stage runs it (character bigrams, LSH, exact Jaccard >= 0.8, clusters); a pair is
  predicted a duplicate when both questions end in the same cluster.
* **semantic, as deployed**: ``kbflow.review.semantic`` on the entries' vectors, with the model the
  review stage would use for such a KB (``embed.model=auto``: its language picks the bundled
  model, multilingual-e5-small for these Chinese sets; ``--model`` names another) and the
  threshold it would calibrate (read off random pairs of the set's questions: the entries have
  no similar questions, so there is no paraphrase floor).
* **semantic at a fixed cosine**: the model's default threshold, and a sweep with the best F1
  it can reach on these labels (an oracle threshold: the model's ceiling, not a deployable
  setting).
* **MinHash or semantic**: both paths together (the review lists both).

The labelled sets are balanced (about half positives), far denser in duplicates than a KB, so
precision here is higher than it would be on a real KB's pairs; compare methods, not absolute
values. Prints a table and writes JSON (default ``bench/results-dedup-pairs.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger("eval_dedup_pairs")


def load_pairs(path: Path, sample: int, seed: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if sample and sample < len(rows):
        pick = np.random.default_rng(seed).choice(len(rows), size=sample, replace=False)
        rows = [rows[i] for i in sorted(pick)]
    return rows


def scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p and r else 0.0
    return {
        "precision": None if p is None else round(p, 4),
        "recall": None if r is None else round(r, 4),
        "f1": round(f1, 4),
        "predicted": int(pred.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def minhash_clusters(texts: list[str]) -> np.ndarray:
    """Cluster id per text from the clean stage's own dedup (exact + near)."""
    from kbflow.clean.dedup import clean_rows
    from kbflow.contracts import RAW_ROW, table_from_rows
    from kbflow.settings import CleanSettings

    rows = [
        {
            "row_id": i,
            "source_file": "pairs.jsonl",
            "source_line": i + 1,
            "id": f"q{i}",
            "title": t,
            "answer": t,
            "similar_questions": [],
            "updated_at": "2026-01-01T00:00:00",
            "metadata": "{}",
        }
        for i, t in enumerate(texts)
    ]
    res = clean_rows(table_from_rows(rows, RAW_ROW), date(2026, 11, 24), CleanSettings())
    cluster = np.arange(len(texts))
    for m in res.merges.to_pylist():
        cluster[int(m["merged_id"][1:])] = int(m["canonical_id"][1:])
    return cluster


def evaluate_set(name: str, embedder: Any, sample: int, seed: int) -> dict[str, Any]:
    from kbflow.index.bm25 import cjk_share
    from kbflow.review.semantic import default_threshold, find_semantic_duplicates
    from kbflow.settings import ReviewSettings

    set_dir = DATA / name
    pairs = load_pairs(set_dir / "dedup_pairs.jsonl", sample, seed)
    texts = list(dict.fromkeys(t for p in pairs for t in (p["a"], p["b"])))
    index = {t: i for i, t in enumerate(texts)}
    ia = np.array([index[p["a"]] for p in pairs])
    ib = np.array([index[p["b"]] for p in pairs])
    labels = np.array([int(p["label"]) == 1 for p in pairs])

    start = time.perf_counter()
    vecs = embedder.embed_documents(texts)
    embed_s = time.perf_counter() - start
    cos = np.einsum("ij,ij->i", vecs[ia], vecs[ib])

    start = time.perf_counter()
    cluster = minhash_clusters(texts)
    minhash_s = time.perf_counter() - start
    mh = cluster[ia] == cluster[ib]

    settings = ReviewSettings()
    key = embedder.info.key
    share = cjk_share(texts)
    covers = embedder.info.covers("zh" if share > 0.5 else "en")
    deployed = find_semantic_duplicates(
        vecs, np.arange(len(texts)), len(texts), key, settings, model_covers_kb=covers
    )
    found = {(int(a), int(b)) for a, b in zip(deployed.a, deployed.b, strict=True)}
    dep = np.array([(min(a, b), max(a, b)) in found for a, b in zip(ia, ib, strict=True)])

    default_t = default_threshold(key, settings)
    sweep = []
    for t in np.round(np.arange(0.50, 0.995, 0.01), 2):
        sweep.append({"threshold": float(t), **scores(cos >= t, labels)})
    best = max(sweep, key=lambda r: r["f1"])
    fixed = cos >= default_t
    best_pred = cos >= best["threshold"]
    result: dict[str, Any] = {
        "set": name,
        "model": key,
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "distinct_questions": len(texts),
        "cjk_share": round(share, 3),
        "embed_s": round(embed_s, 1),
        "minhash_s": round(minhash_s, 2),
        "cosine": {
            "positives_median": round(float(np.median(cos[labels])), 3),
            "negatives_median": round(float(np.median(cos[~labels])), 3),
            "auc": round(_auc(cos, labels), 4),
        },
        "methods": {
            # the trivial reference: every pair flagged (precision = the share of positives)
            "flag_every_pair": scores(np.ones(len(labels), dtype=bool), labels),
            "minhash": scores(mh, labels),
            "semantic_as_deployed": {
                **scores(dep, labels),
                "threshold": deployed.calibration.threshold,
                "method": deployed.calibration.method,
            },
            f"semantic_at_default_{default_t}": scores(fixed, labels),
            f"minhash_or_semantic_at_default_{default_t}": scores(mh | fixed, labels),
            f"semantic_best_f1_at_{best['threshold']}": scores(best_pred, labels),
            f"minhash_or_semantic_best_f1_at_{best['threshold']}": scores(mh | best_pred, labels),
            "minhash_or_semantic_as_deployed": scores(mh | dep, labels),
        },
        "sweep": sweep,
    }
    return result


def _auc(score: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive pair scores above a random negative (ties half)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def format_table(results: list[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        lines.append(
            f"\n{res['set']} ({res['model']}): {res['pairs']} pairs ({res['positives']} same meaning), "
            f"{res['distinct_questions']} questions; cosine AUC {res['cosine']['auc']}, "
            f"median cosine same/different {res['cosine']['positives_median']}/"
            f"{res['cosine']['negatives_median']}"
        )
        lines.append(f"  {'method':<44} {'precision':>9} {'recall':>7} {'f1':>6} {'flagged':>8}")
        for name, m in res["methods"].items():
            p = "-" if m["precision"] is None else f"{m['precision']:.3f}"
            r = "-" if m["recall"] is None else f"{m['recall']:.3f}"
            lines.append(f"  {name:<44} {p:>9} {r:>7} {m['f1']:>6.3f} {m['predicted']:>8}")
        dep = res["methods"]["semantic_as_deployed"]
        lines.append(f"  as deployed: threshold {dep['threshold']} ({dep['method']})")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=["bq", "lcqmc"])
    p.add_argument("--sample", type=int, default=4000, help="pairs per set (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results-dedup-pairs.json")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--model", help="embedding model (default: what embed.model=auto picks)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    missing = [s for s in args.sets if not (DATA / s / "dedup_pairs.jsonl").is_file()]
    if missing:
        raise SystemExit(f"no dedup_pairs.jsonl for {missing} under {DATA}")
    from kbflow.embed.choose import by_language, language_mix
    from kbflow.embed.factory import make_embedder
    from kbflow.settings import EmbedSettings

    embedders: dict[str, Any] = {}
    results = []
    for name in args.sets:
        model = args.model
        if model is None:  # what auto picks for a KB of these questions
            texts = [p["a"] for p in load_pairs(DATA / name / "dedup_pairs.jsonl", 2000, 0)]
            model = by_language(language_mix(texts), EmbedSettings().auto_threshold)
        if model not in embedders:
            embedders[model] = make_embedder(EmbedSettings(model=model))
        results.append(evaluate_set(name, embedders[model], args.sample, args.seed))
    out = {
        "command": "python bench/eval_dedup_pairs.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "models": {r["set"]: r["model"] for r in results},
        "sample": args.sample,
        "seed": args.seed,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
    print(format_table(results))
    print(f"\nresults: {args.out}")
    return out


if __name__ == "__main__":
    main()
