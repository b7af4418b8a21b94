"""SGLang worker processes (kbflow.embed.sglang): which GPUs they get, and that they die with
kbflow. Real processes, launched through the same ``start_worker`` the flow uses; the command is
a small Python program instead of SGLang (no GPU here), which is what ``launch_command`` allows."""

from __future__ import annotations

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
