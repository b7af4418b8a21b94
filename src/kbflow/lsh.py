"""LSH maths for MinHash near-duplicates: the bands x rows that best fit a Jaccard threshold.

Kept apart from the clean stage so that ``kbflow.settings`` can derive ``clean.lsh_bands`` and
``clean.lsh_rows`` when the settings are built (a cross-field rule, checked at load time)."""

from __future__ import annotations


def optimal_lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows for ``num_perm`` permutations that best separate around ``threshold``."""
    best: tuple[float, int, int] | None = None
    steps = 200
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = sum(
                (1 - (1 - (threshold * i / steps) ** r) ** b) * threshold / steps
                for i in range(steps)
            )
            fn = sum(
                (1 - (1 - (1 - (threshold + (1 - threshold) * i / steps) ** r) ** b))
                * (1 - threshold)
                / steps
                for i in range(steps)
            )
            err = 0.5 * fp + 0.5 * fn
            if best is None or err < best[0]:
                best = (err, b, r)
    assert best is not None
    return best[1], best[2]
