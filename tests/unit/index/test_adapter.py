"""The per-version adapter's training and judgement (``kbflow.index.adapter``), on real vectors
of the bundled English model and on synthetic ones, and loading it back
(``kbflow.embed.adapter``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kbflow.embed.adapter import (
    LINEAR_FILE,
    LinearQueryAdapter,
    adapter_key,
    make_version_embedder,
    queries_reuse_passages,
)
from kbflow.errors import ModelIntegrityError
from kbflow.index import adapter as ad
from kbflow.settings import AdapterSettings, EmbedSettings

MINILM = {
    "model": "all-MiniLM-L6-v2",
    "dim": 384,
    "full_dim": 384,
    "model_key": "all-MiniLM-L6-v2@384",
}


def random_kb(entries: int = 60, questions: int = 4, dim: int = 32, seed: int = 0):
    """A KB whose questions carry no signal: every passage an independent random vector, so no
    map can learn anything that holds for questions it did not see."""
    rng = np.random.default_rng(seed)
    texts, ents, kinds, ids = [], [], [], []
    for e in range(entries):
        for q in range(questions + 1):
            texts.append(
                f"entry{e} text{q} " + " ".join(f"w{rng.integers(10**9)}" for _ in range(3))
            )
            ents.append(f"e{e}")
            kinds.append("answer" if q == 0 else "question")
            ids.append(f"e{e}:{q}")
    vecs = rng.normal(size=(len(texts), dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    info = {"model": "m", "dim": dim, "full_dim": dim, "model_key": f"m@{dim}"}
    return texts, ents, kinds, ids, vecs, info


def test_near_copies_share_a_group_and_lone_entries_have_none():
    texts = [
        "how do I reset my password",
        "how do i reset my password please",
        "forgot login",
        "answer",
        "lonely question",
    ]
    ents = ["a", "a", "a", "a", "b"]
    kinds = ["question", "question", "question", "answer", "question"]
    groups = ad.question_groups(ents, kinds, texts)
    assert sorted(map(sorted, groups)) == [[0, 1], [2]]  # entry b has nothing else to find


def test_folds_are_stable_and_cover_every_group():
    texts, ents, kinds, _, _, _ = random_kb()
    groups = ad.question_groups(ents, kinds, texts)
    a = ad.assign_folds(groups, ents, texts, 4)
    b = ad.assign_folds(list(reversed(groups)), ents, texts, 4)[::-1]
    assert (a == b).all() and set(a.tolist()) == {0, 1, 2, 3}


def test_no_question_is_trained_on_in_the_fold_that_scores_it(monkeypatch, tmp_path: Path):
    """Every fold's trainer sees only the other folds' questions, and the held-out questions'
    passages are hidden from its pool; the shipped adapter (fold 0's) never trained on the
    questions calibration will score it on (``held_out.json``)."""
    texts, ents, kinds, ids, vecs, info = random_kb()
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    real = ad.train_linear

    def spy(vectors, row_entry, anchors, anchor_rows, pool, settings, seed=0):
        calls.append((np.asarray(anchor_rows), np.asarray(pool)))
        return real(vectors, row_entry, anchors, anchor_rows, pool, settings, seed)

    monkeypatch.setattr(ad, "train_linear", spy)
    monkeypatch.setattr(ad, "decide", lambda *a, **k: (True, "kept for the test"))
    fitted = ad.fit_adapter(
        texts,
        ents,
        kinds,
        ids,
        vecs,
        info,
        AdapterSettings(mode="linear", linear_steps=5),
        tmp_path,
    )
    assert len(calls) == 4
    scored: set[int] = set()
    for anchors, pool in calls:
        hidden = set(np.nonzero(~pool)[0].tolist())
        assert hidden and not hidden & set(anchors.tolist())
        assert not scored & hidden  # each question is held out by exactly one fold
        scored |= hidden
    questions = {r for r, k in enumerate(kinds) if k == "question"}
    assert scored == questions
    assert fitted.folder is not None
    held = set(json.loads((fitted.folder / "held_out.json").read_text()))
    trained_first = {ids[r] for r in calls[0][0]}
    assert held and not held & trained_first
    assert held == {ids[r] for r in np.nonzero(~calls[0][1])[0]}


def test_an_adapter_that_learned_nothing_general_is_refused(tmp_path: Path):
    """Random questions: nothing carries over to unseen ones, so the held-out check refuses
    the adapter; the same data scored on its own training questions would show a gain (what
    a leaky check would have reported)."""
    texts, ents, kinds, ids, vecs, info = random_kb()
    settings = AdapterSettings(mode="linear", linear_lambda=0.0, linear_steps=200)
    fitted = ad.fit_adapter(texts, ents, kinds, ids, vecs, info, settings, tmp_path)
    assert not fitted.report["kept"] and fitted.folder is None
    held = fitted.report["held_out"]
    assert held["adapted"]["hit@1"] - held["plain"]["hit@1"] < 0.05

    # the leaky version of the same check: train on every question, score them
    row_entry = np.asarray([int(e[1:]) for e in ents])
    q = np.asarray([r for r, k in enumerate(kinds) if k == "question"])
    pool = np.ones(len(texts), bool)
    w = ad.train_linear(vecs, row_entry, vecs[q], q, pool, settings)
    hide_self = [
        ad.rank_scores(vecs, row_entry, vecs[[r]], row_entry[[r]], np.asarray([r])) for r in q
    ]
    hide_self_w = [
        ad.rank_scores(
            vecs, row_entry, ad.apply_linear(vecs[[r]], w), row_entry[[r]], np.asarray([r])
        )
        for r in q
    ]
    leaky_gain = np.mean([b.h1[0] for b in hide_self_w]) - np.mean([b.h1[0] for b in hide_self])
    assert leaky_gain > 0.2, leaky_gain


def test_the_bundled_model_is_fine_tuned_and_kept_when_it_wins(local_embedder, tmp_path: Path):
    """Real English questions (three phrasings per intent, held out by fold): the fine-tuned
    copy ranks held-out questions better than the plain model and is kept; its passage
    vectors come back for the version."""
    intents = {
        "refund": [
            "I want my money back",
            "how do I get a refund",
            "refund my order please",
            "can I return this for cash",
        ],
        "password": [
            "I forgot my password",
            "reset my login",
            "can't sign in to my account",
            "change my password",
        ],
        "delivery": [
            "where is my parcel",
            "my order has not arrived",
            "track my package",
            "when will my delivery come",
        ],
        "invoice": [
            "send me an invoice",
            "I need a receipt for tax",
            "download my bill",
            "where is my invoice",
        ],
        "cancel": [
            "cancel my order",
            "I don't want this order anymore",
            "stop my purchase",
            "how do I cancel",
        ],
        "address": [
            "change my shipping address",
            "update delivery address",
            "I moved house",
            "wrong address on order",
        ],
    } | {f"topic{i}": [f"question about topic {i} number {j}" for j in range(4)] for i in range(5)}
    texts, ents, kinds, ids = [], [], [], []
    for name, qs in intents.items():
        texts.append(f"{name}\nAnswer about {name}.")
        ents.append(name)
        kinds.append("answer")
        ids.append(f"{name}:0")
        for j, t in enumerate(qs):
            texts.append(t)
            ents.append(name)
            kinds.append("question")
            ids.append(f"{name}:{j + 1}")
    vecs = local_embedder.embed_documents(texts)
    settings = AdapterSettings(mode="finetune", folds=2, min_questions=4, finetune_epochs=3)
    fitted = ad.fit_adapter(texts, ents, kinds, ids, vecs, MINILM, settings, tmp_path)
    rep = fitted.report
    print(json.dumps(rep))
    assert rep["kind"] == "finetune" and rep["held_out"]["plain"]["n"] > 30
    assert rep["kept"], rep["reason"]
    assert rep["held_out"]["adapted"]["hit@1"] > rep["held_out"]["plain"]["hit@1"]
    assert fitted.vectors is not None and fitted.vectors.shape == vecs.shape
    assert fitted.folder is not None and (fitted.folder / "model" / "model.safetensors").is_file()


def test_decide_needs_a_gain_above_noise_and_no_golden_drop():
    n = 200
    base = ad.Scores(np.zeros(n), np.zeros(n), np.full(n, 0.5))
    better = ad.Scores(np.r_[np.ones(40), np.zeros(n - 40)], np.ones(n), np.full(n, 0.6))
    settings = AdapterSettings()
    assert ad.decide((base, better), None, settings)[0]
    assert not ad.decide((base, base), None, settings)[0]
    one = ad.Scores(np.r_[1.0, np.zeros(n - 1)], np.zeros(n), np.full(n, 0.5))
    assert not ad.decide((base, one), None, settings)[0]  # +0.5 point from one query: noise
    gold_b = ad.Scores(np.ones(50), np.ones(50), np.ones(50))
    gold_a = ad.Scores(np.r_[np.zeros(5), np.ones(45)], np.ones(50), np.ones(50))
    keep, reason = ad.decide((base, better), (gold_b, gold_a), settings)
    assert not keep and "golden" in reason


def test_a_linear_adapter_loads_with_its_version_and_a_changed_file_is_refused(tmp_path: Path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    rng = np.random.default_rng(0)
    w = np.eye(384, dtype=np.float32) + 0.01 * rng.normal(size=(384, 384)).astype(np.float32)
    np.save(folder / LINEAR_FILE, w)
    from kbflow.embed.base import sha256_file

    info = {
        **MINILM,
        "adapter": {
            "kind": "linear",
            "path": "adapter",
            "sha256": sha256_file(folder / LINEAR_FILE),
            "dir": str(folder),
            "held_out": "held_out.json",
        },
    }
    emb = make_version_embedder(EmbedSettings(), info)
    assert isinstance(emb, LinearQueryAdapter)
    plain = emb.base.embed_queries(["where is my parcel"])
    got = emb.embed_queries(["where is my parcel"])
    want = plain @ w.T
    np.testing.assert_allclose(got, want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb.embed_documents(["x"]), emb.base.embed_documents(["x"]))
    assert adapter_key(info) != MINILM["model_key"] and not queries_reuse_passages(info)
    np.save(folder / LINEAR_FILE, np.eye(384, dtype=np.float32))
    with pytest.raises(ModelIntegrityError, match="changed after it was built"):
        make_version_embedder(EmbedSettings(), info)


def test_auto_fine_tunes_the_bundled_english_model_and_nothing_else():
    auto = AdapterSettings()
    e5 = {"model": "multilingual-e5-small", "dim": 384, "full_dim": 384}
    assert ad.choose_kind(auto, MINILM, "local", 1000) == "finetune"
    assert ad.choose_kind(auto, MINILM, "local", 10**6) is None  # too big to re-embed per fold
    assert ad.choose_kind(auto, {**MINILM, "dim": 128}, "local", 1000) is None  # Matryoshka
    assert ad.choose_kind(auto, MINILM, "openai", 1000) is None  # a served model
    assert ad.choose_kind(auto, e5, "local", 1000) is None
    assert ad.choose_kind(AdapterSettings(mode="linear"), e5, "local", 1000) == "linear"
    assert ad.choose_kind(AdapterSettings(mode="off"), MINILM, "local", 1000) is None
