"""The ``sglang`` backend's worker lifecycle: start, wait until ready, yield URLs, always stop.

:func:`run_workers` starts one embedding server per GPU (``CUDA_VISIBLE_DEVICES`` set per worker
when ``gpus > 1``, to the GPUs this process was given: a host started with
``CUDA_VISIBLE_DEVICES=4,5`` runs its workers on 4 and 5, never on 0 and 1) from ``EmbedSettings.launch_command``, by default
``python -m sglang.launch_server --model-path DIR --is-embedding --host 127.0.0.1 --port N``.
The command is a template so a team can launch a container or another launcher instead, and
so the tests launch ``kbflow serve-embeddings`` through this same code. Each worker's output is
streamed into the run log; readiness is ``/health`` == 200 and then one real embedding request.
On leaving the context, normally or by any exception including ``KeyboardInterrupt``, every
worker's whole process group gets SIGTERM, then SIGKILL after a grace period, and is reaped.
A worker also dies with the thread that started it (Linux ``PR_SET_PDEATHSIG``): when kbflow is
killed with SIGKILL no cleanup code runs, and a live worker would keep its GPU memory.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbflow.embed.model_folder import check_end_token
from kbflow.errors import ConfigError, EmbeddingError
from kbflow.settings import EmbedSettings, Settings

log = logging.getLogger(__name__)


HOST = "127.0.0.1"


STOP_GRACE_S = 20.0


"""SGLang frees GPU memory and its scheduler processes on SIGTERM; give it this long."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def worker_devices(gpus: int, visible: str | None) -> Sequence[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each of ``gpus`` workers, given this process's own
    (``visible``; None when unset). One worker inherits the environment unchanged (``None``);
    several get one device each, taken from the devices this process may use, in order."""
    if gpus == 1:
        return [None]
    if visible is None or not visible.strip():
        return [str(i) for i in range(gpus)]
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    if len(devices) < gpus:
        raise ConfigError(
            f"embed.gpus is {gpus} but CUDA_VISIBLE_DEVICES={visible!r} gives this process "
            f"{len(devices)} GPU(s): lower embed.gpus or make more GPUs visible"
        )
    return devices[:gpus]


def worker_command(settings: EmbedSettings, port: int, gpu: int | str) -> list[str]:
    """The launch command with ``{python}`` (``sglang_python``), ``{model_path}``, ``{host}``,
    ``{port}``, ``{gpu}`` (the worker's device id as this process sees it) and
    ``{mem_fraction}`` filled in, plus ``launch_extra_args``."""
    uses_model = any("{model_path}" in part for part in settings.launch_command)
    if uses_model and settings.model_path is None:
        raise ConfigError("the sglang backend needs --model-path DIR (the model folder to serve)")
    values = {
        "python": str(settings.sglang_python or sys.executable),
        "model_path": str(settings.model_path or ""),
        "host": HOST,
        "port": str(port),
        "gpu": str(gpu),
        "mem_fraction": f"{settings.mem_fraction:g}",
    }
    try:
        cmd = [part.format(**values) for part in settings.launch_command]
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"embed.launch_command has an unknown placeholder: {exc}") from exc
    return cmd + list(settings.launch_extra_args)


#: The oldest SGLang kbflow's worker launch is written for (``--is-embedding`` with
#: Qwen3-Embedding's last-token pooling, ``/health`` readiness, ``--mem-fraction-static``).
SGLANG_MIN = "0.5.5"


#: What to do when SGLang's environment is missing or too old.
SGLANG_FIX = (
    "build SGLang's own environment with `make sglang-venv` and set "
    "KBFLOW_EMBED__SGLANG_PYTHON to its bin/python (README: GPU runbook)"
)


def require_sglang(python: Path, minimum: str, fix: str = SGLANG_FIX) -> str:
    """The SGLang version installed in ``python``'s environment (read from its metadata, without
    importing SGLang); a missing interpreter, no SGLang, or one older than ``minimum`` is a
    ``ConfigError`` ending in ``fix``."""
    from packaging.version import InvalidVersion, Version

    if not python.is_file():
        raise ConfigError(f"{python} does not exist: {fix}")
    probe = "import importlib.metadata as m; print(m.version('sglang'))"
    try:
        out = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {python}: {exc}; {fix}") from exc
    found = out.stdout.strip()
    if out.returncode != 0 or not found:
        raise ConfigError(f"SGLang is not installed in {python}'s environment: {fix}")
    try:
        too_old = Version(found) < Version(minimum)
    except InvalidVersion:
        too_old = True
    if too_old:
        raise ConfigError(f"{python} has SGLang {found}; kbflow needs SGLang >= {minimum}: {fix}")
    return found


def check_sglang(settings: EmbedSettings) -> str | None:
    """The SGLang version in ``embed.sglang_python``'s environment (:func:`require_sglang`,
    at least :data:`SGLANG_MIN`), checked before a worker starts. Launch commands that do not
    run ``sglang.launch_server`` with ``{python}`` (a container, a test's stand-in) are not
    checked (None)."""
    cmd = settings.launch_command
    runs_sglang = any(
        part in ("sglang.launch_server", "sglang") or part.endswith("/sglang") for part in cmd
    )
    if "{python}" not in cmd or not runs_sglang:
        return None
    python = settings.sglang_python or Path(sys.executable)
    found = require_sglang(python, SGLANG_MIN)
    log.info("SGLang %s in %s", found, python)
    return found


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the worker between fork and exec: SIGKILL it when its parent thread dies. Where
    ``prctl`` is missing (not Linux) the worker still gets stopped by :func:`stop_worker`."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@dataclass
class Worker:
    gpu: int
    port: int
    process: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"


def _stream_log(worker: Worker) -> None:
    assert worker.process.stdout is not None
    for raw in iter(worker.process.stdout.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            worker.tail.append(line)
            log.info("[worker gpu%d :%d] %s", worker.gpu, worker.port, line)


def start_worker(settings: EmbedSettings, gpu: int) -> Worker:
    """Start worker number ``gpu`` (0-based) of ``settings.gpus`` on its own device."""
    port = free_port()
    env = dict(os.environ)
    device = worker_devices(settings.gpus, env.get("CUDA_VISIBLE_DEVICES"))[gpu]
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    cmd = worker_command(settings, port, device if device is not None else gpu)
    log.info("starting embedding worker %d on GPU %s: %s", gpu, device or "0", " ".join(cmd))
    try:
        process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: we stop the worker and its children
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except OSError as exc:
        raise ConfigError(f"cannot start the embedding worker {cmd[0]!r}: {exc}") from exc
    worker = Worker(gpu=gpu, port=port, process=process)
    worker.reader = threading.Thread(
        target=_stream_log, args=(worker,), name=f"worker-log-{port}", daemon=True
    )
    worker.reader.start()
    return worker


def stop_worker(worker: Worker, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the worker's process group, SIGKILL it after ``grace`` seconds, reap it."""
    proc = worker.process
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and proc.poll() is None:
        log.info("stopping embedding worker :%d (pid %d)", worker.port, proc.pid)
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("worker :%d ignored SIGTERM for %.0fs; killing it", worker.port, grace)
    if pgid is not None:
        # Children (SGLang's scheduler and detokenizer) may outlive the leader: kill the group.
        _signal_group(pgid, signal.SIGKILL)
    proc.wait()
    if worker.reader is not None:
        worker.reader.join(timeout=5)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _get_status(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def wait_ready(worker: Worker, settings: EmbedSettings) -> None:
    """Poll ``/health`` until 200, then send one real embedding request. Raises
    ``EmbeddingError`` (with the worker's last log lines) if it exits or takes too long."""
    deadline = time.monotonic() + settings.startup_timeout
    delay = 0.2
    while True:
        code = worker.process.poll()
        if code is not None:
            raise EmbeddingError(
                f"embedding worker exited with code {code} before it was ready:\n"
                + "\n".join(worker.tail)
            )
        if _get_status(f"{worker.base_url}/health", timeout=5) == 200:
            break
        if time.monotonic() > deadline:
            raise EmbeddingError(
                f"embedding worker :{worker.port} not healthy after {settings.startup_timeout:.0f}s:\n"
                + "\n".join(worker.tail)
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
    body = json.dumps({"input": ["健康检查 health check"], "model": settings.model}).encode()
    req = urllib.request.Request(
        f"{worker.api_url}/embeddings",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=settings.request_timeout) as resp:
            answer = json.loads(resp.read())
        vector = answer["data"][0]["embedding"]
        if not vector:
            raise ValueError("empty embedding")
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
        raise EmbeddingError(
            f"embedding worker :{worker.port} is healthy but a test request failed: {exc}"
        ) from exc
    log.info("embedding worker :%d ready (%d dims)", worker.port, len(vector))


def _started_at(pid: int) -> str | None:
    """The process's start time (``/proc/<pid>/stat``, field 22), which tells a live worker
    from an unrelated process that got its pid later; None when there is no such process
    (or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def clear_orphans(pid_file: Path) -> int:
    """Kill the workers a killed run left behind (recorded in ``pid_file``; each was the leader
    of its own process group) and remove the file; returns how many were still running. A pid
    now held by another process (a different start time) is left alone."""
    if not pid_file.is_file():
        return 0
    try:
        recorded = json.loads(pid_file.read_text(encoding="utf-8")).get("workers", [])
    except (OSError, ValueError):
        recorded = []
    killed = 0
    for entry in recorded:
        pid, started = int(entry["pid"]), entry.get("started")
        now = _started_at(pid)
        if now is None or (started is not None and now != started):
            continue
        log.warning(
            "stopping embedding worker pid %d (port %s) left running by a killed run",
            pid,
            entry.get("port"),
        )
        _signal_group(pid, signal.SIGKILL)
        killed += 1
    pid_file.unlink(missing_ok=True)
    return killed


def _record(pid_file: Path, workers: list[Worker]) -> None:
    entries = [
        {"pid": w.process.pid, "started": _started_at(w.process.pid), "port": w.port}
        for w in workers
    ]
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(f".{pid_file.name}.tmp")
    tmp.write_text(json.dumps({"workers": entries}), encoding="utf-8")
    os.replace(tmp, pid_file)


@contextmanager
def run_workers(settings: EmbedSettings, pid_file: Path | None = None) -> Iterator[list[str]]:
    """Start ``settings.gpus`` workers, wait until each answers, yield their ``/v1`` URLs; stop
    them all on exit, whatever happened (the ``ExitStack`` unwinds on any exception).

    With ``pid_file``, workers a killed run left behind (recorded there) are killed first, and
    this run's workers are recorded there until they are stopped."""
    with ExitStack() as stack:
        workers: list[Worker] = []
        if pid_file is not None:
            clear_orphans(pid_file)
            stack.callback(pid_file.unlink, missing_ok=True)
        # refuse early, before any GPU memory is taken: the settings, then the environment
        worker_devices(settings.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        worker_command(settings, 0, 0)
        check_sglang(settings)
        if settings.model_path is not None and any(
            "{model_path}" in part for part in settings.launch_command
        ):
            check_end_token(settings.model_path)
        for gpu in range(settings.gpus):
            worker = start_worker(settings, gpu)
            stack.callback(stop_worker, worker)
            workers.append(worker)
            if pid_file is not None:
                _record(pid_file, workers)
        start = time.monotonic()
        for worker in workers:
            wait_ready(worker, settings)
        log.info("%d embedding worker(s) ready in %.1fs", len(workers), time.monotonic() - start)
        yield [w.api_url for w in workers]


WORKERS_FILE = "embed-workers.json"


@contextmanager
def workers_for_run(settings: Settings, pid_dir: Path) -> Iterator[Settings]:
    """The settings every stage of a build uses: for ``sglang`` without URLs, the workers are
    started here, once, and stay up for the whole block (the embed stage's passages and
    canaries, the review stage's titles, calibration and gate queries all go to them), then are
    stopped; other backends pass through unchanged. Workers are recorded in
    ``pid_dir/embed-workers.json`` while they run, so a run after a ``kill -9`` can stop any
    that survived (on Linux they also die with this process)."""
    embed = settings.embed
    if embed.backend != "sglang" or embed.urls:
        yield settings
        return
    with run_workers(embed, pid_dir / WORKERS_FILE) as urls:
        yield settings.model_copy(update={"embed": embed.model_copy(update={"urls": urls})})


@contextmanager
def query_embed_settings(
    settings: Settings, info: dict[str, Any], need_queries: bool = False
) -> Iterator[Settings]:
    """Settings under which calibration and the gate can embed queries. Models with a query
    instruction, and golden queries (``need_queries``), need the backend again; for ``sglang``
    that means workers, started for the length of the block and stopped after it (held-out
    similar questions of other models reuse the stored passage vectors, no backend)."""
    embed = settings.embed
    if (
        not (need_queries or (info.get("query_template") and info.get("task")))
        or embed.backend != "sglang"
        or embed.urls
    ):
        yield settings
        return

    with run_workers(embed) as urls:
        yield settings.model_copy(
            update={"embed": embed.model_copy(update={"backend": "openai", "urls": urls})}
        )
