"""Semantic near-duplicates (kbflow.review.semantic): calibration, FAISS neighbours, a purpose-built KB
embedded with the real default model, and MinHash's blind spot."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from kbflow.clean.dedup import clean_rows
from kbflow.clean.normalize import char_shingles
from kbflow.contracts import RAW_ROW, table_from_rows
from kbflow.review.semantic import (
    calibrate_threshold,
    entry_index_table,
    find_semantic_duplicates,
    negative_scores,
    neighbour_pairs,
    positive_scores,
)
from kbflow.settings import CleanSettings, ReviewSettings

MODEL = "all-MiniLM-L6-v2@384"

# An English KB on many topics, three pairs of entries that ask the same thing in other words,
# and entries that share a topic (shipping, accounts, returns, gift cards) without meaning the
# same. (id, title, answer, similar questions)
KB: list[tuple[str, str, str, list[str]]] = [
    ("ship-address", "How do I change my shipping address?", "Open Orders, pick the order and tap Edit address before it is dispatched.", ["change shipping address", "I typed the wrong street"]),
    ("edit-delivery", "Can I edit the delivery details on an order?", "Yes: in My purchases choose Modify destination while the parcel has not left the warehouse.", ["How can I modify the delivery address?", "modify delivery address"]),
    ("ship-cost", "How much does shipping cost?", "Standard shipping is 5 dollars; orders over 50 dollars ship free.", ["shipping fee", "delivery charge for an order"]),
    ("reset-password", "How do I reset my password?", "Use Forgot password on the sign-in page; we email you a reset link.", ["forgot my password", "password reset link"]),
    ("login-help", "I cannot remember my login credentials", "Tap Trouble signing in and follow the steps sent to your inbox.", ["lost access to my account", "can't sign in anymore"]),
    ("delete-account", "How do I delete my account?", "Go to Settings > Privacy > Delete account. This cannot be undone.", ["close my account", "remove my profile permanently"]),
    ("store-hours", "What are your opening hours?", "Stores open 9am to 9pm, Monday to Saturday.", ["opening hours today", "store times on weekends"]),
    ("open-close", "What time do you open and close?", "Our doors are unlocked from nine in the morning until nine at night, Sundays excepted.", ["what time do you close today", "are you available on Saturday"]),
    ("gift-card", "Do you sell gift cards?", "Gift cards from 10 to 500 dollars are sold online and in stores.", ["buy a gift voucher", "present card for a friend"]),
    ("careers", "Are you hiring?", "See open positions on our careers page.", ["job openings", "work for your company"]),
    ("recycling", "Do you take back old electronics for recycling?", "Bring old devices to any store; we recycle them for free.", ["dispose of an old phone", "e-waste drop off"]),
    ("pets", "Can I bring my dog into the store?", "Service animals are welcome; other pets are not allowed inside.", ["are pets allowed", "dogs in the shop"]),
    ("allergens", "Do your snacks contain nuts?", "Each snack lists allergens on its label; some are made in a facility that handles peanuts.", ["peanut allergy", "allergen information for food"]),
    ("parking", "Is there parking at the store?", "Most stores have free customer parking for two hours.", ["where to park", "car park near the shop"]),
    ("accessibility", "Are your stores wheelchair accessible?", "All stores have step-free entrances and accessible restrooms.", ["disabled access", "ramp at the entrance"]),
    ("press", "Who should journalists contact?", "Media enquiries go to our press office.", ["press contact", "media relations email"]),
    ("privacy", "How do you use my personal data?", "We use your data only to fulfil orders; see our privacy policy.", ["data protection", "what information do you collect"]),
    ("cookies", "How do I turn off cookies on your website?", "Open Cookie settings at the bottom of any page and switch off optional cookies.", ["disable tracking cookies", "cookie preferences"]),
    ("warranty", "How long is the warranty on electronics?", "Electronics carry a two-year manufacturer warranty.", ["guarantee period", "warranty length"]),
    ("price-match", "Do you match competitors' prices?", "We match the price of major retailers for identical items in stock.", ["price match policy", "cheaper elsewhere"]),
    ("student", "Is there a student discount?", "Students get 10% off with a verified student email.", ["discount for students", "university discount"]),
    ("newsletter", "How do I unsubscribe from the newsletter?", "Click Unsubscribe at the bottom of any email.", ["stop marketing emails", "opt out of newsletters"]),
    ("installment", "Can I pay in installments?", "Orders over 200 dollars can be split into 3 monthly payments.", ["buy now pay later", "monthly payment plan"]),
    ("paypal", "Which payment methods do you accept?", "We accept cards, PayPal and Apple Pay.", ["can I pay with paypal", "accepted cards"]),
    ("assembly", "Do you assemble furniture?", "Our team can assemble furniture at your home for a fee.", ["furniture assembly service", "help building a wardrobe"]),
    ("gift-wrap", "Is gift wrapping available?", "Add gift wrapping at checkout for 3 dollars.", ["wrap my order as a present", "gift packaging"]),
    ("bulk", "Do you offer discounts for bulk orders?", "Business customers ordering 50 or more units can request a quote.", ["wholesale prices", "corporate orders"]),
    ("lost-card", "I lost my loyalty card", "Your points are saved in the app; order a new card at any till.", ["replace membership card", "missing rewards card"]),
    ("points-expire", "Do loyalty points expire?", "Points expire 24 months after they are earned.", ["how long do points last", "points expiry"]),
    ("international", "Do you ship internationally?", "We deliver to 30 countries; duties are paid by the customer.", ["shipping to other countries", "customs fees on foreign orders"]),
    ("overseas", "Do you deliver overseas?", "Parcels can go to most nations worldwide; import taxes are the buyer's responsibility.", ["sending parcels abroad", "foreign addresses accepted"]),
    ("preorder", "How do pre-orders work?", "Pre-ordered items are charged when they ship on release day.", ["reserve an upcoming product", "order before release"]),
    ("repair", "Can you repair my broken laptop?", "Our service desk repairs laptops of any brand; diagnosis is free.", ["laptop repair service", "fix my computer"]),
    ("trade-in", "Can I trade in my old phone?", "Trade in your old phone for store credit at the service desk.", ["exchange old phone for credit", "phone trade-in value"]),
    ("invoice", "How do I get a VAT invoice?", "Download the invoice from Orders > Invoice.", ["vat receipt", "company invoice"]),
    ("coupon", "Why is my coupon not working?", "Coupons need a minimum spend and exclude sale items.", ["promo code rejected", "voucher code invalid"]),
    ("refund-time", "How long do refunds take?", "Refunds reach your card 5 business days after we receive the return.", ["when will I get my money back", "refund processing time"]),
    ("return-window", "What is the return period?", "You can return items within 30 days of delivery.", ["how many days to return", "return deadline"]),
]  # fmt: skip
PARAPHRASES = {
    frozenset(("ship-address", "edit-delivery")),
    frozenset(("store-hours", "open-close")),
    frozenset(("international", "overseas")),
}
# Same topic, different questions: must never be paired.
SAME_TOPIC = [
    ("ship-cost", "ship-address"),
    ("ship-cost", "edit-delivery"),
    ("ship-cost", "international"),
    ("ship-cost", "overseas"),
    ("reset-password", "delete-account"),
    ("refund-time", "return-window"),
    ("gift-card", "gift-wrap"),
    ("gift-card", "coupon"),
    ("lost-card", "points-expire"),
]
# Paraphrases that are not in PARAPHRASES but may be listed without being wrong.
ALSO_RIGHT = {frozenset(("reset-password", "login-help"))}


def kb_vectors(embedder: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    texts = [t for _, t, _, _ in KB]
    owner = list(range(len(KB)))
    for i, (_, _, _, qs) in enumerate(KB):
        texts += qs
        owner += [i] * len(qs)
    return embedder.embed_documents(texts), np.asarray(owner), texts


@pytest.fixture(scope="module")
def found(local_embedder):
    vectors, owner, _ = kb_vectors(local_embedder)
    return find_semantic_duplicates(vectors, owner, len(KB), MODEL, ReviewSettings())


def _pairs(found) -> set[frozenset[str]]:
    return {frozenset((KB[a][0], KB[b][0])) for a, b in zip(found.a, found.b, strict=True)}


def test_paraphrased_entries_are_found_with_a_calibrated_threshold(found):
    cal = found.calibration
    assert cal.method == "calibrated" and 0.5 < cal.threshold < cal.false_pair_rate + 0.95
    assert cal.positives == 2 * len(KB) + len(KB)  # title-q1, title-q2, q1-q2 per entry
    assert cal.negatives == len(KB) * (len(KB) - 1) // 2  # a small KB: every pair
    assert _pairs(found) >= PARAPHRASES
    assert _pairs(found) <= PARAPHRASES | ALSO_RIGHT
    assert list(found.score) == sorted(found.score, reverse=True)
    assert all(s >= cal.threshold for s in found.score)


def test_unrelated_entries_on_the_same_topic_are_not_paired(found):
    pairs = _pairs(found)
    for a, b in SAME_TOPIC:
        assert frozenset((a, b)) not in pairs


def test_matched_vectors_belong_to_their_entries(found, local_embedder):
    _, owner, texts = kb_vectors(local_embedder)
    for a, b, va, vb in zip(found.a, found.b, found.vec_a, found.vec_b, strict=True):
        assert owner[va] == a and owner[vb] == b and a < b
    best = {
        frozenset((KB[a][0], KB[b][0])): (va, vb)
        for a, b, va, vb in zip(found.a, found.b, found.vec_a, found.vec_b, strict=True)
    }
    va, vb = best[frozenset(("ship-address", "edit-delivery"))]
    assert {texts[va], texts[vb]} == {"change shipping address", "modify delivery address"}


def _raw(i: int, entry_id: str, title: str, answer: str, qs: list[str]) -> dict[str, Any]:
    return {
        "row_id": i,
        "source_file": "kb.jsonl",
        "source_line": i + 1,
        "id": entry_id,
        "title": title,
        "answer": answer,
        "similar_questions": qs,
        "updated_at": "2026-11-01T00:00:00",
        "lang": "en",
        "metadata": "{}",
    }


def test_minhash_does_not_see_the_paraphrases():
    rows = table_from_rows([_raw(i, *e) for i, e in enumerate(KB)], RAW_ROW)
    res = clean_rows(rows, date(2026, 11, 24), CleanSettings())
    assert res.merges.num_rows == 0 and res.entries.num_rows == len(KB)
    by_id = {e[0]: e for e in KB}
    for pair in PARAPHRASES:
        a, b = (by_id[x] for x in sorted(pair))
        sa = char_shingles(f"{a[1]}\n{a[2]}", 2)
        sb = char_shingles(f"{b[1]}\n{b[2]}", 2)
        # far below the 0.8 the clean stage merges at: the wording is different
        assert len(sa & sb) / len(sa | sb) < 0.35


def test_pairs_merged_by_minhash_are_not_reported(local_embedder):
    vectors, owner, _ = kb_vectors(local_embedder)
    i, j = (next(k for k, e in enumerate(KB) if e[0] == x) for x in ("store-hours", "open-close"))
    got = find_semantic_duplicates(
        vectors, owner, len(KB), MODEL, ReviewSettings(), exclude={(min(i, j), max(i, j))}
    )
    assert frozenset(("store-hours", "open-close")) not in _pairs(got) and got.excluded == 1


# --- calibration -----------------------------------------------------------------------------


def _normal_scores(n: int, seed: int) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(0.3, 0.1, n), -1, 1)


def _gpd_tailed(n: int, seed: int, xi: float = -0.2, sigma: float = 0.08) -> np.ndarray:
    """Scores whose top 10% is exactly generalized Pareto above 0.45 (the rest below it)."""
    rng = np.random.default_rng(seed)
    out = rng.uniform(0.0, 0.45, n)
    top = rng.random(n) < 0.1
    u = rng.random(int(top.sum()))
    out[top] = 0.45 + sigma / xi * ((1 - u) ** (-xi) - 1)
    return out


def test_calibrated_threshold_keeps_the_false_pair_share():
    settings = ReviewSettings(false_pair_rate=0.05)
    n_entries = 2000
    pos = np.full(100, 0.5)  # below every threshold here: the floor (next test) stays out
    p = 0.05 / (n_entries - 1)
    # a tail the model family holds exactly: the rate is kept within sampling error
    cal = calibrate_threshold(pos, _gpd_tailed(200_000, 1), n_entries, MODEL, settings)
    assert cal.method == "calibrated" and cal.threshold is not None
    share = float((_gpd_tailed(4_000_000, 2) >= cal.threshold).mean())
    assert p / 2 <= share <= 2 * p
    # a Gaussian (lighter than any fitted tail near its 99th percentile) 1.5 orders beyond
    # the data: within a factor of 3
    cal = calibrate_threshold(pos, _normal_scores(200_000, 1), 200, MODEL, settings)
    assert cal.threshold is not None
    share = float((_normal_scores(4_000_000, 2) >= cal.threshold).mean())
    assert 0.05 / 199 / 3 <= share <= 3 * 0.05 / 199
    stricter = calibrate_threshold(
        pos, _normal_scores(200_000, 1), 200, MODEL, ReviewSettings(false_pair_rate=0.01)
    )
    assert stricter.threshold is not None and stricter.threshold > cal.threshold
    bigger = calibrate_threshold(pos, _normal_scores(200_000, 1), 20_000, MODEL, settings)
    assert bigger.threshold is not None and bigger.threshold > cal.threshold


def test_a_few_true_duplicates_among_random_pairs_do_not_move_the_threshold():
    neg = _normal_scores(50_000, 3)
    pos = np.full(100, 0.5)
    clean = calibrate_threshold(pos, neg, 1000, MODEL, ReviewSettings())
    # 25 duplicate pairs among 50,000 random pairs: a KB where 1 entry in 20 has a duplicate
    dirty = calibrate_threshold(
        pos, np.concatenate([neg, np.full(25, 0.97)]), 1000, MODEL, ReviewSettings()
    )
    assert clean.threshold is not None and dirty.threshold is not None
    assert abs(dirty.threshold - clean.threshold) < 0.02
    assert dirty.threshold < 0.9  # the duplicates stay above it: they are reported


def test_threshold_is_never_below_most_of_the_kbs_own_paraphrase_pairs():
    neg = _normal_scores(50_000, 6)
    low = calibrate_threshold(np.full(100, 0.5), neg, 1000, MODEL, ReviewSettings())
    pos = np.linspace(0.8, 1.0, 101)
    cal = calibrate_threshold(pos, neg, 1000, MODEL, ReviewSettings())
    assert low.threshold is not None and low.threshold < 0.8
    assert cal.threshold == pytest.approx(float(np.quantile(pos, 0.1)))
    assert cal.recall_positives == pytest.approx(0.9, abs=0.01) and "raised" in cal.reason


def test_threshold_is_read_off_the_negatives_when_there_are_enough():
    neg = _normal_scores(1_000_000, 7)
    cal = calibrate_threshold(np.full(100, 0.5), neg, 1000, MODEL, ReviewSettings())
    p = 0.05 / 999  # 50 of the million pairs lie above the threshold
    assert "read off" in cal.reason and cal.tail == {}
    assert (neg >= cal.threshold).sum() == int(p * len(neg))


def test_recall_on_positives_is_reported():
    neg = _normal_scores(50_000, 4)
    pos = np.linspace(0.5, 1.0, 101)
    cal = calibrate_threshold(pos, neg, 500, MODEL, ReviewSettings())
    assert cal.threshold is not None
    assert cal.recall_positives == pytest.approx(float((pos >= cal.threshold).mean()))


def test_a_model_that_maps_everything_alike_cannot_separate():
    cal = calibrate_threshold(np.ones(100), np.ones(5000), 100, MODEL, ReviewSettings())
    assert cal.method == "cannot_separate" and cal.threshold is None


def test_too_few_entries_falls_back_to_the_model_default():
    neg = _normal_scores(5000, 5)
    settings = ReviewSettings(default_thresholds={"all-MiniLM-L6-v2": 0.91, "other@8": 0.7})
    cal = calibrate_threshold(np.full(500, 0.9), neg, 10, MODEL, settings)
    assert (cal.method, cal.threshold) == ("default", 0.91)
    assert calibrate_threshold(np.full(5, 0.9), neg, 10, "other@8", settings).threshold == 0.7
    generic = calibrate_threshold(np.full(5, 0.9), neg, 10, "unknown@3", settings)
    assert generic.threshold == settings.default_threshold
    skipped = calibrate_threshold(np.full(5, 0.9), neg, 100, MODEL, settings, model_covers_kb=False)
    assert (skipped.method, skipped.threshold) == ("not_covered", None)


def test_too_few_positives_calibrates_on_the_negatives_alone_without_a_floor():
    # a KB without similar questions (titles only) still gets a threshold from its random pairs
    neg = _normal_scores(200_000, 5)
    few = calibrate_threshold(np.full(5, 0.99), neg, 1000, MODEL, ReviewSettings())
    assert few.method == "calibrated" and "no paraphrase floor" in few.reason
    assert few.threshold is not None and few.threshold < 0.99  # the 0.99 pairs did not raise it
    many = calibrate_threshold(np.full(500, 0.99), neg, 1000, MODEL, ReviewSettings())
    assert many.threshold == pytest.approx(0.99)  # with enough of them they are the floor


def test_a_compressed_model_is_calibrated_not_refused():
    # multilingual-e5 puts unrelated pairs near 0.9 and paraphrases near 0.97-0.99: its
    # threshold lies above 0.98, which the old fixed ceiling refused as "cannot separate"
    rng = np.random.default_rng(3)
    neg = np.clip(rng.normal(0.9, 0.02, 2_000_000), -1, 1)
    pos = np.clip(rng.normal(0.985, 0.005, 300), -1, 1)
    cal = calibrate_threshold(pos, neg, 5000, "multilingual-e5-small@384", ReviewSettings())
    assert cal.method == "calibrated" and 0.96 < cal.threshold < 0.999
    assert (neg >= cal.threshold).mean() <= 0.05 / 4999 * 1.5


# --- building blocks -------------------------------------------------------------------------


def test_entry_index_table_lists_each_entrys_vectors_in_order():
    owner = np.array([2, 0, 2, 1, 0, 2, 2])
    table = entry_index_table(owner, 4, 3)
    assert table.tolist() == [[1, 4, -1], [3, -1, -1], [0, 2, 5], [-1, -1, -1]]


def _clustered(n_entries: int, per: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_entries, dim))
    # every 10th entry is a near copy of the one before it
    centers[1::10] = centers[0::10][: len(centers[1::10])] + 0.15 * rng.normal(
        size=(len(centers[1::10]), dim)
    )
    vecs = np.repeat(centers, per, axis=0) + 0.3 * rng.normal(size=(n_entries * per, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32), np.repeat(np.arange(n_entries), per)


def _brute(vectors: np.ndarray, owner: np.ndarray, t: float) -> set[tuple[int, int]]:
    sims = vectors @ vectors.T
    i, j = np.nonzero(np.triu(sims >= t, 1))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if owner[a] != owner[b]}


@pytest.mark.parametrize("exact_max", [100_000, 500])
def test_neighbour_search_finds_the_pairs_brute_force_finds(exact_max):
    vectors, owner = _clustered(300, 3, 32, 7)
    settings = ReviewSettings(exact_search_max=exact_max, k_neighbors=10, nprobe=8)
    i, j, s = neighbour_pairs(vectors, owner, 0.8, settings)
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    want = _brute(vectors, owner, 0.8)
    assert want and got <= want
    recall = len(got) / len(want)
    assert recall == 1.0 if exact_max > len(vectors) else recall >= 0.95
    assert np.allclose(s, np.einsum("ij,ij->i", vectors[i], vectors[j]), atol=1e-5)


def test_positive_and_negative_scores():
    vectors, owner = _clustered(50, 3, 16, 3)
    pos = positive_scores(vectors, owner, 50)
    assert len(pos) == 50 * 3
    neg = negative_scores(vectors, owner, 50, 10_000)
    assert len(neg) == 50 * 49 // 2  # every pair
    # each negative is the best of its pair's 3 x 3 vector pairs
    sims = vectors @ vectors.T
    a, b = np.triu_indices(50, 1)
    want = [sims[np.ix_(owner == x, owner == y)].max() for x, y in zip(a[:20], b[:20], strict=True)]
    assert np.allclose(neg[:20], want, atol=1e-5)
    sampled = negative_scores(vectors, owner, 50, 300)
    assert 300 <= len(sampled) < len(neg)  # blocks of random entries
    assert set(np.round(sampled, 5)) <= set(np.round(neg, 5))  # each is some pair's score
