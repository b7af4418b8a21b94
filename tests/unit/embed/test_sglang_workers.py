"""SGLang worker processes (kbflow.embed.sglang): which GPUs they get, and that they die with
kbflow. Real processes, launched through the same ``start_worker`` the flow uses; the command is
a small Python program instead of SGLang (no GPU here), which is what ``launch_command`` allows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kbflow.embed.sglang import start_worker, stop_worker, worker_devices
from kbflow.errors import ConfigError
from kbflow.settings import EmbedSettings

from ...gpuhost import tokenizer_folder, venv_with_sglang

REPORT_DEVICE = (
    "import os, sys, time; "
    "print('device', os.environ.get('CUDA_VISIBLE_DEVICES'), sys.argv[1], flush=True); "
    "time.sleep(600)"
)


def test_worker_devices_come_from_the_gpus_this_process_was_given():
    assert worker_devices(1, "4,5") == [None]  # one worker: the environment as it is
    assert worker_devices(2, "4,5") == ["4", "5"]
    assert worker_devices(2, " 4 , 5 ,6") == ["4", "5"]
    assert worker_devices(2, "GPU-1a2b,GPU-3c4d") == ["GPU-1a2b", "GPU-3c4d"]
    assert worker_devices(3, None) == ["0", "1", "2"]
    assert worker_devices(2, "") == ["0", "1"]
    with pytest.raises(ConfigError, match=r"embed.gpus is 3 .* gives this process 2 GPU"):
        worker_devices(3, "4,5")


def _wait_for_line(worker, prefix: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(worker.tail):
            if line.startswith(prefix):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no {prefix!r} line from the worker: {list(worker.tail)}")


def test_two_workers_on_a_host_given_gpus_4_and_5_run_on_4_and_5(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    settings = EmbedSettings(
        backend="sglang", gpus=2, launch_command=["{python}", "-c", REPORT_DEVICE, "{gpu}"]
    )
    workers = [start_worker(settings, i) for i in range(2)]
    try:
        lines = [_wait_for_line(w, "device") for w in workers]
    finally:
        for w in workers:
            stop_worker(w, grace=5)
    assert lines == ["device 4 4", "device 5 5"]
    assert all(w.process.returncode is not None for w in workers)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie holds no memory; only its parent's reaping is missing


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_when_kbflow_is_killed_with_sigkill(tmp_path):
    parent = textwrap.dedent(
        f"""
        import time
        from kbflow.embed.sglang import start_worker
        from kbflow.settings import EmbedSettings
        settings = EmbedSettings(
            backend="sglang", launch_command=["{{python}}", "-c", {REPORT_DEVICE!r}, "{{gpu}}"]
        )
        worker = start_worker(settings, 0)
        while not worker.tail:  # the worker is up and has written all it will write
            time.sleep(0.05)
        print(worker.process.pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        worker_pid = int(proc.stdout.readline())
        assert _alive(worker_pid)
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs in the parent
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker_pid), "the worker outlived the kbflow process that started it"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_sglang_environment_is_checked_before_any_worker_starts(tmp_path):
    from kbflow.embed.sglang import check_sglang, run_workers

    def settings(python: Path) -> EmbedSettings:
        return EmbedSettings(backend="sglang", model_path=tmp_path, sglang_python=python)

    with pytest.raises(ConfigError, match=r"does not exist: build SGLang's own .*make sglang-venv"):
        check_sglang(settings(tmp_path / "nowhere" / "python"))
    bare = venv_with_sglang(tmp_path / "bare", None)
    with pytest.raises(ConfigError, match="SGLang is not installed in"):
        check_sglang(settings(bare))
    old = venv_with_sglang(tmp_path / "old", "0.5.2")
    too_old = r"has SGLang 0\.5\.2; kbflow needs SGLang >= 0\.5\.5"
    with pytest.raises(ConfigError, match=too_old), run_workers(settings(old)):
        pass
    assert check_sglang(settings(venv_with_sglang(tmp_path / "ok", "0.5.8"))) == "0.5.8"
    # a launcher of the team's own (a container) is theirs to check
    custom = settings(old).model_copy(update={"launch_command": ["docker", "run", "img"]})
    assert check_sglang(custom) is None


def test_a_last_token_model_whose_tokenizer_drops_the_end_token_is_refused(tmp_path):
    from kbflow.embed.model_folder import check_end_token, pools_last_token
    from kbflow.embed.sglang import run_workers

    good = tokenizer_folder(tmp_path / "good", appends_end=True)
    old = tokenizer_folder(tmp_path / "old", appends_end=False)
    assert pools_last_token(good) and check_end_token(good) == "<|endoftext|>"
    started = tmp_path / "started"
    cmd = ["{python}", "-c", f"open({str(started)!r}, 'w')", "{model_path}"]
    settings = EmbedSettings(backend="sglang", model_path=old, launch_command=cmd)
    refused = r"does not append <\|endoftext\|>.*last token"
    with pytest.raises(ConfigError, match=refused), run_workers(settings):
        pass
    assert not started.exists()  # refused before any worker (and GPU memory) was taken
    # a mean-pooling model (sentence-transformers folder saying so) is not checked
    from kbflow.embed.local import default_model_dir

    assert not pools_last_token(default_model_dir())


def test_workers_a_killed_run_left_are_stopped_by_the_next_run(tmp_path):
    from kbflow.embed.sglang import _record, clear_orphans, run_workers

    pid_file = tmp_path / "embed-workers.json"
    settings = EmbedSettings(
        backend="sglang", launch_command=["{python}", "-c", REPORT_DEVICE, "{gpu}"]
    )
    # a worker that outlived its run (no PR_SET_PDEATHSIG: a container, another OS)
    orphan = start_worker(settings, 0)
    _wait_for_line(orphan, "device")
    _record(pid_file, [orphan])
    # a recorded pid now held by an unrelated process (another start time) is left alone
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    record = json.loads(pid_file.read_text())
    record["workers"].append({"pid": bystander.pid, "started": "0", "port": 1})
    pid_file.write_text(json.dumps(record))
    try:
        assert clear_orphans(pid_file) == 1
        orphan.process.wait(timeout=10)
        assert orphan.process.returncode == -signal.SIGKILL
        assert bystander.poll() is None and not pid_file.exists()
    finally:
        bystander.kill()
        bystander.wait()
        stop_worker(orphan, grace=1)
    # a run records its workers while they are up and removes the record after
    cmd = ["{python}", "-m", "kbflow.embed.server", "--threads", "1", "--port", "{port}"]
    serving = EmbedSettings(backend="sglang", model="all-MiniLM-L6-v2", launch_command=cmd)
    with run_workers(serving, pid_file):
        (entry,) = json.loads(pid_file.read_text())["workers"]
        assert _alive(entry["pid"])
    assert not pid_file.exists() and not _alive(entry["pid"])
