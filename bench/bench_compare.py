#!/usr/bin/env python
"""kbflow's nightly build against LlamaIndex's IngestionPipeline, pair by pair, same machine,
same export, same embedding model.

    python bench/bench_compare.py --entries 100000 --runs 3 [--embed-sample 600]
        [--bench-python .venv-bench/bin/python] [--workdir DIR] [--out JSON]

Each run is one pair, both sides on the same synthetic export (``synth_export.write_export``),
in alternating order (kbflow first in even runs, LlamaIndex first in odd ones):

* kbflow, full build: ``bench_stages.py --no-embed`` in a child process (every stage real, the
  vectors synthetic; the embed stage still loads the model, runs the drift check and reads the
  cache). No-change rerun: a *separate, cold* child process (``kbflow-rerun`` phase below), as a
  nightly run is a new process, and as LlamaIndex's rerun is: imports included on both sides.
* LlamaIndex: ``bench_llamaindex.py build`` and ``rerun`` in the bench environment (see there).
* Embedding, both sides: ``bench_llamaindex.py embed-rate`` times kbflow's ``LocalEmbedder`` and
  LlamaIndex's ``HuggingFaceEmbedding`` (same weights) on the same ``--embed-sample`` texts, drawn
  from the passages kbflow built, alternating A B B A. Each side's full-build embedding is then
  *its own* seconds per text x the texts *it* embeds (kbflow: unique passage texts not cached;
  LlamaIndex: every node, the IngestionCache caches per batch of nodes, not per text). EXTRAPOLATED.

Pair ratios: kbflow / LlamaIndex wall time, full build and no-change rerun; below 1 = kbflow is
faster. Prefect is not involved: the real ``kbflow nightly`` adds about 8 s of Prefect start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()  # the cold rerun counts its imports from here

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Same embedding model on both sides: LlamaIndex runs all-MiniLM-L6-v2, so kbflow's children do
# too (embed.model=auto would pick multilingual-e5-small for the Chinese synthetic export).
KBFLOW_MODEL_ENV = {"KBFLOW_EMBED__MODEL": "all-MiniLM-L6-v2"}

DEFAULT_BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


def bench_env_problem(python: Path) -> str | None:
    """None when ``python`` can import LlamaIndex, else why not."""
    if not python.exists():
        return f"{python} not found: build it with `make bench-venv`"
    r = subprocess.run(
        [str(python), "-c", "import llama_index.core, llama_index.embeddings.huggingface"],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        return f"{python} cannot import llama_index: {r.stderr.strip().splitlines()[-1:]}"
    return None


class Killed(RuntimeError):
    """A child stopped by the memory watchdog."""

    def __init__(self, cmd: list[str], rss_mib: float, after_s: float, last_line: str) -> None:
        super().__init__(
            f"killed at {rss_mib:.0f} MiB RSS after {after_s:.0f} s: {shlex.join(cmd)}"
        )
        self.rss_mib, self.after_s, self.last_line = rss_mib, after_s, last_line


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _run(
    cmd: list[str], log: Path, mem_limit_mib: float | None = None, env: dict[str, str] | None = None
) -> float:
    """Run ``cmd`` with output to ``log``; kill it if its RSS passes ``mem_limit_mib`` (the
    machine is shared: a child must not take the others' memory). Returns its largest RSS seen."""
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
        top = 0.0
        while proc.poll() is None:
            rss = _rss_mib(proc.pid)
            top = max(top, rss)
            if mem_limit_mib and rss > mem_limit_mib:
                proc.kill()
                proc.wait()
                fh.write(
                    f"[bench_compare] killed at {rss:.0f} MiB RSS (limit {mem_limit_mib:.0f})\n"
                )
                fh.flush()
                lines = [
                    x
                    for x in log.read_text(encoding="utf-8").splitlines()
                    if x.startswith("[stage]")
                ]
                raise Killed(cmd, rss, time.perf_counter() - t0, lines[-1] if lines else "")
            time.sleep(0.25)
    if proc.returncode not in (0, 1):  # bench_stages exits 1 when one of its floors fails
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}; see {log}")
    return round(top, 1)


# --- kbflow's cold no-change rerun (a phase of this script, in its own process) -----------------


def kbflow_rerun(home_dir: Path, export: Path, out: Path, run_date: str) -> dict[str, Any]:
    from datetime import date

    import bench_stages as bs

    from kbflow.settings import load_settings
    from kbflow.store.home import DataHome

    settings = load_settings(str(home_dir))
    home = DataHome.at(settings.home)
    meter = bs.Meter(set(), None)
    t_run = time.perf_counter()
    run = bs.nightly_run(
        "rerun", home, str(export), settings, date.fromisoformat(run_date), meter, "none", 0, 0
    )
    end = time.perf_counter()
    res = {
        "phase": "kbflow-rerun",
        "status": run["status"],
        "texts_embedded": run["embedded"],
        "imports_s": round(t_run - _T0, 3),
        "stages": {s["stage"]: s["wall_s"] for s in run["stages"]},
        "total_wall_s": round(end - _T0, 3),
        "peak_rss_mib": max(s["process_peak_rss_mib"] for s in run["stages"]),
    }
    out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


# --- one pair --------------------------------------------------------------------------------


def _stage_map(run: dict[str, Any]) -> dict[str, float]:
    return {s["stage"]: s["wall_s"] for s in run["stages"] if not s.get("not_a_stage")}


def combine(
    kb: dict[str, Any], kb_rerun: dict[str, Any], li: dict[str, Any], li_rerun: dict[str, Any],
    rate: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One pair's figures, per stage and in total, with the embedding extrapolated per side."""
    first = kb["first_run"]
    ks = _stage_map(first)
    pre = first["prefill"]
    cost = rate["per_text_s"]
    kb_texts, li_texts = int(pre["to_embed"]), int(li["texts_to_embed"])
    # the bench prefill paid the cold model load (torch import) that a real embed stage pays
    kb_embed = (
        ks["embed"] + pre["model_load_s"] + pre["synthetic_fill_s"] + cost["kbflow"] * kb_texts
    )
    ls = li["stages"]
    li_embed = ls["model_load"] + cost["llamaindex"] * li_texts
    rows = {
        # row: (kbflow seconds, LlamaIndex seconds, what each side does)
        "read + validate": (
            ks["start_run"] + ks["pull"] + ks["validate"],
            ls["import"] + ls["load_documents"],
            "kbflow: land the snapshot, parse 4 formats, Great Expectations suite, quarantine | "
            "LlamaIndex: import, json/csv into Documents",
        ),
        "clean": (
            ks["clean"],
            0.0,
            "kbflow: normalise, exact + near duplicates (MinHash LSH), expiry | LlamaIndex: none",
        ),
        "chunk / split": (
            ks["chunk"] + ks["check_unchanged"],
            ls["splitter_init"] + ls["split"],
            "kbflow: headings-aware chunker | LlamaIndex: SentenceSplitter (model tokenizer)",
        ),
        "embed (EXTRAPOLATED)": (
            kb_embed,
            li_embed,
            f"kbflow: {kb_texts:,} unique texts x {cost['kbflow']:.4f} s + model load, drift "
            f"check, cache | LlamaIndex: {li_texts:,} nodes x {cost['llamaindex']:.4f} s + model load",
        ),
        "review + quality gate": (
            ks.get("review", 0.0) + ks.get("gate", 0.0),
            0.0,
            "kbflow: contradiction review, golden + self-check gate against the live version "
            "| LlamaIndex: none",
        ),
        "docstore / cache bookkeeping": (
            ks["account"] + ks["report"],
            ls["pipeline_overhead"] + ls["persist_pipeline"],
            "kbflow: row accounting, report | LlamaIndex: dedup by doc hash, IngestionCache "
            "hash + put, docstore, persist docstore + cache",
        ),
        "index + publish": (
            ks["index"] + ks["publish"],
            ls["index"] + ls["persist_index"],
            "kbflow: FAISS + BM25 (jieba) + calibration, atomic publish | LlamaIndex: "
            "VectorStoreIndex on FAISS (same factory) + persist",
        ),
    }
    kb_full = sum(v[0] for v in rows.values())
    li_full = sum(v[1] for v in rows.values())
    return {
        "stages": {
            k: {"kbflow_s": round(a, 2), "llamaindex_s": round(b, 2), "what": w}
            for k, (a, b, w) in rows.items()
        },
        "full": {
            "kbflow_s": round(kb_full, 1),
            "llamaindex_s": round(li_full, 1),
            "ratio": round(kb_full / li_full, 4),
            "extrapolated": True,
            "kbflow_measured_s": round(first["total_wall_s"], 1),
            "llamaindex_measured_s": round(li["total_wall_s"], 1),
        },
        "full_without_embedding": {
            "kbflow_s": round(kb_full - kb_embed, 1),
            "llamaindex_s": round(li_full - li_embed, 1),
            "ratio": round((kb_full - kb_embed) / (li_full - li_embed), 4),
        },
        "no_change": {
            # a rerun that did not find the export unchanged (the code changed under it) is no
            # no-change figure; summarise() leaves such a pair out of the no-change ratio
            "valid": kb_rerun["status"] == "unchanged" and not li_rerun["nodes"],
            "kbflow_s": kb_rerun["total_wall_s"],
            "llamaindex_s": li_rerun["total_wall_s"],
            "ratio": round(kb_rerun["total_wall_s"] / li_rerun["total_wall_s"], 4),
            "kbflow_status": kb_rerun["status"],
            "kbflow_embedded": kb_rerun["texts_embedded"],
            "llamaindex_nodes": li_rerun["nodes"],
            "llamaindex_model_load_s": li_rerun["stages"].get("model_load"),
        },
        "texts_embedded": {"kbflow": kb_texts, "llamaindex": li_texts},
        "embed_per_text_s": cost,
        "peak_rss_mib": {
            "kbflow_full": max(s["process_peak_rss_mib"] for s in first["stages"]),
            "llamaindex_build": li["peak_rss_mib"],
            "kbflow_rerun": kb_rerun["peak_rss_mib"],
            "llamaindex_rerun": li_rerun["peak_rss_mib"],
        },
        "passages": {
            "kbflow": next(
                s["summary"]["passages"] for s in first["stages"] if s["stage"] == "chunk"
            ),
            "llamaindex_nodes": li["nodes"],
            "llamaindex_documents": li["documents"],
        },
    }


def sample_from_home(home: Path, k: int, out: Path, seed: int = 0) -> int:
    """``k`` unique passage texts of the live version, seeded: the shared embedding sample."""
    import pyarrow.parquet as pq
    from bench_llamaindex import sample_texts

    from kbflow.store.versions import live_version_dir

    t = pq.read_table(live_version_dir(home / "indexes") / "passages.parquet", columns=["text"])
    texts = sample_texts(t.column("text").to_pylist(), k, seed)
    out.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return len(texts)


def _median_stages(recs: list[dict[str, Any]]) -> dict[str, float]:
    keys = recs[0]["stages"].keys()
    return {k: statistics.median(r["stages"].get(k, 0.0) for r in recs) for k in keys}


def extrapolate_llamaindex(
    measured: dict[int, dict[str, list[dict[str, Any]]]], n: int
) -> tuple[dict[str, Any], dict[str, Any], list[int]]:
    """LlamaIndex build and rerun records at ``n`` entries, every figure (stage seconds, nodes,
    peak RSS) on the straight line through the medians at the two largest measured sizes."""
    sizes = sorted(k for k, v in measured.items() if v["build"])[-2:]
    if len(sizes) < 2:
        raise RuntimeError("need LlamaIndex measured at two sizes to extrapolate")
    n1, n2 = sizes

    def line(v1: float, v2: float) -> float:
        return max(0.0, v1 + (v2 - v1) * (n - n1) / (n2 - n1))

    out = []
    for phase in ("build", "rerun"):
        a, b = measured[n1][phase], measured[n2][phase]
        sa, sb = _median_stages(a), _median_stages(b)
        rec: dict[str, Any] = {
            "stages": {k: round(line(sa[k], sb.get(k, 0.0)), 3) for k in sa},
            "extrapolated_from": sizes,
        }
        for key in ("nodes", "documents", "texts_to_embed", "peak_rss_mib", "total_wall_s"):
            if key in a[0]:
                va = statistics.median(r[key] for r in a)
                vb = statistics.median(r[key] for r in b)
                rec[key] = round(line(va, vb), 1)
        for key in ("nodes", "documents", "texts_to_embed"):
            if key in rec:
                rec[key] = int(rec[key])
        out.append(rec)
    return out[0], out[1], sizes


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(xs: list[float]) -> dict[str, float]:
        return {"min": min(xs), "median": round(statistics.median(xs), 4), "max": max(xs)}

    return {
        "full_ratio": stats([p["full"]["ratio"] for p in pairs]),
        "full_without_embedding_ratio": stats(
            [p["full_without_embedding"]["ratio"] for p in pairs]
        ),
        "no_change_ratio": stats(
            [p["no_change"]["ratio"] for p in pairs if p["no_change"].get("valid", True)]
            or [float("nan")]
        ),
        "embed_per_text_ratio": stats(
            [
                round(p["embed_per_text_s"]["kbflow"] / p["embed_per_text_s"]["llamaindex"], 4)
                for p in pairs
            ]
        ),
    }


def format_table(res: dict[str, Any]) -> str:
    lines = [f"kbflow vs LlamaIndex IngestionPipeline, sizes {res['sizes']}", ""]
    head = (
        f"{'entries':>8} {'pair':<5} {'full kbflow s':>14} {'full LI s':>11} {'ratio':>7}   "
        f"{'no-change kbflow s':>19} {'no-change LI s':>15} {'ratio':>7}"
    )
    lines.append(head)
    for size, block in res["by_size"].items():
        for i, p in enumerate(block["pairs"]):
            mark = "~" if p.get("llamaindex_extrapolated") else "*"
            lines.append(
                f"{size:>8} {i:<5} {p['full']['kbflow_s']:>13,.1f}* {p['full']['llamaindex_s']:>10,.1f}{mark} "
                f"{p['full']['ratio']:>7.3f}   {p['no_change']['kbflow_s']:>19.1f} "
                f"{p['no_change']['llamaindex_s']:>14.1f}{' ' if mark == '*' else mark} {p['no_change']['ratio']:>7.3f}"
            )
        sm = block["summary"]
        lines.append(
            f"{size:>8} median ratio: full {sm['full_ratio']['median']}, without embedding "
            f"{sm['full_without_embedding_ratio']['median']}, no-change {sm['no_change_ratio']['median']}, "
            f"embed per text {sm['embed_per_text_ratio']['median']}"
        )
        if block.get("llamaindex_killed"):
            k = block["llamaindex_killed"]
            why = (
                k["skipped"]
                if "skipped" in k
                else f"build killed at {k['rss_mib']:,.0f} MiB after {k['after_s']:.0f} s "
                f"({k['last_stage'] or 'before its first stage'})"
            )
            lines.append(f"{size:>8} LlamaIndex {why}; its figures are extrapolated (~)")
    lines.append(
        "* embedding EXTRAPOLATED from the shared sample; ~ LlamaIndex EXTRAPOLATED from smaller sizes"
    )
    last = list(res["by_size"].values())[-1]["pairs"][-1]
    lines += ["", f"{'stage (largest size, last pair)':<32} {'kbflow s':>10} {'LlamaIndex s':>13}"]
    for k, v in last["stages"].items():
        lines.append(f"{k:<32} {v['kbflow_s']:>10,.1f} {v['llamaindex_s']:>13,.1f}")
    return "\n".join(lines)


PARTS = ("kbflow", "kbflow-rerun", "llama-build", "llama-rerun", "embed-rate")


def run_kbflow_side(
    py: str, n: int, kb_work: Path, export: Path, rd: Path, run_date: str, log: Path, limit: float
) -> None:
    """Full build (``bench_stages.py --no-embed``), then the cold no-change rerun."""
    _run([py, str(HERE / "bench_stages.py"), "--entries", str(n), "--no-embed",
          "--workdir", str(kb_work), "--out", str(rd / "kbflow.json"), "--run-date", run_date,
          "--log-level", "WARNING"], log, limit, KBFLOW_MODEL_ENV)  # fmt: skip
    _run([py, str(HERE / "bench_compare.py"), "--kbflow-rerun", "--home", str(kb_work / "home"),
          "--export", str(export), "--run-date", run_date,
          "--out", str(rd / "kbflow-rerun.json")], log, limit, KBFLOW_MODEL_ENV)  # fmt: skip


def run_llama_side(
    python: Path, export: Path, store: Path, rd: Path, log: Path, limit: float
) -> dict[str, Any] | None:
    """LlamaIndex build then rerun; returns what the watchdog saw if it had to kill one."""
    try:
        for phase in ("build", "rerun"):
            _run([str(python), str(HERE / "bench_llamaindex.py"), phase, "--export", str(export),
                  "--store", str(store), "--out", str(rd / f"llama-{phase}.json")], log, limit)  # fmt: skip
    except Killed as exc:
        shutil.rmtree(store, ignore_errors=True)
        return {
            "rss_mib": round(exc.rss_mib),
            "after_s": round(exc.after_s, 1),
            "last_stage": exc.last_line,
            "limit_mib": limit,
            "what": str(exc),
        }
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--entries", default="100000", help="sizes, comma-separated (e.g. 10000,30000,100000)"
    )
    p.add_argument("--runs", type=int, default=3, help="pairs per size")
    p.add_argument("--embed-sample", type=int, default=600, metavar="K")
    p.add_argument("--bench-python", type=Path, default=DEFAULT_BENCH_PYTHON)
    p.add_argument("--mem-limit-gib", type=float, default=12.0,
                   help="kill a child whose RSS passes this (shared machine); default 12")  # fmt: skip
    p.add_argument(
        "--llama-max-entries",
        type=int,
        help="do not run LlamaIndex above this size; extrapolate it there from the two largest "
        "sizes it ran at (default: try every size, under the memory watchdog)",
    )
    p.add_argument("--workdir", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--run-date", default="2026-11-24")
    # the cold rerun phase (internal)
    p.add_argument("--kbflow-rerun", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.kbflow_rerun:
        kbflow_rerun(a.home, a.export, a.out, a.run_date)
        return 0

    problem = bench_env_problem(a.bench_python)
    if problem:
        print(f"bench_compare: {problem}", file=sys.stderr)
        return 2
    sizes = [int(x) for x in str(a.entries).split(",") if x]
    out = a.out or HERE / f"results-llamaindex-{sizes[-1]}.json"
    keep = a.workdir is not None
    work = a.workdir.resolve() if keep else Path(tempfile.mkdtemp(prefix="kbflow-bench-cmp-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "compare.log"
    py = sys.executable
    limit = a.mem_limit_gib * 1024
    command = shlex.join(
        ["python", "bench/bench_compare.py", *(sys.argv[1:] if argv is None else argv)]
    )
    load_start = os.getloadavg()
    from datetime import date

    import bench_stages as bs
    from synth_export import write_export

    by_size: dict[str, Any] = {}
    measured: dict[int, dict[str, list[dict[str, Any]]]] = {}
    versions: dict[str, Any] = {}
    try:
        for n in sizes:
            kb_work = work / f"kbflow-{n}"
            export = kb_work / f"export-{n}-s0"
            # the one export both sides read (bench_stages finds it made with its parameters)
            write_export(bs.DEFAULT_SAMPLE, export, n, seed=0,
                         run_date=date.fromisoformat(a.run_date))  # fmt: skip
            measured[n] = {"build": [], "rerun": []}
            pairs: list[dict[str, Any]] = []
            killed: dict[str, Any] | None = None
            if a.llama_max_entries is not None and n > a.llama_max_entries:
                killed = {"skipped": f"above --llama-max-entries {a.llama_max_entries}"}
            for i in range(a.runs):
                rd = work / f"{n}-pair-{i}"
                shutil.rmtree(rd, ignore_errors=True)  # no figure of an earlier call is read
                rd.mkdir(parents=True)
                li_store = rd / "llama-store"
                order = ["kbflow", "llamaindex"] if i % 2 == 0 else ["llamaindex", "kbflow"]
                t0 = time.perf_counter()
                for side in order:
                    if side == "kbflow":
                        run_kbflow_side(py, n, kb_work, export, rd, a.run_date, log, limit)
                    elif killed is None:  # once killed at a size, not tried again at that size
                        killed = run_llama_side(a.bench_python, export, li_store, rd, log, limit)
                sample = rd / "embed-sample.json"
                sample_from_home(kb_work / "home", a.embed_sample, sample)
                _run([str(a.bench_python), str(HERE / "bench_llamaindex.py"), "embed-rate",
                      "--texts", str(sample), "--out", str(rd / "embed-rate.json")], log, limit)  # fmt: skip
                parts = {
                    name: json.loads((rd / f"{name}.json").read_text(encoding="utf-8"))
                    for name in PARTS
                    if (rd / f"{name}.json").is_file()
                }
                versions.update(parts["embed-rate"]["versions"])
                li_extrapolated = "llama-build" not in parts or "llama-rerun" not in parts
                from_sizes: list[int] = []
                if li_extrapolated:
                    li_b, li_r, from_sizes = extrapolate_llamaindex(measured, n)
                else:
                    li_b, li_r = parts["llama-build"], parts["llama-rerun"]
                    measured[n]["build"].append(li_b)
                    measured[n]["rerun"].append(li_r)
                pair = combine(
                    parts["kbflow"], parts["kbflow-rerun"], li_b, li_r, parts["embed-rate"]
                )
                pair["llamaindex_extrapolated"] = li_extrapolated
                if li_extrapolated:
                    pair["llamaindex_extrapolated_from"] = from_sizes
                pair["order"] = order
                pair["pair_wall_s"] = round(time.perf_counter() - t0, 1)
                pair["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
                pair["embed_rate"] = {
                    k: parts["embed-rate"][k]
                    for k in (
                        "texts",
                        "mean_chars",
                        "seconds",
                        "texts_per_s",
                        "min_cosine_same_text",
                    )
                }
                pair["commands"] = {
                    "kbflow": parts["kbflow"]["command"],
                    "llamaindex_build": li_b.get("command", "EXTRAPOLATED"),
                    "llamaindex_rerun": li_r.get("command", "EXTRAPOLATED"),
                    "embed_rate": parts["embed-rate"]["command"],
                }
                pairs.append(pair)
                print(f"{n} pair {i}: full {pair['full']['ratio']}, no-change "
                      f"{pair['no_change']['ratio']}" + (" (LlamaIndex extrapolated)" if li_extrapolated else ""),
                      flush=True)  # fmt: skip
            by_size[str(n)] = {
                "pairs": pairs,
                "summary": summarise(pairs),
                "llamaindex_killed": killed,
            }
        res: dict[str, Any] = {
            "benchmark": "kbflow vs LlamaIndex IngestionPipeline (bench/bench_compare.py)",
            "command": command,
            "sizes": sizes,
            "runs": a.runs,
            "embed_sample": a.embed_sample,
            "mem_limit_mib": limit,
            "machine": {
                **bs.machine_info(),
                "load_avg_start": [round(x, 2) for x in load_start],
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            },
            "versions": {**bs.package_versions(), **versions},
            "code": bs.code_fingerprint(),
            "by_size": by_size,
        }
        top = by_size[str(sizes[-1])]["summary"]
        res["floors"] = [
            {
                "name": f"kbflow full build no slower than LlamaIndex at {sizes[-1]} entries (median pair ratio)",
                "value": top["full_ratio"]["median"],
                "limit": 1.0,
                "passed": top["full_ratio"]["median"] <= 1.0,
                "note": "embedding EXTRAPOLATED on both sides from one shared sample"
                + (
                    "; LlamaIndex EXTRAPOLATED from smaller sizes"
                    if by_size[str(sizes[-1])]["llamaindex_killed"]
                    else ""
                ),
            }
        ]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, ensure_ascii=False, indent=1), encoding="utf-8")
        print(format_table(res))
        print(f"\nresults: {out}")
        return 0 if res["floors"][0]["passed"] else 1
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
