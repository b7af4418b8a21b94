"""The path ``kb-nightly`` and ``kb-reembed`` share once they have passages: embed → index →
review → gate → account → publish → report, and what a failure of any of it reports.

Not a flow of its own: the flows call it, so its tasks run in theirs. A re-embed is accounted,
gated, published and notified exactly like a nightly run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import date

from kbflow_tasks import nightly as t
from kbflow_tasks.limits import slot

from kbflow.embed.sglang import workers_for_run
from kbflow.errors import KbflowError
from kbflow.results import Pulled, RunSummary
from kbflow.settings import Settings
from kbflow.store.home import DataHome


def build_and_publish(
    data: DataHome, run_id: str, day: date, pulled: Pulled, settings: Settings, force: bool
) -> RunSummary:
    """Build a version of the run's passages and publish it if the quality gate lets it (or
    ``force``); a blocked version is reported and a failure notice sent."""
    # sglang: one worker start for every text the build embeds (passages, canaries, review
    # titles, calibration and gate queries), stopped before publishing
    # a fleet's limits (settings limits.*): embedding holds the embed slot (on sglang for the
    # GPU workers' whole life), then the CPU-heavy stages one CPU slot; never the other way
    # round, so two runs cannot each hold what the other waits for
    gpu = settings.embed.backend == "sglang"
    with (
        slot(data, run_id, settings, "embed", "sglang workers") if gpu else nullcontext(),
        workers_for_run(settings, data.root) as serving,
    ):
        embedded = t.embed(data, run_id, serving)
        with slot(data, run_id, settings, "cpu", "index+review+gate"):
            built = t.index(data, run_id, day, pulled, embedded, serving)
            t.review(data, run_id, built["version"], serving)
            gate = t.gate(data, run_id, built["version"], serving, force)
    t.account(data, run_id, pulled)
    if not gate["publish"]:
        reasons = "; ".join(gate["reasons"])
        notice = t.notify(data, run_id, day, "blocked", reasons, settings)
        return t.report(data, run_id, day, "blocked", reasons, notice)
    t.publish(data, run_id, built["version"], settings)
    return t.report(data, run_id, day, "published")


@contextmanager
def failures_reported(data: DataHome, run_id: str, day: date, settings: Settings) -> Iterator[None]:
    """A run that fails sends its failure notice; a failure kbflow names (``KbflowError``) is
    also reported (HTML report, catalog status ``failed``). Either way the error propagates."""
    try:
        yield
    except KbflowError as exc:
        notice = t.notify(data, run_id, day, "failed", str(exc), settings)
        t.report(data, run_id, day, "failed", str(exc), notice)
        raise
    except Exception as exc:  # a bug: it keeps its traceback, and on-call still hears of it
        t.notify(data, run_id, day, "failed", f"{type(exc).__name__}: {exc}", settings)
        raise
