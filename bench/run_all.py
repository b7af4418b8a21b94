#!/usr/bin/env python
"""Every kbflow benchmark, one after the other, then bench/RESULTS.md (what `make bench` runs).

    python bench/run_all.py [--sizes 10000,100000,1000000] [--parts stages,incremental,...]
        [--workdir bench/.work] [--results-dir bench] [--report-only]

Parts, in this order (each a child process, so each has its own peak memory; heavy ones never
overlap):

* ``stages``: ``bench_stages.py`` at each of ``--sizes``: first run + no-change rerun, per-stage
  wall/CPU seconds, items/s, peak RSS. Embedding: ``--embed-sample`` texts for real, the rest
  extrapolated (marked). Sizes above ``--cpu-only-above`` (default 300k) run the CPU stages only
  (``--stop-after chunk``) under a memory watchdog; the rest of their run is extrapolated from
  the largest full size in RESULTS.md (marked).
* ``incremental``: ``bench_incremental.py`` at ``--incremental-size``.
* ``compare``: ``bench_compare.py`` (kbflow vs LlamaIndex, ``--compare-runs`` pairs per size of
  ``--compare-sizes``), needs ``.venv-bench`` (``make bench-venv``); skipped with a reason if absent.
* ``search``: ``bench_search.py`` on the ``stages`` run's home at ``--search-size``.
* ``mining``: ``bench_mining.py --searches --mining-searches``.
* ``embed``: ``bench_embed.py --n --embed-n`` (openai backend vs local vs plain encode).
* ``models``: ``bench_models.py`` (the two bundled models on the same real passages, alternated;
  with ``--models-baseline REF``, the kb_zh nightly of that code against the working tree).

Results: ``results-*.json`` in ``--results-dir``, and RESULTS.md rendered from whatever JSON is
there (``--report-only`` renders without running anything). Every figure in RESULTS.md comes
from one of those files and is printed with the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARTS = ("stages", "incremental", "compare", "search", "mining", "embed", "models")


# --- running the parts -----------------------------------------------------------------------


def _child(cmd: list[str], log: Path, mem_limit_mib: float | None = None) -> dict[str, Any]:
    """Run one benchmark; returns its outcome (never raises for a benchmark's own failure)."""
    from bench_compare import Killed, _run

    t0 = time.perf_counter()
    print(f"[run_all] {shlex.join(cmd)}", flush=True)
    try:
        _run(cmd, log, mem_limit_mib)
        outcome: dict[str, Any] = {"ok": True}
    except Killed as exc:
        outcome = {"ok": False, "killed": True, "rss_mib": round(exc.rss_mib),
                   "after_s": round(exc.after_s, 1), "last_stage": exc.last_line}  # fmt: skip
    except RuntimeError as exc:
        outcome = {"ok": False, "error": str(exc)}
    outcome["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"[run_all]   -> {outcome}", flush=True)
    return outcome


def extract_code(work: Path, ref: str = "HEAD") -> Path:
    """``ref``'s code (src/, flows/, tasks/, deployments/, sql/, bench/) extracted once under
    ``work/code-<sha>/``; with ``snap/src`` and ``snap`` first on ``PYTHONPATH`` a child runs
    that code, not the working tree's. The folders are also linked under their installed
    names (``kbflow_flows`` -> ``flows``, ...) for code that imports them so."""
    sha = subprocess.run(["git", "rev-parse", "--short=12", ref], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    snap = work / f"code-{sha}"
    if not (snap / "src" / "kbflow" / "__init__.py").is_file():
        snap.mkdir(parents=True, exist_ok=True)
        listed = subprocess.run(["git", "ls-tree", "--name-only", sha], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.split()  # fmt: skip
        folders = [
            f
            for f in ("src", "flows", "tasks", "deployments", "sql", "bench", "examples")
            if f in listed
        ]
        archive = subprocess.run(["git", "archive", sha, *folders],
                                 cwd=ROOT, check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
        for folder in ("flows", "tasks", "deployments"):
            if (snap / folder / "__init__.py").is_file():
                (snap / f"kbflow_{folder}").symlink_to(folder)
    return snap


def freeze_code(work: Path, ref: str = "HEAD") -> str:
    """Extract ``ref``'s src/, flows/, tasks/ and sql/ under ``work`` and put them first on the
    children's PYTHONPATH: the tree is shared and edited while benchmarks run, and one set of
    figures must come from one version of the code. Returns what was frozen."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    snap = extract_code(work, ref)
    sha = snap.name.removeprefix("code-")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(snap / "src"), str(snap), *([old] if old else [])]
    )
    label = f"git {sha} ({git('log', '-1', '--format=%s', sha)[:80]})"
    os.environ["KBFLOW_BENCH_CODE"] = label
    return label


def run_parts(a: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    code = freeze_code(work, a.code_ref) if a.code == "head" else "working tree"
    print(f"[run_all] measuring code: {code}", flush=True)
    res = a.results_dir.resolve()
    log = work / "run_all.log"
    done: dict[str, Any] = {}
    sizes = [int(x) for x in a.sizes.split(",") if x]

    def want(part: str) -> bool:
        return part in a.parts

    if want("stages"):
        for n in sizes:
            out = res / f"results-{n}.json"
            cmd = [py, str(HERE / "bench_stages.py"), "--entries", str(n),
                   "--workdir", str(work / f"stages-{n}"), "--out", str(out),
                   "--log-level", "WARNING"]  # fmt: skip
            limit = None
            if n > a.cpu_only_above:
                cmd += ["--no-embed", "--stop-after", "chunk"]
                limit = a.mem_limit_gib * 1024
            else:
                cmd += ["--embed-sample", str(a.embed_sample)]
            outcome = _child(cmd, log, limit)
            if not outcome["ok"]:
                out.write_text(json.dumps({"entries": n, "failed": outcome,
                                           "command": shlex.join(["python", *cmd[1:]])}, indent=1))  # fmt: skip
            done[f"stages-{n}"] = outcome
    if want("incremental"):
        n = a.incremental_size
        done["incremental"] = _child(
            [py, str(HERE / "bench_incremental.py"), "--entries", str(n),
             "--workdir", str(work / f"incremental-{n}"),
             "--out", str(res / f"results-incremental-{n}.json"), "--log-level", "WARNING"],
            log,
        )  # fmt: skip
    if want("compare"):
        from bench_compare import DEFAULT_BENCH_PYTHON, bench_env_problem

        problem = bench_env_problem(DEFAULT_BENCH_PYTHON)
        if problem:
            print(f"[run_all] compare skipped: {problem}", flush=True)
            done["compare"] = {"ok": False, "skipped": problem}
        else:
            top = a.compare_sizes.split(",")[-1]
            cmd = [py, str(HERE / "bench_compare.py"), "--entries", a.compare_sizes,
                   "--runs", str(a.compare_runs), "--workdir", str(work / "compare"),
                   "--mem-limit-gib", str(a.mem_limit_gib),
                   "--out", str(res / f"results-llamaindex-{top}.json")]  # fmt: skip
            if a.llama_max_entries:
                cmd += ["--llama-max-entries", str(a.llama_max_entries)]
            done["compare"] = _child(cmd, log)
    if want("search"):
        home = work / f"stages-{a.search_size}" / "home"
        if not (home / "indexes" / "CURRENT").is_file():
            done["search"] = {"ok": False, "skipped": f"no live version in {home}: run the "
                              f"stages part at {a.search_size} first"}  # fmt: skip
        else:
            done["search"] = _child(
                [py, str(HERE / "bench_search.py"), "--home", str(home),
                 "--out", str(res / f"results-search-{a.search_size}.json")],
                log,
            )  # fmt: skip
    if want("mining"):
        done["mining"] = _child(
            [py, str(HERE / "bench_mining.py"), "--searches", str(a.mining_searches),
             "--out", str(res / "results-mining.json")],
            log,
        )  # fmt: skip
    if want("embed"):
        done["embed"] = _child(
            [py, str(HERE / "bench_embed.py"), "--n", str(a.embed_n),
             "--json", str(res / "results-embed.json")],
            log,
        )  # fmt: skip
    if want("models"):
        cmd = [py, str(HERE / "bench_models.py"), "--n", str(a.embed_n),
               "--workdir", str(work / "models"), "--out", str(res / "results-models.json")]  # fmt: skip
        if a.models_baseline:
            cmd += ["--baseline", a.models_baseline]
        done["models"] = _child(cmd, log)
    return done


# --- RESULTS.md ------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _cmd(c: str) -> str:
    """A recorded command, with this checkout's absolute paths made relative."""
    return c.replace(str(ROOT) + "/", "")


def _stage_rows(r: dict[str, Any]) -> list[str]:
    rows = []
    for label, key in (("first", "first_run"), ("rerun", "rerun")):
        run = r.get(key)
        if not run:
            continue
        for s in run["stages"]:
            if s.get("not_a_stage"):
                continue
            name = s["stage"] + (" **(extrapolated)**" if s.get("extrapolated") else "")
            if s.get("not_measured"):
                name += " (vectors synthetic: overhead only)"
            rows.append(
                f"| {label} | {name} | {_f(s['wall_s'], 2)} | {_f(s['cpu_s'], 2)} | "
                f"{_f(s.get('items'), 0) if s.get('items') is not None else '–'} "
                f"{s.get('item', '')} | {_f(s.get('rate'))} | {_f(s['peak_rss_mib'], 0)} | "
                f"{_f(s['load1'], 2)} |"
            )
        total = _f(run["total_wall_s"], 1) + (
            " **(extrapolated)**" if run["total_extrapolated"] else ""
        )
        rows.append(f"| {label} | **total** ({run['status']}) | {total} | | | | | |")
    return rows


def _stage_files(res: Path) -> list[tuple[Path, int, str]]:
    """Stage benchmark results: ``results-<n>.json`` (the sample's variants) and
    ``results-<n>-realistic.json`` (``bench_stages.py --realistic``), with their size and label."""
    found = []
    for p in res.glob("results-*.json"):
        stem = p.stem.removeprefix("results-")
        size, _, kind = stem.partition("-")
        if size.isdigit() and kind in ("", "realistic"):
            found.append((p, int(size), ", realistic export" if kind else ""))
    return sorted(found, key=lambda f: (f[1], f[2]))


def section_stages(res: Path) -> list[str]:
    files = [p for p, _, _ in _stage_files(res)]
    out = ["## Nightly stages per size", ""]
    if not files:
        return [*out, "_No stage results yet: `python bench/run_all.py --parts stages`._", ""]
    out += [
        "Our stage functions in `flows/nightly.py`'s order, in one process, without Prefect "
        "(the real `kbflow nightly` adds ~8 s of Prefect start-up). Items: entries for "
        "validate/clean/chunk, unique passage texts for embed, passages for index. Peak RSS is "
        "the stage's own (high-water mark reset before each stage). `load1` is the 1-minute load "
        "average after the stage (2 cores: above 2 means the stage waited for a core).",
        "",
    ]
    full: dict[str, Any] | None = None
    for p in files:
        r = _load(p)
        if r is None:
            continue
        size, _, kind = p.stem.removeprefix("results-").partition("-")
        n = int(size)
        out.append(f"### {n:,} entries{', realistic export' if kind else ''} (`{p.name}`)")
        out.append("")
        if r.get("failed"):
            fo = r["failed"]
            out.append(f"Command: `{_cmd(r['command'])}`")
            out.append("")
            if fo.get("killed"):
                out.append(
                    f"**Did not finish**: stopped by the memory watchdog at {fo['rss_mib']:,} MiB "
                    f"after {fo['after_s']:,} s (last stage completed: `{fo.get('last_stage') or 'none'}`)."
                )
            else:
                out.append(f"**Did not finish**: {fo.get('error')}")
            out.append("")
            continue
        m = r["machine"]
        out.append(f"Command: `{_cmd(r['command'])}`  ")
        out.append(
            f"Load average start/end: {m['load_avg_start'][0]} / {m['load_avg_end'][0]}; "
            f"embed mode `{r['embed_mode']}`"
            + (f" (sample {r['embed_sample']})" if r.get("embed_sample") else "")
            + (f"; stopped after `{r['stop_after']}`" if r.get("stop_after") else "")
            + f"; export {r['export']['bytes'] / 1e6:,.0f} MB in {r['export']['seconds']} s"
            + ("" if not r["export"].get("reused") else " (reused)")
        )
        out.append("")
        out.append("| run | stage | wall s | CPU s | items | per s | peak RSS MiB | load1 |")
        out.append("|---|---|---:|---:|---|---:|---:|---:|")
        out += _stage_rows(r)
        out.append("")
        pre = (r["first_run"].get("prefill") or {}) if r.get("first_run") else {}
        if pre.get("sampled"):
            out.append(
                f"Embed **extrapolated**: {pre['sampled']:,} of {pre['to_embed']:,} texts embedded "
                f"for real in {pre['sample_s']} s ({pre['sample_rate']}/s); the embed row is the "
                f"measured stage (all cached) + model load ({pre['model_load_s']} s) + that rate x "
                "all texts."
            )
            out.append("")
        if r.get("accounting"):
            acc = r["accounting"]
            out.append(
                "Row accounting: "
                + ", ".join(
                    f"{k} {_f(acc[k])}"
                    for k in (
                        "input",
                        "indexed",
                        "duplicate",
                        "stale",
                        "unpublished",
                        "quarantined",
                    )
                )
                + f"; sums to the export: {acc['sums']}."
            )
            out.append("")
        if r.get("floors"):
            for fl in r["floors"]:
                mark = {True: "PASS", False: "FAIL", None: "n/a"}[fl["passed"]]
                note = fl.get("note") or ""
                at_1m = fl["name"].endswith("at 1M entries")  # issue 19's, judged at 1M
                if n > 100_000 and fl["unit"] != "ratio" and not at_1m:  # defined at 100k
                    mark, note = "n/a", "the floor is defined at 100,000 entries"
                if fl["name"].startswith("validate") and r.get("first_run") and not at_1m:
                    st = {x["stage"]: x for x in r["first_run"]["stages"]}
                    cpu = sum(st[k]["cpu_s"] for k in ("validate", "clean", "chunk") if k in st)
                    note = (note + "; " if note else "") + f"CPU {cpu:.1f} s"
                out.append(
                    f"- [{mark}] {fl['name']}: {fl['value']} {fl['unit']} (limit {fl['limit']})"
                    + (f" - {note}" if note else "")
                )
            out.append("")
        if r.get("rerun") and r.get("first_run", {}).get("status") == "published":
            full = r
        if r.get("stop_after") and full is not None:
            out += _extrapolate_rest(r, full)
    return out


def _extrapolate_rest(r: dict[str, Any], full: dict[str, Any]) -> list[str]:
    """The stages a CPU-only run did not reach, from the largest full run's rates. Marked."""
    n = r["export"]["entries"]
    fs = {s["stage"]: s for s in full["first_run"]["stages"]}
    pre = full["first_run"].get("prefill") or {}
    chunk = next(s for s in r["first_run"]["stages"] if s["stage"] == "chunk")
    passages = chunk["summary"]["passages"]
    texts = r["first_run"].get("unique_texts")
    lines = [
        f"**Extrapolated** rest of the {n:,}-entry first run, from the "
        f"{full['export']['entries']:,}-entry run's rates (linear; indicative only):",
        "",
        "| stage | basis | seconds |",
        "|---|---|---:|",
    ]
    measured = sum(s["wall_s"] for s in r["first_run"]["stages"])
    total = measured
    if pre.get("sample_rate") and texts:
        embed_s = texts / pre["sample_rate"]
        total += embed_s
        lines.append(
            f"| embed | {texts:,} unique texts / {pre['sample_rate']} texts/s (the sample's rate) | {embed_s:,.0f} |"
        )
    idx = fs.get("index")
    if idx and idx.get("rate"):
        index_s = passages / idx["rate"]
        total += index_s
        lines.append(
            f"| index | {passages:,} passages / {idx['rate']:,} passages/s (HNSW32 at "
            f"{full['export']['entries']:,}; above 1M vectors kbflow picks IVF, so this is a rough figure) | {index_s:,.0f} |"
        )
    lines.append(
        f"| **total** | measured stages {measured:,.1f} s + the above | **{total:,.0f}** |"
    )
    lines.append("")
    return lines


def section_incremental(res: Path) -> list[str]:
    out = ["## Incremental reruns", ""]
    files = sorted(res.glob("results-incremental-*.json"))
    if not files:
        return [*out, "_No results yet: `python bench/run_all.py --parts incremental`._", ""]
    for p in files:
        r = _load(p)
        if r is None:
            continue
        out.append(
            f"{r['entries']:,} entries, one data home, one run after the other (`{p.name}`).  "
        )
        out.append(f"Command: `{_cmd(r['command'])}`  ")
        m = r["machine"]
        out.append(f"Load average start/end: {m['load_avg_start'][0]} / {m['load_avg_end'][0]}")
        out.append("")
        out.append(
            "| run | status | wall s | vs full build | passages | texts embedded (for real) | embedded / full passages | index build | main stages s | peak RSS MiB (stage) |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---|---|---:|")
        for name, s in r["scenarios"].items():
            st = s["stages"]
            main = ", ".join(
                f"{k} {st[k]:.1f}"
                for k in ("validate", "clean", "chunk", "embed", "index", "review", "gate")
                if k in st
            )
            build = (s.get("index_build") or {}).get("mode", "")
            out.append(
                f"| {name} | {s['status']} | {_f(s['total_wall_s'])}{' **(extrapolated)**' if s['total_extrapolated'] else ''} | "
                f"{_f(s.get('time_vs_full', 1.0), 4)} | {_f(s['passages'])} | {_f(s['texts_embedded'])} ({_f(s['texts_embedded_for_real'])}) | "
                f"{_f(s.get('embedded_vs_full_passages', 1.0), 5)} | {build} | {main} | "
                f"{_f(s['peak_rss_mib'], 0)}{' (' + s['peak_stage'] + ')' if s.get('peak_stage') else ''} |"
            )
        out.append("")
        for fl in r["floors"]:
            mark = {True: "PASS", False: "FAIL", None: "n/a"}[fl["passed"]]
            out.append(f"- [{mark}] {fl['name']}: {fl['value']} (limit {fl['limit']})")
        out.append("")
        out.append(
            "The full build's embed stage is extrapolated from a sample (as in the stage table); "
            "every rerun is measured, its new texts embedded for real when at most "
            f"{r['embed_cap']:,} (else sampled and marked). A changed run builds its version "
            "incrementally when the change is small (index build column: the live version's "
            'dense segment, tokens and calibration reused; README, "Small changes, small runs").'
        )
        out.append("")
    return out


def section_compare(res: Path) -> list[str]:
    out = ["## Side by side: LlamaIndex IngestionPipeline", ""]
    files = sorted(res.glob("results-llamaindex-*.json"))
    if not files:
        return [
            *out,
            "_No results yet: `make bench-venv && python bench/run_all.py --parts compare`._",
            "",
        ]
    for p in files:
        r = _load(p)
        if r is None:
            continue
        v = r["versions"]
        out.append(f"`{p.name}`. Command: `{_cmd(r['command'])}`  ")
        out.append(
            f"LlamaIndex: llama-index-core {v.get('llama-index-core')}, "
            f"llama-index-embeddings-huggingface {v.get('llama-index-embeddings-huggingface')}, "
            f"llama-index-vector-stores-faiss {v.get('llama-index-vector-stores-faiss')} "
            f"(in `.venv-bench`; same torch {v.get('torch')}, sentence-transformers "
            f"{v.get('sentence-transformers')}, faiss-cpu {v.get('faiss-cpu')}). Load average "
            f"start/end {r['machine']['load_avg_start'][0]} / {r['machine']['load_avg_end'][0]}."
        )
        out.append("")
        out.append(
            "| entries | pair | order | full: kbflow s | full: LlamaIndex s | **ratio** | without embedding: ratio | no-change: kbflow s | no-change: LlamaIndex s | **ratio** | texts embedded kbflow / LlamaIndex | peak RSS MiB kbflow / LlamaIndex |"
        )
        out.append("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for size, block in r["by_size"].items():
            for i, pr in enumerate(block["pairs"]):
                li_x = " **(LI extrapolated)**" if pr.get("llamaindex_extrapolated") else ""
                te = pr["texts_embedded"]
                pk = pr["peak_rss_mib"]
                out.append(
                    f"| {int(size):,} | {i} | {'→'.join(x[:2] for x in pr['order'])} | {_f(pr['full']['kbflow_s'])} | "
                    f"{_f(pr['full']['llamaindex_s'])}{li_x} | **{pr['full']['ratio']:.3f}** | "
                    f"{pr['full_without_embedding']['ratio']:.3f} | {_f(pr['no_change']['kbflow_s'])} | "
                    f"{_f(pr['no_change']['llamaindex_s'])}{li_x} | **{pr['no_change']['ratio']:.3f}** | "
                    f"{te['kbflow']:,} / {te['llamaindex']:,} | {_f(pk['kbflow_full'], 0)} / {_f(pk['llamaindex_build'], 0)} |"
                )
            sm = block["summary"]
            out.append(
                f"| {int(size):,} | **median** | | | | **{sm['full_ratio']['median']}** | "
                f"{sm['full_without_embedding_ratio']['median']} | | | **{sm['no_change_ratio']['median']}** | "
                f"embed s/text ratio {sm['embed_per_text_ratio']['median']} | |"
            )
        out.append("")
        out.append(
            "Full-build times include an **extrapolated** embedding stage on both sides "
            "(each side's own measured seconds per text on the same sample x the texts it embeds)."
        )
        for size, block in r["by_size"].items():
            k = block.get("llamaindex_killed")
            if k:
                why = k.get("skipped") or (
                    f"its build was stopped by the memory watchdog at {k['rss_mib']:,} MiB after "
                    f"{k['after_s']:,} s (last completed stage: `{k.get('last_stage') or 'none'}`)"
                )
                li_peak = block["pairs"][0]["peak_rss_mib"]["llamaindex_build"]
                out.append(
                    f"At {int(size):,} entries LlamaIndex was not measured: {why}; its "
                    "figures there are **extrapolated** (straight line through its medians at the "
                    f"two largest sizes it ran at, {block['pairs'][0].get('llamaindex_extrapolated_from')}). "
                    f"Its peak memory there, extrapolated the same way, is {_f(li_peak, 0)} MiB "
                    f"(this machine: {r['machine'].get('memory_total_gib')} GiB, shared): the "
                    "in-memory docstore and IngestionCache hold every node with its vector and are "
                    "each persisted as one whole JSON file."
                )
        out.append("")
        last_size = list(r["by_size"])[-1]
        pr = r["by_size"][last_size]["pairs"][-1]
        out.append(f"Per stage, {int(last_size):,} entries, last pair (seconds):")
        out.append("")
        out.append("| stage | kbflow | LlamaIndex | what each side does |")
        out.append("|---|---:|---:|---|")
        for k, s in pr["stages"].items():
            what = s["what"].replace(" | ", "<br>")
            out.append(f"| {k} | {_f(s['kbflow_s'])} | {_f(s['llamaindex_s'])} | {what} |")
        out.append("")
        er = pr["embed_rate"]
        out.append(
            f"Embedding sample: {er['texts']} texts (mean {er['mean_chars']} chars) drawn from kbflow's "
            f"passages, both sides A B B A in one process: kbflow {er['texts_per_s']['kbflow']}/s, "
            f"LlamaIndex {er['texts_per_s']['llamaindex']}/s; identical vectors (min cosine {er['min_cosine_same_text']})."
        )
        out.append("")
        for fl in r["floors"]:
            out.append(
                f"- [{'PASS' if fl['passed'] else 'FAIL'}] {fl['name']}: {fl['value']} (limit {fl['limit']}; {fl['note']})"
            )
        out.append("")
    return out


def section_search(res: Path) -> list[str]:
    out = ["## Search latency", ""]
    files = sorted(res.glob("results-search-*.json"))
    if not files:
        return [*out, "_No results yet: `python bench/run_all.py --parts search`._", ""]
    for p in files:
        r = _load(p)
        if r is None:
            continue
        ip, h = r["in_process"], r["http"]
        out.append(
            f"`{p.name}`: {r['queries']} queries ({r['distinct_queries']} distinct) after "
            f"{r['warmup']} warm-up, k={r['k']}, one at a time, over a version of "
            f"{ip['passages']:,} passages. Command: `{_cmd(r['command'])}`. Load average "
            f"{r['load_avg'][0]} / {r['load_avg'][1]}."
        )
        out.append("")
        out.append(
            "| path | P50 ms | P95 ms | P99 ms | mean ms | max ms | fallback levels | hand-off rate |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---|---:|")
        out.append(
            f"| in-process `Searcher.search` | {ip['p50_ms']} | {ip['p95_ms']} | {ip['p99_ms']} | "
            f"{ip['mean_ms']} | {ip['max_ms']} | {ip['fallback_levels']} | {ip['handoff_rate']} |"
        )
        if "p50_ms" in h:
            out.append(
                f"| HTTP `POST /search` (client side) | {h['p50_ms']} | {h['p95_ms']} | {h['p99_ms']} | "
                f"{h['mean_ms']} | {h['max_ms']} | {h['fallback_levels']} | {h['handoff_rate']} |"
            )
            out.append("")
            out.append(
                f"HTTP: `{h['command']}`, healthy {h['start_to_healthy_s']} s after start, "
                f"server RSS {h.get('server_rss_mib')} MiB."
            )
        else:
            out.append("")
            out.append(f"HTTP not measured: {h.get('skipped')}.")
        out.append("")
        out.append(
            "The index holds mostly synthetic vectors (the stage benchmark's sampled "
            "embedding), so answers and hand-off rate mean nothing; latency does."
        )
        out.append("")
    return out


def section_mining(res: Path) -> list[str]:
    out = ["## Weekly mining", ""]
    r = _load(res / "results-mining.json")
    if r is None:
        return [*out, "_No results yet: `python bench/run_all.py --parts mining`._", ""]
    out.append(
        f"`results-mining.json`: {r['searches']:,} simulated searches in the week "
        f"(+10% the week before), click rate {r['click_rate']}. Command: "
        f"`python bench/bench_mining.py --searches {r['searches']} --click-rate {r['click_rate']}`."
    )
    out.append("")
    out.append("| step | seconds |")
    out.append("|---|---:|")
    for k in ("generate_s", "mine_s", "export_s", "report_s", "total_s"):
        if k in r:
            out.append(f"| {k.removesuffix('_s')} | {r[k]} |")
    out.append("")
    out.append(
        f"Peak RSS: mine {r.get('mine_peak_rss_mb')} MB, generate {r.get('generate_peak_rss_mb')} MB; "
        f"logs {r.get('logs_mb')} MB; floors (mine <= 60 s, <= 4 GB): {'PASS' if r.get('floor_ok') else 'FAIL'}."
    )
    out.append("")
    g = _load(res / "results-mining-segments.json")
    if g is not None and "events_searches" in g:
        out.append(
            f"From Parquet log segments (`results-mining-segments.json`, `{g.get('command')}`): "
            f"{g['events_searches']:,} searches and {g['events_clicks']:,} clicks in "
            f"{g['segment_files']:,} files ({g['segment_processes']} processes x "
            f"{g['segment_interval_s']} s), logs.duckdb holding none: mine {g['mine_s']} s, "
            f"peak {g['mine_peak_rss_mb']} MB, {g['answers']:,} answers, {g['gap_clusters']:,} "
            f"gap clusters; floors: {'PASS' if g.get('floor_ok') else 'FAIL'}."
        )
        out.append("")
    elif g is not None:  # the review queue's bench writes its own fields (n_queries, suggestions)
        out.append(
            f"From Parquet log segments (`results-mining-segments.json`, `{g.get('command')}`): "
            f"{g['n_queries']:,} searches and {g['n_clicks']:,} clicks, every suggestion kind: "
            f"mine {g['mine_s']} s, peak {g['mine_peak_rss_mb']} MB, {g['answers']:,} answers, "
            f"{g['gap_clusters']:,} gap clusters, {g.get('suggestions', 0):,} suggestions; "
            f"floors: {'PASS' if g.get('floor_ok') else 'FAIL'}."
        )
        out.append("")
    return out


def section_serve_load(res: Path) -> list[str]:
    out = ["## Serving under load", ""]
    r = _load(res / "results-serve-load.json")
    if r is None:
        return [*out, "_No results yet: `python bench/bench_serve_load.py --home DIR`._", ""]
    out.append(
        f"`results-serve-load.json` (`{r['command']}`), version {r['version']}: "
        f"{r['seconds_per_cell']:.0f} s per cell, {r.get('seconds_per_publish_cell', 0):.0f} s "
        "per publish cell; clients share the machine's cores with the service."
    )
    out.append("")
    out.append("| cell | req/s | P50 ms | P95 ms | errors | logged / answered | switch |")
    out.append("|---|---:|---:|---:|---:|---|---|")
    for c in r["cells"]:
        sw = c.get("switch") or {}
        switch = (
            f"published at {sw['published_at_s']} s, new from +{sw['first_new_after_s']} s"
            if sw
            else ""
        )
        out.append(
            f"| {c['cell']} | {c['requests_per_s']} | {c['p50_ms']} | {c['p95_ms']} | "
            f"{c['errors']} | {c['logged_events']:,} / {c['requests']:,} | {switch} |"
        )
    out.append("")
    out.append(
        f"Every answered request logged exactly once: {'yes' if r['all_logged'] else 'NO'}; "
        f"zero errors: {'yes' if r['zero_errors'] else 'NO'}."
    )
    out.append("")
    return out


def section_fleet(res: Path) -> list[str]:
    out = ["## Many KBs on a work pool", ""]
    r = _load(res / "results-fleet.json")
    if r is None:
        return [*out, "_No results yet: `python bench/bench_fleet.py --kbs 30 --workers 1,2`._", ""]
    limits = r["limits"]
    out.append(
        f"`results-fleet.json` (`{r['command']}`): {r['kbs']} small KBs through `kb-fleet` on a "
        f"local work pool, limits {', '.join(f'{k} {v}' for k, v in limits.items())}, "
        f"settings {r.get('defaults') or {}}; one KB's export is broken, one KB's gate blocks."
    )
    out.append("")
    out.append(
        "| workers | wall s | published / blocked / failed | KBs' stage seconds (sum) | "
        "embed slot waits s | most at once: " + " / ".join(limits) + " |"
    )
    out.append("|---:|---:|---|---:|---:|---|")
    for run in r["runs"]:
        st = run["states"]
        out.append(
            f"| {run['workers']} | {run['wall_s']} | {st.get('published', 0)} / "
            f"{st.get('blocked', 0)} / {st.get('failed', 0)} | {run['run_seconds_sum']} | "
            f"{run['limits']['embed']['waited_s']} | "
            + " / ".join(
                f"{run['limits'][k]['most_at_once']} (limit {v})" for k, v in limits.items()
            )
            + " |"
        )
    out.append("")
    if "speedup" in r:
        out.append(f"Speedup, first worker count over the last: {r['speedup']}x (one run).")
        out.append("")
    return out


def section_embed(res: Path) -> list[str]:
    out = ["## Embedding backends", ""]
    r = _load(res / "results-embed.json")
    if r is None:
        return [*out, "_No results yet: `python bench/run_all.py --parts embed`._", ""]
    pp = r["passages_per_s"]
    out.append(
        f"`results-embed.json`: {r['n']:,} passages. Command: `python bench/bench_embed.py --n {r['n']} --json bench/results-embed.json`."
    )
    out.append("")
    out.append("| path | passages/s |")
    out.append("|---|---:|")
    for k, v in pp.items():
        out.append(f"| {k} | {v:.1f} |")
    out.append("")
    out.append(
        "Ratios: "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["ratios"].items())
        + " (floors 0.8 and 0.9)."
    )
    out.append("")
    return out


def section_models(res: Path) -> list[str]:
    out = ["## The bundled models", ""]
    r = _load(res / "results-models.json")
    if r is None:
        return [*out, "_No results yet: `python bench/run_all.py --parts models`._", ""]
    t = r["throughput"]
    out += [
        f"`results-models.json`: {t['passages']:,} passages ({r['texts']}, mean "
        f"{t['mean_chars']} characters), embedded by both models in {t['chunks']} chunks, "
        f"alternating which goes first. Command: `{r['command']}`.",
        "",
        "| model | passages/s | characters/s | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name, m in t["models"].items():
        out.append(f"| {name} | {m['passages_per_s']} | {m['chars_per_s']:,} | {m['seconds']} |")
    out += ["", f"multilingual-e5-small / all-MiniLM-L6-v2: **{t['e5_vs_minilm']}**.", ""]
    n = r.get("nightly_kb_zh")
    if n:
        stages = [
            s
            for s in n["median_stage_s"]["current"]
            if n["median_stage_s"]["current"][s] or n["median_stage_s"]["baseline"].get(s)
        ]
        out += [
            f"kb_zh nightly (`kbflow nightly`, fresh data home, {n['pairs']} pairs alternated), "
            f"baseline `{n['baseline']}` against the working tree; medians in seconds:",
            "",
            "| | wall | " + " | ".join(stages) + " |",
            "|---|---:|" + "---:|" * len(stages),
        ]
        for label in ("baseline", "current"):
            st = n["median_stage_s"][label]
            model = n["runs"][label][0].get("model_key")
            out.append(
                f"| {label} ({model}) | {n['median_wall_s'][label]} | "
                + " | ".join(str(st.get(s, "")) for s in stages)
                + " |"
            )
        out += ["", f"current / baseline wall: **{n['current_vs_baseline_wall']}**.", ""]
    return out


def section_summary(res: Path) -> list[str]:
    """The headline figures, each from its section below."""
    rows = []
    for p, size, label in _stage_files(res):
        r = _load(p)
        if not r or r.get("failed"):
            continue
        first = r["first_run"]
        st = {s["stage"]: s for s in first["stages"]}
        vcc = sum(st[k]["wall_s"] for k in ("validate", "clean", "chunk") if k in st)
        peak = max(s["process_peak_rss_mib"] for s in first["stages"])
        if r.get("stop_after"):
            tail = f"stopped after {r['stop_after']} (the rest extrapolated below)"
        else:
            tail = f"full build {_f(first['total_wall_s'], 0)} s" + (
                " (embed extrapolated)" if first["total_extrapolated"] else ""
            )
            if r.get("rerun"):
                tail += f", no-change rerun {_f(r['rerun']['total_wall_s'])} s"
        rows.append(
            f"- **{size:,} entries{label}**: validate+clean+chunk {vcc:,.1f} s; {tail}; "
            f"peak RSS {peak:,.0f} MiB."
        )
    for p in sorted(res.glob("results-incremental-*.json")):
        r = _load(p)
        if not r:
            continue
        sc = r["scenarios"]
        parts = [
            f"{name} {sc[name]['time_vs_full']:.3f} of the full build's time and "
            f"{sc[name]['texts_embedded']:,} texts embedded"
            for name in ("no_change", "changed_1pct", "changed_10pct", "deleted_one")
            if name in sc
        ]
        floors = ", ".join(
            f"{f['name']}: {({True: 'PASS', False: 'FAIL'}).get(f['passed'], 'n/a')}"
            for f in r["floors"]
        )
        rows.append(
            f"- **Incremental, {r['entries']:,} entries**: " + "; ".join(parts) + f". {floors}."
        )
    for p in sorted(res.glob("results-llamaindex-*.json")):
        r = _load(p)
        if not r:
            continue
        for size, block in r["by_size"].items():
            sm = block["summary"]
            x = " (LlamaIndex extrapolated there)" if block.get("llamaindex_killed") else ""
            rows.append(
                f"- **kbflow / LlamaIndex at {int(size):,} entries** (median of "
                f"{len(block['pairs'])} pairs): full build {sm['full_ratio']['median']} "
                f"(embedding extrapolated; without embedding "
                f"{sm['full_without_embedding_ratio']['median']}), no-change rerun "
                f"{sm['no_change_ratio']['median']}{x}."
            )
    for p in sorted(res.glob("results-search-*.json")):
        r = _load(p)
        if not r:
            continue
        ip, h = r["in_process"], r["http"]
        http = f"; HTTP P50 {h['p50_ms']} / P95 {h['p95_ms']} ms" if "p50_ms" in h else ""
        rows.append(
            f"- **Search** over {ip['passages']:,} passages: in process P50 {ip['p50_ms']} / "
            f"P95 {ip['p95_ms']} ms{http}."
        )
    m = _load(res / "results-mining.json")
    if m:
        rows.append(
            f"- **Mining**, {m['searches']:,} searches: mine {m['mine_s']} s, "
            f"peak {m['mine_peak_rss_mb']} MB."
        )
    return ["## Summary", "", *(rows or ["_Nothing measured yet._"]), ""]


def write_results(res: Path, ran: dict[str, Any] | None = None) -> Path:
    import bench_stages as bs

    m = bs.machine_info()
    v = bs.package_versions()
    li = {}
    for p in res.glob("results-llamaindex-*.json"):
        r = _load(p) or {}
        li = {
            k: r.get("versions", {}).get(k)
            for k in (
                "llama-index-core",
                "llama-index-embeddings-huggingface",
                "llama-index-vector-stores-faiss",
                "marshmallow",
            )
        }
    lines = [
        "# kbflow benchmark results",
        "",
        f"Rendered {datetime.now(UTC).isoformat(timespec='seconds')} by `python bench/run_all.py` from the "
        "`results-*.json` files beside this one; every figure below comes from one of them, with the "
        "command that produced it. Figures marked **extrapolated** were not measured in full (see each "
        "section). How to rerun: `make bench` (all sizes) or `make bench SIZES=10000` (see README.md).",
        "",
        "## Machine",
        "",
        f"- {m['cpu_model']}, {m['nproc']} vCPU ({m['cpus_usable']} usable), {m['memory_total_gib']} GiB RAM, "
        f"{m['platform']}, Python {m['python']}.",
        "- **Shared**: other engineers' agents ran tests and benchmarks on the same 2 cores while these "
        "figures were taken; each section gives the load average. Compare ratios measured within one "
        "run rather than absolute seconds across sections.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
    ]
    codes: dict[tuple[str, str], list[str]] = {}
    for p in sorted(res.glob("results-*.json")):
        c = (_load(p) or {}).get("code")
        if isinstance(c, dict) and c.get("sha256"):
            source = c.get("source", "working tree").replace("git HEAD ", "git ")
            codes.setdefault((source, c["sha256"]), []).append(p.name)
    for (source, sha), names in codes.items():
        lines.append(
            f"- Code measured: {source}, sha256 {sha} of src/kbflow+flows+tasks+sql ({', '.join(names)})."
        )
    if any(li.values()):
        lines.append(
            "- LlamaIndex side (`.venv-bench`): "
            + ", ".join(f"{k} {val}" for k, val in li.items() if val)
            + "."
        )
    lines.append("")
    for section in (
        section_summary,
        section_stages,
        section_incremental,
        section_compare,
        section_search,
        section_serve_load,
        section_mining,
        section_fleet,
        section_embed,
        section_models,
    ):
        lines += section(res)
    out = res / "RESULTS.md"
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    p.add_argument(
        "--embed-sample",
        type=int,
        default=1000,
        help="texts embedded for real per full-size stage run",
    )
    p.add_argument("--cpu-only-above", type=int, default=300_000)
    p.add_argument("--mem-limit-gib", type=float, default=12.0)
    p.add_argument(
        "--incremental-size", type=int, help="default: the largest full-run size, at most 100k"
    )
    p.add_argument(
        "--compare-sizes",
        help="default: those of 10000,30000,100000 up to the largest full-run size (at most 100k)",
    )
    p.add_argument("--compare-runs", type=int, default=3)
    p.add_argument("--llama-max-entries", type=int)
    p.add_argument("--search-size", type=int, help="default: as --incremental-size")
    p.add_argument("--mining-searches", type=int, default=10_000_000)
    p.add_argument("--embed-n", type=int, default=2000)
    p.add_argument(
        "--models-baseline",
        default=None,
        help="models part: git ref whose kb_zh nightly to compare with the working tree",
    )
    p.add_argument("--workdir", type=Path, default=HERE / ".work")
    p.add_argument("--results-dir", type=Path, default=HERE)
    p.add_argument(
        "--code",
        choices=["head", "worktree"],
        default="head",
        help="measure git HEAD's code, frozen in the workdir (default), or the working tree",
    )
    p.add_argument("--code-ref", default="HEAD", help="the commit --code head freezes")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    a.parts = [x for x in a.parts.split(",") if x]
    unknown = set(a.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    sizes = [int(x) for x in a.sizes.split(",") if x]
    full_sizes = [n for n in sizes if n <= min(a.cpu_only_above, 100_000)]
    base = max(full_sizes) if full_sizes else min(sizes)
    a.incremental_size = a.incremental_size or base
    a.search_size = a.search_size or base
    a.compare_sizes = a.compare_sizes or (
        ",".join(str(n) for n in (10_000, 30_000, 100_000) if n <= base) or str(base)
    )
    ran = None if a.report_only else run_parts(a)
    out = write_results(a.results_dir.resolve(), ran)
    print(f"[run_all] wrote {out}")
    return 0 if ran is None or all(o.get("ok") or o.get("skipped") for o in ran.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
