"""Drift guard: stop a run whose backend no longer produces the vectors the cache holds.

A server upgraded to another model build, another precision or another pooling still answers
``/v1/embeddings`` happily; mixing its vectors with cached ones would silently corrupt the
index. So at the start of each embed stage a fixed canary set (Chinese and English, short and
long) is embedded and compared with the vectors stored for the model key beside the cache
(``embeddings/<model_key>/canary.json``; written on first use). A second check compares each
canary embedded alone with the same text embedded in a batch (padding or batching bugs).

A first run has nothing stored to compare with, and whatever it stores becomes the truth; so
before storing, the canaries are compared with vectors computed another way when one is
available (``kbflow.embed.reference``: the model folder with sentence-transformers, or a bundled
model in process), and ``canary.json`` records which reference was used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbflow.embed.base import Embedder, text_hash, truncate_normalize
from kbflow.errors import DriftError
from kbflow.store.home import atomic_write_text

log = logging.getLogger(__name__)


#: Cosine every canary must keep against its stored vector, and single versus batch. bf16
#: servers reproduce themselves to ~0.9999; a different model build lands far below 0.99.
MIN_COSINE = 0.999


CANARY_FILE = "canary.json"


CANARY_TEXTS: tuple[str, ...] = (
    "退货",
    "如何申请退款？",
    "How do I reset my password?",
    "refund",
    "【退货政策 › 运费】商品签收后7天内可申请无理由退货，质量问题产生的运费由商家承担，"
    "非质量问题的退货运费由买家自行承担。定制商品、生鲜食品及已拆封的个人护理用品不支持无理由退货。"
    "退货申请提交后，请在48小时内寄出商品并填写物流单号，逾期申请将自动关闭。",
    "To change the delivery address of an order that has not shipped yet, open My Orders, "
    "select the order and choose Edit address. Orders that have already left the warehouse "
    "cannot be changed; contact the courier with the tracking number instead. Address changes "
    "to another city may change the delivery fee and the estimated delivery date.",
    "会员积分 expire 吗？积分有效期 is 12 months.",
    "Wie kann ich meine Bestellung stornieren?",
)


@dataclass(frozen=True)
class DriftCheck:
    stored: bool
    """True when this run stored the canaries (first use of the model key)."""
    min_cosine_stored: float | None
    min_cosine_single: float
    reference: str | None = None
    """How the first run's canaries were checked before they were stored (None: not a first
    run)."""
    min_cosine_reference: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "stored": self.stored,
            "min_cosine_stored": self.min_cosine_stored,
            "min_cosine_single": round(self.min_cosine_single, 6),
            "reference": self.reference,
            "min_cosine_reference": self.min_cosine_reference,
        }


#: ``texts -> (vectors, how)`` or ``(None, why not)``: ``kbflow.embed.reference``.
Reference = Callable[[Sequence[str]], "tuple[np.ndarray | None, str]"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def check_drift(
    embedder: Embedder,
    cache_dir: Path,
    texts: tuple[str, ...] = CANARY_TEXTS,
    min_cosine: float = MIN_COSINE,
    reference: Reference | None = None,
    reference_min_cosine: float = 0.99,
) -> DriftCheck:
    """Embed ``texts`` and compare (1) each with it embedded alone, (2) with the vectors stored
    in ``cache_dir/canary.json`` for this model key; store them when none are stored yet.

    ``cache_dir`` is the model key's cache folder (``EmbeddingCache.dir``). Raises
    ``DriftError`` naming the worst text on any cosine under ``min_cosine``; writes nothing
    then, so the stored reference stays the first one seen. On first use, ``reference`` (when
    given) computes the canaries another way, and a cosine under ``reference_min_cosine``
    stops the run before anything is stored.
    """
    key = embedder.info.key
    batch = embedder.embed_documents(list(texts))
    single = np.vstack([embedder.embed_documents([t]) for t in texts])
    cos_single = _cosines(batch, single)
    worst = int(np.argmin(cos_single))
    if cos_single[worst] < min_cosine:
        raise DriftError(
            f"{key}: the backend gives different vectors for a text alone and in a batch "
            f"(cosine {cos_single[worst]:.4f} < {min_cosine} for {texts[worst][:40]!r}); "
            "check the server's batching/padding before embedding anything"
        )
    path = cache_dir / CANARY_FILE
    stored, stored_reference = _read(path)
    known = {h: np.asarray(v, np.float32) for h, v in stored.items()}
    hashes = [text_hash(t) for t in texts]
    rows = [i for i, h in enumerate(hashes) if h in known]
    min_stored: float | None = None
    if rows:
        ref = np.vstack([known[hashes[i]] for i in rows])
        if ref.shape[1] != batch.shape[1]:
            raise DriftError(
                f"{key}: stored canaries have {ref.shape[1]} dims, the backend gives {batch.shape[1]}"
            )
        cos = _cosines(batch[rows], ref)
        j = int(np.argmin(cos))
        min_stored = float(cos[j])
        if min_stored < min_cosine:
            bad = sum(1 for c in cos if c < min_cosine)
            raise DriftError(
                f"{key}: the backend's vectors changed since the cache was built: {bad} of "
                f"{len(rows)} canary texts below cosine {min_cosine} (worst {min_stored:.4f}, "
                f"{texts[rows[j]][:40]!r}). Is the server running another model build? Nothing "
                f"was embedded; re-embed under a new model name, or delete {path} if the change "
                "is intended and the cache is rebuilt"
            )
    new = {hashes[i]: batch[i].tolist() for i in range(len(texts)) if hashes[i] not in known}
    how: str | None = None
    min_ref: float | None = None
    if new and not rows and reference is not None:
        how, min_ref = _check_reference(key, texts, batch, reference, reference_min_cosine)
    if new:
        cache_dir.mkdir(parents=True, exist_ok=True)
        doc: dict[str, object] = {"model_key": key, "vectors": {**stored, **new}}
        if how is not None:
            doc["reference"] = {"how": how, "min_cosine": min_ref}
        elif stored_reference is not None:
            doc["reference"] = stored_reference
        atomic_write_text(path, json.dumps(doc))
    log.info(
        "drift: %s, %d canaries, min cosine vs stored %s, single vs batch %.5f%s",
        key,
        len(texts),
        "-" if min_stored is None else f"{min_stored:.5f}",
        float(cos_single[worst]),
        f", stored {len(new)} new" if new else "",
    )
    return DriftCheck(
        stored=bool(new) and not rows,
        min_cosine_stored=min_stored,
        min_cosine_single=float(cos_single[worst]),
        reference=how,
        min_cosine_reference=min_ref,
    )


def _check_reference(
    key: str,
    texts: tuple[str, ...],
    batch: np.ndarray,
    reference: Reference,
    min_cosine: float,
) -> tuple[str, float | None]:
    ref, how = reference(texts)
    if ref is None:
        log.warning("drift: %s, first use, canaries stored unchecked: reference %s", key, how)
        return how, None
    if ref.shape[1] < batch.shape[1]:
        raise DriftError(
            f"{key}: the backend gives {batch.shape[1]} dims, the reference ({how}) only "
            f"{ref.shape[1]}: is the server running the model in embed.model_path?"
        )
    cos = _cosines(batch, truncate_normalize(ref, batch.shape[1]))
    j = int(np.argmin(cos))
    if cos[j] < min_cosine:
        raise DriftError(
            f"{key}: on first use the server's vectors differ from the same model computed "
            f"here ({how}): cosine {cos[j]:.4f} < {min_cosine} for {texts[j][:40]!r}. Check "
            "the model folder's tokenizer (end token), the pooling and the served model; "
            "nothing was embedded or stored"
        )
    log.info("drift: %s, first use, canaries match the reference (%s) to %.5f", key, how, cos[j])
    return how, round(float(cos[j]), 6)


def _read(path: Path) -> tuple[dict[str, list[float]], object]:
    """The stored canary vectors and how the first run checked them (None: not recorded)."""
    if not path.is_file():
        return {}, None
    data = json.loads(path.read_text(encoding="utf-8"))
    vectors: dict[str, list[float]] = data["vectors"]
    return vectors, data.get("reference")
