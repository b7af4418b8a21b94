"""Golden queries: the KB's ``golden.jsonl`` (``{"query", "expected": [ids], "split"}``;
``expected: []`` marks an out-of-scope query whose right answer is a hand-off), where a run finds
it, and the run's frozen copy (a resumed run calibrates and gates on the same queries)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbflow.errors import ConfigError
from kbflow.settings import Settings
from kbflow.store.home import DataHome, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GoldenQuery:
    query: str
    expected: tuple[str, ...]
    split: str | None


def load_golden(path: Path, split: str | None = None) -> list[GoldenQuery]:
    if not path.is_file():
        raise ConfigError(f"golden file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            q = GoldenQuery(
                str(obj["query"]),
                tuple(str(x) for x in obj.get("expected") or []),
                obj.get("split"),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f'{path}:{n}: not a golden query ({exc}); expected {{"query", "expected": [ids]}}'
            ) from exc
        if split is None or q.split == split:
            out.append(q)
    if not out:
        raise ConfigError(f"{path} has no queries" + (f" in split {split!r}" if split else ""))
    return out


GOLDEN = "golden.jsonl"


def resolve_golden(source: str | None, settings: Settings) -> Path | None:
    """The KB's golden queries: ``gate.golden`` when set, else ``golden.jsonl`` beside a local
    export folder (``<kb>/golden.jsonl`` for ``--source <kb>/export``), else None."""
    if settings.gate.golden is not None:
        if not settings.gate.golden.is_file():
            raise ConfigError(
                f"gate.golden {settings.gate.golden} does not exist; fix the path or unset it"
            )
        return settings.gate.golden
    if not source or "://" in source:
        return None
    folder = Path(source).expanduser()
    candidate = (folder if folder.is_dir() else folder.parent).parent / "golden.jsonl"
    return candidate if candidate.is_file() else None


def run_golden(
    home: DataHome, run_id: str, source: str | None, settings: Settings
) -> list[GoldenQuery]:
    """Golden queries of this run, frozen in ``runs/<run_id>/golden.jsonl`` on first use so a
    resumed run calibrates and gates on the same queries."""
    frozen = home.run_dir(run_id) / GOLDEN
    if not frozen.is_file():
        path = resolve_golden(source, settings)
        if path is None:
            return []
        atomic_write_text(frozen, path.read_text(encoding="utf-8"))
        log.info("gate: golden queries from %s", path)
    return load_golden(frozen)


def calibration_queries(golden: list[GoldenQuery]) -> list[GoldenQuery]:
    """The golden queries calibration may look at: every split except ``test`` (which is kept
    for evaluation), or all of them when the file has no split labels."""
    if any(q.split for q in golden):
        return [q for q in golden if q.split != "test"]
    return list(golden)


def sample_golden(golden: list[GoldenQuery], limit: int) -> list[GoldenQuery]:
    """At most ``limit`` answerable and ``limit // 2`` out-of-scope queries, a seeded sample of
    each (the same every run), so a large golden file neither slows the nightly run down nor
    loses its out-of-scope queries to a cut at the end of the file."""
    answerable = [q for q in golden if q.expected]
    out = [q for q in golden if not q.expected]
    rng = np.random.default_rng(0)

    def pick(items: list[GoldenQuery], n: int) -> list[GoldenQuery]:
        if len(items) <= n:
            return items
        return [items[i] for i in sorted(rng.choice(len(items), size=n, replace=False).tolist())]

    return pick(answerable, limit) + pick(out, limit // 2)
