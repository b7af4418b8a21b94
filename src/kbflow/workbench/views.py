"""What the workbench pages show, computed from review queue rows (``review_queue``): filters,
pages, facet counts, the next open suggestion, and a suggestion's evidence. Pure: no I/O."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from kbflow.errors import ConfigError

#: Rows per queue page.
PAGE_SIZE = 100

STATUSES = ("open", "decided", "all")

#: Labels of the kinds the mining writes (others show their raw name).
KIND_LABELS = {
    "similar_question": "Similar question · 相似问法",
    "confusion": "Confusion · 易混淆",
    "gap": "Gap · 缺少条目",
    "low_click": "Low clicks · 点击率低",
    "duplicate": "Duplicate · 重复条目",
    "contradiction": "Contradiction · 答案矛盾",
    "expiring": "Expiring · 即将过期",
    "stale_asked": "Stale, still asked · 过期仍被问",
}

#: Kinds whose evidence is two entries to read side by side (``detail["a"]``/``detail["b"]``).
PAIR_KINDS = ("contradiction", "duplicate")

#: Filter values are short; anything longer is not a value the queue holds.
MAX_FILTER_CHARS = 200


@dataclass(frozen=True)
class QueueFilter:
    """The queue page's GET parameters; ``status`` is open (undecided or deferred), decided
    (accepted, edited, rejected) or all."""

    kind: str = ""
    category: str = ""
    week: str = ""
    status: str = "open"
    page: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> QueueFilter:
        """Raises ``ConfigError`` for a status or page the queue does not have."""
        values = {k: (params.get(k) or "").strip() for k in ("kind", "category", "week")}
        if any(len(v) > MAX_FILTER_CHARS for v in values.values()):
            raise ConfigError(f"a filter value is longer than {MAX_FILTER_CHARS} characters")
        status = (params.get("status") or "open").strip()
        if status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        raw_page = (params.get("page") or "1").strip()
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= 1_000_000:
            raise ConfigError(f"page must be a number from 1, not {raw_page[:20]!r}")
        return cls(status=status, page=int(raw_page), **values)

    def matches(self, row: Mapping[str, Any]) -> bool:
        if self.kind and row["kind"] != self.kind:
            return False
        if self.category and (row.get("category") or "") != self.category:
            return False
        if self.week and row["week"] != self.week:
            return False
        if self.status == "open":
            return is_open(row)
        if self.status == "decided":
            return not is_open(row)
        return True

    def query(self, **changes: Any) -> str:
        """The filter as a query string (defaults left out), with ``changes`` applied."""
        f = replace(self, **changes)
        pairs = [
            ("kind", f.kind),
            ("category", f.category),
            ("week", f.week),
            ("status", "" if f.status == "open" else f.status),
            ("page", "" if f.page == 1 else str(f.page)),
        ]
        return urlencode([(k, v) for k, v in pairs if v])


def is_open(row: Mapping[str, Any]) -> bool:
    """Undecided, or deferred (a deferred suggestion stays in the queue)."""
    return row.get("decision") in (None, "defer")


@dataclass(frozen=True)
class QueuePage:
    rows: list[dict[str, Any]]
    matching: int
    page: int
    pages: int
    first: int
    """1-based position of the page's first row among the matching ones (0 when none)."""
    n_open: int
    n_decided: int
    kinds: list[tuple[str, int]]
    categories: list[tuple[str, int]]
    weeks: list[str]


def queue_page(rows: list[dict[str, Any]], f: QueueFilter, page_size: int = PAGE_SIZE) -> QueuePage:
    """One page of the rows ``f`` matches, in queue order (highest impact first), with the
    counts the filter form shows (kinds and categories counted over open suggestions)."""
    matching = [r for r in rows if f.matches(r)]
    pages = max(1, -(-len(matching) // page_size))
    page = min(f.page, pages)
    start = (page - 1) * page_size
    open_rows = [r for r in rows if is_open(r)]
    return QueuePage(
        rows=matching[start : start + page_size],
        matching=len(matching),
        page=page,
        pages=pages,
        first=start + 1 if matching else 0,
        n_open=len(open_rows),
        n_decided=len(rows) - len(open_rows),
        kinds=sorted(Counter(r["kind"] for r in open_rows).items()),
        categories=sorted(Counter(r["category"] for r in open_rows if r.get("category")).items()),
        weeks=sorted({r["week"] for r in rows}, reverse=True),
    )


def next_open(rows: list[dict[str, Any]], f: QueueFilter, current: str) -> str | None:
    """The open suggestion to review after ``current``: the next one in queue order among those
    ``f`` matches (any status filter aside), else the first one before it; None when none is
    left."""
    f = replace(f, status="open")
    ids = [r["suggestion_id"] for r in rows if f.matches(r) or r["suggestion_id"] == current]
    if current in ids:
        i = ids.index(current)
        ids = ids[i + 1 :] + ids[:i]
    ids = [s for s in ids if s != current]
    return ids[0] if ids else None


@dataclass(frozen=True)
class Evidence:
    """A suggestion's kind-specific evidence (``detail``), split for display: the two entries of
    a pair kind, the facts they disagree on, and every other field as (key, value) text."""

    pair: tuple[dict[str, str], dict[str, str]] | None = None
    facts: list[dict[str, str]] = field(default_factory=list)
    items: list[tuple[str, str]] = field(default_factory=list)


def parse_evidence(kind: str, detail: str | None) -> Evidence:
    """``detail`` (JSON text, or None) as :class:`Evidence`; text that is not a JSON object is
    shown as one item rather than failing the page."""
    if not detail:
        return Evidence()
    try:
        data = json.loads(detail)
    except ValueError:
        return Evidence(items=[("detail", detail)])
    if not isinstance(data, dict):
        return Evidence(items=[("detail", _text(data))])
    pair = None
    if kind in PAIR_KINDS and isinstance(data.get("a"), dict) and isinstance(data.get("b"), dict):
        pair = (_side(data.pop("a")), _side(data.pop("b")))
    facts: list[dict[str, str]] = []
    if isinstance(data.get("facts"), list) and all(isinstance(x, dict) for x in data["facts"]):
        facts = [{str(k): _text(v) for k, v in x.items()} for x in data.pop("facts")]
    return Evidence(pair=pair, facts=facts, items=[(str(k), _text(v)) for k, v in data.items()])


def _side(d: dict[str, Any]) -> dict[str, str]:
    return {str(k): _text(v) for k, v in d.items()}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, ensure_ascii=False)
