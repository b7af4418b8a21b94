"""A second way to compute a served model's vectors, for the drift guard's first run.

The drift guard compares each run's canaries with the ones stored on first use; a first run
whose vectors are wrong (a tokenizer without the end token, another pooling, a broken build)
would be stored as the truth and never caught. So before the canaries are stored, they are
compared with vectors computed here, in this process, without the server:

- the model folder (``embed.model_path``) loaded with sentence-transformers (its own pooling
  and normalisation, from the folder's ``modules.json``), on a GPU when torch sees one;
- a bundled model by name (all-MiniLM-L6-v2, multilingual-e5-small: what ``kbflow
  serve-embeddings`` serves), in process.

Where neither is available the guard says so in the log and in ``canary.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from kbflow.settings import EmbedSettings

log = logging.getLogger(__name__)

#: Cosine every canary must reach against the reference: bf16 on a GPU against the same
#: weights elsewhere agrees to ~0.999; another pooling or a missing end token lands far lower.
REFERENCE_MIN_COSINE = 0.99


def reference_vectors(
    settings: EmbedSettings, texts: Sequence[str]
) -> tuple[np.ndarray | None, str]:
    """``(vectors, how they were computed)`` of ``texts`` as documents, or ``(None, why
    not)``. Full-size vectors; the caller truncates to the served dimension."""
    if settings.backend == "local":
        return None, "not needed: the in-process model is the reference"
    folder = settings.model_path
    if folder is not None and (folder / "modules.json").is_file():
        return _sentence_transformers(folder, texts)
    from kbflow.embed.e5 import is_e5
    from kbflow.embed.local import DEFAULT_MODEL

    if settings.model == DEFAULT_MODEL or is_e5(settings.model):
        from kbflow.embed.factory import make_embedder

        local = make_embedder(EmbedSettings(backend="local", model=settings.model))
        return local.embed_documents(list(texts)), f"the bundled {settings.model}, in process"
    return None, (
        "none available: no sentence-transformers model folder (embed.model_path) on this host "
        "and not a bundled model"
    )


def _sentence_transformers(folder: object, texts: Sequence[str]) -> tuple[np.ndarray, str]:
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(
        str(folder), device=device, local_files_only=True, model_kwargs={"dtype": "auto"}
    )
    try:
        vectors = model.encode(
            list(texts), batch_size=1, normalize_embeddings=True, convert_to_numpy=True
        )
    finally:
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return np.asarray(vectors, dtype=np.float32), f"sentence-transformers on {device}, {folder}"
