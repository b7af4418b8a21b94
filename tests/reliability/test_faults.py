"""Faults injected for real: what breaks, what must hold afterwards.

- ``kill -9`` of ``kbflow nightly`` (its whole process group, Prefect's server included) while
  it embeds, while it writes the index and while it publishes; after each kill ``CURRENT``
  names a complete version that loads, ``kbflow versions`` lists only complete versions, and
  the next run embeds only what was missing and completes (``test_kill_9_...``).
- ``kill -9`` at random moments of a tight publish/prune loop: ``CURRENT`` is always a
  loadable version, ``HISTORY`` never names a version that was not live, no half-deleted
  version is listed (``test_publish_and_prune_survive_kill_9_at_any_moment``).
- The embedding server dies mid-run, answers 5xx, or stalls: retried, then one clear
  ``EndpointUnavailable``; no index version, only complete cache shards; a rerun embeds only
  the rest (``test_embedding_server_fault_...``).
- A full disk (``RLIMIT_FSIZE`` on the run's process) fails the run with one line and exit
  code 9; no partial version is left and the live version keeps serving.
- Two nightly runs at once on one data home (the retry after the kills, started twice): one
  completes, the other is refused with one line; the catalog records exactly the runs that
  ran and agrees with ``CURRENT``.

The data home under test starts from one published version of a 24-entry sample (built with
the core stages, no Prefect, once per module); every CLI run pays Prefect's start-up, so the
kill points share one sequence of runs instead of one home each.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from kbflow.account import account_stage
from kbflow.chunk.stage import chunk_stage
from kbflow.clean.stage import clean_stage
from kbflow.embed.cache import EmbeddingCache
from kbflow.embed.stage import embed_stage, model_stage, with_model
from kbflow.errors import ConcurrentRunError, EndpointUnavailable, StorageError
from kbflow.index.stage import index_stage
from kbflow.publish.stage import publish_stage
from kbflow.pull.stage import pull_stage
from kbflow.report.stage import report_stage
from kbflow.run import start_run
from kbflow.settings import load_settings
from kbflow.store.home import DataHome
from kbflow.store.versions import (
    HISTORY,
    current_version,
    list_versions,
    live_version_dir,
    read_manifest,
)
from kbflow.validate.stage import validate_stage

from ..conftest import EXAMPLES
from ..embedserver import embedding_server, shared_server

EN = EXAMPLES / "kb_en"
RUN_DATE = "2026-11-24"
MODEL_KEY = "all-MiniLM-L6-v2@384"
SECRET = "sk-kbflow-fault-SECRET-51e0b2"


# --- running and killing the CLI ----------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    # The API key is set (and must never be written anywhere). Prefect's ephemeral server gets
    # more than its default 20 s to start: two fresh ones at once on a busy machine need it.
    return {
        **os.environ,
        "OPENAI_API_KEY": SECRET,
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        **extra,
    }


def start_nightly(
    home: Path,
    source: Path,
    log: Path,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    verbose: bool = True,
) -> subprocess.Popen[bytes]:
    """``kbflow nightly`` in its own process group. ``verbose`` (-v) logs at DEBUG, as a drill
    would, so the secret scan sees every log line; without it the output is what a user sees
    (one line per error, no traceback)."""
    args = ["-v"] if verbose else []
    args += ["nightly", "--home", str(home), "--source", str(source), "--run-date", RUN_DATE]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kbflow.cli", *args, "--json"],
            stdout=out,
            stderr=out,
            env=env or cli_env(),
            start_new_session=True,  # its own process group: kill -9 takes Prefect's server too
            preexec_fn=preexec_fn,
        )


def run_nightly(home: Path, source: Path, log: Path, **kw: Any) -> tuple[int, str]:
    proc = start_nightly(home, source, log, **kw)
    try:
        code = proc.wait(timeout=600)
    finally:
        _kill_group(proc)
    return code, log.read_text(encoding="utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def kill_9_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path) -> float:
    """``kill -9`` the run's process group as soon as ``ready()``; returns seconds waited."""
    start = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the kill point:\n{log.read_text()[-3000:]}")
        if time.monotonic() - start > 500:
            _kill_group(proc)
            pytest.fail(f"kill point never reached:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    return time.monotonic() - start


def summary_of(output: str) -> dict[str, Any]:
    """The ``--json`` summary: the last top-level JSON object printed."""
    text = "\n" + output
    start = text.rindex("\n{\n") + 1
    end = text.index("\n}\n", start) + 2
    return json.loads(text[start:end])


# --- what must hold after any fault -------------------------------------------------------------


def versions_cli(home: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "kbflow.cli", "versions", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    listed: list[dict[str, Any]] = json.loads(out.stdout)
    return listed


def assert_consistent(home: Path, cli: bool = False) -> str | None:
    """CURRENT names a complete version that loads and answers; the version listing (``kbflow
    versions`` itself with ``cli``) holds only complete versions, each of which loads. Returns
    the live version."""
    from kbflow.index.version import LoadedVersion

    indexes = home / "indexes"
    live = current_version(indexes)
    listed = versions_cli(home) if cli else [v.__dict__ for v in list_versions(indexes)]
    names = [v["version"] for v in listed]
    assert all(not n.startswith(".") for n in names), names
    assert [v["version"] for v in listed if v["live"]] == ([live] if live else [])
    for name in names:
        v = LoadedVersion(indexes / name)  # FAISS, BM25 and passages all read back
        assert v.n_passages == read_manifest(indexes / name)["counts"]["passages"] > 0
        assert v.dense.ntotal == v.n_passages
    if live:
        v = LoadedVersion(live_version_dir(indexes))
        _, ids = v.dense.search(np.asarray(v.vectors[:1], dtype=np.float32), 1)
        assert ids[0][0] >= 0
    return live


def history(home: Path) -> list[str]:
    path = home / "indexes" / HISTORY
    return path.read_text().split() if path.exists() else []


def shard_hashes(home: Path) -> set[str]:
    cache = EmbeddingCache(home / "embeddings", MODEL_KEY, 384)
    return cache.known_hashes()  # reads every shard: each one is complete


def catalog_rows(home: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def assert_catalog_agrees(home: Path, live: str | None) -> None:
    assert catalog_rows(home, "select * from runs where status = 'running'") == []
    last = catalog_rows(home, "select version from publish_events order by event_at desc limit 1")
    assert (last[0][0] if last else None) == live


def assert_no_secret(home: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    for p in home.rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p


# --- exports ------------------------------------------------------------------------------------


def small_export(dest: Path) -> Path:
    """The first 24 entries of the English sample (one has an empty answer: quarantined)."""
    dest.mkdir(parents=True)
    lines = (EN / "export" / "faq.jsonl").read_text(encoding="utf-8").splitlines()[:24]
    (dest / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def edited_export(dest: Path, note: str) -> Path:
    """The small export with every answer edited: ~23 answer passages to embed again."""
    small_export(dest)
    lines = []
    for line in (dest / "faq.jsonl").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if isinstance(obj.get("answer"), str) and obj["answer"].strip():
            obj["answer"] += f" {note}"
        lines.append(json.dumps(obj, ensure_ascii=False))
    (dest / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def publish_base(home: Path, source: Path) -> None:
    """One published version, built with the nightly flow's core stages (no Prefect)."""
    settings = load_settings(str(home))
    data = DataHome.at(home)
    run_id, day = "20261124T010000-base00", date.fromisoformat(RUN_DATE)
    pulled = stage_run(home, source, settings, run_id)
    # embed.model is auto: the KB's language picks the model, as the flow's model task does
    settings = with_model(settings, model_stage(data, run_id, settings))
    embedded = embed_stage(data, run_id, settings)
    built = index_stage(data, run_id, day, pulled, embedded, settings)
    account_stage(data, run_id, pulled)
    publish_stage(data, run_id, built["version"], settings)
    assert report_stage(data, run_id, day, "published")["status"] == "published"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base")
    publish_base(root / "home", small_export(root / "export"))
    return root / "home"


def copy_home(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest, symlinks=True)
    return dest


def run_ids(home: Path) -> set[str]:
    return {p.name for p in (home / "runs").iterdir()} if (home / "runs").exists() else set()


# --- kill -9 during embedding, index writing and publishing -------------------------------------


def test_kill_9_during_embedding_index_and_publish_then_resume(base: Path, tmp_path: Path) -> None:
    home = copy_home(base, tmp_path / "home")
    live0 = assert_consistent(home)
    listed0 = [v.version for v in list_versions(home / "indexes")]
    known0 = shard_hashes(home)
    source = edited_export(tmp_path / "export", "(Reviewed in November 2026.)")
    env = cli_env(KBFLOW_EMBED__SHARD_TEXTS="8")  # a shard per 8 texts: several per run
    logs = tmp_path / "logs"
    logs.mkdir()
    shards = home / "embeddings" / MODEL_KEY

    # 1. while embedding: as soon as the run's second cache shard lands
    before = set(shards.glob("part-*.parquet"))
    a = start_nightly(home, source, logs / "a.log", env=env)
    kill_9_when(a, lambda: len(set(shards.glob("part-*.parquet")) - before) >= 2, logs / "a.log")
    assert assert_consistent(home) == live0
    assert [v.version for v in list_versions(home / "indexes")] == listed0
    known_a = shard_hashes(home)  # complete shards only: a torn shard would not read
    assert len(known_a - known0) >= 16

    # 2. while writing the index: as soon as indexes/.building-* appears
    seen = run_ids(home)
    b = start_nightly(home, source, logs / "b.log", env=env)
    kill_9_when(b, lambda: any((home / "indexes").glob(".building-*")), logs / "b.log")
    assert any((home / "indexes").glob(".building-*"))  # the half-written version is on disk,
    assert assert_consistent(home, cli=True) == live0  # never listed; CURRENT did not move
    assert [v["version"] for v in versions_cli(home)] == listed0
    (run_b,) = run_ids(home) - seen
    embed_b = json.loads((home / "runs" / run_b / "embed" / "_SUCCESS.json").read_text())
    needed = set(pq.read_table(home / "runs" / run_b / "chunk" / "passages.parquet")
                 .column("text_hash").to_pylist())  # fmt: skip
    # the second run embedded exactly what the killed first one had not
    assert embed_b["embedded"] == len(needed - known_a) > 0
    assert embed_b["cached"] == len(needed & known_a)
    assert not list(shards.glob(".*.tmp"))

    # 3. while publishing: as soon as the run's publish stage starts
    seen = run_ids(home)

    def publishing() -> bool:
        return any((home / "runs" / r / "publish").exists() for r in run_ids(home) - seen)

    c = start_nightly(home, source, logs / "c.log", env=env)
    kill_9_when(c, publishing, logs / "c.log")
    (run_c,) = run_ids(home) - seen
    built_c = json.loads((home / "runs" / run_c / "index" / "_SUCCESS.json").read_text())
    live_c = assert_consistent(home)
    assert live_c in (live0, built_c["version"])  # the old version or the new, never a mix
    assert not any((home / "indexes").glob(".building-*"))  # run c cleared run b's leftovers

    # 4. the next run, started twice at once (the scheduler and an operator retrying) on the
    # export edited once more: one completes, embedding exactly what no run has embedded yet;
    # the other is refused at the data home's lock with one line and writes nothing
    source2 = edited_export(tmp_path / "export2", "(Edited again.)")
    known_c = shard_hashes(home)
    seen = run_ids(home)
    procs, names = [], ("e1", "e2")
    for name in names:
        # each its own fresh Prefect home: same start-up time, no shared SQLite file
        env_n = {**env, "PREFECT_HOME": str(tmp_path / f"prefect-{name}")}
        env_n.pop("PREFECT_LOGGING_LEVEL", None)  # as a user runs it: no Prefect tracebacks
        procs.append(start_nightly(home, source2, logs / f"{name}.log", env=env_n, verbose=False))
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=600))
        finally:
            _kill_group(proc)
    outputs = [(logs / f"{n}.log").read_text(errors="replace") for n in names]
    assert sorted(codes) == [0, ConcurrentRunError.exit_code], [o[-2000:] for o in outputs]
    won, lost = (0, 1) if codes[0] == 0 else (1, 0)
    e = summary_of(outputs[won])
    assert e["status"] == "published", e
    needed = set(pq.read_table(home / "runs" / e["run_id"] / "chunk" / "passages.parquet")
                 .column("text_hash").to_pylist())  # fmt: skip
    assert (e["embedded"], e["cached"]) == (len(needed - known_c), len(needed & known_c))
    refusal = [ln for ln in outputs[lost].splitlines() if ln.startswith("kbflow:")]
    assert len(refusal) == 1 and "another kbflow run is writing to" in refusal[0]
    assert "Traceback" not in outputs[lost]
    assert run_ids(home) - seen == {e["run_id"]}  # the refused run wrote nothing

    # the catalog: the killed runs closed as interrupted, one publish event per move of CURRENT
    # (a missed one recorded), HISTORY repaired, and nothing half-written left or listed
    live = assert_consistent(home, cli=True)
    assert live == e["version"] == history(home)[-1]
    assert not [p for p in (home / "indexes").iterdir() if p.name.startswith(".")]
    statuses = dict(catalog_rows(home, "select run_id, status from runs"))
    assert [statuses[r] for r in (run_b, run_c)] == ["interrupted", "interrupted"]
    assert sorted(statuses.values()) == ["interrupted"] * 3 + ["published"] * 2  # base, a-c, e
    assert_catalog_agrees(home, live)
    if live_c != live0:  # run c was killed after CURRENT moved, before the catalog knew
        moves = catalog_rows(home, "select action, version from publish_events order by event_at")
        assert ("recovered", live_c) in moves
    assert_no_secret(home, *(p.read_text(errors="replace") for p in logs.iterdir()))


def one_answer_edited(dest: Path, note: str) -> Path:
    """The small export with one answer edited: a change small enough for an incremental
    version (``kbflow.index.incremental``)."""
    small_export(dest)
    lines = (dest / "faq.jsonl").read_text(encoding="utf-8").splitlines()
    obj = json.loads(lines[0])
    obj["answer"] += f" {note}"
    lines[0] = json.dumps(obj, ensure_ascii=False)
    (dest / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def test_kill_9_while_building_an_incremental_version_then_resume(
    base: Path, tmp_path: Path
) -> None:
    """An incremental version shares the live version's dense segment by hard link: a run
    killed while it builds one leaves the live version serving, its files untouched, and the
    next run builds the same incremental version correctly."""
    home = copy_home(base, tmp_path / "home")
    live0 = assert_consistent(home)
    live_dir = home / "indexes" / live0
    before = {p.name: p.read_bytes() for p in live_dir.rglob("*") if p.is_file()}
    source = one_answer_edited(tmp_path / "export", "(Updated today.)")
    logs = tmp_path / "logs"
    logs.mkdir()
    a = start_nightly(home, source, logs / "a.log")
    kill_9_when(a, lambda: any((home / "indexes").glob(".building-*")), logs / "a.log")
    assert assert_consistent(home, cli=True) == live0  # CURRENT did not move, nothing listed
    assert {p.name: p.read_bytes() for p in live_dir.rglob("*") if p.is_file()} == before

    code, out = run_nightly(home, source, logs / "b.log")
    assert code == 0, out[-3000:]
    summary = summary_of(out)
    assert summary["status"] == "published"
    manifest = read_manifest(home / "indexes" / summary["version"])
    assert manifest["index"]["build"]["mode"] == "incremental"
    assert manifest["index"]["build"]["base_version"] == live0
    assert manifest["index"]["segments"]["delta_passages"] >= 1
    assert assert_consistent(home, cli=True) == summary["version"]
    assert not [p for p in (home / "indexes").iterdir() if p.name.startswith(".")]
    # the new version answers the edited entry with its new answer; the old one is untouched
    from kbflow.index.bm25 import tokenize
    from kbflow.index.version import LoadedVersion

    v = LoadedVersion(home / "indexes" / summary["version"])
    c = v.candidates(None, tokenize("Updated today"))
    best = int(c.best_keyword_row[int(np.argmax(c.keyword))])
    assert "(Updated today.)" in v.texts[best]
    assert {p.name: p.read_bytes() for p in live_dir.rglob("*") if p.is_file()} == before


# --- kill -9 at any moment of publish and prune -------------------------------------------------

PUBLISH_LOOP = textwrap.dedent(
    """
    import shutil, sys
    from pathlib import Path
    from kbflow.publish.pointer import publish_version

    indexes, template, first = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    print("ready", flush=True)
    for n in range(first, first + 100_000):
        name = f"v{n:06d}"
        work = indexes / f".building-{name}"
        shutil.copytree(template, work)
        work.rename(indexes / name)
        publish_version(indexes, name, keep=2)
    """
)


def test_publish_and_prune_survive_kill_9_at_any_moment(tmp_path: Path) -> None:
    from kbflow.index.build import clean_stale_builds

    from ..unit.helpers import tiny_version

    indexes = tmp_path / "home" / "indexes"
    indexes.mkdir(parents=True)
    template = tiny_version(tmp_path / "template", "vtemplate")
    script = tmp_path / "loop.py"
    script.write_text(PUBLISH_LOOP, encoding="utf-8")
    rng = random.Random(7)
    first = 0
    for _ in range(6):
        clean_stale_builds(indexes)  # what the next run's start does, under the run lock
        proc = subprocess.Popen(
            [sys.executable, str(script), str(indexes), str(template), str(first)],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.2, 1.2))
        proc.kill()
        proc.wait()
        live = current_version(indexes)
        assert live is not None
        live_version_dir(indexes)  # complete, inside the home
        history = (indexes / HISTORY).read_text().split()
        # HISTORY never names a version that was not live: versions go live in number order
        assert all(v <= live for v in history), (history, live)
        listed = [v.version for v in list_versions(indexes)]
        assert live in listed and not any(n.startswith(".") for n in listed)
        from kbflow.index.version import LoadedVersion

        for name in listed:  # a prune killed mid-delete never leaves a listed, broken version
            LoadedVersion(indexes / name)
        first = int(max(p.name for p in indexes.glob("v*"))[1:]) + 1 if listed else first
    clean_stale_builds(indexes)
    assert not [p for p in indexes.iterdir() if p.name.startswith(".")]


# --- the embedding server fails -----------------------------------------------------------------


def stage_run(home: Path, source: Path, settings: Any, run_id: str) -> dict[str, Any]:
    day = date.fromisoformat(RUN_DATE)
    data = DataHome.at(home)
    start_run(data, run_id, day)
    pulled = pull_stage(data, run_id, str(source))
    validate_stage(data, run_id, pulled, settings)
    clean_stage(data, run_id, day, settings)
    chunk_stage(data, run_id, settings)
    return pulled


@pytest.mark.parametrize(
    ("fault", "server_args", "message"),
    [
        # the probe, the drift canaries and a few batches answer, then the process exits
        ("dies", ["--exit-after", "14"], r"failed after 2 attempts: APIConnectionError"),
        ("answers_503", ["--fail-after", "14"], r"failed after 2 attempts: HTTP 503"),
        ("stalls", ["--delay-ms", "3000"], r"failed after 2 attempts: APITimeoutError"),
    ],
)
def test_embedding_server_fault_is_retried_then_fails_cleanly(
    fault: str, server_args: list[str], message: str, base: Path, tmp_path: Path
) -> None:
    home = copy_home(base, tmp_path / "home")
    live0 = current_version(home / "indexes")
    known0 = shard_hashes(home)
    source = edited_export(tmp_path / "export", f"(Checked after the {fault} drill.)")
    overrides = {
        "embed.backend": "openai",
        "embed.model": "all-MiniLM-L6-v2",
        "embed.batch_items": 4,
        "embed.max_in_flight": 1,
        "embed.retries": 1,
        "embed.retry_backoff": 0.05,
        "embed.request_timeout": 1.5,
        "embed.shard_texts": 8,
    }
    data = DataHome.at(home)
    with embedding_server(*server_args) as server:
        settings = load_settings(str(home), {**overrides, "embed.urls": [server.url]})
        run_id = f"20261124T030000-{fault[:6]}"
        stage_run(home, source, settings, run_id)
        with pytest.raises(EndpointUnavailable, match=message) as info:
            embed_stage(data, run_id, settings)
        assert "\n" not in str(info.value) and server.url in str(info.value)
        report_stage(data, run_id, date.fromisoformat(RUN_DATE), "failed", str(info.value))
        if fault == "dies":
            assert server.process.wait(timeout=30) == 17
        elif fault == "answers_503":
            assert server.stats()["failed"] == 2  # the failing request was retried once
        else:
            assert server.stats()["seen"] == 2  # the stalled probe was retried once
    # no partial index, the live version untouched, only complete shards in the cache
    assert current_version(home / "indexes") == live0
    assert not list((home / "indexes").glob(".building-*"))
    assert [v.version for v in list_versions(home / "indexes")] == [live0]
    assert catalog_rows(home, "select status from runs where run_id = ?", run_id) == [("failed",)]
    known = shard_hashes(home)
    if fault != "stalls":
        assert len(known - known0) >= 8  # the shards embedded before the fault were kept
    # a rerun with a healthy endpoint embeds only what is missing
    healthy = load_settings(str(home), {**overrides, "embed.urls": [shared_server().url]})
    rerun = f"20261124T040000-{fault[:6]}"
    stage_run(home, source, healthy, rerun)
    done = embed_stage(data, rerun, healthy)
    needed = set(pq.read_table(home / "runs" / rerun / "chunk" / "passages.parquet")
                 .column("text_hash").to_pylist())  # fmt: skip
    assert (done["embedded"], done["cached"]) == (len(needed - known), len(needed & known))
    assert done["embedded"] > 0


# --- a full disk --------------------------------------------------------------------------------

FSIZE_LIMIT = 10 * 1024 * 1024


def big_export(dest: Path, n: int) -> Path:
    """``n`` distinct entries (one passage each): its vectors alone are n x 1.5 KB."""
    rng = random.Random(11)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))
             for _ in range(3000)]  # fmt: skip
    dest.mkdir(parents=True)
    with open(dest / "kb.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            title = f"Question {i}: " + " ".join(rng.choices(words, k=6)) + "?"
            answer = " ".join(rng.choices(words, k=25)) + "."
            fh.write(json.dumps({"id": f"b{i}", "title": title, "answer": answer}) + "\n")
    return dest


def test_full_disk_fails_the_run_cleanly_and_the_live_version_serves(
    base: Path, tmp_path: Path
) -> None:
    home = copy_home(base, tmp_path / "home")
    live0 = assert_consistent(home)
    source = big_export(tmp_path / "export", 8_000)
    # Its passages' vectors are cached already (random, unit length), so the run goes straight
    # to writing a ~12 MB vectors.npy, over the 10 MB file-size limit of the run's process
    # (which Prefect's fresh database and the catalog stay under).
    scratch = DataHome.at(tmp_path / "scratch")
    settings = load_settings(str(scratch.root))
    stage_run(scratch.root, source, settings, "scratch")
    hashes = sorted(set(pq.read_table(scratch.runs / "scratch" / "chunk" / "passages.parquet")
                        .column("text_hash").to_pylist()))  # fmt: skip
    vecs = np.random.default_rng(0).standard_normal((len(hashes), 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    EmbeddingCache(home / "embeddings", MODEL_KEY, 384).put(hashes, vecs)
    assert len(hashes) * 384 * 4 > 1.15 * FSIZE_LIMIT

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))

    prefect_home = tempfile.mkdtemp(prefix="kbflow-prefect-fsize-")  # its DB stays small
    # random words read as no language: pin the model whose key the vectors were cached under
    env = cli_env(PREFECT_HOME=prefect_home, KBFLOW_EMBED__MODEL="all-MiniLM-L6-v2")
    env.pop("PREFECT_LOGGING_LEVEL")  # as a user runs it
    code, out = run_nightly(
        home, source, tmp_path / "run.log", env=env, preexec_fn=limit_file_size, verbose=False
    )
    shutil.rmtree(prefect_home, ignore_errors=True)
    assert code == StorageError.exit_code, out[-3000:]
    assert "Traceback" not in out
    errors = [ln for ln in out.splitlines() if ln.startswith("kbflow:")]
    assert len(errors) == 1 and "index stage: out of space" in errors[0], out[-3000:]
    # nothing half-written, the live version untouched and serving
    assert not [p for p in (home / "indexes").iterdir() if p.name.startswith(".")]
    assert not list((home / "embeddings").rglob(".*.tmp"))
    assert assert_consistent(home) == live0
    (status, message) = catalog_rows(
        home, "select status, message from runs order by started_at desc limit 1"
    )[0]
    assert status == "failed" and "out of space" in message
