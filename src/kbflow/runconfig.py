"""Building the run's ``Settings`` from the environment plus explicit overrides."""

from __future__ import annotations

from datetime import date
from typing import Any

from kbflow.errors import ConfigError
from kbflow.settings import Settings


def load_settings(home: str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """``Settings`` from ``KBFLOW_*`` variables, then ``home`` and dotted ``overrides``
    (``{"embed.dim": 256}``) on top. Raises ``ConfigError`` with the field at fault."""
    from pydantic import ValidationError

    try:
        base = Settings()
        data = base.model_dump(by_alias=True)
        if home:
            data["home"] = home
        for dotted, value in (overrides or {}).items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"invalid setting {'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
        ) from exc


def parse_run_date(value: str | date | None) -> date:
    from kbflow.pipeline import today_in

    if value is None or value == "":
        return today_in()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"--run-date {value!r} is not a date; use YYYY-MM-DD") from exc
