"""Embedding throughput: openai backend (against a local ``serve-embeddings``) vs the in-process
local backend vs plain ``SentenceTransformer.encode``, on the same passages.

    python bench/bench_embed.py [--n 10000] [--json out.json]

Passages are built from the texts of examples/kb_zh/export (varied: random spans joined, so
lengths spread from a few characters to a few hundred, and no two are equal). Floors checked
(and printed, never asserted in tests): openai >= 80% of local, local >= 90% of plain encode.
CPU only here; on a GPU host point ``--url`` at an SGLang endpoint instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "examples" / "kb_zh" / "export"


def source_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(EXPORT.iterdir()):
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # the sample export has malformed rows on purpose
                    continue
                if isinstance(row, dict):
                    texts += [v for v in row.values() if isinstance(v, str) and len(v) > 3]
        elif path.suffix == ".csv":
            raw = path.read_bytes()
            try:
                decoded = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                decoded = raw.decode("gb18030", errors="replace")
            for rec in csv.DictReader(decoded.splitlines()):
                texts += [v for v in rec.values() if isinstance(v, str) and len(v) > 3]
    # ids, statuses and dates are not passages: keep text with some Chinese in it
    return [t for t in texts if any("\u4e00" <= c <= "\u9fff" for c in t)]


def make_passages(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    base = source_texts()
    out = []
    for i in range(n):
        parts = rng.sample(base, k=rng.randint(1, 3))
        text = " ".join(p[: rng.randint(8, 300)] for p in parts)
        out.append(f"{text} #{i}")
    return out


def timed(fn, texts: list[str]) -> float:
    fn(texts[:64])  # warm-up (first batch pays allocation and tokenizer start-up)
    start = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=18777)
    ap.add_argument("--url", default=None, help="use this endpoint instead of starting a server")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from sentence_transformers import SentenceTransformer

    from kbflow.embed.local import LocalEmbedder, default_model_dir
    from kbflow.embed.openai import OpenAIEmbedder
    from kbflow.settings import EmbedSettings

    texts = make_passages(args.n)
    print(f"{len(texts)} passages, mean {sum(map(len, texts)) / len(texts):.0f} chars")
    results: dict[str, float] = {}

    plain = SentenceTransformer(str(default_model_dir()), device="cpu", local_files_only=True)
    results["plain_encode"] = timed(
        lambda t: plain.encode(
            t, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        ),
        texts,
    )
    print(f"plain SentenceTransformer.encode: {results['plain_encode']:.1f} passages/s")

    local = LocalEmbedder(EmbedSettings(model="all-MiniLM-L6-v2"))
    results["local"] = timed(local.embed_documents, texts)
    print(f"local backend (in process):        {results['local']:.1f} passages/s")

    server = None
    url = args.url
    if url is None:
        server = subprocess.Popen(
            [sys.executable, "-m", "kbflow.embed.server", "--port", str(args.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{args.port}/v1"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
    try:
        emb = OpenAIEmbedder(
            EmbedSettings(
                backend="openai",
                urls=[url],
                model="all-MiniLM-L6-v2",
                batch_items=64,
                max_in_flight=2,
            )
        )
        results["openai"] = timed(emb.embed_documents, texts)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print(f"openai backend -> serve-embeddings: {results['openai']:.1f} passages/s")

    ratios = {
        "openai_vs_local": results["openai"] / results["local"],
        "local_vs_plain": results["local"] / results["plain_encode"],
    }
    floors = {"openai_vs_local": 0.8, "local_vs_plain": 0.9}
    for k, v in ratios.items():
        print(f"{k}: {v:.2f} (floor {floors[k]}) {'OK' if v >= floors[k] else 'BELOW FLOOR'}")
    if args.json:
        args.json.write_text(
            json.dumps({"n": len(texts), "passages_per_s": results, "ratios": ratios}, indent=2)
        )
    return 0 if all(ratios[k] >= floors[k] for k in floors) else 1


if __name__ == "__main__":
    raise SystemExit(main())
