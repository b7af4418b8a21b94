"""ISO weeks (``2026-W47``) in the mining timezone: parsing, bounds, the week before, the default."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from kbflow.errors import ConfigError

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def parse_week(week: str) -> tuple[int, int]:
    """``"2026-W47"`` -> ``(2026, 47)``; ``ConfigError`` for anything else."""
    m = _WEEK.match(week or "")
    if not m:
        raise ConfigError(f"week {week!r} is not an ISO week like 2026-W47")
    year, num = int(m.group(1)), int(m.group(2))
    try:
        date.fromisocalendar(year, num, 1)
    except ValueError as exc:
        raise ConfigError(f"week {week!r} does not exist ({exc})") from exc
    return year, num


def week_bounds(week: str, tz: str = "Asia/Shanghai") -> tuple[datetime, datetime]:
    """The week as ``[start, end)`` in UTC: Monday 00:00 to next Monday 00:00 in ``tz``."""
    year, num = parse_week(week)
    monday = date.fromisocalendar(year, num, 1)
    zone = ZoneInfo(tz)
    start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
    end = start + timedelta(days=7)
    return start.astimezone(UTC), end.astimezone(UTC)


def week_of(day: date) -> str:
    year, num, _ = day.isocalendar()
    return f"{year}-W{num:02d}"


def previous_week(week: str) -> str:
    year, num = parse_week(week)
    return week_of(date.fromisocalendar(year, num, 1) - timedelta(days=7))


def default_week(now: datetime | None = None, tz: str = "Asia/Shanghai") -> str:
    """The last complete ISO week in ``tz`` (on Monday 06:00 that is the week that just ended)."""
    now = now or datetime.now(UTC)
    local = now.astimezone(ZoneInfo(tz)).date()
    return week_of(local - timedelta(days=7))
