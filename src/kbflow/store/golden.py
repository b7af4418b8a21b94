"""Golden queries: the KB's ``golden.jsonl`` (``{"query", "expected": [ids], "split"}``;
``expected: []`` marks an out-of-scope query whose right answer is a hand-off).

The golden set belongs to the KB, not to one export folder: it lives in the data home
(``golden/``, one file per imported version, ``golden/history.jsonl`` says who brought which and
when). ``kbflow golden import FILE`` stores one; a run that brings one (``--golden``, or a
``golden.jsonl`` beside its export folder) stores it when it is new, and every run gates on the
data home's latest set. A run freezes the set it used (``runs/<run_id>/golden.jsonl``), so a
resumed run calibrates and gates on the same queries."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class GoldenSet:
    """One imported version of the KB's golden set."""

    version: int
    path: str
    imported_at: str
    """ISO time (UTC)."""
    by: str
    source: str
    sha256: str
    queries: int
    answerable: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GoldenStore:
    """The data home's golden sets: ``golden/v0001.jsonl``, ... and ``golden/history.jsonl``.
    Writers hold the run lock or are ``kbflow golden import`` (files are written atomically;
    a version is listed only after its file is complete)."""

    def __init__(self, home: DataHome) -> None:
        self.dir = home.root / "golden"
        self.history_file = self.dir / "history.jsonl"

    def history(self) -> list[GoldenSet]:
        if not self.history_file.is_file():
            return []
        lines = self.history_file.read_text(encoding="utf-8").splitlines()
        return [GoldenSet(**json.loads(line)) for line in lines if line.strip()]

    def latest(self) -> GoldenSet | None:
        sets = self.history()
        return sets[-1] if sets else None

    def import_file(
        self, path: Path, by: str | None = None, source: str | None = None
    ) -> GoldenSet:
        """Store ``path`` as the next version (checked with :func:`load_golden` first); the
        latest set when its content is the same (nothing new is stored)."""
        queries = load_golden(path)
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        latest = self.latest()
        if latest is not None and latest.sha256 == digest:
            return latest
        version = (latest.version if latest else 0) + 1
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.dir / f"v{version:04d}.jsonl"
        atomic_write_text(target, data.decode("utf-8"))
        entry = GoldenSet(
            version=version,
            path=str(target),
            imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
            by=by or _user(),
            source=source or str(path.resolve()),
            sha256=digest,
            queries=len(queries),
            answerable=sum(1 for q in queries if q.expected),
        )
        with open(self.history_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.info("golden set v%d stored: %d queries from %s", version, entry.queries, entry.source)
        return entry


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


#: What a run's manifest and report say when there is no golden set anywhere.
NO_GOLDEN = (
    "no golden set: gated on the self-check and the answer-alignment check only; store one with "
    "`kbflow golden import FILE`"
)


def run_golden(
    home: DataHome, run_id: str, source: str | None, settings: Settings
) -> list[GoldenQuery]:
    """Golden queries of this run: the data home's latest golden set, after storing the one the
    run brings (``gate.golden``, or ``golden.jsonl`` beside the export) when it is new — an
    explicit ``gate.golden`` always, one found beside the export only when the file is newer
    than the stored set. Frozen in ``runs/<run_id>/golden.jsonl`` (and ``golden.json``, which
    set it was) on first use, so a resumed run calibrates and gates on the same queries."""
    frozen = home.run_dir(run_id) / GOLDEN
    used = home.run_dir(run_id) / "golden.json"
    if used.is_file() or frozen.is_file():  # frozen alone: a run from before golden.json
        return load_golden(frozen) if frozen.is_file() else []
    store = GoldenStore(home)
    latest = store.latest()
    brought = resolve_golden(source, settings)
    if brought is not None:
        # an explicit --golden always; a file beside the export when newer than the stored set
        # (import_file stores nothing when the content is the same)
        newer = (
            latest is None
            or brought.stat().st_mtime > datetime.fromisoformat(latest.imported_at).timestamp()
        )
        if latest is None or newer or settings.gate.golden is not None:
            latest = store.import_file(brought, by=f"run {run_id}")
        elif hashlib.sha256(brought.read_bytes()).hexdigest() != latest.sha256:
            log.warning(
                "gate: %s is older than the data home's golden set v%d (%s, by %s); using "
                "v%d (import the file to use it: kbflow golden import)",
                brought,
                latest.version,
                latest.imported_at,
                latest.by,
                latest.version,
            )
    home.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    if latest is None:
        log.warning("gate: %s", NO_GOLDEN)
        atomic_write_text(used, json.dumps(None))
        return []
    atomic_write_text(frozen, Path(latest.path).read_text(encoding="utf-8"))
    atomic_write_text(used, json.dumps(latest.as_dict(), ensure_ascii=False))
    log.info("gate: golden set v%d (%d queries, by %s)", latest.version, latest.queries, latest.by)
    return load_golden(frozen)


def run_golden_set(home: DataHome, run_id: str) -> dict[str, Any] | None:
    """Which golden set the run used (``GoldenSet.as_dict()``), None when it had none."""
    used = home.run_dir(run_id) / "golden.json"
    if not used.is_file():
        return None
    value: dict[str, Any] | None = json.loads(used.read_text(encoding="utf-8"))
    return value


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
