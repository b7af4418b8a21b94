"""Answer alignment: do an entry's own title and similar questions still find its own answer?

The self-check asks whether an entry's questions find the *entry*; when an upstream join bug
pairs every entry's questions with another entry's answer, the questions still find "their"
entry (its title and questions moved with it) and the self-check passes. This check looks at the
answers alone: for a seeded sample of entries, each of the entry's title and similar questions
(their stored passage vectors, and their keywords) ranks the *answer bodies* of the sampled
entries (the answer without the title it is indexed under, embedded with the version's model
through the embedding cache), dense and keyword scores fused half and half (z-scores per
question). The entry is aligned for a question when its own answer is in the top
:data:`WITHIN`; the version's alignment is the mean over entries of the share of their
questions that find their own answer. (Top 3, not top 1: FAQ entries on one topic have answers
alike, so on the kb_zh sample the intact KB scores 0.81 at top 3 and 0.63 at top 1, and a
misaligned entry drops to ~0 either way: top 3 gives the larger drop per misaligned entry.)

The gate compares it with the live version's on the same entries (the sample is drawn from the
entries both versions have, so each side ranks among its own answers of the same entries; the
live side comes from the live version's memo when its own gate sampled the same entries):
a drop beyond ``gate.max_alignment_drop`` blocks. Reworded answers keep their facts, so their
questions still find them; a misaligned answer answers another question. Entries that were
aligned in the live version and are not in the new one are listed side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kbflow.gate.memo import AlignmentMemo, LiveVersion
from kbflow.index.bm25 import Bm25Index, tokenize
from kbflow.index.version import LoadedVersion, stable_order

#: ``(version, answer texts) -> document vectors`` with the version's model, or None when the
#: model cannot be loaded here (keyword only).
AnswerEncoder = Callable[[LoadedVersion, list[str]], "np.ndarray | None"]

#: Characters of an answer embedded and matched (its head says what it answers).
ANSWER_CHARS = 400

#: Questions per entry asked (title first, then similar questions in order).
QUESTIONS_PER_ENTRY = 4

#: An entry's own answer must rank within this many for the question to count as aligned.
WITHIN = 3

#: Characters of an answer shown in the report (and kept in the version's memo).
SHOWN_CHARS = 160

#: Weight of the dense side in the fusion (keyword gets the rest; all of it without vectors).
DENSE_WEIGHT = 0.5


@dataclass(frozen=True)
class EntryAnswers:
    """What one version says for the sampled entries: answer bodies, the rows of the questions
    that ask for each (their stored vectors and texts)."""

    entry_ids: list[str]
    answers: list[str]
    question_rows: list[list[int]]


def sample_entries(new: LoadedVersion, live_ids: list[str] | None, limit: int) -> list[str]:
    """Entries both versions have (all of the new version's without a live one), at most
    ``limit``: the head of a hash order of their ids (``stable_order``), so the sample stays the
    same from night to night while its entries stay, and the live version's own alignment, kept
    in its memo, answers for it."""
    ids = new.entry_ids
    if live_ids is not None:
        have = set(live_ids)
        ids = [e for e in ids if e in have]
    if len(ids) > limit:
        ids = [ids[i] for i in stable_order(ids)[:limit]]
    return sorted(ids)


def entry_answers(version: LoadedVersion, entry_ids: Sequence[str]) -> EntryAnswers:
    pos = {e: i for i, e in enumerate(version.entry_ids)}
    answers: list[str] = []
    rows: list[list[int]] = []
    for entry_id in entry_ids:
        entry_rows = [int(r) for r in version.entry_rows[pos[entry_id]]]
        first = entry_rows[0]
        answers.append(version.display[first][:ANSWER_CHARS])
        asks = [r for r in entry_rows if version.kinds[r] == "title"]
        asks += [r for r in entry_rows if version.kinds[r] == "question"]
        rows.append(asks[:QUESTIONS_PER_ENTRY])
    return EntryAnswers(list(entry_ids), answers, rows)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


class Tokens(dict[str, list[str]]):
    """``tokenize`` remembered per text: the new and the live version ask mostly the same
    questions of mostly the same answers (jieba was half of the check's time at 100k)."""

    def __call__(self, text: str) -> list[str]:
        got = self.get(text)
        if got is None:
            got = self[text] = tokenize(text)
        return got


def rank_own_answers(
    version: LoadedVersion,
    got: EntryAnswers,
    answer_vectors: np.ndarray | None,
    tokens: Tokens | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per entry: the share of its questions that rank its own answer within :data:`WITHIN`
    (NaN: no question to ask), and the answer its first question ranks first (-1: none)."""
    n = len(got.entry_ids)
    tokens = Tokens() if tokens is None else tokens
    bm25 = Bm25Index.build(got.answers, tokens_of=tokens)
    weight = DENSE_WEIGHT if answer_vectors is not None else 0.0
    share = np.full(n, np.nan)
    best_of_first = np.full(n, -1)
    for i, rows in enumerate(got.question_rows):
        if not rows:
            continue
        keyword = np.vstack([bm25.scores(version.row_tokens(r, tokens)) for r in rows])
        fused = (1 - weight) * _zscore(keyword)
        if answer_vectors is not None:
            queries = np.asarray(version.vectors[rows], dtype=np.float32)
            fused = fused + weight * _zscore(queries @ answer_vectors.T)
        above = (fused > fused[:, [i]]).sum(axis=1)  # answers that beat the entry's own
        share[i] = float((above < WITHIN).mean())
        best_of_first[i] = int(fused[0].argmax())
    return share, best_of_first


def alignment(share: np.ndarray) -> float | None:
    asked = share[~np.isnan(share)]
    return round(float(asked.mean()), 4) if len(asked) else None


def check_alignment(
    new: LoadedVersion,
    live: LiveVersion | None,
    encode: AnswerEncoder,
    limit: int,
    max_drop: float,
    shown: int,
) -> dict[str, Any]:
    """The alignment of ``new`` (and of ``live`` on the same entries: from its memo when its own
    gate sampled the same entries) and what blocks: ``{"entries", "new", "live", "drop",
    "reason", "misaligned": [...], "misaligned_total", "notes", "memo"}``, ``memo`` being the
    new version's ``AlignmentMemo`` (None with fewer than 2 entries)."""
    ids = sample_entries(new, live.entry_ids if live is not None else None, limit)
    out: dict[str, Any] = {"entries": len(ids), "new": None, "live": None, "drop": None}
    out |= {"reason": None, "misaligned": [], "misaligned_total": 0, "notes": [], "memo": None}
    if len(ids) < 2:
        out["notes"].append("answer alignment: fewer than 2 entries to compare")
        return out
    sides: dict[str, AlignmentMemo] = {}
    remembered = live.memo.alignment if live is not None else None
    tokens = Tokens()
    known = dict(zip(remembered.heads, remembered.tokens, strict=False)) if remembered else {}
    for name in ("new", "live"):
        if name == "live" and remembered is not None and remembered.ids == ids:
            side = remembered
        elif name == "new" or live is not None:
            version = new if name == "new" else live.loaded()  # type: ignore[union-attr]
            got = entry_answers(version, ids)
            heads = [hashlib.sha256(a.encode()).hexdigest() for a in got.answers]
            for answer, h in zip(got.answers, heads, strict=True):
                if h in known:
                    tokens.setdefault(answer, known[h])
            vectors = encode(version, got.answers)
            share, best = rank_own_answers(version, got, vectors, tokens)
            side = AlignmentMemo(
                ids,
                [None if np.isnan(x) else float(x) for x in share],
                best.tolist(),
                [a[:SHOWN_CHARS] for a in got.answers],
                vectors is not None,
                heads,
                [tokens(a) for a in got.answers],
            )
        else:
            continue
        if not side.dense:
            out["notes"].append(f"answer alignment: {name} version scored keyword-only")
        sides[name] = side
        out[name] = alignment(np.array(side.share, dtype=float))
    out["memo"] = sides["new"]
    if live is None or out["new"] is None or out["live"] is None:
        return out
    new_share = np.array(sides["new"].share, dtype=float)
    live_share = np.array(sides["live"].share, dtype=float)
    new_best, new_answers = sides["new"].best, sides["new"].answers
    live_answers = sides["live"].answers
    both = ~np.isnan(new_share) & ~np.isnan(live_share)
    a, b = float(live_share[both].mean()), float(new_share[both].mean())
    out["drop"] = round(a - b, 4)
    if a - b > max_drop:
        out["reason"] = (
            f"answer alignment dropped from {a:.3f} to {b:.3f} against live version "
            f"{live.version} on {int(both.sum())} entries (allowed drop {max_drop:.3f}): answers "
            "no longer match their own titles and questions"
        )
    worse = [i for i in range(len(ids)) if both[i] and live_share[i] == 1.0 and new_share[i] == 0]
    out["misaligned_total"] = len(worse)
    pos = {e: i for i, e in enumerate(new.entry_ids)}
    for i in worse[:shown]:
        title = new.titles[int(new.entry_rows[pos[ids[i]]][0])]
        found = int(new_best[i])
        out["misaligned"].append(
            {
                "entry": ids[i],
                "title": title,
                "new_answer": new_answers[i],
                "live_answer": live_answers[i],
                "found_instead": f"{ids[found]}: {new_answers[found][:80]}" if found >= 0 else "",
            }
        )
    return out
