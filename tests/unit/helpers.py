"""Small builders shared by unit tests (real model, real FAISS, real files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbflow.chunk.passages import chunk_entries
from kbflow.contracts import CLEAN_ENTRY, table_from_rows
from kbflow.embed.base import describe
from kbflow.embed.cache import EmbeddingCache, embed_missing
from kbflow.index.build import build_version
from kbflow.settings import Settings
from kbflow.store.versions import update_manifest


def entry(
    entry_id: str, title: str, answer: str, similar: list[str] | None = None
) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "title": title,
        "answer": answer,
        "similar_questions": similar or [],
        "tags": [],
        "merged_ids": [],
        "row_id": 0,
        "content_hash": entry_id,
        "status": "published",
    }


def build_test_version(
    root: Path,
    version: str,
    entries: list[dict[str, Any]],
    embedder: Any,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Chunk, embed (real model) and index ``entries`` into ``root/indexes/<version>``."""
    settings = Settings()
    passages = chunk_entries(table_from_rows(entries, CLEAN_ENTRY), settings.chunk)
    cache = EmbeddingCache(root / "embeddings", embedder.info.key, embedder.info.dim)
    embed_missing(
        passages.column("text").to_pylist(),
        passages.column("text_hash").to_pylist(),
        embedder,
        cache,
    )
    vectors = cache.get(passages.column("text_hash").to_pylist())
    manifest = {
        "run_id": "test",
        "embedding": describe(embedder.info),
        "counts": {"entries": len(entries), "passages": passages.num_rows},
        "status": "built",
    }
    vdir = build_version(root / "indexes", version, passages, vectors, manifest, settings.index)
    update_manifest(
        vdir,
        calibration=calibration
        or {"dense_weight": 0.7, "bm25_scale": 10.0, "handoff_threshold": 0.3},
    )
    return vdir


EN_KB = [
    entry(
        "refund-time",
        "How long does a refund take?",
        "Refunds reach your card within 5-7 business days after we receive the return.",
        ["when do i get my money back", "refund still not arrived", "how many days for refund"],
    ),
    entry(
        "track-order",
        "Where is my order?",
        "Open Orders in the app and tap Track to see the courier's latest scan.",
        ["where's my package", "my parcel hasn't shown up", "track my shipment"],
    ),
    entry(
        "change-address",
        "Can I change my delivery address?",
        "You can edit the address until the order ships: Orders > Details > Edit address.",
        ["wrong address on my order", "update shipping address", "moved house need new address"],
    ),
    entry(
        "coupon",
        "Why can't I use my coupon?",
        "Coupons need a minimum spend and cannot be combined with flash-sale prices.",
        ["promo code not working", "voucher invalid", "discount code rejected"],
    ),
    entry(
        "invoice",
        "How do I get an invoice?",
        "Invoices are issued from Orders > Invoice within 30 days of delivery.",
        ["need a receipt for my company", "vat invoice please", "download invoice"],
    ),
]


#: Tags kbflow's HTML reports write themselves (charts are inline SVG).
REPORT_TAGS = frozenset(
    {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span", "div",
        "table", "thead", "tbody", "tr", "th", "td", "figure", "svg", "text", "rect", "g",
        "line", "ul", "li", "code", "b", "strong", "em", "small", "details", "summary",
        "section",
    }
)  # fmt: skip


def assert_report_markup_is_ours(html: str) -> None:
    """Every tag in ``html`` is one the report writes and no attribute is an event handler or
    a URL: user text (titles, answers, ids, messages) reached the page as text only."""
    from html.parser import HTMLParser

    seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            seen.append((tag, attrs))

    Collect(convert_charrefs=True).feed(html)
    tags = {t for t, _ in seen}
    assert tags <= REPORT_TAGS, tags - REPORT_TAGS
    for tag, attrs in seen:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            assert name not in ("src", "href", "srcdoc", "action"), (tag, name, value)


def tiny_version(indexes: Path, name: str) -> Path:
    """A real, complete index version of ``EN_KB`` (FAISS, BM25, manifest) in ``indexes``,
    with random unit vectors of 8 dimensions: no model needed."""
    import numpy as np

    passages = chunk_entries(table_from_rows(EN_KB, CLEAN_ENTRY), Settings().chunk)
    vecs = np.random.default_rng(0).standard_normal((passages.num_rows, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    manifest = {"run_id": "t", "embedding": {"model_key": "m@8"}, "counts": {}, "status": "built"}
    return build_version(indexes, name, passages, vecs, manifest, Settings().index)
