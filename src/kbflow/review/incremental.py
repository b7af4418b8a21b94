"""The review of a version that changed little since the live one: what did not change is kept.

A semantic pair's score is the best cosine between the two entries' title and similar-question
vectors; an entry whose title and questions did not change (same texts, same model) has the
same vectors, so a pair of two unchanged entries has the same score as in the live version's
review. The review stage keeps, beside its tables, what it compared of each entry
(``REVIEW_ENTRY``: a key of its title and questions, of its answer, and whether a MinHash merge
hid one of its pairs). The next version's review then, when the live one was reviewed with the
same model and review settings and no adapter remaps the vectors:

- keeps the live review's threshold (the calibration from 20M random pairs) while the share of
  entries new, edited in their questions or gone is at most ``index.recalibrate_share``, as the
  index keeps its calibration, and recalibrates (a whole review) above it;
- keeps the live review's pairs of two unchanged entries, and searches only from the vectors of
  the changed ones (every vector stays in the FAISS index it searches; a pair is found from the
  changed side alone, with twice the neighbours a whole review gives each vector);
- keeps the contradictions of kept pairs whose two answers did not change, and compares the
  answers of the others again (merged rows' answers, a run's own, are always compared).

Entries a merge touches, this time or the last, count as changed: their pairs were left out
then and may be due now. A whole review stays what any other case gets, and its result is the
reference the incremental one is tested against (same pairs for the same threshold).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from kbflow.contracts import (
    REVIEW_CONTRADICTION,
    REVIEW_ENTRY,
    REVIEW_SEMANTIC_DUPLICATE,
    read_table,
)
from kbflow.errors import KbflowError
from kbflow.review.semantic import SemanticThreshold
from kbflow.settings import ReviewSettings
from kbflow.store.home import DataHome

log = logging.getLogger(__name__)

ENTRIES_FILE = "entries.parquet"

#: Kinds of passage whose vectors the semantic pass compares (title first).
COMPARED_KINDS = ("title", "question")


def settings_key(settings: ReviewSettings) -> str:
    """sha256 of the review settings: another setting means a whole review."""
    blob = json.dumps(settings.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def vectors_key(model: dict[str, Any]) -> str | None:
    """What the review's vectors are, across versions: the model key, or None when a linear
    adapter remaps them per version (such a version is always reviewed whole). A fine-tuned
    adapter's review reads the plain model's vectors from the cache, as a version without one."""
    kind = (model.get("adapter") or {}).get("kind")
    return None if kind == "linear" else str(model["model_key"])


def entry_keys(
    passages: pa.Table, titles: dict[str, str], answers: dict[str, str], merged: set[str]
) -> dict[str, tuple[str, str, bool]]:
    """Per entry (of ``passages``, ``entry_id``/``kind``/``text_hash`` in passage order):
    the key of its title (``titles``) and questions, of its answer (``answers``), and whether
    it is in a merged pair (``merged``)."""
    hashes: dict[str, list[str]] = {}
    for e, kind, th in zip(
        passages.column("entry_id").to_pylist(),
        passages.column("kind").to_pylist(),
        passages.column("text_hash").to_pylist(),
        strict=True,
    ):
        got = hashes.setdefault(e, [titles.get(e, "")])
        if kind in COMPARED_KINDS:
            got.append(th)
    return {
        e: (
            hashlib.sha256("\x1f".join(hs).encode()).hexdigest(),
            hashlib.sha256(answers.get(e, "").encode()).hexdigest(),
            e in merged,
        )
        for e, hs in hashes.items()
    }


def keys_table(keys: dict[str, tuple[str, str, bool]]) -> pa.Table:
    return pa.table(
        {
            "entry_id": list(keys),
            "questions": [k[0] for k in keys.values()],
            "answer": [k[1] for k in keys.values()],
            "merged": [k[2] for k in keys.values()],
        },
        schema=REVIEW_ENTRY,
    )


@dataclass
class PreviousReview:
    """The live version's review, as its review stage left it."""

    version: str
    vectors_key: str | None
    settings_key: str
    calibration: SemanticThreshold
    semantic: pa.Table
    contradictions: pa.Table
    keys: dict[str, tuple[str, str, bool]]


def load_previous(home: DataHome, run_id: str) -> PreviousReview | None:
    """Run ``run_id``'s review, or None when it did not complete, was skipped, or was made
    before reviews kept their entry keys."""
    from kbflow.runner import read_marker

    folder = home.run_dir(run_id) / "review"
    try:
        summary = read_marker(home, run_id, "review")
        if not summary or not summary.get("enabled", True) or "settings_key" not in summary:
            return None
        table = read_table(folder / ENTRIES_FILE, REVIEW_ENTRY)
        keys = {
            e: (q, a, m)
            for e, q, a, m in zip(
                table.column("entry_id").to_pylist(),
                table.column("questions").to_pylist(),
                table.column("answer").to_pylist(),
                table.column("merged").to_pylist(),
                strict=True,
            )
        }
        cal = dict(summary["calibration"])
        return PreviousReview(
            version=summary["version"],
            vectors_key=summary.get("vectors_key"),
            settings_key=summary["settings_key"],
            calibration=SemanticThreshold(**cal),
            semantic=read_table(folder / "semantic_duplicates.parquet", REVIEW_SEMANTIC_DUPLICATE),
            contradictions=read_table(folder / "contradictions.parquet", REVIEW_CONTRADICTION),
            keys=keys,
        )
    except (OSError, ValueError, KeyError, TypeError, KbflowError) as exc:
        log.info("review: the live version's review cannot be reused (%s): a whole review", exc)
        return None


@dataclass
class Plan:
    """How a version is reviewed against the live version's review."""

    previous: PreviousReview | None
    reason: str
    changed: set[str]
    """Entries whose pairs are searched for (new, questions edited, merged now or then)."""
    gone: int
    share: float


def plan(
    previous: PreviousReview | None,
    keys: dict[str, tuple[str, str, bool]],
    vectors: str | None,
    settings_hash: str,
    max_share: float,
) -> Plan:
    """Incremental (``previous`` set) or whole (None, with the reason)."""
    if previous is None:
        return Plan(None, "no reusable review of the live version", set(keys), 0, 1.0)
    if vectors is None or previous.vectors_key != vectors:
        return Plan(None, "the vectors are not comparable (model or adapter)", set(keys), 0, 1.0)
    if previous.settings_key != settings_hash:
        return Plan(None, "the review settings changed", set(keys), 0, 1.0)
    old = previous.keys
    changed = {e for e, k in keys.items() if e not in old or old[e][0] != k[0] or k[2]}
    changed |= {e for e, k in old.items() if k[2] and e in keys}
    gone = sum(1 for e in old if e not in keys)
    share = (len(changed) + gone) / max(1, len(keys))
    if share > max_share:
        return Plan(
            None,
            f"{share:.1%} of the entries changed their questions, more than "
            f"index.recalibrate_share {max_share:.1%}",
            set(keys),
            gone,
            share,
        )
    return Plan(previous, f"{share:.2%} of the entries changed", changed, gone, share)
