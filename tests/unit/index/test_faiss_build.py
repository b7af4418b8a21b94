"""Which FAISS build a version is built with: a clear error without one, ``index.device=gpu``
refusing the CPU build, and the GPU training's fallback to the CPU."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from kbflow.errors import ConfigError
from kbflow.index.dense import _train_on_gpu, build_dense, faiss_build, load_faiss


def test_without_faiss_the_error_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # what Python does when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'kbflow\[cpu\]'.*'kbflow\[gpu\]'"):
        load_faiss()


def test_device_gpu_refuses_a_faiss_that_sees_no_gpu():
    faiss = load_faiss()
    if faiss.get_num_gpus() > 0:
        pytest.skip("this host's FAISS sees a GPU")
    with pytest.raises(ConfigError, match="index.device is gpu but the FAISS loaded"):
        faiss_build("gpu")
    assert faiss_build("auto")[1] == 0 and faiss_build("cpu")[1] == 0


def test_a_failed_gpu_training_falls_back_to_the_cpu(caplog):
    faiss = load_faiss()
    if faiss.get_num_gpus() > 0:
        pytest.skip("this host's FAISS trains on its GPU")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 32)).astype("float32")
    base = faiss.index_factory(32, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    with caplog.at_level(logging.WARNING):
        # faiss-cpu has no GPU functions: the same failure path as a GPU out of memory
        assert _train_on_gpu(faiss, base, x) is None
    assert "training on the CPU instead" in caplog.text
    index = build_dense(x, np.arange(len(x)), "IVF16,Flat", "auto")
    assert index.ntotal == len(x)
