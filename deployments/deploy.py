"""kbflow's Prefect deployments, from ``deployments/prefect.yaml``, in two ways:

``python deployments/deploy.py [apply]``
    Register every deployment of ``prefect.yaml`` (schedules, parameters, work pools,
    one-run-at-a-time limits) with the Prefect server in ``PREFECT_API_URL``; workers polling
    ``kbflow-gpu``/``kbflow-cpu`` then run them. The same result as ``prefect deploy --all
    --prefect-file deployments/prefect.yaml``, which on Prefect 3.8.8 with FastAPI 0.151-0.154
    on the server stops after the first deployment (its closing "start a worker" hint sends a
    request that FastAPI >= 0.151 rejects with 422).

``python deployments/deploy.py serve`` (``make serve``)
    For teams without a Prefect server: serve the same deployments from this process
    (``prefect.serve``), each flow run in a subprocess when due. Prefect schedules runs only on
    a real API server (its in-process ephemeral API has no scheduler), so unless
    ``PREFECT_API_URL`` is set this starts a local ``prefect server start`` on 127.0.0.1 (port
    ``KBFLOW_PREFECT_PORT``, default 4200; the Prefect UI is there too), its database in
    ``$PREFECT_HOME``, for as long as it runs. Stop with Ctrl-C.

``{{ $VAR }}`` placeholders of ``prefect.yaml`` are filled from the environment, as ``prefect
deploy`` does: ``KBFLOW_SOURCE`` (the export pulled every night), ``KBFLOW_HOME`` (the data
home), for ``apply`` ``KBFLOW_REPO`` (this checkout, as the workers see it; default: here) and,
for the fleet's two deployments, ``KBFLOW_FLEET`` (the KB registry): without it they are left
out, with a note.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

SPEC = Path(__file__).resolve().parent / "prefect.yaml"
REPO = SPEC.parents[1]
_VAR = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")
_WORKDIR_STEP = "prefect.deployments.steps.set_working_directory"
#: Deployments that exist only where this variable is set (the many-KBs fleet).
FLEET_VAR = "KBFLOW_FLEET"
FLEET_DEPLOYMENTS = ("fleet", "fleet-kb")


def load_spec(path: Path = SPEC) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def resolve(value: Any, env: Mapping[str, str]) -> Any:
    """``{{ $VAR }}`` placeholders filled from ``env``, as ``prefect deploy`` does."""
    if not isinstance(value, str):
        return value

    def var(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise SystemExit(f"deploy: set {m.group(1)} (prefect.yaml uses it: {value})")
        return env[m.group(1)]

    return _VAR.sub(var, value)


def flow_of(entrypoint: str) -> Any:
    """The flow an entrypoint of ``prefect.yaml`` names: ``flows/nightly.py:kb_nightly`` is the
    file ``flows/nightly.py`` of the checkout, installed as the module ``kbflow_flows.nightly``."""
    path, name = entrypoint.split(":")
    module = path.removesuffix(".py").replace("/", ".")
    if module.startswith("flows."):
        module = "kbflow_flows." + module.removeprefix("flows.")
    return getattr(importlib.import_module(module), name)


def build_deployments(env: Mapping[str, str] | None = None, for_workers: bool = False) -> list[Any]:
    """One ``RunnerDeployment`` per deployment of ``prefect.yaml`` with its schedules,
    concurrency limit and parameters. ``for_workers``: loaded from the checkout named by the
    file's ``set_working_directory`` pull step (that step is what workers run first) and bound
    to the deployment's work pool; otherwise for ``serve`` in this process."""
    from prefect import Flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.schedules import Cron

    env = os.environ if env is None else {**env}
    if for_workers:
        env = {"KBFLOW_REPO": str(REPO), **env}
    spec = load_spec()
    repo = None
    if for_workers:
        steps = [s[_WORKDIR_STEP] for s in spec.get("pull") or [] if _WORKDIR_STEP in s]
        repo = resolve(steps[0]["directory"], env) if steps else str(REPO)
    out = []
    for dep in spec["deployments"]:
        if dep["name"] in FLEET_DEPLOYMENTS and not env.get(FLEET_VAR):
            print(f"deploy: {dep['name']} left out (set {FLEET_VAR} to the KB registry to deploy "
                  "the fleet)", file=sys.stderr)  # fmt: skip
            continue
        if repo is not None:
            flow = Flow.from_source(source=repo, entrypoint=dep["entrypoint"])
            assert isinstance(flow, Flow)  # called from sync code: the flow, not a coroutine
        else:
            flow = flow_of(dep["entrypoint"])
        limit = dep.get("concurrency_limit")
        out.append(
            flow.to_deployment(
                name=dep["name"],
                description=dep.get("description"),
                schedules=[
                    Cron(s["cron"], timezone=s.get("timezone")) for s in dep.get("schedules") or []
                ],
                concurrency_limit=ConcurrencyLimitConfig(**limit) if limit else None,
                parameters={k: resolve(v, env) for k, v in (dep.get("parameters") or {}).items()},
                work_pool_name=(dep.get("work_pool") or {}).get("name") if for_workers else None,
            )
        )
    return out


def apply_deployments(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Register the deployments with the server in ``PREFECT_API_URL``; returns their ids by
    ``flow/deployment`` name. The work pools must exist (``prefect work-pool create``)."""
    ids = {}
    for deployment in build_deployments(env, for_workers=True):
        ids[f"{deployment.flow_name}/{deployment.name}"] = str(deployment.apply())
    return ids


@contextmanager
def local_server(
    port: int = 4200, env: Mapping[str, str] | None = None, timeout: float = 180.0
) -> Iterator[str]:
    """A ``prefect server start`` on 127.0.0.1:``port`` for the duration of the block; yields
    its API URL once ``/api/health`` answers. Its output is appended to
    ``$PREFECT_HOME/server.log``. The server (its own process group) is stopped after the
    block, whatever happens."""
    url = f"http://127.0.0.1:{port}/api"
    run_env = {**(os.environ if env is None else env), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    run_env.pop("PREFECT_API_URL", None)  # the server must not try to talk to another API
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect) if prefect.exists() else "prefect", "server", "start",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    # the server's output goes to a file, never to a pipe nobody reads: a full pipe (64 KiB of
    # warnings under load) blocks the server's next write, and with it every API call
    home = Path(run_env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = log_path.read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"prefect server exited with {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer on {url} in {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def local_pool(
    env: Mapping[str, str], workers: int, pool: str = "kbflow-gpu", port: int = 4200
) -> Iterator[str]:
    """A local server (``local_server``) with the work pools created, ``prefect.yaml`` applied
    (the fleet's deployments too when ``KBFLOW_FLEET`` is in ``env``) and ``workers`` process
    workers polling ``pool``, each running one flow run at a time; yields the API URL. Workers
    and server are stopped after the block. What ``bench/bench_fleet.py`` and the fleet's
    work-pool test run on."""
    with local_server(port, env=env) as api:
        run_env = {**env, "PREFECT_API_URL": api}
        prefect = str(Path(sys.executable).with_name("prefect"))
        for name in ("kbflow-cpu", "kbflow-gpu"):
            subprocess.run([prefect, "work-pool", "create", name, "--type", "process"],
                           env=run_env, check=True, capture_output=True, timeout=300)  # fmt: skip
        subprocess.run([sys.executable, str(SPEC.with_name("deploy.py"))], env=run_env,
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        worker = [prefect, "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"]
        procs = [
            subprocess.Popen(
                [*worker, "--name", f"{pool}-{n + 1}"],
                env=run_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            for n in range(workers)
        ]
        try:
            yield api
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def serve_deployments() -> None:
    os.environ.setdefault("KBFLOW_HOME", str(Path(".kbflow").resolve()))
    if os.environ.get("PREFECT_API_URL"):
        _serve()
        return
    with local_server(int(os.environ.get("KBFLOW_PREFECT_PORT", "4200"))) as api:
        os.environ["PREFECT_API_URL"] = api  # before Prefect is imported: its settings read it
        print(f"serve: Prefect server at {api.removesuffix('/api')} (UI), PREFECT_HOME "
              f"{os.environ.get('PREFECT_HOME', '~/.prefect')}", flush=True)  # fmt: skip
        _serve()


def serve_limit(env: Mapping[str, str]) -> int | None:
    """How many flow runs ``serve`` runs at once: ``KBFLOW_SERVE_LIMIT``, else unbounded for a
    single KB and, with a fleet (``KBFLOW_FLEET``), the CPU count plus one (each KB's run is a
    process with its own model; the waiting ``kb-fleet`` run holds one of the slots itself)."""
    raw = env.get("KBFLOW_SERVE_LIMIT")
    if raw:
        try:
            limit = int(raw)
        except ValueError:
            raise SystemExit(
                f"serve: KBFLOW_SERVE_LIMIT must be a whole number, not {raw!r}"
            ) from None
    elif env.get(FLEET_VAR):
        limit = (os.cpu_count() or 1) + 1
    else:
        return None
    if env.get(FLEET_VAR) and limit < 2:
        raise SystemExit(
            "serve: with KBFLOW_FLEET, KBFLOW_SERVE_LIMIT must be at least 2 (kb-fleet holds one "
            "run slot while its KBs' runs need the others)"
        )
    if limit < 1:
        raise SystemExit("serve: KBFLOW_SERVE_LIMIT must be at least 1")
    return limit


def _serve() -> None:
    from prefect import serve

    serve(*build_deployments(), limit=serve_limit(os.environ))


def main(argv: list[str]) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    command = argv[0] if argv else "apply"
    if command == "serve":
        serve_deployments()
    elif command == "apply":
        if not os.environ.get("PREFECT_API_URL"):
            raise SystemExit("deploy: set PREFECT_API_URL to the Prefect server (or use `serve`)")
        for name, deployment_id in apply_deployments().items():
            print(f"deployed {name} ({deployment_id})")
    else:
        raise SystemExit(f"usage: {sys.argv[0]} [apply|serve]")


if __name__ == "__main__":
    main(sys.argv[1:])
