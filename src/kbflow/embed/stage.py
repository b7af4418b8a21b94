"""Stages ``model`` (which model the run embeds with, ``kbflow.embed.choose``) and ``embed`` (the
passages whose text the cache lacks), under ``runs/<run_id>/model/`` and ``.../embed/``."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from kbflow.contracts import (
    PASSAGE,
    read_table,
)
from kbflow.embed.base import describe
from kbflow.embed.cache import EmbeddingCache, embed_missing
from kbflow.embed.drift import check_drift
from kbflow.embed.factory import open_embedder
from kbflow.embed.reference import REFERENCE_MIN_COSINE, reference_vectors
from kbflow.errors import ConfigError
from kbflow.results import Embedded, ModelChosen
from kbflow.runner import read_marker, run_stage
from kbflow.settings import Settings
from kbflow.store.home import DataHome
from kbflow.store.versions import live_manifest

log = logging.getLogger(__name__)


def entry_texts(passages: pa.Table) -> list[str]:
    """One text per entry (its passages' texts joined, in order), what the language is read off."""
    texts: dict[str, list[str]] = {}
    for e, t in zip(
        passages.column("entry_id").to_pylist(), passages.column("text").to_pylist(), strict=True
    ):
        parts = texts.setdefault(e, [])
        if sum(map(len, parts)) < 600:
            parts.append(t)
    return ["\n".join(p) for p in texts.values()]


def model_stage(
    home: DataHome, run_id: str, settings: Settings, fresh: bool = False
) -> ModelChosen:
    """Which model this run embeds with (``kbflow.embed.choose.choose_model``): the KB's language
    mix from the chunk stage's passages, the live version's model, ``embed.model``. Recorded
    once per run (a resumed run keeps its choice). ``fresh`` (re-embeds) decides by language
    whatever the live version uses. Returns ``ModelChoice.as_dict()``."""
    from kbflow.embed.choose import choose_model, language_mix

    def run(folder: Path) -> ModelChosen:
        passages = read_table(
            home.stage_dir(run_id, "chunk") / "passages.parquet", PASSAGE, ["entry_id", "text"]
        )
        mix = language_mix(entry_texts(passages))
        live = live_manifest(home)
        live_info = (live or {}).get("embedding")
        choice = choose_model(settings.embed, mix, live_info, fresh=fresh)
        if fresh and live_info and not choice.switched:
            dim = settings.embed.dim or live_info.get("full_dim")
            if dim == live_info.get("dim"):
                raise ConfigError(
                    f"{choice.reason}: {choice.model}, which the live version already uses at "
                    f"{live_info.get('dim')} dimensions; nothing to re-embed"
                )
        log.info("model: %s (%s: %s)", choice.model, choice.mode, choice.reason)
        return choice.as_dict()

    return run_stage(home, run_id, "model", run)


def with_model(settings: Settings, choice: ModelChosen) -> Settings:
    """``settings`` with ``embed.model`` set to the chosen model (``auto`` resolved)."""
    return settings.model_copy(
        update={"embed": settings.embed.model_copy(update={"model": choice["model"]})}
    )


def embed_stage(home: DataHome, run_id: str, settings: Settings) -> Embedded:
    def run(folder: Path) -> Embedded:
        passages = read_table(home.stage_dir(run_id, "chunk") / "passages.parquet", PASSAGE)
        # For sglang the workers live exactly as long as this block, even if embedding fails.
        with open_embedder(settings.embed) as embedder:
            cache = EmbeddingCache(home.embeddings, embedder.info.key, embedder.info.dim)
            # Before any vector is written: a backend whose output changed stops the run here.
            drift = check_drift(
                embedder,
                cache.dir,
                # the local backend is its own reference: a served model is checked against it
                reference=None
                if settings.embed.backend == "local"
                else lambda texts: reference_vectors(settings.embed, texts),
                reference_min_cosine=REFERENCE_MIN_COSINE,
            )
            stats = embed_missing(
                passages.column("text").to_pylist(),
                passages.column("text_hash").to_pylist(),
                embedder,
                cache,
                group_size=settings.embed.shard_texts,
            )
        log.info(
            "embed: %d passages, %d unique texts, %d cached, %d embedded (%.0f/s)",
            stats.passages,
            stats.unique_texts,
            stats.cached,
            stats.embedded,
            stats.per_second,
        )
        choice = read_marker(home, run_id, "model")
        return {
            "passages": stats.passages,
            "unique_texts": stats.unique_texts,
            "cached": stats.cached,
            "embedded": stats.embedded,
            "per_second": round(stats.per_second, 1),
            "model": {**describe(embedder.info), **({"choice": choice} if choice else {})},
            "drift": drift.as_dict(),
        }

    return run_stage(home, run_id, "embed", run)
