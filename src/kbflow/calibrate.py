"""Per-version calibration of retrieval: fusion weight, BM25 scale, hand-off threshold."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed import make_embedder
from kbflow.retrieval import LoadedVersion, calibrate_version, self_check_rows
from kbflow.settings import Settings
from kbflow.textindex import cjk_share

log = logging.getLogger(__name__)


def calibrate_index(vdir: Path, settings: Settings, info: dict[str, Any]) -> dict[str, Any]:
    """Calibrate fusion weight and hand-off threshold on held-out similar questions."""
    version = LoadedVersion(vdir)
    rows = self_check_rows(version)
    qvecs: np.ndarray | None = None
    if rows:
        if info.get("query_template") and info.get("task"):
            embedder = make_embedder(settings.embed)
            qvecs = embedder.embed_queries([version.texts[r] for r in rows])
        else:
            # documents and queries are embedded the same way: a question passage's vector is its query vector
            qvecs = np.asarray(version.vectors[rows])
    share = cjk_share(version.titles[:5000])
    kb_lang = "zh" if share > 0.5 else "en"
    covers = "multi" in info.get("languages", []) or kb_lang in info.get("languages", [])
    cal = calibrate_version(version, qvecs, rows, covers, settings.search.handoff_threshold)
    out = cal.as_dict()
    out["kb_language"] = kb_lang
    out["cjk_share"] = round(share, 3)
    log.info(
        "calibrate: dense weight %.1f (%s, %d queries), bm25 scale %.2f, hand-off threshold %.3f",
        cal.dense_weight,
        cal.method,
        cal.queries,
        cal.bm25_scale,
        cal.handoff_threshold,
    )
    return out
