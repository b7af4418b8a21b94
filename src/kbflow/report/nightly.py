"""The nightly run's report: its Markdown summary (the Prefect artifact) and its HTML page."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from kbflow.notify import describe_notice
from kbflow.report.html import _rows, bar_chart, esc, html_table, page
from kbflow.report.review import (
    review_contradictions_section,
    review_markdown_line,
    review_semantic_section,
)
from kbflow.store.home import atomic_write_text


def describe_model_choice(choice: dict[str, Any] | None) -> str | None:
    """One line on how the run's model was chosen (``kbflow.embed.choose.ModelChoice``)."""
    if not choice:
        return None
    how = {"auto": "chosen by language", "kept": "kept", "explicit": "set in embed.model"}
    mode = str(choice.get("mode"))
    line = f"{choice.get('model')}, {how.get(mode, mode)}: {choice.get('reason')}"
    return ("MODEL SWITCH: " + line) if choice.get("switched") else line


def describe_overlay(overlay: dict[str, int] | None) -> str | None:
    """The accepted review questions of the run, in words (None when there were none)."""
    if not overlay or not any(overlay.values()):
        return None
    return (
        f"{overlay.get('applied', 0)} accepted questions added, {overlay.get('retired', 0)} "
        f"already in the export (retired), {overlay.get('dropped', 0)} for entries not in it"
    )


def nightly_markdown(summary: Mapping[str, Any]) -> str:
    rows = summary.get("rows", {})
    lines = [
        f"# kb-nightly {summary.get('run_id')}: **{summary.get('status')}**",
        "",
        f"- version: `{summary.get('version')}` (previous: `{summary.get('previous_version')}`)",
        f"- run date: {summary.get('run_date')}, snapshot: `{summary.get('snapshot_id')}`",
        f"- passages embedded: {summary.get('embedded', 0)}, from cache: {summary.get('cached', 0)}; retired entries: {summary.get('retired', 0)}",
    ]
    if summary.get("model_choice"):
        lines.append(
            f"- embedding model: `{summary.get('model_key')}` "
            f"({describe_model_choice(summary['model_choice'])})"
        )
    if summary.get("message"):
        lines.append(f"- message: {summary['message']}")
    if summary.get("notice"):
        lines.append(f"- failure notice: {describe_notice(summary['notice'])}")
    if summary.get("review"):
        lines.append(review_markdown_line(summary["review"]))
    gate = summary.get("gate")
    if gate and not gate.get("skipped"):
        verdict = (
            "passed"
            if gate.get("passed")
            else ("FAILED (forced)" if gate.get("forced") else "BLOCKED")
        )
        lines += [
            "",
            f"Quality gate: **{verdict}**",
            "",
            "| query set | new hit@3 | live hit@3 (common) |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {c['new']['hit@3']} | {c.get('live_common', {}).get('hit@3', '')} |"
            for name, c in gate.get("checks", {}).items()
        ]
        lines += [f"- {r}" for r in gate.get("reasons", [])]
    lines += ["", "| outcome | rows |", "|---|---:|"]
    lines += [
        f"| {k} | {rows.get(k, 0)} |"
        for k in ("input", "indexed", "duplicate", "stale", "unpublished", "quarantined")
    ]
    timings = summary.get("timings", {})
    if timings:
        lines += ["", "| stage | seconds |", "|---|---:|"] + [
            f"| {k} | {v} |" for k, v in timings.items()
        ]
    if summary.get("report"):
        lines += ["", f"HTML report: {summary['report']}"]
    return "\n".join(lines)


def write_nightly_report(
    path: Path,
    summary: dict[str, Any],
    quarantine: pa.Table | None = None,
    merges: pa.Table | None = None,
    stale: pa.Table | None = None,
    retired: list[str] | None = None,
    previous_calibration: dict[str, Any] | None = None,
    contradictions: pa.Table | None = None,
    semantic_duplicates: pa.Table | None = None,
) -> Path:
    """Write the nightly HTML report to ``path`` (atomically) and return it. Contradicting
    answers found by the review stage come first, under the heading."""
    rows = summary.get("rows", {})
    status = str(summary.get("status", "running"))
    kv = {
        "run": summary.get("run_id"),
        "run date": summary.get("run_date"),
        "version": summary.get("version"),
        "previous version": summary.get("previous_version"),
        "export snapshot": summary.get("snapshot_id"),
        "embedding model": summary.get("model_key"),
        "model choice": describe_model_choice(summary.get("model_choice")),
        "passages embedded": summary.get("embedded"),
        "passages from cache": summary.get("cached"),
        "embedding throughput (passages/s)": summary.get("embed_per_second"),
        "retired entries": summary.get("retired"),
        "reviewers' overlay": describe_overlay(summary.get("overlay")),
        "message": summary.get("message"),
        "failure notice": describe_notice(summary.get("notice")),
    }
    body = [
        f'<h1>kbflow nightly run <span class="status {esc(status)}">{esc(status)}</span></h1>',
        review_contradictions_section(summary.get("review"), contradictions),
        '<table class="kv">'
        + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in kv.items() if v is not None
        )
        + "</table>",
        gate_section(summary.get("gate")),
        "<h2>Row accounting</h2>",
        f"<p>Every input row is exactly one of the outcomes below; they sum to the {esc(rows.get('input', 0))} input rows.</p>",
        bar_chart(
            "rows by outcome",
            {
                k: rows.get(k, 0)
                for k in ("indexed", "duplicate", "stale", "unpublished", "quarantined")
            },
        ),
        "<h2>Stage timings</h2>",
        bar_chart("seconds per stage", summary.get("timings", {}), " s"),
    ]
    cal = summary.get("calibration")
    if cal:
        body.append("<h2>Retrieval calibration (held-out self-check)</h2>")
        body.append(
            html_table(
                [
                    {
                        **{"version": summary.get("version")},
                        **cal.get("self_check", {}),
                        "dense weight": cal.get("dense_weight"),
                        "threshold": cal.get("handoff_threshold"),
                        "method": cal.get("method"),
                    }
                ]
                + (
                    [
                        {
                            **{"version": "previous"},
                            **previous_calibration.get("self_check", {}),
                            "dense weight": previous_calibration.get("dense_weight"),
                            "threshold": previous_calibration.get("handoff_threshold"),
                            "method": previous_calibration.get("method"),
                        }
                    ]
                    if previous_calibration
                    else []
                ),
                ["version", "hit@1", "hit@3", "mrr", "dense weight", "threshold", "method"],
            )
        )
        if cal.get("scores_by_weight"):
            body.append(bar_chart("self-check objective by dense weight", cal["scores_by_weight"]))
    body += adapter_section(summary.get("adapter"))
    if summary.get("index_build"):
        body.append(f"<h2>Index build</h2><p>{esc(describe_build(summary['index_build']))}</p>")
    body += [
        "<h2>Quarantined rows</h2>",
        html_table(
            _rows(quarantine), ["source_file", "source_line", "entry_id", "expectation", "detail"]
        ),
        "<h2>Duplicates merged</h2>",
        html_table(
            _rows(merges),
            ["kind", "canonical_id", "merged_id", "similarity", "canonical_title", "merged_title"],
        ),
        review_semantic_section(summary.get("review"), semantic_duplicates),
        "<h2>Stale entries</h2>",
        html_table(_rows(stale), ["entry_id", "title", "reason", "evidence", "stale_since"]),
        "<h2>Retired entries</h2>",
        html_table([{"entry_id": e} for e in retired or []], ["entry_id"]),
        f'<p class="muted">summary: <code>{esc(json.dumps({k: v for k, v in summary.items() if k != "calibration"}, ensure_ascii=False, default=str))}</code></p>',
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page(f"kbflow nightly {summary.get('run_id')}", "".join(body)))
    return path


def gate_section(gate: dict[str, Any] | None) -> str:
    """The quality gate: verdict, hit@k of the new version against the live one per query set,
    and the queries the live version answered and the new one does not, side by side."""
    if not gate:
        return ""
    if gate.get("skipped"):
        return "<h2>Quality gate</h2><p>skipped (gate.enabled is false)</p>"
    verdict = (
        "passed"
        if gate.get("passed")
        else ("failed, published anyway (--force)" if gate.get("forced") else "blocked")
    )
    out = [
        f'<h2>Quality gate: <span class="status {esc("published" if gate.get("passed") else "blocked")}">{esc(verdict)}</span></h2>'
    ]
    if gate.get("reasons"):
        out.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in gate["reasons"]) + "</ul>")
    golden = gate.get("golden")
    if golden:
        out.append(
            f"<p>Golden set v{esc(golden['version'])}: {esc(golden['queries'])} queries, stored "
            f"{esc(golden['imported_at'])} by {esc(golden['by'])} ({esc(golden['source'])})</p>"
        )
    rows = []
    for name, c in gate.get("checks", {}).items():
        for label, key in (
            ("new", "new"),
            ("live", "live"),
            ("new, common queries", "new_common"),
            ("live, common queries", "live_common"),
        ):
            if key in c:
                rows.append({"query set": name, "version": label, **c[key]})
    out.append(html_table(rows, ["query set", "version", "n", "hit@1", "hit@3", "mrr"]))
    failing = gate.get("failing") or []
    if failing:
        out.append(
            f"<h3>Queries the live version {esc(gate.get('live_version'))} answers in its top 3 and "
            f"the new one does not ({esc(gate.get('failing_total', len(failing)))} in all)</h3>"
        )
        out.append(
            html_table(
                [
                    {
                        **f,
                        "expected": ", ".join(f["expected"]),
                        "live top 3": " | ".join(f["live_top"]),
                        "new top 3": " | ".join(f["new_top"]),
                    }
                    for f in failing
                ],
                ["set", "query", "expected", "live_rank", "live top 3", "new_rank", "new top 3"],
            )
        )
    out.append(alignment_section(gate.get("alignment"), gate.get("live_version")))
    out.append(replay_section(gate.get("replay"), gate.get("live_version")))
    for note in gate.get("notes") or []:
        out.append(f'<p class="muted">{esc(note)}</p>')
    return "".join(out)


def alignment_section(a: dict[str, Any] | None, live_version: Any) -> str:
    """Answer alignment of the new and the live version, and the entries whose answer no
    longer matches their own questions, beside the live version's answer."""
    if not a or a.get("new") is None:
        return ""
    live = "" if a.get("live") is None else f", live version {esc(a['live'])}"
    out = [
        f"<h3>Answer alignment</h3><p>Share of entries' titles and questions that find their own "
        f"answer among the answers of {esc(a['entries'])} entries: new version "
        f"{esc(a['new'])}{live}.</p>"
    ]
    if a.get("misaligned"):
        out.append(
            f"<p>Entries whose answer matched their questions in {esc(live_version)} and no longer "
            f"does ({esc(a.get('misaligned_total'))} in all):</p>"
        )
        out.append(
            html_table(
                a["misaligned"],
                ["entry", "title", "new_answer", "live_answer", "found_instead"],
            )
        )
    return "".join(out)


def replay_section(r: dict[str, Any] | None, live_version: Any) -> str:
    """Logged queries replayed on the new and the live version: changed top-1 answers, and
    the queries whose clicked answer left the top 3, side by side."""
    if not r:
        return ""
    rate = "-" if r.get("loss_rate") is None else f"{r['loss_rate']:.1%}"
    out = [
        f"<h3>Replay of logged traffic</h3><p>{esc(r['queries'])} distinct logged queries "
        f"({esc(r['searches'])} searches) asked again: {esc(r['changed_top1'])} get another top-1 "
        f"answer than from {esc(live_version)} ({esc(r['changed_top1_searches'])} searches). Of "
        f"{esc(r['evidence'])} with click evidence (the entry users clicked was in the live top "
        f"3), {esc(r['kept'])} keep it in the top 3 and {esc(r['lost'])} lose it (loss rate "
        f"{esc(rate)}); {esc(r['gone'])} clicked entries are no longer in the KB.</p>"
    ]
    if r.get("losses"):
        out.append(
            html_table(
                [
                    {
                        **x,
                        "live top 3": " | ".join(x["live_top"]),
                        "new top 3": " | ".join(x["new_top"]),
                    }
                    for x in r["losses"]
                ],
                ["query", "searches", "clicked", "clicks", "live_rank", "live top 3", "new top 3"],
            )
        )
    return "".join(out)


def describe_build(build: dict[str, Any]) -> str:
    """One line on how the version was built (``kbflow.index.incremental``)."""
    if build.get("mode") == "incremental":
        text = (
            f"incremental on base {build.get('base_version')}: {build.get('delta_passages', 0):,} "
            f"passages in the delta, {build.get('tombstones', 0):,} tombstones "
            f"({build.get('delta_share', 0):.1%} of the base)"
        )
    else:
        text = f"full ({build.get('reason', '')})"
    if build.get("tokens_reused"):
        text += f"; keyword tokens of {build['tokens_reused']:,} passages reused"
    if build.get("calibration_reused"):
        text += "; calibration reused"
    return text


def adapter_section(adapter: dict[str, Any] | None) -> list[str]:
    """The version's adapter: kept or not and why, plain vs adapted on held-out questions (and
    golden calibration queries), dense only."""
    if not adapter:
        return []
    kept = "kept" if adapter.get("kept") else "not kept: the version searches with the plain model"
    out = [
        "<h2>Adapter (retrieval tuned on the KB's own questions)</h2>",
        f"<p>{esc(str(adapter.get('kind') or 'none'))}, {esc(kept)}. "
        f"{esc(str(adapter.get('reason', '')))}</p>",
    ]
    rows = []
    for check in ("held_out", "golden"):
        figures = adapter.get(check) or {}
        for side in ("plain", "adapted"):
            if figures.get(side):
                rows.append({"check": check.replace("_", "-"), "model": side, **figures[side]})
    if rows:
        out.append(html_table(rows, ["check", "model", "n", "hit@1", "hit@3", "mrr"]))
    return out
