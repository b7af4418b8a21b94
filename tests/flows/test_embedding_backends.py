"""kb-nightly through the ``openai`` and ``sglang`` backends, against the real embeddings server.

The ``sglang`` tests launch ``python -m kbflow.embed.server`` through the same launcher code
that starts ``sglang.launch_server`` on a GPU host (SGLang itself needs a GPU).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from kbflow_flows.nightly import kb_nightly

from kbflow.embed.sglang import run_workers
from kbflow.errors import EmbeddingError
from kbflow.settings import EmbedSettings
from kbflow.store.versions import current_version

from ..conftest import EXAMPLES
from ..embedserver import pid_alive, shared_server

EN = EXAMPLES / "kb_en"
RUN_DATE = json.loads((EN / "expected.json").read_text(encoding="utf-8"))["run_date"]
SECRET = "sk-kbflow-test-secret-4f9d"


def launcher(pid_dir: Path, *extra: str) -> list[str]:
    return [
        "{python}",
        "-m",
        "kbflow.embed.server",
        "--threads",
        "1",
        "--port",
        "{port}",
        "--pid-file",
        str(pid_dir / "worker-{gpu}-{port}.pid"),  # one file per start
        *extra,
    ]


def live_index(home: Path) -> tuple[list[str], np.ndarray, dict]:
    vdir = home / "indexes" / str(current_version(home / "indexes"))
    ids = pq.read_table(vdir / "passages.parquet").column("passage_id").to_pylist()
    manifest = json.loads((vdir / "manifest.json").read_text(encoding="utf-8"))
    return ids, np.load(vdir / "vectors.npy"), manifest


def worker_pids(pid_dir: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(pid_dir.glob("worker-*.pid"))]


@pytest.fixture(scope="module")
def local_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("local")
    out = kb_nightly(source=str(EN / "export"), run_date=RUN_DATE, home=str(home))
    assert out["status"] == "published"
    return home


def test_openai_backend_builds_the_same_index_as_local(
    local_home: Path, tmp_path: Path, monkeypatch, caplog
):
    monkeypatch.setenv("KBFLOW_EMBED__API_KEY", SECRET)
    server = shared_server()
    before = server.stats()["requests"]
    overrides = {
        "embed.backend": "openai",
        "embed.urls": [server.url],
        "embed.batch_items": 16,
        "embed.model": "all-MiniLM-L6-v2",  # openai/sglang backends serve a named model
    }
    out = kb_nightly(
        source=str(EN / "export"), run_date=RUN_DATE, home=str(tmp_path), overrides=overrides
    )
    assert out["status"] == "published" and out["embedded"] > 0
    assert server.stats()["requests"] - before > 3
    ids_local, vec_local, man_local = live_index(local_home)
    ids, vecs, manifest = live_index(tmp_path)
    assert ids == ids_local
    cos = (vecs * vec_local).sum(axis=1)
    assert cos.min() >= 0.999
    assert manifest["embedding"]["model_key"] == man_local["embedding"]["model_key"]
    # the drift guard ran inside the embed stage and stored this key's canaries
    assert (tmp_path / "embeddings" / "all-MiniLM-L6-v2@384" / "canary.json").is_file()
    # the key is used, and appears in no file of the data home and in no log line
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in caplog.text


def test_sglang_lifecycle_starts_two_workers_embeds_and_stops_them(local_home: Path, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    overrides = {
        "embed.backend": "sglang",
        "embed.model": "all-MiniLM-L6-v2",
        "embed.gpus": 2,
        # instructed queries: calibration and the gate embed queries through the backend too
        "embed.query_instruction": "Find the help-centre entry that answers the question",
        "embed.launch_command": launcher(pid_dir),
        "embed.batch_items": 8,
        "embed.startup_timeout": 120,
    }
    home = tmp_path / "home"
    out = kb_nightly(
        source=str(EN / "export"), run_date=RUN_DATE, home=str(home), overrides=overrides
    )
    assert out["status"] == "published"
    pids = worker_pids(pid_dir)
    # started once for the whole build (embed, review titles, calibration, gate), then stopped
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)
    assert not (home / "embed-workers.json").exists()
    ids, vecs, _ = live_index(home)
    ids_local, vec_local, _ = live_index(local_home)
    assert ids == ids_local and (vecs * vec_local).sum(axis=1).min() >= 0.999


def test_worker_is_stopped_when_the_flow_fails_mid_embedding(tmp_path: Path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    overrides = {
        "embed.backend": "sglang",
        "embed.model": "all-MiniLM-L6-v2",
        # readiness request + probe + drift canaries answer, then every request gets a 400
        "embed.launch_command": launcher(pid_dir, "--fail-after", "20", "--fail-status", "400"),
        "embed.batch_items": 4,
    }
    home = tmp_path / "home"
    with pytest.raises(EmbeddingError, match="HTTP 400"):
        kb_nightly(
            source=str(EN / "export"), run_date=RUN_DATE, home=str(home), overrides=overrides
        )
    (pid,) = worker_pids(pid_dir)
    assert not pid_alive(pid)
    summary = json.loads(next((home / "runs").glob("*/summary.json")).read_text())
    assert summary["status"] == "failed"
    shards = list((home / "embeddings").rglob("part-*.parquet"))
    assert shards == []  # group size 2048 > passages: the failed group was never written


def test_worker_is_stopped_on_keyboard_interrupt(tmp_path: Path):
    settings = EmbedSettings(
        backend="sglang", model="all-MiniLM-L6-v2", launch_command=launcher(tmp_path)
    )
    with pytest.raises(KeyboardInterrupt), run_workers(settings) as urls:
        assert len(urls) == 1 and urls[0].startswith("http://127.0.0.1:")
        raise KeyboardInterrupt
    (pid,) = worker_pids(tmp_path)
    assert not pid_alive(pid)


def test_a_worker_that_dies_at_start_is_reported_with_its_log():
    cmd = ["{python}", "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"]
    settings = EmbedSettings(backend="sglang", launch_command=cmd)
    with (
        pytest.raises(EmbeddingError, match="(?s)exited with code 3.*CUDA out of memory"),
        run_workers(settings),
    ):
        pass


def test_a_worker_that_never_gets_healthy_times_out_and_is_killed(tmp_path: Path):
    pid_file = tmp_path / "sleeper.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    settings = EmbedSettings(
        backend="sglang", launch_command=[sys.executable, "-c", code], startup_timeout=1.5
    )
    with pytest.raises(EmbeddingError, match="not healthy"), run_workers(settings):
        pass
    assert not pid_alive(int(pid_file.read_text()))


def test_sglang_needs_a_model_path_with_the_default_launcher():
    from kbflow.errors import ConfigError

    with (
        pytest.raises(ConfigError, match="--model-path"),
        run_workers(EmbedSettings(backend="sglang")),
    ):
        pass


def test_calibration_of_an_instructed_model_gets_its_own_workers(tmp_path: Path):
    from kbflow.embed.factory import make_embedder
    from kbflow.embed.sglang import query_embed_settings
    from kbflow.settings import Settings

    settings = Settings(
        embed=EmbedSettings(
            backend="sglang", model="all-MiniLM-L6-v2", launch_command=launcher(tmp_path)
        )
    )
    plain = {"query_template": None, "task": None}
    with query_embed_settings(settings, plain) as same:
        assert same is settings and worker_pids(tmp_path) == []
    instructed = {"query_template": "Instruct: {task}\nQuery:{query}", "task": "Find FAQ"}
    with query_embed_settings(settings, instructed) as cal:
        assert cal.embed.backend == "openai" and len(cal.embed.urls) == 1
        assert make_embedder(cal.embed).embed_queries(["怎么退货"]).shape == (1, 384)
    (pid,) = worker_pids(tmp_path)
    assert not pid_alive(pid)


def test_blank_similar_questions_are_counted_and_never_sent(tmp_path: Path):
    """The real server refuses blank inputs with SGLang's 400 and words, so a run that sent one
    would fail; blank questions are dropped in clean and counted in its summary."""
    import shutil

    export = tmp_path / "export"
    shutil.copytree(EN / "export", export)
    faq = export / "faq.jsonl"
    lines = faq.read_text(encoding="utf-8").split("\n")  # the sample's bad lines stay as they are
    for i, blanks in ((0, ["   ", "\u3000\u3000"]), (1, ["\t\n"])):
        row = json.loads(lines[i])
        row["similar_questions"] += blanks
        lines[i] = json.dumps(row, ensure_ascii=False)
    faq.write_text("\n".join(lines), encoding="utf-8")
    overrides = {
        "embed.backend": "openai",
        "embed.urls": [shared_server().url],
        "embed.model": "all-MiniLM-L6-v2",
    }
    home = tmp_path / "home"
    out = kb_nightly(source=str(export), run_date=RUN_DATE, home=str(home), overrides=overrides)
    assert out["status"] == "published"
    (clean,) = (home / "runs").glob("*/clean/_SUCCESS.json")
    assert json.loads(clean.read_text())["blank_similar_questions"] == 3
