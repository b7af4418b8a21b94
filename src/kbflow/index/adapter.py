"""The per-version adapter: retrieval tuned on the KB's own questions, kept only when it wins on
questions it never saw.

Supervision every KB already carries: an entry's title and similar questions mean the same
(positives: the entry's other passages), other entries' do not (negatives). Two kinds
(``kbflow.embed.adapter`` loads them):

- ``finetune`` (the bundled English model, KBs up to ``adapter.finetune_max_passages``): a copy
  of the model fine-tuned contrastively (in-batch negatives, same-entry pairs masked out), the
  version's passages re-embedded with it;
- ``linear`` (any model): a ``d x d`` map on query vectors only, identity-initialised and pulled
  toward the identity, trained with a softmax over passages (any passage of the question's entry
  counts as right);
  the cached vectors and the dense index stay as they are.

Honest evaluation: an entry's questions are grouped with their near copies (token Jaccard over
0.3, or one containing the other, as the held-out self-check does), the groups split into
``adapter.folds`` folds; fold *f* is scored, dense only, by an adapter trained on the other
folds with fold *f*'s passages hidden from both sides, against the plain model under the same
hiding. The golden calibration queries (never the test split) are scored by the shipped adapter.
The version keeps the adapter only when held-out hit@1 rises by ``adapter.min_gain`` and the
paired gain is above twice its standard error, and the golden queries do not fall. The shipped
adapter is fold 0's: its questions stay held out, and calibration and the self-check use only
them (``held_out.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kbflow.embed.adapter import (
    ADAPTER_DIR,
    HELD_OUT_FILE,
    LINEAR_FILE,
    MODEL_DIR,
    apply_linear,
    queries_reuse_passages,
)
from kbflow.embed.base import sha256_file
from kbflow.index.bm25 import tokenize
from kbflow.settings import AdapterSettings

log = logging.getLogger(__name__)

#: Passage kinds that are questions (what users type).
QUESTION_KINDS = ("question", "title")

#: Held-out queries scored per fold (a seeded sample when there are more).
EVAL_PER_FOLD = 500

_QUERY_CHUNK = 256


@dataclass
class Scores:
    """Per-query dense evaluation: hit@1, hit@3, reciprocal rank."""

    h1: np.ndarray
    h3: np.ndarray
    rr: np.ndarray

    def summary(self) -> dict[str, float]:
        n = len(self.h1)
        if not n:
            return {"n": 0}
        return {
            "n": n,
            "hit@1": round(float(self.h1.mean()), 4),
            "hit@3": round(float(self.h3.mean()), 4),
            "mrr": round(float(self.rr.mean()), 4),
        }

    @property
    def objective(self) -> np.ndarray:
        return self.h1 + 0.5 * self.h3 + 0.25 * self.rr

    @staticmethod
    def concat(parts: Sequence[Scores]) -> Scores:
        if not parts:
            return Scores(np.zeros(0), np.zeros(0), np.zeros(0))
        return Scores(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("h1", "h3", "rr")))


@dataclass
class Fitted:
    """What the index stage gets: the decision for the manifest, and when the adapter is kept,
    its staged folder (moved into the version) and, for ``finetune``, the passage vectors."""

    report: dict[str, Any]
    folder: Path | None = None
    vectors: np.ndarray | None = None
    embedding: dict[str, Any] = field(default_factory=dict)


# --- question groups and folds -----------------------------------------------------------------


def question_groups(
    entries: Sequence[str], kinds: Sequence[str], texts: Sequence[str]
) -> list[list[int]]:
    """Rows of question passages, grouped per entry with their near copies; only entries with
    at least one other passage (a held-out question needs something left to find)."""
    by_entry: dict[str, list[int]] = {}
    for r, e in enumerate(entries):
        by_entry.setdefault(e, []).append(r)
    groups: list[list[int]] = []
    for rows in by_entry.values():
        qrows = [r for r in rows if kinds[r] in QUESTION_KINDS]
        if not qrows or len(rows) < 2:
            continue
        parent = list(range(len(qrows)))
        toks = [frozenset(tokenize(texts[r])) for r in qrows]
        compact = ["".join(texts[r].split()) for r in qrows]
        for i in range(len(qrows)):
            for j in range(i + 1, len(qrows)):
                a, b = toks[i], toks[j]
                near = (a and b and len(a & b) / len(a | b) > 0.3) or (
                    min(len(compact[i]), len(compact[j])) >= 4
                    and (compact[i] in compact[j] or compact[j] in compact[i])
                )
                if near:
                    parent[_find(parent, i)] = _find(parent, j)
        found: dict[int, list[int]] = {}
        for i, r in enumerate(qrows):
            found.setdefault(_find(parent, i), []).append(r)
        groups.extend(found.values())
    return groups


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def assign_folds(
    groups: list[list[int]], entries: Sequence[str], texts: Sequence[str], k: int
) -> np.ndarray:
    """Fold of each group: a hash of its entry and first question, so a group keeps its fold
    from one night to the next while the KB changes around it."""
    out = np.empty(len(groups), dtype=np.int64)
    for g, rows in enumerate(groups):
        key = f"{entries[rows[0]]}\x00{texts[rows[0]]}".encode()
        out[g] = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % k
    return out


# --- dense evaluation ------------------------------------------------------------------------------


def rank_scores(
    passages: np.ndarray,
    row_entry: np.ndarray,
    queries: np.ndarray,
    targets: np.ndarray,
    hidden: np.ndarray | None = None,
) -> Scores:
    """Dense-only ranks: each entry scores its best visible passage; ``targets`` holds each
    query's entry index; ``hidden`` rows are left out of the pool."""
    pool = np.ones(len(passages), bool)
    if hidden is not None and len(hidden):
        pool[hidden] = False
    rows = np.nonzero(pool)[0]
    ent = row_entry[rows]
    order = np.argsort(ent, kind="stable")
    rows, ent = rows[order], ent[order]
    uniq, starts = np.unique(ent, return_index=True)
    col = np.full(int(row_entry.max()) + 1 if len(row_entry) else 0, -1, np.int64)
    col[uniq] = np.arange(len(uniq))
    pool_vecs = np.ascontiguousarray(passages[rows], dtype=np.float32)
    h1, h3, rr = [], [], []
    for lo in range(0, len(queries), _QUERY_CHUNK):
        q = np.asarray(queries[lo : lo + _QUERY_CHUNK], dtype=np.float32)
        best = np.maximum.reduceat(q @ pool_vecs.T, starts, axis=1)
        t = col[targets[lo : lo + _QUERY_CHUNK]]
        ts = np.where(t >= 0, best[np.arange(len(q)), np.maximum(t, 0)], np.inf)
        rank = (best > ts[:, None]).sum(1) + 1
        rank = np.where(t >= 0, rank, 10**9)
        h1.append(rank == 1)
        h3.append(rank <= 3)
        rr.append(1.0 / rank)
    if not h1:
        return Scores.concat([])
    return Scores(
        np.concatenate(h1).astype(float), np.concatenate(h3).astype(float), np.concatenate(rr)
    )


# --- trainers --------------------------------------------------------------------------------------


def train_linear(
    vectors: np.ndarray,
    row_entry: np.ndarray,
    anchors: np.ndarray,
    anchor_rows: np.ndarray,
    pool: np.ndarray,
    settings: AdapterSettings,
    seed: int = 0,
) -> np.ndarray:
    """A query-side map ``W`` (identity-initialised, ``linear_lambda * |W - I|^2``): each anchor
    (a question's query vector) should score its own entry's passages above the others in
    ``pool`` (the anchor's own passage never counts)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d = vectors.shape[1]
    pool_rows = np.nonzero(pool)[0]
    rows_of: dict[int, np.ndarray] = {}
    ent_pool = row_entry[pool_rows]
    order = np.argsort(ent_pool, kind="stable")
    uniq, starts = np.unique(ent_pool[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for e, a, b in zip(uniq, starts, ends, strict=True):
        rows_of[int(e)] = pool_rows[order[a:b]]
    eye = torch.eye(d)
    w = torch.nn.Parameter(eye.clone())
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(20.0))))
    opt = torch.optim.Adam([w, log_scale], lr=1e-2)
    vec_t = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    anc_t = torch.from_numpy(np.ascontiguousarray(anchors, dtype=np.float32))
    anchor_entry = row_entry[anchor_rows]
    batch = min(len(anchors), 256)
    negatives = min(len(pool_rows), 2048)
    steps = 0
    while steps < settings.linear_steps:
        perm = rng.permutation(len(anchors))
        for lo in range(0, len(perm), batch):
            if steps >= settings.linear_steps:
                break
            steps += 1
            idx = perm[lo : lo + batch]
            ents = np.unique(anchor_entry[idx])
            own = np.concatenate([rows_of.get(int(e), np.zeros(0, np.int64)) for e in ents])
            extra = (
                pool_rows
                if negatives == len(pool_rows)
                else rng.choice(pool_rows, negatives, replace=False)
            )
            cand = np.unique(np.concatenate([own, extra]))
            same = row_entry[cand][None, :] == anchor_entry[idx][:, None]
            self_hit = cand[None, :] == anchor_rows[idx][:, None]
            q = torch.nn.functional.normalize(anc_t[idx] @ w.T, dim=1)
            logits = (q @ vec_t[cand].T) * log_scale.exp()
            logits = logits.masked_fill(torch.from_numpy(self_hit), -1e4)
            positives = torch.from_numpy(same & ~self_hit)
            has = positives.any(1)
            # softmax over passages; the anchor's entry is right whichever of its passages wins
            loss = (
                torch.logsumexp(logits, 1)
                - torch.logsumexp(logits.masked_fill(~positives, -1e4), 1)
            )[has].mean() + settings.linear_lambda * ((w - eye) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.detach().numpy().astype(np.float32)


def _pairs(
    row_entry: np.ndarray,
    anchor_rows: np.ndarray,
    pool: np.ndarray,
    per_entry: int,
    seed: int,
    max_pairs: int = 4_000,
) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    pool_rows = np.nonzero(pool)[0]
    by_entry: dict[int, list[int]] = {}
    for r in pool_rows:
        by_entry.setdefault(int(row_entry[r]), []).append(int(r))
    anchors_of: dict[int, list[int]] = {}
    for r in anchor_rows:
        anchors_of.setdefault(int(row_entry[r]), []).append(int(r))
    out: list[tuple[int, int]] = []
    for e, anchors in anchors_of.items():
        cands = [(a, b) for a in anchors for b in by_entry.get(e, []) if b != a]
        if len(cands) > per_entry:
            pick = rng.choice(len(cands), per_entry, replace=False)
            cands = [cands[i] for i in sorted(pick)]
        out.extend(cands)
    if len(out) > max_pairs:
        pick = rng.choice(len(out), max_pairs, replace=False)
        out = [out[i] for i in sorted(pick)]
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


def finetune_model(
    base_dir: Path,
    texts: Sequence[str],
    row_entry: np.ndarray,
    anchor_rows: np.ndarray,
    pool: np.ndarray,
    settings: AdapterSettings,
    threads: int | None = None,
    seed: int = 0,
) -> Any:
    """A copy of the sentence-transformers model in ``base_dir`` fine-tuned on (question, other
    passage of its entry) pairs with in-batch negatives; pairs of one entry in the same batch
    are not counted as negatives of each other."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(base_dir), device="cpu", local_files_only=True)
    pairs = _pairs(
        row_entry,
        anchor_rows,
        pool,
        settings.finetune_pairs_per_entry,
        seed,
        settings.finetune_max_pairs,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=settings.finetune_lr)
    model.train()

    def encode(batch: list[str]) -> Any:
        features = (
            model.preprocess(batch) if hasattr(model, "preprocess") else model.tokenize(batch)
        )
        return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=1)

    size = 64
    for _ in range(settings.finetune_epochs):
        for lo in range(0, len(pairs), size):
            chunk = pairs[lo : lo + size]
            a = encode([texts[i] for i, _ in chunk])
            b = encode([texts[j] for _, j in chunk])
            ents = torch.from_numpy(row_entry[[i for i, _ in chunk]])
            clash = (ents[:, None] == ents[None, :]) & ~torch.eye(len(chunk), dtype=torch.bool)
            logits = (a @ b.T * 20.0).masked_fill(clash, -1e4)
            target = torch.arange(len(chunk))
            loss = (
                torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)
            ) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def _encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    order = np.argsort([len(t) for t in texts], kind="stable")
    vecs = model.encode(
        [texts[i] for i in order],
        batch_size=64,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    out = np.empty_like(vecs)
    out[order] = vecs
    return out.astype(np.float32)


# --- the decision ----------------------------------------------------------------------------------


def choose_kind(
    settings: AdapterSettings, info: dict[str, Any], backend: str, n_passages: int
) -> str | None:
    """``finetune``, ``linear`` or None (off)."""
    from kbflow.embed.local import DEFAULT_MODEL

    if settings.mode == "off":
        return None
    can_finetune = (
        backend == "local"
        and info.get("model") == DEFAULT_MODEL
        and info.get("dim") == info.get("full_dim")
        and queries_reuse_passages(info)
    )
    if settings.mode == "finetune":
        return "finetune" if can_finetune else "linear"
    if settings.mode == "linear":
        return "linear"
    # auto: the linear map is opt-in. On multilingual-e5 it won 15-23 held-out points on kb_zh
    # and esun_faq but nothing on their test splits, and its adapted queries left the dense
    # scale (esun_faq: hand-off threshold -3.7, AUROC 0.996 -> 0.967), bench/results-adapter.json.
    return "finetune" if can_finetune and n_passages <= settings.finetune_max_passages else None


def decide(
    held: tuple[Scores, Scores], golden: tuple[Scores, Scores] | None, settings: AdapterSettings
) -> tuple[bool, str]:
    base, adapted = held
    n = len(base.h1)
    if n == 0:
        return False, "no held-out question to judge it on"
    diff = adapted.objective - base.objective
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    h1_gain = float(adapted.h1.mean() - base.h1.mean())
    if h1_gain < settings.min_gain:
        return (
            False,
            f"held-out hit@1 {h1_gain * 100:+.2f} points (needs +{settings.min_gain * 100:.2f})",
        )
    if gain <= 2 * se:
        return False, f"held-out gain {gain:.4f} is within noise (2 x standard error {2 * se:.4f})"
    if golden is not None and len(golden[0].h1) >= 30:
        g_drop = float(golden[0].h1.mean() - golden[1].h1.mean())
        if g_drop > settings.max_golden_drop:
            return False, f"golden calibration queries' hit@1 falls {g_drop * 100:.2f} points"
    return (
        True,
        f"held-out hit@1 {h1_gain * 100:+.2f} points, gain {gain:.4f} > 2 x se {2 * se:.4f}",
    )


def fit_adapter(
    texts: Sequence[str],
    entry_ids: Sequence[str],
    kinds: Sequence[str],
    passage_ids: Sequence[str],
    vectors: np.ndarray,
    info: dict[str, Any],
    settings: AdapterSettings,
    stage_dir: Path,
    backend: str = "local",
    golden: Sequence[tuple[str, Sequence[str]]] = (),
    embed_queries: Callable[[list[str]], np.ndarray] | None = None,
    threads: int | None = None,
) -> Fitted:
    """Train, judge and stage the version's adapter (see the module docstring).

    ``vectors``: the model's passage vectors (row-aligned); ``golden``: calibration queries
    ``(text, expected entry ids)``, never the test split; ``embed_queries``: the plain model's
    query encoder (needed for golden queries, and for anchors when the model embeds queries
    differently from documents). Writes ``stage_dir/adapter/`` when the adapter is kept."""
    start = time.perf_counter()
    kind = choose_kind(settings, info, backend, len(texts))
    report: dict[str, Any] = {"mode": settings.mode, "kind": kind, "kept": False}
    if kind is None:
        why = (
            "adapter.mode is off"
            if settings.mode == "off"
            else "no adapter measured to help this model and size (auto fine-tunes the bundled "
            "English model up to adapter.finetune_max_passages; adapter.mode=linear is opt-in)"
        )
        return Fitted({**report, "reason": why})
    ent_index = {e: i for i, e in enumerate(dict.fromkeys(entry_ids))}
    row_entry = np.asarray([ent_index[e] for e in entry_ids], dtype=np.int64)
    groups = question_groups(entry_ids, kinds, texts)
    if len(groups) > settings.max_questions:
        rng = np.random.default_rng(0)
        groups = [
            groups[i]
            for i in sorted(rng.choice(len(groups), settings.max_questions, replace=False))
        ]
    report["question_groups"] = len(groups)
    if len(groups) < settings.min_questions:
        return Fitted(
            {
                **report,
                "reason": f"{len(groups)} question groups, fewer than adapter.min_questions ({settings.min_questions})",
            }
        )
    folds = assign_folds(groups, entry_ids, texts, settings.folds)
    base_vecs = np.asarray(vectors, dtype=np.float32)
    queries_differ = not queries_reuse_passages(info)
    q_rows = np.asarray(sorted(r for g in groups for r in g), dtype=np.int64)
    if queries_differ:
        if embed_queries is None:
            return Fitted(
                {
                    **report,
                    "reason": "the model embeds queries differently and no query encoder is available",
                }
            )
        anchor_vecs = dict(
            zip(q_rows.tolist(), embed_queries([texts[r] for r in q_rows]), strict=True)
        )
    else:
        anchor_vecs = {int(r): base_vecs[r] for r in q_rows}
    base_model_dir = None
    if kind == "finetune":
        from kbflow.embed.local import DEFAULT_MODEL_SHA256, default_model_dir, verify_weights

        base_model_dir = default_model_dir()
        verify_weights(base_model_dir, DEFAULT_MODEL_SHA256)
    held_base: list[Scores] = []
    held_adapted: list[Scores] = []
    fold0: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    for f in range(settings.folds):
        test_rows = np.asarray(
            sorted(r for g, fo in zip(groups, folds, strict=True) if fo == f for r in g), np.int64
        )
        train_rows = np.asarray(
            sorted(r for g, fo in zip(groups, folds, strict=True) if fo != f for r in g), np.int64
        )
        if not len(test_rows) or not len(train_rows):
            continue
        pool = np.ones(len(texts), bool)
        pool[test_rows] = False
        if kind == "finetune":
            assert base_model_dir is not None
            model = finetune_model(
                base_model_dir, texts, row_entry, train_rows, pool, settings, threads
            )
            adapted_vecs = _encode(model, texts)
            adapted_q = adapted_vecs
            matrix = None
        else:
            model = None
            matrix = train_linear(
                base_vecs,
                row_entry,
                np.stack([anchor_vecs[int(r)] for r in train_rows]),
                train_rows,
                pool,
                settings,
            )
            adapted_vecs = base_vecs
            adapted_q = None
        evaluated = (
            test_rows
            if len(test_rows) <= EVAL_PER_FOLD
            else np.sort(rng.choice(test_rows, EVAL_PER_FOLD, replace=False))
        )
        base_q = np.stack([anchor_vecs[int(r)] for r in evaluated])
        a_q = adapted_q[evaluated] if adapted_q is not None else apply_linear(base_q, matrix)  # type: ignore[arg-type]
        targets = row_entry[evaluated]
        held_base.append(rank_scores(base_vecs, row_entry, base_q, targets, test_rows))
        held_adapted.append(rank_scores(adapted_vecs, row_entry, a_q, targets, test_rows))
        log.info(
            "adapter: fold %d/%d (%s), %d held-out questions: hit@1 %.3f -> %.3f",
            f + 1, settings.folds, kind, len(evaluated),
            held_base[-1].h1.mean(), held_adapted[-1].h1.mean(),
        )  # fmt: skip
        if f == 0:
            fold0 = {
                "model": model,
                "matrix": matrix,
                "vectors": adapted_vecs,
                "held_out": test_rows,
            }
    held = (Scores.concat(held_base), Scores.concat(held_adapted))
    gold_scores: tuple[Scores, Scores] | None = None
    answerable = [(t, [ent_index[e] for e in exp if e in ent_index]) for t, exp in golden]
    answerable = [(t, e) for t, e in answerable if e]
    if answerable and embed_queries is not None and fold0:
        gq = embed_queries([t for t, _ in answerable])
        targets = np.asarray([e[0] for _, e in answerable], dtype=np.int64)
        if kind == "finetune":
            aq = _encode(fold0["model"], [t for t, _ in answerable])
        else:
            aq = apply_linear(gq, fold0["matrix"])
        gold_scores = (
            rank_scores(base_vecs, row_entry, gq, targets),
            rank_scores(fold0["vectors"], row_entry, aq, targets),
        )
    keep, reason = decide(held, gold_scores, settings)
    report.update(
        {
            "kept": keep,
            "reason": reason,
            "folds": settings.folds,
            "held_out": {"plain": held[0].summary(), "adapted": held[1].summary()},
            "golden": (
                {"plain": gold_scores[0].summary(), "adapted": gold_scores[1].summary()}
                if gold_scores
                else None
            ),
        }
    )
    fitted = Fitted(report)
    if keep:
        folder = stage_dir / ADAPTER_DIR
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if kind == "finetune":
            fold0["model"].save(str(folder / MODEL_DIR))
            digest = sha256_file(folder / MODEL_DIR / "model.safetensors")
            fitted.vectors = fold0["vectors"]
        else:
            np.save(folder / LINEAR_FILE, fold0["matrix"], allow_pickle=False)
            digest = sha256_file(folder / LINEAR_FILE)
        held_ids = sorted(passage_ids[int(r)] for r in fold0["held_out"])
        (folder / HELD_OUT_FILE).write_text(json.dumps(held_ids, ensure_ascii=False))
        fitted.folder = folder
        fitted.embedding = {
            "kind": kind,
            "path": ADAPTER_DIR,
            "sha256": digest,
            "held_out": HELD_OUT_FILE,
        }
    report["seconds"] = round(time.perf_counter() - start, 1)
    log.info(
        "adapter: %s %s (%s) in %.1fs",
        kind,
        "kept" if keep else "not kept",
        reason,
        report["seconds"],
    )
    return fitted
