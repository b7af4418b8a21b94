"""An incremental review (the live review's pairs of unchanged entries kept, only the changed
entries searched from) finds the same pairs as a whole review of the new version, on a
synthetic 6,000-entry KB after edits, deletions and additions with planted duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from kbflow.review.incremental import PreviousReview, plan
from kbflow.review.semantic import find_semantic_duplicates, update_semantic_duplicates
from kbflow.settings import ReviewSettings

DIM = 64
PER_ENTRY = 3  # a title and two similar questions


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def entry_vectors(rng: np.random.Generator, like: np.ndarray | None = None) -> np.ndarray:
    """A title and two questions near it; near ``like`` (a duplicate of it) when given."""
    title = (
        like[0] + 0.12 * unit(rng.normal(size=DIM)) if like is not None else rng.normal(size=DIM)
    )
    title = unit(title)
    return unit(title + 0.55 * unit(rng.normal(size=(PER_ENTRY, DIM))) * [[0], [1], [1]])


def flatten(kb: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = list(kb)
    vecs = np.concatenate([kb[e] for e in ids])
    owner = np.repeat(np.arange(len(ids)), PER_ENTRY)
    return ids, vecs, owner


def pairs(found, ids: list[str], floor: float) -> dict[tuple[str, str], float]:
    return {
        (ids[a], ids[b]): round(float(s), 5)
        for a, b, s in zip(found.a, found.b, found.score, strict=True)
        if s >= floor
    }


@pytest.fixture(scope="module")
def kbs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], set[str]]:
    rng = np.random.default_rng(7)
    old: dict[str, np.ndarray] = {}
    for i in range(6000):
        others = list(old.values())
        dup = i % 40 == 39  # 150 planted duplicates
        old[f"e{i:05d}"] = entry_vectors(
            rng, others[int(rng.integers(len(others)))] if dup else None
        )
    new = dict(old)
    names = list(old)
    order = rng.permutation(len(names))
    edited = [names[i] for i in order[:40]]  # questions rewritten: their pairs go
    made_dup = [names[i] for i in order[40:70]]  # rewritten into a copy of another entry
    deleted = [names[i] for i in order[70:90]]
    for e in edited:
        new[e] = entry_vectors(rng)
    for e in made_dup:
        new[e] = entry_vectors(rng, old[names[int(rng.integers(len(names)))]])
    for e in deleted:
        del new[e]
    for i in range(20):  # added, half of them duplicates
        new[f"n{i:03d}"] = entry_vectors(
            rng, old[names[int(rng.integers(len(names)))]] if i % 2 else None
        )
    changed = set(edited) | set(made_dup) | {f"n{i:03d}" for i in range(20)}
    return old, new, changed


def test_incremental_pairs_equal_a_whole_review(kbs):
    old, new, changed = kbs
    settings = ReviewSettings()
    ids0, v0, own0 = flatten(old)
    before = find_semantic_duplicates(v0, own0, len(ids0), "m", settings)
    assert before.calibration.threshold is not None and len(before) >= 100

    ids1, v1, own1 = flatten(new)
    pos1 = {e: i for i, e in enumerate(ids1)}
    flags = np.zeros(len(ids1), dtype=bool)
    flags[[pos1[e] for e in changed]] = True
    # the live review's pairs between entries that stayed, as vector rows of the new version
    kept = [(a, b, s, va, vb) for a, b, s, va, vb in zip(before.a, before.b, before.score,
            before.vec_a, before.vec_b, strict=True)
            if ids0[a] in pos1 and ids0[b] in pos1 and not flags[pos1[ids0[a]]]
            and not flags[pos1[ids0[b]]]]  # fmt: skip
    row = lambda r: pos1[ids0[r // PER_ENTRY]] * PER_ENTRY + r % PER_ENTRY  # noqa: E731
    kept_rows = (
        np.array([row(va) for *_, va, _ in kept], np.int64),
        np.array([row(vb) for *_, vb in kept], np.int64),
        np.array([s for _, _, s, _, _ in kept], np.float32),
    )
    inc = update_semantic_duplicates(
        v1, own1, len(ids1), before.calibration, settings, flags, kept_rows
    )
    whole = find_semantic_duplicates(v1, own1, len(ids1), "m", settings)
    floor = max(before.calibration.threshold, whole.calibration.threshold)
    got, want = pairs(inc, ids1, floor), pairs(whole, ids1, floor)
    assert got == want
    # the changes did move the pairs: new duplicates found, the edited ones' pairs gone
    old_pairs = pairs(before, ids0, floor)
    assert {p for p in want if p[0] in changed or p[1] in changed} - set(old_pairs)
    assert {p for p in old_pairs if p[0] in changed or p[1] in changed} - set(want)
    # and the search ran from the changed entries' vectors only
    assert inc.candidates < whole.candidates


def test_the_plan_reviews_whole_when_much_changed_or_settings_differ():
    keys = {f"e{i}": (f"q{i}", f"a{i}", False) for i in range(100)}
    prev = PreviousReview("v1", "m@384", "s", None, None, None, dict(keys))  # type: ignore[arg-type]
    same = plan(prev, keys, "m@384", "s", 0.05)
    assert same.previous is prev and same.changed == set() and same.share == 0
    edited = dict(keys) | {"e1": ("q1-new", "a1", False), "x": ("qx", "ax", False)}
    del edited["e2"]
    got = plan(prev, edited, "m@384", "s", 0.05)
    assert got.previous is prev and got.changed == {"e1", "x"} and got.gone == 1
    answer_only = dict(keys) | {"e3": ("q3", "a3-new", False)}
    assert plan(prev, answer_only, "m@384", "s", 0.05).changed == set()  # questions unchanged
    merged = dict(keys) | {"e4": ("q4", "a4", True)}
    assert plan(prev, merged, "m@384", "s", 0.05).changed == {"e4"}
    many = {e: (k[0] + "!", k[1], False) for e, k in keys.items()}
    assert plan(prev, many, "m@384", "s", 0.05).previous is None
    assert plan(prev, keys, "m@384", "other settings", 0.05).previous is None
    assert plan(prev, keys, "other@384", "s", 0.05).previous is None
    assert plan(prev, keys, None, "s", 0.05).previous is None  # a linear adapter's vectors
    assert plan(None, keys, "m@384", "s", 0.05).previous is None
