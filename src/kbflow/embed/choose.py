"""The KB's language mix, and the bundled model ``embed.model = "auto"`` picks for it.

Two CPU models ship with kbflow: all-MiniLM-L6-v2 (English) and multilingual-e5-small (Chinese
and every other language). Neither serves both: on ../shared/data, e5 is far better on Chinese
(bq dense hit@3 0.251 vs 0.058) and clearly worse on English (banking77 hit@1 0.681 vs 0.779).
So the KB decides, when a version is built:

* each sampled entry (title, answer head and similar questions) gets one language by what
  most of its text is written in: Han characters (``zh``; one character counts as one unit),
  Latin-script words (``en`` when enough of them are English function words, else ``other``),
  or words of another script (``other``);
* ``en`` share at or above ``embed.auto_threshold`` (0.5): all-MiniLM-L6-v2; below it:
  multilingual-e5-small.

Once a version chose by language, the next runs keep its model while the English share stays
within ``embed.auto_hysteresis`` of the threshold, so a KB near 50/50 does not flip every night;
a move past that band builds the next version with the other model, through the gate against
the live version like any re-embed. A live version built before models were chosen by language
keeps its model until a re-embed (``kbflow backfill --reembed --model auto``): an upgrade never
re-embeds a KB behind its owner's back.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from kbflow.embed.base import AUTO_MODEL
from kbflow.embed.e5 import E5_MODEL, is_e5
from kbflow.embed.local import DEFAULT_MODEL
from kbflow.errors import ConfigError
from kbflow.results import ModelChosen
from kbflow.settings import EmbedSettings

BUNDLED_MODELS = (DEFAULT_MODEL, E5_MODEL)


#: Entries looked at (a seeded sample of larger KBs; the share's error is then under 1.5%).
SAMPLE_ENTRIES = 5000


#: Characters of an entry's text looked at.
ENTRY_CHARS = 600


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


_OTHER_WORD = re.compile(r"[^\W\d_A-Za-z\u00c0-\u024f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


#: Frequent English words that are rare as words of other Latin-script languages (no "a",
#: "in", "was", "will", "an", "me", "on": French, German or Spanish use them too).
_EN_WORDS = frozenset(
    [
        "the",
        "and",
        "is",
        "are",
        "you",
        "your",
        "how",
        "what",
        "can",
        "do",
        "does",
        "to",
        "of",
        "for",
        "my",
        "it",
        "with",
        "this",
        "that",
        "be",
        "have",
        "has",
        "not",
        "if",
        "or",
        "when",
        "where",
        "why",
        "which",
        "who",
        "from",
        "by",
        "at",
        "were",
        "should",
        "would",
        "could",
        "get",
        "want",
        "need",
        "there",
        "their",
        "they",
        "we",
        "our",
        "us",
        "after",
        "before",
        "about",
        "into",
        "than",
        "then",
        "been",
        "being",
        "did",
        "don't",
        "i'm",
        "it's",
        "please",
        "account",
        "order",
        "orders",
        "payment",
        "card",
        "refund",
        "help",
        "change",
        "update",
    ]
)


#: Share of an entry's Latin words that must be English words above for it to count as English.
EN_WORD_SHARE = 0.12


Language = Literal["en", "zh", "other"]


def entry_language(text: str) -> Language:
    """The language most of ``text`` is written in (see the module doc)."""
    han = len(_HAN.findall(text))
    words = _LATIN_WORD.findall(text)
    other = len(_OTHER_WORD.findall(text))
    if han >= len(words) and han >= other and han > 0:
        return "zh"
    if other > len(words):
        return "other"
    if not words:
        return "other" if other else "en"
    english = sum(1 for w in words if w.lower() in _EN_WORDS)
    # Two or three Latin words with no function word ("Refund policy") cannot be told apart;
    # Latin script then counts as English, the bundled English model's language.
    if english / len(words) >= EN_WORD_SHARE or (len(words) < 4 and english == 0):
        return "en"
    return "other"


@dataclass(frozen=True)
class LanguageMix:
    """Share of entries per language (``en``, ``zh``, ``other``) among ``entries`` looked at."""

    entries: int
    shares: dict[str, float]

    @property
    def english(self) -> float:
        return self.shares.get("en", 0.0)

    @property
    def dominant(self) -> str:
        return max(self.shares, key=lambda k: self.shares[k]) if self.shares else "en"

    def describe(self) -> str:
        parts = sorted(self.shares.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {v:.0%}" for k, v in parts if v > 0) or "no text"


def language_mix(entry_texts: Iterable[str], sample: int = SAMPLE_ENTRIES) -> LanguageMix:
    """Language shares over ``entry_texts`` (one text per entry), a seeded sample of at most
    ``sample`` of them (every ``k``-th entry, so the sample follows the export's order)."""
    texts = list(entry_texts)
    if len(texts) > sample:
        step = len(texts) / sample
        texts = [texts[int(i * step)] for i in range(sample)]
    counts = Counter(entry_language(t[:ENTRY_CHARS]) for t in texts)
    n = len(texts)
    return LanguageMix(
        entries=n,
        shares={k: round(counts.get(k, 0) / n, 4) if n else 0.0 for k in ("en", "zh", "other")},
    )


def by_language(mix: LanguageMix, threshold: float) -> str:
    return DEFAULT_MODEL if mix.english >= threshold else E5_MODEL


def canonical_model(name: str) -> str:
    return E5_MODEL if is_e5(name) else name


@dataclass(frozen=True)
class ModelChoice:
    """Which model a run embeds with, and why (stored in the manifest as ``embedding.choice``)."""

    model: str
    mode: Literal["explicit", "auto", "kept"]
    """``explicit``: embed.model named it; ``auto``: the language chose; ``kept``: the live
    version's model from before ``auto``, kept until a re-embed."""
    reason: str
    language: dict[str, Any]
    threshold: float
    live_model: str | None = None
    switched: bool = False
    """True when the model differs from the live version's (a blue/green switch)."""

    def as_dict(self) -> ModelChosen:
        return cast(ModelChosen, asdict(self))


def choose_model(
    embed: EmbedSettings,
    mix: LanguageMix,
    live: Mapping[str, Any] | None = None,
    fresh: bool = False,
) -> ModelChoice:
    """The model this run embeds with.

    ``live``: the live version's manifest ``embedding`` section (None without one). ``fresh``
    (re-embeds): decide by language alone, whatever the live version uses. Raises
    ``ConfigError`` for ``auto`` with a backend other than ``local`` (auto picks among the
    bundled CPU models only)."""
    t, band = embed.auto_threshold, embed.auto_hysteresis
    language = {"entries": mix.entries, **mix.shares}
    live_model = canonical_model(live["model"]) if live and live.get("model") else None
    live_choice = (live or {}).get("choice") or {}
    common = {"language": language, "threshold": t, "live_model": live_model}

    def done(model: str, mode: Literal["explicit", "auto", "kept"], reason: str) -> ModelChoice:
        switched = live_model is not None and canonical_model(model) != live_model
        return ModelChoice(model, mode, reason, switched=switched, **common)  # type: ignore[arg-type]

    if embed.model != AUTO_MODEL:
        return done(embed.model, "explicit", f"embed.model is {embed.model}")
    if embed.backend != "local":
        raise ConfigError(
            f"embed.model 'auto' picks one of the bundled CPU models ({', '.join(BUNDLED_MODELS)}); "
            f"with the {embed.backend} backend name the model the endpoint serves (--model NAME)"
        )
    share = f"English {mix.english:.0%} of {mix.entries} entries ({mix.describe()})"
    chosen = by_language(mix, t)
    by_share = f"{share}: {'at or above' if chosen == DEFAULT_MODEL else 'below'} {t:.0%}"
    if fresh or live_model not in BUNDLED_MODELS or live_choice.get("mode") == "explicit":
        # nothing to hold on to: no live version, another model, or one the settings named
        return done(chosen, "auto", by_share)
    assert live_model is not None
    if live_choice.get("mode") in (None, "kept"):
        # Built before auto (or kept since): an upgrade does not re-embed the KB on its own.
        note = (
            ""
            if chosen == live_model
            else f"; by language it would get {chosen} ({share}): re-embed with "
            "`kbflow backfill --reembed --model auto` to move"
        )
        return done(live_model, "kept", f"the live version's model, from before auto{note}")
    if live_model == DEFAULT_MODEL and mix.english >= t - band:
        return done(live_model, "auto", f"{share}: not below {t - band:.0%}, kept the live model")
    if live_model == E5_MODEL and mix.english <= t + band:
        return done(live_model, "auto", f"{share}: not above {t + band:.0%}, kept the live model")
    return done(
        chosen,
        "auto",
        f"{share}: past {t:.0%} ± {band:.0%}, switched from {live_model} to {chosen} "
        "(the new version is gated against the live one)",
    )
