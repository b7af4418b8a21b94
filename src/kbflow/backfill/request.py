"""What a backfill asks for: an export date range, a re-embed, or a range of ISO weeks, parsed and
checked (``BackfillRequest``), and the hash that names a unit's parameters."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from kbflow.errors import ConfigError

#: A unit in this state is not done again.
DONE = "done"


TIMEZONE = "Asia/Shanghai"


_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class BackfillRequest:
    """What to backfill: exactly one of an export date range, a re-embed, or a week range."""

    exports_from: date | None = None
    exports_to: date | None = None
    reembed: bool = False
    model: str | None = None
    dim: int | None = None
    weeks: tuple[str, ...] = ()

    @property
    def kind(self) -> Kind:
        if self.reembed:
            return "reembed"
        if self.weeks:
            return "weeks"
        return "exports"


def parse_request(
    exports_from: str | date | None = None,
    exports_to: str | date | None = None,
    reembed: bool = False,
    model: str | None = None,
    dim: int | None = None,
    weeks: str | None = None,
) -> BackfillRequest:
    """Check the backfill parameters (the CLI's and the flow's); ``ConfigError`` names the
    mistake. ``exports_to`` defaults to ``exports_from`` (one day)."""
    modes = [
        name
        for name, given in (
            ("--exports-from/--exports-to", exports_from is not None or exports_to is not None),
            ("--reembed", reembed),
            ("--weeks", bool(weeks)),
        )
        if given
    ]
    if len(modes) != 1:
        raise ConfigError(
            "a backfill does one thing: give exactly one of --exports-from/--exports-to, "
            f"--reembed or --weeks (got {', '.join(modes) or 'none'})"
        )
    if (model is not None or dim is not None) and not reembed:
        raise ConfigError("--model and --dim go with --reembed")
    if dim is not None and dim < 1:
        raise ConfigError(f"--dim {dim} must be a positive number of dimensions")
    if reembed:
        if model is None and dim is None:
            raise ConfigError("--reembed needs --model and/or --dim (what to re-embed with)")
        return BackfillRequest(reembed=True, model=model, dim=dim)
    if weeks:
        return BackfillRequest(weeks=tuple(parse_weeks(weeks)))
    start = _date(exports_from if exports_from is not None else exports_to, "--exports-from")
    end = _date(exports_to if exports_to is not None else exports_from, "--exports-to")
    if end < start:
        raise ConfigError(f"--exports-to {end} is before --exports-from {start}")
    return BackfillRequest(exports_from=start, exports_to=end)


def _date(value: str | date | None, flag: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{flag} {value!r} is not a date; use YYYY-MM-DD") from exc


def parse_weeks(spec: str) -> list[str]:
    """``2026-W40..2026-W47`` (inclusive, across year ends), ``2026-W40,2026-W42`` or one week,
    as a list of ISO weeks in order. ``ConfigError`` for anything else."""
    weeks: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        first, _, last = part.partition("..")
        start, end = _monday(first, spec), _monday(last or first, spec)
        if end < start:
            raise ConfigError(f"--weeks {part!r}: {last} is before {first}")
        day = start
        while day <= end:
            year, num, _ = day.isocalendar()
            weeks.append(f"{year}-W{num:02d}")
            day += timedelta(days=7)
    if len(weeks) > 520:
        raise ConfigError(f"--weeks {spec!r} spans {len(weeks)} weeks; split it up")
    return list(dict.fromkeys(weeks))


def _monday(week: str, spec: str) -> date:
    m = _WEEK.match(week.strip())
    if not m:
        raise ConfigError(f"--weeks {spec!r}: {week!r} is not an ISO week like 2026-W47")
    try:
        return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError as exc:
        raise ConfigError(f"--weeks {spec!r}: week {week!r} does not exist") from exc


def params_hash(kind: str, params: dict[str, Any]) -> str:
    """Stable hash of a unit's parameters (overrides, force, model, ...): the same backfill
    triggered again has the same hash; changing a parameter makes it new work."""
    text = json.dumps({"kind": kind, **params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


Kind = Literal["exports", "reembed", "weeks"]
