"""What a version's own gate found about it, kept in its folder for the next night's gate.

A version is immutable, and so is what the gate computes on it: the rank of a check query's
expected entry (with the version's own query model, fusion and held-out rule) and the answer
alignment of a sample of its entries. When the version goes live, the next night's gate asks
the live side the same questions again: a self-check query drawn from the candidate is, for
every entry that did not change, the same question the live version was asked as a candidate,
and the golden set rarely changes. ``<version>/gate/memo.json`` keeps those answers, so the
gate ranks only the candidate, and loads the live version (its HNSW index, passages and keyword
index: seconds and gigabytes at 100k entries) only for questions it was never asked.

Kept per query: the set, the query text, its expected entries, whether it was held out, and
the rank and top 3 it got (or that it could not be asked). A memo is used only when its
``format`` matches :data:`MEMO_FORMAT`: bump it whenever ranking or alignment changes, and an
old memo is simply ignored (the live version is then loaded and asked, as before memos).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from kbflow.store.home import atomic_write_text
from kbflow.store.versions import read_manifest

if TYPE_CHECKING:
    from kbflow.index.version import LoadedVersion

log = logging.getLogger(__name__)

#: Where a version keeps its memo (inside its own folder).
MEMO = Path("gate") / "memo.json"

#: Bump when the gate's ranking or alignment changes: memos of another format are not used.
MEMO_FORMAT = 1

#: ``(set, query, expected entries, held out)``: one check question.
QueryKey = tuple[str, str, tuple[str, ...], bool]


@dataclass
class RankMemo:
    """A remembered rank: ``asked`` False when the version could not be asked the query."""

    asked: bool
    rank: int | None = None
    top: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class AlignmentMemo:
    """The alignment of a sample of entries on one version (``kbflow.gate.alignment``)."""

    ids: list[str]
    share: list[float | None]
    best: list[int]
    answers: list[str]
    """The answers' heads as the report shows them."""
    dense: bool
    heads: list[str] = field(default_factory=list)
    """sha256 of each answer's head as ranked (``kbflow.gate.alignment.ANSWER_CHARS``)."""
    tokens: list[list[str]] = field(default_factory=list)
    """Each head's tokens: tomorrow's gate tokenises only the answers that changed."""


@dataclass
class Memo:
    ranks: dict[QueryKey, RankMemo] = field(default_factory=dict)
    alignment: AlignmentMemo | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "format": MEMO_FORMAT,
            "ranks": [
                {
                    "set": k[0],
                    "query": k[1],
                    "expected": list(k[2]),
                    "held_out": k[3],
                    "asked": m.asked,
                    "rank": m.rank,
                    "top": [list(t) for t in m.top],
                }
                for k, m in self.ranks.items()
            ],
            "alignment": None if self.alignment is None else vars(self.alignment),
        }


def read_memo(folder: Path) -> Memo:
    """The memo a version's gate left in ``folder`` (empty when there is none, it is of another
    format, or it cannot be read: a memo only ever saves work)."""
    path = folder / MEMO
    if not path.is_file():
        return Memo()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != MEMO_FORMAT:
            return Memo()
        ranks = {
            (r["set"], r["query"], tuple(r["expected"]), bool(r["held_out"])): RankMemo(
                bool(r["asked"]), r["rank"], [(t[0], t[1]) for t in r["top"]]
            )
            for r in raw["ranks"]
        }
        al = raw.get("alignment")
        return Memo(ranks, AlignmentMemo(**al) if al else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("gate: ignoring the unreadable memo %s (%s)", path, exc)
        return Memo()


def write_memo(folder: Path, memo: Memo) -> None:
    """Write ``memo`` into the version folder (atomically: a reader sees the old or the new)."""
    path = folder / MEMO
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(memo.as_json(), ensure_ascii=False))


class LiveVersion:
    """The live version as the gate sees it: its memo at once, its entry ids from its passages
    file, and the version itself loaded only when a question is not in the memo."""

    def __init__(self, folder: Path, loaded: LoadedVersion | None = None) -> None:
        self.folder = folder
        self._loaded = loaded
        self.memo = read_memo(folder)
        self.version: str = loaded.version if loaded else read_manifest(folder)["version"]
        self._entry_ids: list[str] | None = None

    @property
    def was_loaded(self) -> bool:
        return self._loaded is not None

    def loaded(self) -> LoadedVersion:
        if self._loaded is None:
            from kbflow.index.version import LoadedVersion

            log.info("gate: loading live version %s (questions its memo lacks)", self.version)
            self._loaded = LoadedVersion(self.folder)
        return self._loaded

    @property
    def entry_ids(self) -> list[str]:
        if self._loaded is not None:
            return self._loaded.entry_ids
        if self._entry_ids is None:
            col = pq.read_table(self.folder / "passages.parquet", columns=["entry_id"])
            self._entry_ids = list(dict.fromkeys(col.column("entry_id").to_pylist()))
        return self._entry_ids
