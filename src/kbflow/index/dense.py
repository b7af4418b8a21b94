"""The dense side of a version: the FAISS index (Flat, HNSW or IVF by size), and the dense
scale (hub scores and ``lo``/``hi``) that puts every model's cosines on one scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from kbflow.settings import IndexSettings

#: Random passage pairs whose median (hub-corrected) cosine is the dense scale's zero.
NORM_PAIRS = 20_000


_HUB_BATCH = 8192


def choose_factory(n: int, settings: IndexSettings) -> str:
    """Flat for small KBs (exact), HNSW up to ``hnsw_max``, IVF beyond."""
    if n <= settings.flat_max:
        return "Flat"
    if n <= settings.hnsw_max:
        return "HNSW32"
    nlist = int(4 * np.sqrt(n))
    return f"IVF{nlist},Flat"


def build_dense(vectors: np.ndarray, ids: np.ndarray, factory: str) -> Any:
    """Inner-product FAISS index over L2-normalised vectors, with stable int64 ids."""
    import faiss

    d = vectors.shape[1]
    base = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if not base.is_trained:
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 100_000), replace=False)]
        if _faiss_gpus(faiss) > 0:
            # faiss-gpu (GPU hosts): IVF's k-means is the slow part, so train on the GPU, then
            # copy back with index_gpu_to_cpu: the saved file and its readers stay the same.
            gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, base)
            gpu.train(sample)
            base = faiss.index_gpu_to_cpu(gpu)
        else:
            base.train(sample)
    index = faiss.IndexIDMap2(base)
    index.add_with_ids(vectors, ids.astype(np.int64))
    return index


def hub_scores(vectors: np.ndarray, dense: Any, k: int) -> np.ndarray:
    """Mean cosine of each vector to its ``k`` nearest other vectors, found with the version's
    own dense index (exact up to ``index.flat_max`` vectors, HNSW/IVF above: an estimate, which
    is all a correction term needs). The nearest hit is taken to be the vector itself."""
    import faiss

    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float32)
    inner = faiss.downcast_index(dense.index) if hasattr(dense, "index") else dense
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(64, 2 * k)
    out = np.empty(n, dtype=np.float32)
    for lo in range(0, n, _HUB_BATCH):
        scores, ids = dense.search(np.ascontiguousarray(vectors[lo : lo + _HUB_BATCH]), k + 1)
        scores = np.where(ids >= 0, scores, np.nan)[:, 1:]
        out[lo : lo + _HUB_BATCH] = np.nan_to_num(np.nanmean(scores, axis=1), nan=0.0)
    return out


def dense_scale(
    vectors: np.ndarray, hub: np.ndarray | None, hub_weight: float, seed: int = 0
) -> dict[str, float]:
    """``lo``/``hi`` of the dense scale: search scores ``(cos - hub_weight * hub - lo) /
    (hi - lo)``, where ``lo`` is the median corrected cosine of random passage pairs (what an
    unrelated passage scores) and ``hi`` what a passage scores against its own text at the
    median hub. Cosines mean different things per model (MiniLM: unrelated pairs ~0.07,
    multilingual-e5: ~0.86); on this scale 0 is unrelated and 1 a perfect match for every
    model, like the keyword side (BM25 over its median self-score), so fusion weights and
    hand-off thresholds carry over between models."""
    n = len(vectors)
    if n < 2:
        return {"lo": 0.0, "hi": 1.0}
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, NORM_PAIRS)
    b = rng.integers(0, n, NORM_PAIRS)
    keep = a != b
    a, b = a[keep], b[keep]
    cos = np.einsum("ij,ij->i", np.asarray(vectors[a]), np.asarray(vectors[b]))
    h = hub if hub is not None and hub_weight else np.zeros(n, dtype=np.float32)
    lo = float(np.median(cos - hub_weight * h[b]))
    hi = float(1.0 - hub_weight * np.median(h))
    if hi - lo < 1e-3:  # a degenerate model that maps every text alike
        return {"lo": 0.0, "hi": 1.0}
    return {"lo": round(lo, 6), "hi": round(hi, 6)}


def model_hub_weight(model: str, settings: IndexSettings) -> float:
    """``index.hub_weight``, or the model's own (see ``IndexSettings.hub_weight``)."""
    if settings.hub_weight is not None:
        return float(settings.hub_weight)
    from kbflow.embed.e5 import is_e5

    return 0.5 if is_e5(model) else 0.0


def _faiss_gpus(faiss: Any) -> int:
    """GPUs faiss can use: 0 with faiss-cpu, on a host without a device, or an old build."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0
