"""Per-version calibration of retrieval: fusion weight, BM25 scale, hand-off threshold."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed import make_embedder
from kbflow.evaluate import GoldenQuery
from kbflow.retrieval import LoadedVersion, calibrate_version, golden_candidates, self_check_rows
from kbflow.settings import EmbedSettings, Settings
from kbflow.textindex import cjk_share

log = logging.getLogger(__name__)


def embed_settings_for(settings: EmbedSettings, info: dict[str, Any]) -> EmbedSettings:
    """The embedding settings that reproduce a version's model (as its manifest records it)."""
    return settings.model_copy(
        update={"model": info["model"], "dim": info["dim"], "query_instruction": info.get("task")}
    )


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


def calibrate_index(
    vdir: Path,
    settings: Settings,
    info: dict[str, Any],
    golden: list[GoldenQuery] | None = None,
    max_golden: int | None = None,
) -> dict[str, Any]:
    """Calibrate fusion weight and hand-off threshold on held-out similar questions and on the
    KB's golden queries (calibration splits only; see ``calibration_queries``)."""
    version = LoadedVersion(vdir)
    rows = self_check_rows(version)
    limit = settings.gate.max_golden_queries if max_golden is None else max_golden
    gold = sample_golden(calibration_queries(golden or []), limit)
    needs_model = bool(info.get("query_template") and info.get("task"))
    embedder = (
        make_embedder(embed_settings_for(settings.embed, info))
        if (gold or (rows and needs_model))
        else None
    )
    qvecs: np.ndarray | None = None
    if rows:
        if needs_model:
            assert embedder is not None
            qvecs = embedder.embed_queries([version.texts[r] for r in rows])
        else:
            # documents and queries are embedded the same way: a question passage's vector is its query vector
            qvecs = np.asarray(version.vectors[rows])
    gcal = None
    if gold:
        assert embedder is not None
        gvecs = embedder.embed_queries([q.query for q in gold])
        gcal = golden_candidates(version, [(q.query, q.expected) for q in gold], gvecs)
    share = cjk_share(version.titles[:5000])
    kb_lang = "zh" if share > 0.5 else "en"
    covers = "multi" in info.get("languages", []) or kb_lang in info.get("languages", [])
    if qvecs is None and gcal is not None:
        qvecs, rows = np.zeros((0, version.vectors.shape[1]), np.float32), []
    cal = calibrate_version(
        version,
        qvecs,
        rows,
        covers,
        settings.search.handoff_threshold,
        golden=gcal,
        max_answerable_handoff=settings.search.max_answerable_handoff,
    )
    out = cal.as_dict()
    out["kb_language"] = kb_lang
    out["cjk_share"] = round(share, 3)
    log.info(
        "calibrate: dense weight %.1f (%s, %d queries), bm25 scale %.2f, hand-off threshold %.3f (%s)",
        cal.dense_weight,
        cal.method,
        cal.queries,
        cal.bm25_scale,
        cal.handoff_threshold,
        cal.threshold_method,
    )
    return out
