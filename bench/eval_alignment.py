"""The gate's answer-alignment check on intact, misaligned and reworded copies of real KBs.

For each set (``../shared/data`` sets with real answers: esun_faq, baoxianzhidao, taipei_faq;
and the bundled samples kb_zh, kb_en): ``kbflow nightly`` publishes the intact export into a data
home; then, each in its own copy of that home, a nightly runs on

- ``misaligned-5`` / ``-20`` / ``-100``: that share of the entries get another entry's answer
  (a derangement among them: what an upstream join bug does), titles and questions untouched;
- ``reworded-10``: a tenth of the answers reworded (sentences in another order, a greeting and a
  closing line added: the same facts in new words);

with no golden file anywhere (copies live outside the set's folder), and records the gate's
verdict and the alignment of the new and the live version on the entries both have.

    python bench/eval_alignment.py --out bench/results-alignment.json [--sets kb_zh,esun_faq] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {
    "esun_faq": DATA / "esun_faq" / "export",
    "baoxianzhidao": DATA / "baoxianzhidao" / "export",
    "taipei_faq": DATA / "taipei_faq" / "export",
    "kb_zh": ROOT / "examples" / "kb_zh" / "export",
    "kb_en": ROOT / "examples" / "kb_en" / "export",
}
SCENARIOS = ("misaligned-100", "misaligned-20", "misaligned-5", "reworded-10")
RUN_DATE = "2026-11-24"


def _jsonl_files(export: Path) -> list[Path]:
    return sorted(p for p in export.iterdir() if p.suffix == ".jsonl")


def _rows(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def _parsed(lines: list[str]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the sample's deliberately broken lines stay as they are
        if isinstance(row, dict) and row.get("answer") and row.get("title"):
            out.append((i, row))
    return out


def copy_export(src: Path, dst: Path, edit: Any) -> int:
    """``src`` copied to ``dst`` with ``edit(rows)`` applied to the JSONL rows of each file
    (other formats copied as they are); returns how many rows ``edit`` changed."""
    shutil.copytree(src, dst)
    changed = 0
    for path in _jsonl_files(dst):
        lines = _rows(path)
        rows = _parsed(lines)
        changed += edit([r for _, r in rows])
        for i, row in rows:
            lines[i] = json.dumps(row, ensure_ascii=False)
        path.write_text("\n".join(lines), encoding="utf-8")
    return changed


def misalign(share: float, seed: int = 0) -> Any:
    """An ``edit`` giving ``share`` of the rows another row's answer (a derangement among them:
    none keeps its own)."""

    def edit(rows: list[dict[str, Any]]) -> int:
        n = max(2, round(len(rows) * share)) if share > 0 else 0
        pick = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
        answers = [rows[i]["answer"] for i in pick]
        for k, i in enumerate(pick):
            rows[i]["answer"] = answers[(k + 1) % len(pick)]
        return len(pick)

    return edit


_SENTENCE = re.compile(r"(?<=[。！？!?.])\s*")


def reword_answer(answer: str) -> str:
    """The same facts in other words: sentences in another order, a greeting and a closing."""
    parts = [p for p in _SENTENCE.split(answer.strip()) if p.strip()]
    if len(parts) > 1:
        parts = parts[1:] + parts[:1]
    cjk = any("\u4e00" <= c <= "\u9fff" for c in answer)
    if cjk:
        return "您好，" + "".join(parts) + "如有其他问题，欢迎随时联系我们。"
    return "Hello! " + " ".join(parts) + " If anything is unclear, just ask us."


def reword(share: float, seed: int = 1) -> Any:
    def edit(rows: list[dict[str, Any]]) -> int:
        n = round(len(rows) * share)
        for i in random.Random(seed).sample(range(len(rows)), n):
            rows[i]["answer"] = reword_answer(rows[i]["answer"])
        return n

    return edit


def scenario_edit(name: str) -> Any:
    kind, pct = name.rsplit("-", 1)
    share = int(pct) / 100
    return misalign(share) if kind == "misaligned" else reword(share)


def nightly(home: Path, source: Path) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [
        sys.executable, "-m", "kbflow.cli", "nightly", "--home", str(home),
        "--source", str(source), "--run-date", RUN_DATE, "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode not in (0, 3):
        raise RuntimeError(f"nightly on {source} failed ({out.returncode}): {out.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def gate_of(home: Path, summary: dict[str, Any]) -> dict[str, Any]:
    gate_file = home / "runs" / summary["run_id"] / "gate" / "_SUCCESS.json"
    gate: dict[str, Any] = json.loads(gate_file.read_text(encoding="utf-8"))
    return gate


def run_set(name: str, work: Path, save: Any = None) -> dict[str, Any]:
    export = work / name / "export"
    shutil.copytree(SETS[name], export)  # no golden.jsonl beside it
    base = work / name / "home"
    start = time.perf_counter()
    first = nightly(base, export)
    res: dict[str, Any] = {"status": first["status"], "build_s": round(time.perf_counter() - start)}
    intact = gate_of(base, first).get("alignment") or {}
    res["intact"] = {"alignment": intact.get("new"), "entries": intact.get("entries")}
    for scenario in SCENARIOS:
        home = work / name / scenario / "home"
        shutil.copytree(base, home)
        source = work / name / scenario / "export"
        changed = copy_export(SETS[name], source, scenario_edit(scenario))
        summary = nightly(home, source)
        gate = gate_of(home, summary)
        a = gate.get("alignment") or {}
        res[scenario] = {
            "entries_changed": changed,
            "status": summary["status"],
            "alignment_new": a.get("new"),
            "alignment_live": a.get("live"),
            "drop": a.get("drop"),
            "misaligned_listed": a.get("misaligned_total"),
            "self_check_hit@3": (gate.get("checks", {}).get("self_check", {}).get("new") or {}).get(
                "hit@3"
            ),
            "reasons": gate.get("reasons"),
        }
        print(f"{name} {scenario}: {res[scenario]['status']} {a.get('live')} -> {a.get('new')}")
        if save is not None:
            save(res)  # a long set keeps what it measured if it is stopped
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-alignment.json")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = (a.workdir or Path(tempfile.mkdtemp(prefix="kbflow-align-"))).resolve()
    results: dict[str, Any] = {}
    for name in a.sets.split(","):
        if not SETS[name].is_dir():
            results[name] = {"skipped": f"{SETS[name]} is absent"}
            continue

        def save(partial: dict[str, Any], name: str = name) -> None:
            results[name] = partial
            a.out.write_text(json.dumps({"command": " ".join(sys.argv), "sets": results}, indent=2))

        save(run_set(name, work, save))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
