"""Ranking a query on one index version, as the gate's checks do: the version's own fusion of
dense and keyword candidates (keyword only without a query vector)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kbflow.index.version import LoadedVersion

# (version, query texts) -> query vectors for that version's model, or None (keyword only)
QueryEncoder = Callable[[LoadedVersion, list[str]], "np.ndarray | None"]


def ranked_entries(
    version: LoadedVersion,
    tokens: list[str],
    vector: np.ndarray | None,
    candidates: int = 50,
    exclude: Any = None,
) -> list[int]:
    """Entry positions of ``version`` for one query, best first (fused with the version's own
    weight; keyword only without a vector)."""
    c = version.candidates(vector, tokens, n=candidates, exclude=exclude)
    s = version.fuse(c, dense_available=vector is not None)
    order = np.argsort(-s, kind="stable")
    return [int(c.entries[j]) for j in order]
