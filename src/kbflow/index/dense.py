"""The dense side of a version: the FAISS index (Flat, HNSW or IVF by size), and the dense
scale (hub scores and ``lo``/``hi``) that puts every model's cosines on one scale."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import numpy as np

from kbflow.errors import ConfigError
from kbflow.index.columns import take_rows
from kbflow.settings import IndexSettings

log = logging.getLogger(__name__)

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


def load_faiss() -> ModuleType:
    """The ``faiss`` module, or a ``ConfigError`` saying how to install one of its two builds
    (they install the same files, so kbflow depends on neither by itself)."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(
            "FAISS is not installed: pip install 'kbflow[cpu]' (laptops, CI; `make` does this) "
            "or 'kbflow[gpu]' on a GPU host (`make gpu-venv`)"
        ) from exc
    return faiss


def faiss_build(device: str) -> tuple[ModuleType, int]:
    """FAISS and the GPUs it will train on, checked against ``index.device``: ``gpu`` refuses
    a CPU build or a build that sees no GPU (the two wheels overwrite each other's files, so
    which one is loaded is worth checking), ``cpu`` never uses a GPU, ``auto`` uses what it
    finds."""
    faiss = load_faiss()
    gpus = faiss_gpus(faiss) if device != "cpu" else 0
    if device == "gpu" and gpus == 0:
        where = getattr(faiss, "__file__", "?")
        raise ConfigError(
            f"index.device is gpu but the FAISS loaded ({where}) sees no GPU: it is the CPU "
            "build (reinstall with pip install --force-reinstall 'kbflow[gpu]' after pip "
            "uninstall faiss-cpu) or the driver is missing (nvidia-smi)"
        )
    return faiss, gpus


def build_dense(vectors: np.ndarray, ids: np.ndarray, factory: str, device: str = "auto") -> Any:
    """Inner-product FAISS index over L2-normalised vectors, with stable int64 ids. Indexes
    that need training (IVF) are trained on the GPU when ``device`` allows and one is there,
    and on the CPU when GPU training fails (with a warning): the saved file is the same."""
    faiss, gpus = faiss_build(device)
    log.info("FAISS %s, %d GPU(s) usable (index.device=%s)", faiss.__version__, gpus, device)
    d = vectors.shape[1]
    base = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if not base.is_trained:
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 100_000), replace=False)]
        trained = _train_on_gpu(faiss, base, sample) if gpus > 0 else None
        if trained is None:
            base.train(sample)
        else:
            base = trained
    index = faiss.IndexIDMap2(base)
    index.add_with_ids(vectors, ids.astype(np.int64))
    return index


def _train_on_gpu(faiss: ModuleType, base: Any, sample: np.ndarray) -> Any | None:
    """``base`` trained on GPU 0 and copied back to CPU form (k-means is IVF's slow part), or
    None when that fails (out of GPU memory beside the embedding workers, a driver error)."""
    try:
        gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, base)
        gpu.train(sample)
        return faiss.index_gpu_to_cpu(gpu)
    except (RuntimeError, MemoryError, AttributeError) as exc:
        log.warning("FAISS training on the GPU failed (%s); training on the CPU instead", exc)
        return None


def hub_scores(vectors: np.ndarray, dense: DenseIndex, k: int) -> np.ndarray:
    """Mean cosine of each vector to its ``k`` nearest other vectors, found with the version's
    own dense index (exact up to ``index.flat_max`` vectors, HNSW/IVF above: an estimate, which
    is all a correction term needs). The nearest hit is taken to be the vector itself.
    ``vectors`` need not be all of the index's (an incremental version scores its delta only)."""
    n = len(vectors)
    k = min(k, dense.ntotal - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float32)
    dense.set_ef_search(max(64, 2 * k))
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
    cos = np.einsum("ij,ij->i", take_rows(vectors, a), take_rows(vectors, b))
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


def faiss_gpus(faiss: Any) -> int:
    """GPUs faiss can use: 0 with faiss-cpu, on a host without a device, or an old build."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


#: An incremental version's dense files beside ``dense.faiss`` (``kbflow.index.build``):
#: ``dense.faiss`` is then the base segment, shared by hard link with the version that built
#: it; the delta holds the vectors of passages the base lacks or holds with other text (a Flat
#: index: exact, and rebuilt in a second), the tombstones the base ids the version no longer
#: serves from the base. ``dense-base.parquet`` names what the base segment holds (faiss id,
#: text hash), so the next version can tell what it can reuse.
DELTA = "dense-delta.faiss"
TOMBSTONES = "dense-tombstones.npy"
BASE_KEYS = "dense-base.parquet"


def set_ef_search(index: Any, ef: int) -> None:
    """``efSearch`` of an HNSW index (inside an id map or not); nothing for other kinds."""
    faiss = load_faiss()
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = ef


class DenseIndex:
    """A version's dense index: the base segment, and for an incremental version a delta and
    tombstones. ``search`` answers like one FAISS index over the version's passages: the base
    searched with its tombstones filtered out inside the search (FAISS ``IDSelector``, so a
    tombstone never takes a result slot), the delta searched exactly, the two merged by score."""

    def __init__(
        self, base: Any, delta: Any | None = None, tombstones: np.ndarray | None = None
    ) -> None:
        faiss = load_faiss()
        self.base = base
        self.delta = delta if delta is not None and delta.ntotal else None
        self.tombstones = (
            np.zeros(0, np.int64) if tombstones is None else np.asarray(tombstones, np.int64)
        )
        self._inner = faiss.downcast_index(base.index) if hasattr(base, "index") else base
        # the selector objects must outlive every search that uses them
        self._batch = faiss.IDSelectorBatch(self.tombstones) if len(self.tombstones) else None
        self._not = faiss.IDSelectorNot(self._batch) if self._batch is not None else None

    @classmethod
    def read(cls, folder: Any) -> DenseIndex:
        faiss = load_faiss()
        base = faiss.read_index(str(folder / "dense.faiss"))
        delta = faiss.read_index(str(folder / DELTA)) if (folder / DELTA).is_file() else None
        dead = (
            np.load(folder / TOMBSTONES, allow_pickle=False)
            if (folder / TOMBSTONES).is_file()
            else None
        )
        return cls(base, delta, dead)

    @property
    def ntotal(self) -> int:
        return (
            int(self.base.ntotal) - len(self.tombstones) + (self.delta.ntotal if self.delta else 0)
        )

    def set_ef_search(self, ef: int) -> None:
        set_ef_search(self.base, ef)

    def _params(self) -> Any:
        # one parameters object per call: FAISS's id map swaps its selector in place while it
        # searches, so a shared one would race between threads serving queries
        if self._not is None:
            return None
        faiss = load_faiss()
        if hasattr(self._inner, "hnsw"):
            return faiss.SearchParametersHNSW(sel=self._not, efSearch=self._inner.hnsw.efSearch)
        if hasattr(self._inner, "nprobe"):
            return faiss.SearchParametersIVF(sel=self._not, nprobe=self._inner.nprobe)
        return faiss.SearchParameters(sel=self._not)

    def stored_vectors(self, ids: np.ndarray) -> StoredVectors | None:
        """The vectors the segments hold for faiss ``ids`` (a version's passages, each served by
        the delta when it is there, else by the base), read in place: a Flat or HNSW-Flat
        segment keeps every vector as float32, so a loaded version need not map its
        ``vectors.npy`` beside them (774 MB at 100k entries). None when a segment does not keep
        them raw (IVF) or lacks one of ``ids``."""
        segments = [s for s in (self.delta, self.base) if s is not None]
        views = [_flat_view(s) for s in segments]
        if any(v is None for v in views):
            return None
        seg = np.full(len(ids), -1, np.int8)
        pos = np.zeros(len(ids), np.int64)
        for k, segment in enumerate(segments):
            held = load_faiss().vector_to_array(segment.id_map)
            order = np.argsort(held)
            at = np.clip(np.searchsorted(held[order], ids), 0, max(len(held) - 1, 0))
            found = (seg < 0) & (held[order][at] == ids) if len(held) else np.zeros(len(ids), bool)
            seg[found], pos[found] = k, order[at[found]]
        if (seg < 0).any():
            return None
        return StoredVectors([v for v in views if v is not None], seg, pos, self)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` best passages per query, best first; -1 ids pad."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, ids = self.base.search(queries, k, params=self._params())
        if self.delta is None:
            return scores, ids
        ds, di = self.delta.search(queries, min(k, self.delta.ntotal))
        all_s = np.concatenate([np.where(ids >= 0, scores, -np.inf), ds], axis=1)
        all_i = np.concatenate([ids, di], axis=1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        return (
            np.take_along_axis(all_s, order, axis=1).astype(np.float32),
            np.take_along_axis(all_i, order, axis=1),
        )


def _flat_view(segment: Any) -> np.ndarray | None:
    """A segment's stored vectors as an (n, d) float32 array over FAISS's own memory (no copy),
    for an id map over a Flat or HNSW-Flat index; None for any other kind."""
    faiss = load_faiss()
    inner = faiss.downcast_index(segment.index) if hasattr(segment, "index") else None
    if inner is None:
        return None
    storage = faiss.downcast_index(inner.storage) if hasattr(inner, "storage") else inner
    if not isinstance(storage, faiss.IndexFlat) or storage.ntotal == 0:
        return None
    n, d = int(storage.ntotal), int(storage.d)
    return faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)


class StoredVectors:
    """A version's passage vectors by row, read from its dense segments in place
    (``DenseIndex.stored_vectors``): ``vectors[rows]`` and ``shape`` as the ``vectors.npy``
    array they replace."""

    def __init__(
        self, views: list[np.ndarray], segment: np.ndarray, position: np.ndarray, owner: Any
    ) -> None:
        self._views, self._segment, self._position = views, segment, position
        self._owner = owner  # the FAISS indexes own the memory the views read
        self.shape = (len(segment), int(views[0].shape[1]))
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        n = self.shape[0]
        idx = np.arange(*rows.indices(n)) if isinstance(rows, slice) else np.asarray(rows)
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.ndim == 0:
            k = int(idx)
            return self._views[self._segment[k]][self._position[k]]
        out = np.empty((len(idx), self.shape[1]), np.float32)
        seg = self._segment[idx]
        for k, view in enumerate(self._views):
            hit = seg == k
            if hit.any():
                out[hit] = view[self._position[idx[hit]]]
        return out
