"""``embed.model = auto`` end to end under a real Prefect API: the KB's language picks the
bundled model, a KB whose language moves gets the other model through the gate (blue/green),
a version from before ``auto`` keeps its model until a re-embed, and no version ever holds
vectors of two models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from kbflow_flows.backfill import kb_reembed
from kbflow_flows.nightly import kb_nightly

from kbflow.embed.cache import EmbeddingCache
from kbflow.store.versions import current_version, read_manifest

from ..conftest import EXAMPLES

RUN_DATE = "2026-11-24"
MINILM, E5 = "all-MiniLM-L6-v2", "multilingual-e5-small"


def _entries(folder: str) -> list[str]:
    lines = (EXAMPLES / folder / "export" / "faq.jsonl").read_text("utf-8").splitlines()
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # the samples' deliberately broken lines
        if isinstance(obj, dict) and obj.get("status", "published") == "published":
            out.append(line)
    return out


def export(folder: Path, en: int, zh: int) -> Path:
    """A snapshot of the first ``en`` English and ``zh`` Chinese sample entries."""
    folder.mkdir(parents=True)
    lines = _entries("kb_en")[:en] + _entries("kb_zh")[:zh]
    (folder / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run(home: Path, source: Path, **kw: Any) -> dict[str, Any]:
    return kb_nightly(source=str(source), run_date=RUN_DATE, home=str(home), **kw)


def assert_one_model(home: Path, version: str, model: str) -> None:
    """Every vector of the version is the cached vector of its text under ``model``'s key."""
    manifest = read_manifest(home / "indexes" / version)
    info = manifest["embedding"]
    assert info["model"] == model and info["model_key"] == f"{model}@384"
    hashes = pq.read_table(home / "indexes" / version / "passages.parquet").column("text_hash")
    vectors = np.load(home / "indexes" / version / "vectors.npy")
    cached = EmbeddingCache(home / "embeddings", info["model_key"], 384).get(hashes.to_pylist())
    assert np.array_equal(vectors, cached)


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("model-move")
    home = tmp / "home"
    # the KB moves to Chinese: its English entries retire, its Chinese part grows; the gate
    # compares the two models on the Chinese entries both versions hold
    english = run(home, export(tmp / "e1", en=40, zh=8))
    chinese = run(home, export(tmp / "e2", en=0, zh=120))
    again = run(home, tmp / "e2")
    return {"home": home, "english": english, "chinese": chinese, "again": again}


def test_an_english_kb_gets_the_english_model(moved: dict[str, Any]) -> None:
    first = moved["english"]
    assert first["status"] == "published" and first["model_key"] == f"{MINILM}@384"
    choice = read_manifest(moved["home"] / "indexes" / first["version"])["embedding"]["choice"]
    assert choice["mode"] == "auto" and choice["language"]["en"] > 0.8
    assert_one_model(moved["home"], first["version"], MINILM)


def test_a_kb_that_became_chinese_moves_to_the_multilingual_model_through_the_gate(
    moved: dict[str, Any],
) -> None:
    home, first, second = moved["home"], moved["english"], moved["chinese"]
    assert second["status"] == "published" and second["model_key"] == f"{E5}@384"
    assert second["model_choice"]["switched"] is True
    assert f"switched from {MINILM} to {E5}" in second["model_choice"]["reason"]
    # gated against the live English-model version, each scored with its own model: on the
    # Chinese entries both hold, the multilingual model answers better
    check = second["gate"]["checks"]["self_check"]
    assert second["gate"]["passed"] and check["live_common"]["n"] >= 10
    assert check["new_common"]["hit@3"] > check["live_common"]["hit@3"]
    assert second["previous_version"] == first["version"]
    assert current_version(home / "indexes") == second["version"]
    # the new version holds e5 vectors only; the English version keeps its own, for a rollback
    assert_one_model(home, second["version"], E5)
    assert_one_model(home, first["version"], MINILM)
    assert {p.name for p in (home / "embeddings").iterdir()} == {f"{MINILM}@384", f"{E5}@384"}
    html = Path(second["report"]).read_text(encoding="utf-8")
    assert "switched from" in html and E5 in html


def test_the_next_night_keeps_the_chosen_model(moved: dict[str, Any]) -> None:
    again = moved["again"]
    assert again["status"] == "unchanged" and again["embedded"] == 0
    assert again["version"] == moved["chinese"]["version"]
    assert again["model_choice"]["model"] == E5 and not again["model_choice"]["switched"]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("model-legacy")
    home, source = tmp / "home", export(tmp / "e", en=0, zh=60)
    old = run(home, source, overrides={"embed.model": MINILM})
    # a data home from before models were chosen by language: no choice in the manifest
    path = home / "indexes" / old["version"] / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["embedding"]["choice"]
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    kept = run(home, source)
    reembedded = kb_reembed(home=str(home), model="auto")
    after = run(home, source)
    shutil.rmtree(tmp / "e")
    return {"home": home, "old": old, "kept": kept, "reembedded": reembedded, "after": after}


def test_an_upgraded_home_keeps_its_model_until_a_reembed(legacy: dict[str, Any]) -> None:
    kept = legacy["kept"]
    assert kept["status"] == "unchanged" and kept["embedded"] == 0
    assert kept["model_choice"]["mode"] == "kept" and kept["model_choice"]["model"] == MINILM
    assert "--reembed --model auto" in kept["model_choice"]["reason"]


def test_a_reembed_with_auto_moves_it_through_the_gate(legacy: dict[str, Any]) -> None:
    home, old, new = legacy["home"], legacy["old"], legacy["reembedded"]
    assert new["status"] == "published" and new["model_key"] == f"{E5}@384"
    assert new["gate"]["passed"] and new["previous_version"] == old["version"]
    assert_one_model(home, new["version"], E5)
    manifest = read_manifest(home / "indexes" / new["version"])
    assert (
        manifest["passages_fingerprint"]
        == read_manifest(home / "indexes" / old["version"])["passages_fingerprint"]
    )  # the same passages, other vectors
    assert manifest["embedding"]["choice"]["mode"] == "auto"
    after = legacy["after"]
    assert after["status"] == "unchanged" and after["version"] == new["version"]
