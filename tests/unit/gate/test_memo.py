"""The gate's memo: what a version's own gate found about it answers for it the next night, so
the live version is loaded only for questions it was never asked, and the decision is the same
as when it is asked again."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kbflow.gate.check import gate_version
from kbflow.gate.memo import MEMO, LiveVersion, read_memo, write_memo
from kbflow.index.version import LoadedVersion, self_check_rows
from kbflow.settings import GateSettings

from ..helpers import build_test_version, entry
from .test_replay import KB, swapped

MORE = [
    entry("loyalty", "How do loyalty points work?", "One point per dollar; 100 points = $1.",
          ["earn points", "points balance", "what are reward points"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory, local_embedder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("memo")
    edited = copy.deepcopy(KB)
    edited[1]["answer"] += " Orders placed after 5 pm ship the next day."
    kbs = {
        "live": KB,
        "edited": edited,
        "grown": KB + MORE,
        "swapped": swapped(KB, "track-order", "coupon"),
    }
    return {
        name: build_test_version(root, f"v{i}", kb, local_embedder)
        for i, (name, kb) in enumerate(kbs.items(), 1)
    }


def encoders(local_embedder) -> tuple[Any, Any]:
    return (
        lambda version, texts: local_embedder.embed_queries(texts),
        lambda version, texts: local_embedder.embed_documents(texts),
    )


SETTINGS = GateSettings(alignment_entries=2000, replay_queries=0)


def gate(new: Path, live: Any, local_embedder) -> dict[str, Any]:
    queries, answers = encoders(local_embedder)
    return gate_version(LoadedVersion(new), live, [], SETTINGS, queries, answers)


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("passed", "reasons", "checks", "failing", "alignment")}


@pytest.fixture(scope="module")
def live_with_memo(built, local_embedder) -> Path:
    """The live version as its own first gate left it: memo written."""
    first = gate(built["live"], None, local_embedder)
    assert first["live_loaded"] is False
    write_memo(built["live"], first.pop("memo"))
    return built["live"]


@pytest.mark.parametrize("candidate", ["edited", "grown", "swapped"])
def test_the_memo_answers_like_the_live_version_asked_again(
    built, live_with_memo, local_embedder, candidate
):
    remembered = gate(built[candidate], LiveVersion(live_with_memo), local_embedder)
    asked = gate(built[candidate], LoadedVersion(live_with_memo), local_embedder)
    assert comparable(remembered) == comparable(asked)
    assert asked["live_loaded"] is True
    assert remembered["alignment"]["live"] is not None
    if candidate == "swapped":
        # the swapped entries' questions now ask for the other entry: new questions, asked anew
        assert remembered["live_loaded"] is True
        assert remembered["checks"]["self_check"]["live"]["hit@3"] < 1.0
    else:
        # every self-check question is one the live version was asked as a candidate, except
        # the new entry's (it cannot be asked: it lacks the entry), so it is never loaded
        assert remembered["live_loaded"] is False


def test_a_question_the_memo_lacks_loads_the_live_version(built, live_with_memo, local_embedder):
    memo = read_memo(live_with_memo)
    assert memo.ranks and memo.alignment is not None
    dropped = next(k for k in memo.ranks if k[0] == "self_check")
    del memo.ranks[dropped]
    other = live_with_memo.parent / "v-partial"
    other.mkdir()
    for f in live_with_memo.iterdir():
        if f.is_file():
            (other / f.name).hardlink_to(f)
    (other / "bm25").symlink_to(live_with_memo / "bm25")
    write_memo(other, memo)
    live = LiveVersion(other)
    remembered = gate(built["edited"], live, local_embedder)
    assert remembered["live_loaded"] is True
    assert comparable(remembered) == comparable(
        gate(built["edited"], LoadedVersion(live_with_memo), local_embedder)
    )


def test_a_memo_of_another_format_is_ignored(built, live_with_memo, tmp_path):
    raw = json.loads((live_with_memo / MEMO).read_text(encoding="utf-8"))
    raw["format"] = 0
    (tmp_path / MEMO).parent.mkdir(parents=True)
    (tmp_path / MEMO).write_text(json.dumps(raw), encoding="utf-8")
    assert read_memo(tmp_path).ranks == {}
    (tmp_path / MEMO).write_text("{not json", encoding="utf-8")
    assert read_memo(tmp_path).ranks == {}


def test_the_stable_self_check_sample_keeps_unchanged_questions(built):
    live, grown = LoadedVersion(built["live"]), LoadedVersion(built["grown"])
    limit = 12
    a = {(live.entry_of_row[r], live.texts[r]) for r in self_check_rows(live, limit, stable=True)}
    b = {
        (grown.entry_of_row[r], grown.texts[r]) for r in self_check_rows(grown, limit, stable=True)
    }
    assert len(a) == len(b) == limit
    # the new entry's 3 questions may take places in the sample; nothing else moves
    assert len(a & b) >= limit - len(MORE[0]["similar_questions"])
    assert {e for e, _ in b - a} <= {"loyalty"}
