"""The live index version's entries a suggestion names: title, answer and similar questions,
read from its ``passages.parquet`` (the workbench shows what a decision would change)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from kbflow.errors import NoLiveVersion
from kbflow.store.versions import live_version_dir

#: Longer answers are cut for display (the answer of a long document is many passages).
ANSWER_CHARS = 2000


@dataclass(frozen=True)
class EntryView:
    entry_id: str
    title: str
    answer: str
    questions: tuple[str, ...]


def live_entries(indexes_dir: Path, entry_ids: list[str]) -> dict[str, EntryView] | None:
    """The live version's entries among ``entry_ids`` (missing ids are left out); None when no
    version is live. Reads only the rows of those entries' passages."""
    ids = sorted({e for e in entry_ids if e})
    try:
        folder = live_version_dir(indexes_dir)
    except NoLiveVersion:
        return None
    if not ids:
        return {}
    t = pq.read_table(
        folder / "passages.parquet",
        columns=["entry_id", "ordinal", "kind", "title", "text", "display"],
        filters=[("entry_id", "in", ids)],
    ).sort_by([("entry_id", "ascending"), ("ordinal", "ascending")])
    found: dict[str, dict[str, list[str]]] = {}
    for r in t.to_pylist():
        e = found.setdefault(r["entry_id"], {"title": [], "answer": [], "questions": []})
        e["title"][:1] = [r["title"] or ""]
        if r["kind"] == "question":
            e["questions"].append(r["text"])
        elif r["kind"] in ("answer", "section"):
            e["answer"].append(r["display"] or r["text"] or "")
    views = {}
    for entry_id, e in found.items():
        answer = "\n\n".join(e["answer"])
        if len(answer) > ANSWER_CHARS:
            answer = answer[:ANSWER_CHARS] + "…"
        views[entry_id] = EntryView(entry_id, e["title"][0], answer, tuple(e["questions"]))
    return views
