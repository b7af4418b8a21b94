"""The real ``kbflow serve-embeddings`` server as a subprocess on a free loopback port.

Loading the model costs about 5 s, so the plain server is started once per test process
(:func:`shared_server`) and stopped at exit; fault-injecting servers are started per test.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kbflow.embed.sglang import free_port

SERVER_MODULE = [sys.executable, "-m", "kbflow.embed.server", "--threads", "1"]


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.unlink(missing_ok=True)


def start_server(*args: str, timeout: float = 90) -> Server:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix=f"embed-server-{port}-", suffix=".log")[1])
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*SERVER_MODULE, "--port", str(port), *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedding server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    tail = log.read_text()[-2000:]
    server.stop()
    raise RuntimeError(f"embedding server not healthy after {timeout}s: {tail}")


@contextmanager
def embedding_server(*args: str) -> Iterator[Server]:
    server = start_server(*args)
    try:
        yield server
    finally:
        server.stop()


_shared: dict[str, Server] = {}


def shared_server(name: str = "plain") -> Server:
    """A fault-free server, started on first use and shared by every test in this process."""
    if name not in _shared or _shared[name].process.poll() is not None:
        _shared[name] = start_server()
        atexit.register(_shared[name].stop)
    return _shared[name]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
