"""Small KBs for the fleet: copies of the bundled samples with edits, and their registry.

KB ``i`` takes a seeded 60% of one sample's FAQ entries (English for most, Chinese for every
third), renames the shop in every answer to its own brand (``Brand07``) and rewrites a few
answers, so no two KBs hold the same texts. Optionally one KB is made to fail (its export is
not JSON) and one to be blocked by its gate (its golden file expects the wrong entries).
Used by ``bench/bench_fleet.py`` and the fleet tests.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"en": ROOT / "examples" / "kb_en", "zh": ROOT / "examples" / "kb_zh"}


def brand(i: int) -> str:
    return f"Brand{i:02d}"


def _entries(lang: str) -> list[dict[str, Any]]:
    text = (SAMPLES[lang] / "export" / "faq.jsonl").read_text(encoding="utf-8")
    out = []
    for line in text.split("\n"):  # not splitlines(): answers may hold U+2028
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the samples carry broken rows on purpose (the quarantine's demo)
        if isinstance(row, dict) and row.get("status", "published") == "published":
            out.append(row)
    return out


def write_kb(folder: Path, i: int, share: float = 0.6, seed: int = 0) -> dict[str, Any]:
    """KB ``i``'s export under ``folder/export``; returns its entry ids and brand."""
    lang = "zh" if i % 3 == 2 else "en"
    rng = random.Random(seed * 1000 + i)
    rows = _entries(lang)
    rows = sorted(rng.sample(rows, max(10, int(len(rows) * share))), key=lambda r: r["id"])
    name = brand(i)
    for n, row in enumerate(rows):
        row["answer"] = f"{row['answer']} ({name})"
        if n % 7 == 0:
            row["answer"] += (
                f" {name} 会员可享受专属客服。"
                if lang == "zh"
                else f" {name} members get priority support."
            )
    (folder / "export").mkdir(parents=True, exist_ok=True)
    (folder / "export" / "faq.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return {"lang": lang, "brand": name, "ids": [r["id"] for r in rows], "rows": rows}


def break_kb(folder: Path) -> None:
    """Make the KB's export unreadable: its run fails at validation with a clear error."""
    (folder / "export" / "faq.jsonl").write_text("this is not JSON\n{oops\n", encoding="utf-8")


def misgolden_kb(folder: Path, kb: Mapping[str, Any]) -> None:
    """A golden file whose every query expects another entry than its own: the gate blocks."""
    rows = kb["rows"]
    lines = [
        json.dumps(
            {
                "query": r["title"],
                "expected": [rows[(n + len(rows) // 2) % len(rows)]["id"]],
                "split": "valid" if n % 2 else "test",
            },
            ensure_ascii=False,
        )  # fmt: skip
        for n, r in enumerate(rows)
    ]
    (folder / "golden.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_fleet(
    root: Path,
    count: int,
    limits: Mapping[str, int] | None = None,
    broken: int | None = None,
    blocked: int | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Path:
    """``count`` KBs under ``root/kbs/<name>`` with homes under ``root/homes``; the registry
    at ``root/fleet.yaml``."""
    kbs = []
    for i in range(1, count + 1):
        name = f"kb{i:02d}"
        folder = root / "kbs" / name
        kb = write_kb(folder, i)
        if i == broken:
            break_kb(folder)
        if i == blocked:
            misgolden_kb(folder, kb)
        kbs.append({"name": name, "source": f"kbs/{name}/export", "home": f"homes/{name}"})
    doc: dict[str, Any] = {"kbs": kbs}
    if limits:
        doc["limits"] = dict(limits)
    if defaults:
        doc["defaults"] = dict(defaults)
    path = root / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_on_pool(
    work: Path, registry: Path, workers: int, timeout: float | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``kbflow fleet run --on-pool --json`` against a local server whose work pool has
    ``workers`` workers (``kbflow_deployments.deploy.local_pool``, its own PREFECT_HOME under
    ``work``); the finished process and the fleet run's wall seconds."""
    from kbflow_deployments.deploy import local_pool

    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "KBFLOW_REPO": str(ROOT),
        # the single-KB deployments need these to be applied; the fleet never uses them
        "KBFLOW_SOURCE": str(SAMPLES["en"] / "export"),
        "KBFLOW_HOME": str(work / "unused-home"),
        "KBFLOW_FLEET": str(registry),
    }
    with local_pool(env, workers=workers, port=free_port()) as api:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "kbflow.cli", "fleet", "run", "--registry", str(registry),
             "--on-pool", "--json"],
            env={**env, "PREFECT_API_URL": api}, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        return out, time.perf_counter() - start
