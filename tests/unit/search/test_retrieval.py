from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from kbflow.index.bm25 import tokenize
from kbflow.index.calibrate import calibrate_index, held_out_golden
from kbflow.index.version import LoadedVersion, held_out_rows
from kbflow.publish.pointer import publish_version
from kbflow.search.searcher import Searcher
from kbflow.settings import SearchSettings, Settings
from kbflow.store.golden import GoldenQuery

from ..helpers import EN_KB, build_test_version, entry


@pytest.fixture(scope="module")
def en_home(tmp_path_factory, local_embedder) -> Path:
    root = tmp_path_factory.mktemp("home")
    build_test_version(root, "v1", EN_KB, local_embedder)
    publish_version(root / "indexes", "v1", keep=5)
    return root


def test_search_finds_paraphrased_question(en_home: Path, local_embedder):
    s = Searcher(en_home / "indexes", SearchSettings(), lambda info: local_embedder)
    res = s.search("my money hasn't come back yet", k=3)
    assert res.version == "v1" and res.fallback_level == 0
    assert res.results[0].entry_id == "refund-time"
    assert len(res.results) == 3 and res.results[0].score >= res.results[1].score


def test_embedder_down_falls_back_to_keywords_then_to_handoff(en_home: Path, tmp_path: Path):
    def broken(info):
        raise ConnectionError("embedding server unreachable")

    s = Searcher(en_home / "indexes", SearchSettings(), broken)
    res = s.search("coupon code rejected")
    assert res.fallback_level == 1 and res.results[0].entry_id == "coupon"
    assert "unreachable" in (res.error or "")
    # BM25 files gone too: the canned hand-off, never an exception
    copy = tmp_path / "indexes"
    shutil.copytree(en_home / "indexes", copy)
    shutil.rmtree(copy / "v1" / "bm25")
    res2 = Searcher(copy, SearchSettings(), broken).search("coupon code rejected")
    assert res2.fallback_level == 2 and res2.handoff and res2.results == []


def test_searcher_picks_up_a_new_current_without_restart(tmp_path: Path, local_embedder):
    build_test_version(tmp_path, "v1", EN_KB[:2], local_embedder)
    build_test_version(tmp_path, "v2", EN_KB, local_embedder)
    publish_version(tmp_path / "indexes", "v1", keep=5)
    s = Searcher(tmp_path / "indexes", SearchSettings(), lambda info: local_embedder)
    assert s.search("voucher invalid").version == "v1"
    publish_version(tmp_path / "indexes", "v2", keep=5)
    # v2 loads in the background; meanwhile v1 keeps answering, never an error
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        res = s.search("voucher invalid")
        assert res.fallback_level == 0 and res.results
        seen.append(res.version)
        if res.version == "v2":
            break
        time.sleep(0.01)
    assert seen[-1] == "v2" and set(seen) <= {"v1", "v2"}
    assert res.results[0].entry_id == "coupon"
    # a version that cannot be loaded is reported, and the loaded one keeps serving
    (tmp_path / "indexes" / "v1" / "dense.faiss").write_bytes(b"not an index")
    publish_version(tmp_path / "indexes", "v1", keep=5)
    for _ in range(200):
        res = s.search("voucher invalid")
        assert res.version == "v2" and res.fallback_level == 0
        if s.load_error:
            break
        time.sleep(0.02)
    assert s.load_error and res.results[0].entry_id == "coupon"


def test_held_out_self_check_hides_near_copies_of_the_query(en_home: Path):
    v = LoadedVersion(en_home / "indexes" / "v1")
    row = v.passage_ids.index("refund-time:1")
    hidden = held_out_rows(v, row, tokenize(v.texts[row]))
    assert row in hidden
    assert v.passage_ids.index("refund-time:0") not in hidden  # the answer passage stays findable


def test_calibration_is_dense_heavy_on_english_with_paraphrases(tmp_path: Path, local_embedder):
    # an English KB where similar questions share few words with one another: dense should win
    kb = [
        entry(f"e{i}", t, a, s)
        for i, (t, a, s) in enumerate(
            [
                (
                    "How long does a refund take?",
                    "5-7 business days.",
                    [
                        "when do i get my money back",
                        "cash returned how soon",
                        "reimbursement timing",
                    ],
                ),
                (
                    "Where is my order?",
                    "Tap Track in Orders.",
                    ["parcel hasn't shown up", "package location", "shipment status please"],
                ),
                (
                    "Change delivery address",
                    "Edit before shipping.",
                    ["moved house recently", "wrong street on the label", "update where it goes"],
                ),
                (
                    "Coupon does not work",
                    "Minimum spend applies.",
                    ["promo code failing", "voucher invalid", "discount refused at checkout"],
                ),
                (
                    "Get an invoice",
                    "Orders > Invoice.",
                    ["receipt for my company", "vat paperwork", "billing document download"],
                ),
                (
                    "Reset password",
                    "Use Forgot password.",
                    ["can't log in", "locked out of account", "forgot my login"],
                ),
                (
                    "Cancel order",
                    "Cancel before it ships.",
                    ["don't want it anymore", "stop my purchase", "undo the order"],
                ),
                (
                    "Payment failed",
                    "Try another card.",
                    ["card declined", "checkout error paying", "charge didn't go through"],
                ),
                (
                    "Contact support",
                    "Chat 9am-9pm.",
                    ["talk to a human", "phone number for help", "speak with an agent"],
                ),
                (
                    "Return an item",
                    "30 days to return.",
                    ["send it back", "doesn't fit want to return", "return label"],
                ),
                (
                    "Delivery fee",
                    "Free over $50.",
                    ["shipping cost", "how much is postage", "charges for sending"],
                ),
                (
                    "Gift wrap",
                    "Add at checkout.",
                    ["wrap as a present", "birthday packaging", "present wrapping option"],
                ),
            ]
        )
    ]
    vdir = build_test_version(tmp_path, "v1", kb, local_embedder)
    settings = Settings()
    cal = calibrate_index(vdir, settings)
    assert cal["method"] == "held-out-similar-questions"
    assert cal["dense_weight"] >= 0.5, (cal["scores_by_weight"], cal["self_check"], cal["queries"])
    assert cal["kb_language"] == "en"


def test_golden_queries_the_index_holds_are_not_held_out(en_home: Path):
    """A golden query a reviewer added to the KB (the review loop) no longer calibrates the
    hand-off: it would score ~1 and pull the threshold up."""
    v = LoadedVersion(en_home / "indexes" / "v1")
    golden = [
        GoldenQuery("When do I get my MONEY back?!", ("refund-time",), "valid"),  # folded: in
        GoldenQuery("my refund is late", ("refund-time",), "valid"),
        GoldenQuery("weather tomorrow", (), "valid"),
    ]
    assert [q.query for q in held_out_golden(v, golden)] == [
        "my refund is late",
        "weather tomorrow",
    ]


def test_chinese_kb_without_similar_questions_uses_language_prior(tmp_path: Path, local_embedder):
    kb = [
        entry(f"z{i}", t, a)
        for i, (t, a) in enumerate(
            [
                ("退款多久到账", "退款审核通过后1-3个工作日原路退回。"),
                ("怎么修改收货地址", "发货前可在订单详情修改地址。"),
                ("优惠券为什么用不了", "优惠券需满足最低消费金额。"),
                ("如何开发票", "在订单页面申请电子发票。"),
            ]
        )
    ]
    vdir = build_test_version(tmp_path, "v1", kb, local_embedder)
    cal = calibrate_index(vdir, Settings())
    assert cal["method"] == "language-prior" and cal["kb_language"] == "zh"
    assert cal["dense_weight"] == 0.0  # an English-only model does not get a say on a Chinese KB


def test_fusion_endpoints_equal_single_sides(en_home: Path, local_embedder):
    v = LoadedVersion(en_home / "indexes" / "v1")
    q = "refund still not arrived after a week"
    c = v.candidates(local_embedder.embed_queries([q])[0], tokenize(q))
    np.testing.assert_allclose(v.fuse(c, 1.0), c.dense)
    np.testing.assert_allclose(v.fuse(c, 0.0), np.minimum(c.keyword / v.bm25_scale, 1.0))
