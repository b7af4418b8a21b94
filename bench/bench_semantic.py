#!/usr/bin/env python
"""Benchmark of the review stage's semantic pass (``kbflow.review.semantic.find_semantic_duplicates``).

    python bench/bench_semantic.py --entries 100000 [--questions 3] [--dim 384] [--out PATH]

The pass runs on vectors that are already computed (as in the nightly run, where the embed
stage made them): calibration (same-entry positives, random entry pairs, the tail fit), the
FAISS neighbour search over every title/similar-question vector, grouping into entry pairs.
Embedding is not timed: at 30-100 texts/s on this machine's CPU the model would take hours
for 400k texts, and the embed stage's own benchmark measures it (bench/bench_stages.py).

Vectors are synthetic but shaped like a KB's (see ``synthetic_kb``): topics of about 50
entries whose members range from close to loosely related, each entry a title plus 2-5
similar questions (``--questions`` on average), and ``--dup-share`` of the entries written
twice (a second entry for the same question, as two teams would write one FAQ). Cosines, as
with a real model: texts of one entry ~0.7, one topic 0.2-0.55, unrelated about +-0.15.
Every vector is L2-normalised float32.

Prints a table and writes JSON: timings per part, peak RSS, the calibration, pairs found, and
recall of the injected duplicate pairs. Floor: 60 s at 100k entries (the issue's).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
FLOOR_ENTRIES = 100_000
FLOOR_SECONDS = 60.0

log = logging.getLogger("bench_semantic")


def synthetic_kb(
    entries: int, questions: float, dim: int, dup_share: float, seed: int, latent: int = 32
) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """(vectors, owner, injected duplicate entry pairs); each entry's title vector first.

    Meaning lives in a ``latent``-dimensional space, laid into ``dim`` dimensions by a random
    orthonormal map: topics are random directions there, an entry is its topic's direction
    plus a spread drawn per topic (so entries of one topic are graded, from near-paraphrases
    to loosely related), and each text of an entry adds its own wording noise in the full
    space. Cosines: texts of one entry ~0.7, one topic 0.2-0.55, unrelated about +-0.15."""
    rng = np.random.default_rng(seed)

    def unit(n: int, d: int) -> np.ndarray:
        v = rng.standard_normal((n, d), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    n_topics = max(1, entries // 50)
    topic = unit(n_topics, latent)
    spread = rng.uniform(0.5, 1.5, n_topics).astype(np.float32)
    entry_topic = rng.integers(0, n_topics, entries)
    meaning = topic[entry_topic] + spread[entry_topic, None] * unit(entries, latent) * np.float32(
        1.0
    )
    n_dups = int(entries * dup_share)
    dup_of = rng.choice(entries, size=n_dups, replace=False)
    dup_entries = rng.choice(np.setdiff1d(np.arange(entries), dup_of), size=n_dups, replace=False)
    meaning[dup_entries] = meaning[dup_of]  # a second entry written for the same question
    meaning /= np.linalg.norm(meaning, axis=1, keepdims=True)
    lay, _ = np.linalg.qr(rng.standard_normal((dim, latent)))
    counts = 1 + np.clip(rng.poisson(questions, entries), 1, 5)
    owner = np.repeat(np.arange(entries), counts)  # title first: repeat() keeps entry order
    vectors = np.sqrt(0.85) * (meaning[owner] @ lay.T.astype(np.float32)) + np.sqrt(0.15) * unit(
        len(owner), dim
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dups = {(int(min(a, b)), int(max(a, b))) for a, b in zip(dup_of, dup_entries, strict=True)}
    return vectors.astype(np.float32), owner, dups


def recall_vs_exact(
    vectors: np.ndarray,
    owner: np.ndarray,
    found: set[tuple[int, int]],
    threshold: float | None,
    seed: int,
    queries: int = 500,
) -> dict[str, Any]:
    """Of the entry pairs that exact search finds from a sample of query vectors (every other
    entry's vector at or above the threshold), the share the pass reported."""
    if threshold is None:
        return {"queries": 0, "exact_pairs": 0, "recall": None}
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)
    want: set[tuple[int, int]] = set()
    for lo in range(0, len(pick), 100):
        q = pick[lo : lo + 100]
        sims = vectors[q] @ vectors.T
        qi, j = np.nonzero(sims >= threshold)
        for a, b in zip(owner[q[qi]].tolist(), owner[j].tolist(), strict=True):
            if a != b:
                want.add((min(a, b), max(a, b)))
    return {
        "queries": len(pick),
        "exact_pairs": len(want),
        "recall": round(len(want & found) / len(want), 4) if want else None,
    }


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict[str, Any]:
    from kbflow.review.semantic import find_semantic_duplicates
    from kbflow.settings import ReviewSettings

    t0 = time.perf_counter()
    vectors, owner, dups = synthetic_kb(
        args.entries, args.questions, args.dim, args.dup_share, args.seed
    )
    gen_s = time.perf_counter() - t0
    settings = ReviewSettings(**({"nprobe": args.nprobe} if args.nprobe else {}))
    load_before = os.getloadavg()
    start = time.perf_counter()
    cpu0 = time.process_time()
    found = find_semantic_duplicates(vectors, owner, args.entries, "synthetic@384", settings)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    got = {(int(a), int(b)) for a, b in zip(found.a, found.b, strict=True)}
    hit = len(got & dups)
    exact = recall_vs_exact(vectors, owner, got, found.calibration.threshold, args.seed)
    floor_applies = args.entries >= FLOOR_ENTRIES
    return {
        "command": "python bench/bench_semantic.py "
        + shlex.join(sys.argv[1:] if args.argv is None else args.argv),
        "entries": args.entries,
        "vectors": int(len(vectors)),
        "dim": args.dim,
        "injected_duplicate_pairs": len(dups),
        "generate_s": round(gen_s, 2),
        "semantic_pass": {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "parts_s": found.seconds,
            "entries_per_s": round(args.entries / wall, 1) if wall > 0 else None,
            "search": "exact (Flat)"
            if len(vectors) <= settings.exact_search_max
            else (f"IVF{int(max(64, round(len(vectors) ** 0.5)))},Flat nprobe={settings.nprobe}"),
            "k_neighbors": settings.k_neighbors,
        },
        "calibration": found.calibration.as_dict(),
        "pairs": {
            "found": len(found),
            "vector_pairs_above_threshold": found.candidates,
            "truncated_at_max_pairs": found.truncated,
            "injected_found": hit,
            "recall_injected": round(hit / len(dups), 4) if dups else None,
            "precision_vs_injected": round(hit / len(got), 4) if got else None,
        },
        "recall_vs_exact": exact,
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "floor": {
            "name": f"semantic pass over {FLOOR_ENTRIES} entries",
            "limit_s": FLOOR_SECONDS,
            "passed": (wall <= FLOOR_SECONDS) if floor_applies else None,
        },
        "machine": {
            "nproc": os.cpu_count(),
            # other work on the machine stretches wall time; cpu_s is this process's own
            "load_average_1m": {
                "before": round(load_before[0], 2),
                "after": round(os.getloadavg()[0], 2),
            },
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": {p: _version(p) for p in ("faiss-cpu", "numpy")},
        "note": "vectors are synthetic and precomputed; embedding is not timed (see docstring)",
    }


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def format_table(res: dict[str, Any]) -> str:
    sp, cal, pairs = res["semantic_pass"], res["calibration"], res["pairs"]
    lines = [
        f"semantic pass: {res['entries']} entries, {res['vectors']} vectors of dim {res['dim']}",
        f"  wall {sp['wall_s']} s (cpu {sp['cpu_s']} s), parts {sp['parts_s']}, {sp['search']}",
        f"  threshold {cal['threshold']} ({cal['method']}), {cal['positives']} positives, "
        f"{cal['negatives']} negatives, recall on positives {cal['recall_positives']}",
        f"  pairs {pairs['found']} (truncated {pairs['truncated_at_max_pairs']}), injected "
        f"duplicates found {pairs['injected_found']}/{res['injected_duplicate_pairs']}",
        f"  recall against exact search from {res['recall_vs_exact']['queries']} sampled "
        f"vectors: {res['recall_vs_exact']['recall']} of {res['recall_vs_exact']['exact_pairs']} pairs",
        f"  load average (1 min) {res['machine']['load_average_1m']} on {res['machine']['nproc']} cores",
        f"  peak RSS {res['peak_rss_mib']} MiB; floor {res['floor']['limit_s']} s at "
        f"{FLOOR_ENTRIES}: {res['floor']['passed']}",
    ]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=FLOOR_ENTRIES)
    p.add_argument("--questions", type=float, default=3.0, help="similar questions per entry")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--dup-share", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nprobe", type=int, help="IVF lists probed (default: ReviewSettings's)")
    p.add_argument("--out", type=Path, help="JSON path (default bench/results-semantic-<N>.json)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    if args.entries < 2:
        p.error("--entries must be at least 2")
    args.argv = list(argv) if argv is not None else None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    res = run(args)
    out = args.out or HERE / f"results-semantic-{args.entries}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    print(format_table(res))
    print(f"results: {out}")
    return res


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result["floor"]["passed"] is False else 0)
