from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbflow.errors import IndexError_, NoLiveVersion
from kbflow.publish.pointer import prune_versions, publish_version, rollback
from kbflow.store.versions import current_version, list_versions, live_version_dir, version_dir


def make_version(indexes: Path, name: str) -> None:
    (indexes / name).mkdir(parents=True)
    (indexes / name / "manifest.json").write_text(
        json.dumps({"version": name, "counts": {"entries": 1, "passages": 1}})
    )


def test_publish_moves_current_and_rollback_restores(tmp_path: Path):
    for v in ("v1", "v2", "v3"):
        make_version(tmp_path, v)
    assert current_version(tmp_path) is None
    assert publish_version(tmp_path, "v1", keep=5) is None
    assert publish_version(tmp_path, "v2", keep=5) == "v1"
    assert current_version(tmp_path) == "v2"
    assert rollback(tmp_path) == ("v1", "v2")
    assert current_version(tmp_path) == "v1"
    assert live_version_dir(tmp_path) == (tmp_path / "v1").resolve()
    # rolling forward to a named version works too
    assert rollback(tmp_path, "v2") == ("v2", "v1")


def test_rollback_without_history_is_a_clear_error(tmp_path: Path):
    with pytest.raises(NoLiveVersion):
        rollback(tmp_path)
    make_version(tmp_path, "v1")
    publish_version(tmp_path, "v1", keep=5)
    with pytest.raises(IndexError_, match="nothing to roll back"):
        rollback(tmp_path)


def test_only_complete_versions_inside_the_folder_can_go_live(tmp_path: Path):
    (tmp_path / ".building-v9").mkdir()
    (tmp_path / "v8").mkdir()  # no manifest: incomplete
    for bad in ("../etc", "v8", ".building-v9", "v/../../x"):
        with pytest.raises(IndexError_):
            version_dir(tmp_path, bad)
    assert list_versions(tmp_path) == []


def test_keeps_the_last_n_published_versions(tmp_path: Path):
    for i in range(7):
        make_version(tmp_path, f"v{i}")
        publish_version(tmp_path, f"v{i}", keep=3)
    assert [v.version for v in list_versions(tmp_path)] == ["v4", "v5", "v6"]
    assert current_version(tmp_path) == "v6"
    assert prune_versions(tmp_path, keep=3) == []


def test_current_is_replaced_atomically_no_temp_files_left(tmp_path: Path):
    make_version(tmp_path, "v1")
    publish_version(tmp_path, "v1", keep=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", "HISTORY", "v1"]


def test_rollback_waits_for_a_publish_in_progress_not_for_the_run(tmp_path: Path):
    """CURRENT/HISTORY changes are serialised by their own lock: a rollback issued while a
    publish holds it waits for it and then sees its result; the run lock is not involved."""
    import threading

    from kbflow.publish.pointer import _publish_locked, pointer_lock
    from kbflow.store.home import DataHome

    indexes = tmp_path / "indexes"
    for v in ("v1", "v2", "v3"):
        make_version(indexes, v)
    publish_version(indexes, "v1", keep=5)
    publish_version(indexes, "v2", keep=5)
    done: list[tuple[str, str]] = []
    with DataHome.at(tmp_path).run_lock():  # a nightly run is going on: rollback must not wait
        with pointer_lock(indexes):  # ...but a publish in progress holds the pointers
            t = threading.Thread(target=lambda: done.append(rollback(indexes)))
            t.start()
            t.join(0.5)
            assert t.is_alive() and not done  # waiting for the publish
            _publish_locked(indexes, "v3", keep=5)  # the publish's own work, lock held above
        t.join(5)
    assert done == [("v2", "v3")]  # it rolled back from what the publish made live
    assert current_version(indexes) == "v2"


def test_versions_that_never_went_live_are_pruned(tmp_path: Path):
    """``built`` versions older than the live one (left by killed runs: never gated, never
    live) go at the next publish; a newer ``built`` one (about to be gated or published), the
    live one and ones that were ever live stay."""

    def version(name: str, status: str, created_at: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(
            json.dumps({"version": name, "status": status, "created_at": created_at})
        )

    version("v1", "built", "2026-11-22T02:00:00+00:00")
    publish_version(tmp_path, "v1", keep=5)  # live; the status is not what keeps it
    version("v2", "built", "2026-11-23T02:00:00+00:00")  # a run killed during calibration
    version("v3", "published", "2026-11-24T02:00:00+00:00")
    version("v4", "built", "2026-11-24T03:00:00+00:00")  # newer than what goes live: kept
    publish_version(tmp_path, "v3", keep=5)
    assert [v.version for v in list_versions(tmp_path)] == ["v1", "v3", "v4"]
