"""The KB registry: the YAML file that lists every KB of a fleet (``kbflow fleet``, ``kb-fleet``).

.. code-block:: yaml

    timezone: Asia/Shanghai        # schedules are read in this zone (default)
    limits:                        # Prefect global concurrency limits kb-fleet creates and sizes
      embed: 1                     #   KBs embedding at once (a GPU worker's whole life on sglang)
      cpu: 2                       #   KBs in a CPU-heavy stage at once (validate .. gate)
    defaults:                      # settings every KB gets (dotted keys, as KBFLOW_* variables)
      embed.batch_size: 128
    kbs:
      - name: brand-a              # letters, digits, '-' and '_'; unique
        source: exports/brand-a    # the export kb-nightly pulls (relative: to this file)
        home: homes/brand-a        # its own data home: lock, cache, versions, reports
        schedule: "0 2 * * *"      # cron (default: daily at 02:00)
        settings:                  # this KB's settings, over the defaults
          embed.model: multilingual-e5-small

Every KB is isolated by its data home: two KBs may not share one, nor nest one inside another,
so no lock, cache, version or report ever crosses KBs. A mistake is refused when the file is
read (``ConfigError`` naming the KB and the field), never half-way through a fleet run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kbflow.errors import ConfigError
from kbflow.settings import load_settings

DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_TIMEZONE = "Asia/Shanghai"
#: Names of the Prefect global concurrency limits the fleet's runs hold (``limits.*`` settings).
LIMIT_NAMES = {"embed": "kbflow-embed", "cpu": "kbflow-cpu"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TOP = {"timezone", "limits", "defaults", "kbs"}
_KB = {"name", "source", "home", "schedule", "settings", "enabled"}


@dataclass(frozen=True)
class KbSpec:
    name: str
    source: str
    home: Path
    schedule: str = DEFAULT_SCHEDULE
    settings: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def overrides(self, limits: Mapping[str, str]) -> dict[str, Any]:
        """The settings this KB's nightly runs with: the registry's defaults and its own
        settings (already merged), plus the fleet's concurrency limit names."""
        return {**self.settings, **{f"limits.{k}": v for k, v in limits.items()}}


@dataclass(frozen=True)
class Registry:
    path: Path
    kbs: tuple[KbSpec, ...]
    timezone: str = DEFAULT_TIMEZONE
    limits: Mapping[str, int] = field(default_factory=dict)

    @property
    def limit_names(self) -> dict[str, str]:
        """``limits.*`` settings of the KBs' runs: the limit names of the sizes given."""
        return {k: LIMIT_NAMES[k] for k in self.limits}

    def select(self, names: Sequence[str] | None) -> list[KbSpec]:
        """The KBs named (all enabled ones when ``names`` is empty); an unknown name is refused."""
        if not names:
            return [kb for kb in self.kbs if kb.enabled]
        known = {kb.name: kb for kb in self.kbs}
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(
                f"{self.path}: no KB named {', '.join(missing)} (known: {', '.join(known)})"
            )
        return [known[n] for n in names]

    def is_due(self, kb: KbSpec, now: datetime, last_started: datetime | None) -> bool:
        """Enabled, and its schedule fired since its last run started (never run: due). A
        fleet run that was missed (the host was down) catches up once, not once per miss."""
        return kb.enabled and (
            last_started is None or last_fire(kb.schedule, now, self.timezone) > last_started
        )

    def due(self, now: datetime, last_started: Mapping[str, datetime | None]) -> list[KbSpec]:
        """The KBs that are due (``is_due``), given when each one's last run started."""
        return [kb for kb in self.kbs if self.is_due(kb, now, last_started.get(kb.name))]


def last_fire(schedule: str, now: datetime, timezone: str) -> datetime:
    """The latest time at or before ``now`` that the cron ``schedule`` fired, in ``timezone``."""
    from croniter import croniter

    local = now.astimezone(ZoneInfo(timezone)) + timedelta(seconds=1)
    return croniter(schedule, local).get_prev(datetime)  # type: ignore[no-any-return]


def load_registry(path: Path | str) -> Registry:
    """The registry at ``path``, checked whole (see the module docstring)."""
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"KB registry {path} does not exist (see README: Many KBs)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("kbs"), list) or not doc["kbs"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty list under 'kbs'")
    _no_unknown(path, "the registry", doc, _TOP)
    timezone = str(doc.get("timezone") or DEFAULT_TIMEZONE)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: unknown timezone {timezone!r}") from exc
    limits = _limits(path, doc.get("limits") or {})
    defaults = _mapping(path, "defaults", doc.get("defaults") or {})
    base = path.parent
    kbs = [_kb(path, base, n, raw, defaults) for n, raw in enumerate(doc["kbs"], 1)]
    _isolated(path, kbs)
    return Registry(path, tuple(kbs), timezone, limits)


def _kb(path: Path, base: Path, n: int, raw: Any, defaults: Mapping[str, Any]) -> KbSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: KB #{n} is not a mapping")
    name = str(raw.get("name") or "")
    where = f"KB {name!r}" if name else f"KB #{n}"
    if not _NAME.match(name):
        raise ConfigError(
            f"{path}: {where}: name must be 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    _no_unknown(path, where, raw, _KB)
    for key in ("source", "home"):
        if not raw.get(key):
            raise ConfigError(f"{path}: {where}: '{key}' is required")
    source = str(raw["source"])
    if "://" not in source:
        source = str((base / source).expanduser().resolve())
    schedule = str(raw.get("schedule") or DEFAULT_SCHEDULE)
    from croniter import croniter

    if not croniter.is_valid(schedule):
        raise ConfigError(f"{path}: {where}: schedule {schedule!r} is not a cron expression")
    settings = {**defaults, **_mapping(path, f"{where}: settings", raw.get("settings") or {})}
    if "home" in settings:
        raise ConfigError(f"{path}: {where}: set the data home with 'home', not in settings")
    try:
        load_settings(None, settings)
    except ConfigError as exc:
        hint = (
            " (YAML reads off/on/yes/no as false/true: quote the word, e.g. 'off')"
            if any(isinstance(v, bool) for v in settings.values())
            else ""
        )
        raise ConfigError(f"{path}: {where}: {exc}{hint}") from exc
    return KbSpec(
        name=name,
        source=source,
        home=(base / str(raw["home"])).expanduser().resolve(),
        schedule=schedule,
        settings=settings,
        enabled=bool(raw.get("enabled", True)),
    )


def _isolated(path: Path, kbs: Sequence[KbSpec]) -> None:
    seen: dict[str, KbSpec] = {}
    for kb in kbs:
        if kb.name in seen:
            raise ConfigError(f"{path}: two KBs are named {kb.name!r}")
        seen[kb.name] = kb
    for a in kbs:
        for b in kbs:
            if a is not b and (a.home == b.home or a.home in b.home.parents):
                raise ConfigError(
                    f"{path}: KBs {a.name!r} and {b.name!r} share a data home ({a.home}, "
                    f"{b.home}); give each KB its own folder, outside the others"
                )


def _limits(path: Path, raw: Any) -> dict[str, int]:
    raw = _mapping(path, "limits", raw)
    out = {}
    for key, value in raw.items():
        if key not in LIMIT_NAMES:
            raise ConfigError(
                f"{path}: limits: unknown limit {key!r} (known: {', '.join(LIMIT_NAMES)})"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}: limits.{key} must be a whole number >= 1, not {value!r}")
        out[key] = value
    return out


def _mapping(path: Path, where: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where} must be a mapping of setting: value")
    return {str(k): v for k, v in raw.items()}


def _no_unknown(path: Path, where: str, raw: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{path}: {where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
