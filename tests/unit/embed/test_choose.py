"""kbflow.embed.choose: the KB's language mix and the bundled model ``auto`` picks for it."""

from __future__ import annotations

import json

import pytest

from kbflow.embed.choose import LanguageMix, choose_model, entry_language, language_mix
from kbflow.errors import ConfigError
from kbflow.settings import EmbedSettings

from ...conftest import EXAMPLES

MINILM, E5 = "all-MiniLM-L6-v2", "multilingual-e5-small"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("我单子咋还没到", "zh"),
        ("會員積分 expire 嗎？積分有效期 is 12 months.", "zh"),  # Chinese with English terms
        ("How do I change the delivery address of my order?", "en"),
        ("Refund policy", "en"),  # too short to tell: Latin script counts as English
        ("¿Cómo puedo cambiar la dirección de entrega de mi pedido?", "other"),
        ("Wie kann ich meine Bestellung stornieren und was kostet das?", "other"),
        ("Как изменить адрес доставки?", "other"),
        ("", "en"),
    ],
)
def test_entry_language(text: str, lang: str) -> None:
    assert entry_language(text) == lang


def _entries(folder: str) -> list[str]:
    out = []
    for line in (EXAMPLES / folder / "export" / "faq.jsonl").read_text("utf-8").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue  # the sample's deliberately broken lines
        if isinstance(e, dict):
            out.append(f"{e.get('title', '')}\n{e.get('answer', '')}")
    return out


def test_the_samples_are_told_apart() -> None:
    zh, en = language_mix(_entries("kb_zh")), language_mix(_entries("kb_en"))
    assert zh.shares["zh"] > 0.95 and zh.english < 0.05
    assert en.english > 0.9
    mixed = language_mix(_entries("kb_en") + _entries("kb_zh")[:20])
    assert mixed.entries == len(_entries("kb_en")) + 20
    assert 0.5 < mixed.english < 0.9


def test_large_kbs_are_sampled_evenly() -> None:
    texts = ["How do I pay for my order?"] * 6000 + ["怎么付款"] * 6000
    mix = language_mix(texts, sample=1000)
    assert mix.entries == 1000 and mix.english == pytest.approx(0.5)


def mix(en: float) -> LanguageMix:
    return LanguageMix(entries=100, shares={"en": en, "zh": 1 - en, "other": 0.0})


def live(model: str, mode: str | None) -> dict:
    return {"model": model, **({"choice": {"mode": mode}} if mode else {})}


def test_auto_picks_by_language_and_records_why() -> None:
    auto = EmbedSettings()
    assert auto.model == "auto"
    zh = choose_model(auto, mix(0.0))
    assert (zh.model, zh.mode, zh.switched) == (E5, "auto", False)
    assert zh.reason.startswith("English 0% of 100 entries") and zh.language["zh"] == 1.0
    en = choose_model(auto, mix(0.97))
    assert (en.model, en.mode) == (MINILM, "auto")
    assert choose_model(auto, mix(0.5)).model == MINILM  # at the threshold: English
    assert choose_model(EmbedSettings(auto_threshold=0.6), mix(0.5)).model == E5


def test_an_explicit_model_overrides_auto() -> None:
    got = choose_model(EmbedSettings(model=MINILM), mix(0.0), live(E5, "auto"))
    assert (got.model, got.mode, got.switched) == (MINILM, "explicit", True)


def test_a_chosen_model_is_kept_within_the_hysteresis_band() -> None:
    auto = EmbedSettings()  # threshold 0.5, band 0.1
    kept = choose_model(auto, mix(0.45), live(MINILM, "auto"))
    assert (kept.model, kept.switched) == (MINILM, False) and "kept the live model" in kept.reason
    moved = choose_model(auto, mix(0.35), live(MINILM, "auto"))
    assert (moved.model, moved.switched) == (E5, True)
    assert "switched from all-MiniLM-L6-v2 to multilingual-e5-small" in moved.reason
    assert choose_model(auto, mix(0.55), live(E5, "auto")).model == E5
    assert choose_model(auto, mix(0.65), live(E5, "auto")).model == MINILM
    # a model set explicitly before does not hold auto back: the language decides
    assert choose_model(auto, mix(0.45), live(MINILM, "explicit")).model == E5


def test_a_version_from_before_auto_keeps_its_model_until_a_reembed() -> None:
    auto = EmbedSettings()
    legacy = live(MINILM, None)  # manifests written before models were chosen by language
    kept = choose_model(auto, mix(0.0), legacy)
    assert (kept.model, kept.mode, kept.switched) == (MINILM, "kept", False)
    assert "kbflow backfill --reembed --model auto" in kept.reason and E5 in kept.reason
    # and stays kept on the next night (its manifest now says "kept")
    assert choose_model(auto, mix(0.0), live(MINILM, "kept")).model == MINILM
    # a re-embed decides by language alone
    fresh = choose_model(auto, mix(0.0), legacy, fresh=True)
    assert (fresh.model, fresh.mode, fresh.switched) == (E5, "auto", True)


def test_auto_is_for_the_bundled_models_only() -> None:
    with pytest.raises(ConfigError, match="--model NAME"):
        choose_model(EmbedSettings(backend="openai", urls=["http://h:1/v1"]), mix(0.0))
    served = choose_model(
        EmbedSettings(backend="openai", urls=["http://h:1/v1"], model="Qwen3-Embedding-4B"),
        mix(0.0),
    )
    assert (served.model, served.mode) == ("Qwen3-Embedding-4B", "explicit")
