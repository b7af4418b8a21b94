"""The per-version adapter in real nightly runs (Prefect, the bundled samples): an adapter that
hurts is left out and the version publishes without it; a version with an adapter answers the
same in process and through ``kbflow serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from kbflow_flows.nightly import kb_nightly

from kbflow.embed.adapter import make_version_embedder
from kbflow.embed.sglang import free_port
from kbflow.index import adapter as ad
from kbflow.index.version import LoadedVersion, adapter_held_out
from kbflow.search.searcher import make_searcher
from kbflow.settings import EmbedSettings, load_settings
from kbflow.store.versions import live_version_dir, read_manifest

from ..conftest import EXAMPLES

RUN_DATE = "2026-11-24"


def test_a_version_whose_adapter_hurts_publishes_without_it(monkeypatch, tmp_path: Path):
    """The trainer returns a random rotation (what a broken adapter does to retrieval): the
    held-out check refuses it, the version publishes with the plain model, and the manifest and
    the report say why."""
    rng = np.random.default_rng(0)

    def broken(vectors, *args, **kwargs):
        q, _ = np.linalg.qr(rng.normal(size=(vectors.shape[1], vectors.shape[1])))
        return q.astype(np.float32)

    monkeypatch.setattr(ad, "train_linear", broken)
    home = tmp_path / "home"
    summary = kb_nightly(
        source=str(EXAMPLES / "kb_zh" / "export"),
        run_date=RUN_DATE,
        home=str(home),
        overrides={"adapter.mode": "linear"},
    )
    assert summary["status"] == "published"
    vdir = live_version_dir(home / "indexes")
    manifest = read_manifest(vdir)
    rep = manifest["adapter"]
    assert rep["kind"] == "linear" and rep["kept"] is False
    assert rep["held_out"]["adapted"]["hit@1"] < rep["held_out"]["plain"]["hit@1"]
    assert "adapter" not in manifest["embedding"] and not (vdir / "adapter").exists()
    report = Path(summary["report"]).read_text(encoding="utf-8")
    assert "Adapter" in report and "not kept" in report
    hits = make_searcher(home, load_settings(str(home))).search("我单子咋还没到").results
    assert hits, "the version without its adapter still answers"


def _post(url: str, query: str) -> dict:
    req = urllib.request.Request(
        url + "/search",
        data=json.dumps({"query": query, "k": 5}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_a_fine_tuned_version_answers_the_same_in_process_and_through_serve(
    monkeypatch, tmp_path: Path
):
    """kb_en with a fine-tuned adapter (kept for the test whatever its figures, small settings
    to keep it quick): the version carries the model, its calibration scores only the questions
    the adapter never trained on, and `kbflow serve` in another process returns what the
    in-process searcher returns."""
    monkeypatch.setattr(ad, "decide", lambda *a, **k: (True, "kept for the test"))
    home = tmp_path / "home"
    summary = kb_nightly(
        source=str(EXAMPLES / "kb_en" / "export"),
        run_date=RUN_DATE,
        home=str(home),
        overrides={
            "adapter.mode": "finetune",
            "adapter.folds": 2,
            "adapter.finetune_pairs_per_entry": 4,
        },
    )
    assert summary["status"] == "published", summary
    assert summary.get("review", {}).get("error") is None
    vdir = live_version_dir(home / "indexes")
    version = LoadedVersion(vdir)
    adapter = version.manifest["embedding"]["adapter"]
    assert (
        adapter["kind"] == "finetune"
        and (vdir / "adapter" / "model" / "model.safetensors").is_file()
    )
    held = adapter_held_out(version)
    assert held
    cal = version.manifest["calibration"]
    questions = sum(1 for k in version.kinds if k == "question")
    assert 0 < cal["queries"] - cal["golden_queries"] <= len(held) < questions

    queries = [
        "how do I get my money back",
        "I forgot my password",
        "where is my parcel",
        "cancel my subscription",
        "do you ship abroad",
    ]
    searcher = make_searcher(home, load_settings(str(home)))
    local = {q: searcher.search(q, k=5).as_dict() for q in queries}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "kbflow.cli", "serve", "--home", str(home), "--port", str(port)],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "kbflow serve did not answer"
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("version"):
                        break
            except OSError:
                time.sleep(0.3)
        for q in queries:
            remote = _post(url, q)
            assert remote["version"] == local[q]["version"]
            assert [(h["id"], round(h["score"], 3)) for h in remote["results"]] == [
                (h["id"], round(h["score"], 3)) for h in local[q]["results"]
            ], q
    finally:
        server.terminate()
        server.wait(timeout=30)
    # and the fine-tuned model is what answered, not the plain one
    tuned = searcher.embedder(version.embedding).embed_queries(queries)
    plain = make_version_embedder(
        EmbedSettings(), {k: v for k, v in version.embedding.items() if k != "adapter"}
    ).embed_queries(queries)
    assert not np.allclose(tuned, plain, atol=1e-3)
