"""Prefect global concurrency limits around a run's heavy work (settings ``limits.*``).

``kb-fleet`` runs many KBs' nightlies at once on a work pool; the limits it sizes (registry
``limits:``) bound how many embed at once (one GPU worker at a time, say) and how many run a
CPU-heavy stage at once, whatever the number of workers. A run without ``limits.*`` settings
holds nothing (a single KB's nightly, as before).

The flows take the CPU slot once for validate+clean+chunk and once for index+review+gate
(each acquisition costs the API a round trip or two: about 2 s measured on a local server), the
embed slot around the embed task (on sglang around the GPU workers' whole life). Each slot held
is recorded in ``runs/<run_id>/slots.jsonl`` (limit, stages, waited and held seconds,
wall-clock times): the fleet report shows the waits, and a test checks from these
records that no more runs held a limit at once than its size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Literal

from prefect.concurrency.sync import concurrency

from kbflow.errors import ConfigError
from kbflow.settings import Settings
from kbflow.store.home import DataHome

SLOTS_FILE = "slots.jsonl"


@contextmanager
def slot(
    home: DataHome, run_id: str, settings: Settings, kind: Literal["embed", "cpu"], stage: str
) -> Iterator[None]:
    """Hold one slot of the ``limits.<kind>`` limit for the block (nothing when unset)."""
    name = getattr(settings.limits, kind)
    if not name:
        yield
        return
    asked, got = time.time(), None
    try:
        with ExitStack() as stack:
            try:
                stack.enter_context(
                    concurrency(name, occupy=1, timeout_seconds=settings.limits.wait_s, strict=True)
                )
            except TimeoutError as exc:
                raise ConfigError(
                    f"{stage}: waited {settings.limits.wait_s:g} s for a slot of the concurrency "
                    f"limit {name!r} (limits.{kind}); raise limits.wait_s or the limit's size"
                ) from exc
            except Exception as exc:
                if type(exc).__name__ != "ConcurrencySlotAcquisitionError":
                    raise
                raise ConfigError(
                    f"{stage}: the Prefect global concurrency limit {name!r} (limits.{kind}) "
                    f"does not exist: create it (`prefect gcl create {name} --limit N`) or let "
                    "kb-fleet create it from the registry's limits"
                ) from exc
            got = time.time()
            yield
    finally:
        if got is not None:
            done = time.time()
            record = {
                "limit": name, "kind": kind, "stage": stage, "asked": asked, "acquired": got,
                "released": done, "waited_s": round(got - asked, 3), "held_s": round(done - got, 3),
            }  # fmt: skip
            path = home.run_dir(run_id) / SLOTS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
