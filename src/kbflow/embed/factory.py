"""The configured embedding backend: ``make_embedder`` for running endpoints and in-process
models, ``open_embedder`` for a run (it starts SGLang workers and always stops them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kbflow.embed.base import AUTO_MODEL, Embedder
from kbflow.embed.local import DEFAULT_MODEL, LocalEmbedder
from kbflow.errors import ConfigError
from kbflow.settings import EmbedSettings


def make_embedder(settings: EmbedSettings) -> Embedder:
    """Build the configured backend for endpoints that are already running.

    ``sglang`` here means SGLang servers someone else started (``settings.urls``); to have
    the run start and stop its own workers, use :func:`open_embedder`.
    """
    if settings.model == AUTO_MODEL:
        raise ConfigError(
            "embed.model is 'auto': the KB's language picks the model when a version is built "
            "(kbflow.embed.choose.choose_model); name a model to embed outside a run"
        )
    match settings.backend:
        case "local":
            from kbflow.embed.e5 import E5Embedder, is_e5

            if is_e5(settings.model):
                return E5Embedder(settings)
            if settings.model != DEFAULT_MODEL:
                raise ConfigError(
                    f"the local backend bundles {DEFAULT_MODEL} (English) and "
                    f"multilingual-e5-small (Chinese and other languages); for {settings.model!r} "
                    "use --embedder openai (an endpoint serving it) or sglang"
                )
            return LocalEmbedder(settings)
        case "openai":
            from kbflow.embed.openai import OpenAIEmbedder

            return OpenAIEmbedder(settings)
        case "sglang":
            if not settings.urls:
                raise ConfigError(
                    "the sglang backend starts its workers only inside a run (open_embedder); "
                    "to use running SGLang servers, give their URLs (--embed-url)"
                )
            from kbflow.embed.openai import OpenAIEmbedder

            return OpenAIEmbedder(settings)
    raise ConfigError(f"unknown embedding backend {settings.backend!r}")


@contextmanager
def open_embedder(settings: EmbedSettings) -> Iterator[Embedder]:
    """The configured backend for the length of a ``with`` block.

    For ``sglang`` without URLs this starts the workers (one per GPU), waits until they
    answer, and stops them on leaving the block, whatever happened; HTTP clients are closed.
    """
    if settings.backend == "sglang" and not settings.urls:
        from kbflow.embed.openai import OpenAIEmbedder
        from kbflow.embed.sglang import run_workers

        with run_workers(settings) as urls:
            embedder = OpenAIEmbedder(settings, urls=urls)
            try:
                yield embedder
            finally:
                embedder.close()
        return
    built = make_embedder(settings)
    try:
        yield built
    finally:
        close = getattr(built, "close", None)
        if close is not None:
            close()


def embed_settings_for(settings: EmbedSettings, info: dict[str, Any]) -> EmbedSettings:
    """The embedding settings that reproduce a version's model (as its manifest records it)."""
    return settings.model_copy(
        # "" (none), not None (the model folder's prompt): a version keeps the format it had
        update={
            "model": info["model"],
            "dim": info["dim"],
            "query_instruction": info.get("task") or "",
        }
    )
