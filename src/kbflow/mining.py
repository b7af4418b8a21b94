"""Weekly mining of the search and click logs into review tables (``kb-weekly-mining``).

Everything that can be SQL is SQL (``sql/mining/``, loaded by name, parameters bound): per-answer
impressions, clicks and CTR; gap queries and their per-topic aggregates; latency percentiles,
score distribution, rates and alert flags. Python does what SQL cannot: NFKC normalisation and
clustering of the gap queries into topics.

**Where the review tables live.** In ``logs.duckdb``, beside the events they are computed from
(``sql/schema/create_review_tables.sql``): the mining statements join events and staged rows in
one database, a week is replaced in one transaction, and the catalog stays a small record of
nightly runs. Every table is keyed by ``week`` (ISO week, ``2026-W47``); a rerun replaces that
week's rows only.

**Clustering.** MinHash over character bigrams of the normalised text (datasketch), LSH for
candidates, verified by exact Jaccard, leader clustering (each query joins the most similar
more frequent leader, so topics do not chain into each other). It was chosen when the only
embedded model was English-only and scored below keyword matching on Chinese; the bundled
multilingual model reads Chinese now, and clustering over the live version's own query vectors
is the next step (it would group paraphrases that share few characters). Until then: users'
paraphrases of one missing topic (typos, inserted particles, reordered words) keep most of
their character bigrams, so Jaccard groups them without a model, deterministically, at ~50k
queries/s, and the weekly flow needs no model or index to run. The nearest entry of a topic and
its score come from the logged search results, on the scale of the version that answered. Clustering works on distinct normalised texts, the ``max_gap_queries`` most
frequent of them (the long tail beyond that is left unclustered and counted in the summary).
"""

from __future__ import annotations

import csv
import logging
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from kbflow.errors import ConfigError
from kbflow.logstore import connect_logs
from kbflow.sqlfiles import load_sql

log = logging.getLogger(__name__)

REVIEW_TABLES = ("low_click_answers", "kb_gaps", "weekly_metrics")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class MiningSettings(BaseModel):
    """Settings of ``kb-weekly-mining`` (to move into ``kbflow.settings.Settings.mining``)."""

    timezone: str = "Asia/Shanghai"
    min_impressions: int = Field(20, ge=1)
    """An answer is flagged only with at least this many top-3 impressions in the week."""
    ctr_threshold: float = Field(0.10, ge=0, le=1)
    sample_queries: int = Field(3, ge=1)
    example_queries: int = Field(5, ge=1)
    p95_alert_ms: float = 300.0
    fallback_alert_rate: float = 0.15
    handoff_alert_rate: float = 0.15
    ks_alert_threshold: float = Field(0.15, gt=0, le=1)
    """Two-sample KS statistic of top-1 scores, this week against last, above which we alert.
    With 10k+ queries a week any real shift of the score distribution exceeds it; sampling
    noise stays near 1.36/sqrt(n) (about 0.02 at n = 10k)."""
    min_ks_samples: int = Field(50, ge=1)
    histogram_bins: int = Field(20, ge=2, le=200)
    cluster_threshold: float = Field(0.4, gt=0, lt=1)
    """Jaccard similarity of character-bigram sets above which two gap queries are one topic."""
    num_perm: int = Field(128, ge=16)
    max_gap_queries: int = Field(50_000, ge=1)
    duckdb_memory_limit: str = "3GB"
    duckdb_threads: int | None = None


# ---------------------------------------------------------------------------- weeks


def parse_week(week: str) -> tuple[int, int]:
    """``"2026-W47"`` -> ``(2026, 47)``; ``ConfigError`` for anything else."""
    m = _WEEK.match(week or "")
    if not m:
        raise ConfigError(f"week {week!r} is not an ISO week like 2026-W47")
    year, num = int(m.group(1)), int(m.group(2))
    try:
        date.fromisocalendar(year, num, 1)
    except ValueError as exc:
        raise ConfigError(f"week {week!r} does not exist ({exc})") from exc
    return year, num


def week_bounds(week: str, tz: str = "Asia/Shanghai") -> tuple[datetime, datetime]:
    """The week as ``[start, end)`` in UTC: Monday 00:00 to next Monday 00:00 in ``tz``."""
    year, num = parse_week(week)
    monday = date.fromisocalendar(year, num, 1)
    zone = ZoneInfo(tz)
    start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
    end = start + timedelta(days=7)
    return start.astimezone(UTC), end.astimezone(UTC)


def week_of(day: date) -> str:
    year, num, _ = day.isocalendar()
    return f"{year}-W{num:02d}"


def previous_week(week: str) -> str:
    year, num = parse_week(week)
    return week_of(date.fromisocalendar(year, num, 1) - timedelta(days=7))


def default_week(now: datetime | None = None, tz: str = "Asia/Shanghai") -> str:
    """The last complete ISO week in ``tz`` (on Monday 06:00 that is the week that just ended)."""
    now = now or datetime.now(UTC)
    local = now.astimezone(ZoneInfo(tz)).date()
    return week_of(local - timedelta(days=7))


# ---------------------------------------------------------------------------- clustering

_PUNCT = {"P", "S", "Z", "C"}  # punctuation, symbols, separators, control characters


def normalize_query(text: str) -> str:
    """NFKC, lowercase, punctuation/symbols/whitespace removed (letters, digits, CJK kept)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in _PUNCT)


def _shingles(text: str) -> set[bytes]:
    if len(text) < 2:
        return {text.encode("utf-8")} if text else set()
    return {text[i : i + 2].encode("utf-8") for i in range(len(text) - 1)}


def cluster_texts(texts: list[str], threshold: float = 0.4, num_perm: int = 128) -> list[int]:
    """Cluster normalised texts, given most frequent first: a label per text, ``0..k-1``.

    Leader clustering: each text joins the earlier leader whose character-bigram set is most
    similar to its own (exact Jaccard, at least ``threshold``; candidates from MinHash LSH over
    the leaders only), or becomes a new leader. Unlike single linkage this does not chain
    different topics together through a series of near neighbours, and the most frequent
    phrasing of a topic is its leader. Deterministic for a given input order."""
    from datasketch import MinHash, MinHashLSH

    if not texts:
        return []
    sets = [_shingles(t) for t in texts]
    hashes = MinHash.bulk([sorted(s) for s in sets], num_perm=num_perm, seed=1)
    # LSH recall must be high: index at a lower threshold, verify candidates exactly.
    lsh = MinHashLSH(threshold=max(0.05, threshold * 0.7), num_perm=num_perm)
    labels: list[int] = []
    leader_label: dict[int, int] = {}
    for i, h in enumerate(hashes):
        best, best_j = -1, threshold
        a = sets[i]
        for j in lsh.query(h):
            b = sets[int(j)]
            sim = len(a & b) / len(a | b) if a and b else 0.0
            if sim > best_j or (sim == best_j and (best < 0 or int(j) < best)):
                best, best_j = int(j), sim
        if best >= 0:
            labels.append(leader_label[best])
        else:
            leader_label[i] = len(leader_label)
            labels.append(leader_label[i])
            lsh.insert(i, h)
    return labels


def assign_gap_clusters(gap_queries: pa.Table, settings: MiningSettings) -> tuple[pa.Table, int]:
    """Map raw gap queries (``query``, ``n_events``, most frequent first) to cluster ids.

    Raw texts that normalise to the same string share a cluster; distinct normalised texts
    beyond ``max_gap_queries`` are left out. Clusters are renumbered by total events (largest
    first) so ``cluster_id`` 0 is the biggest topic. Returns (``query``, ``cluster_id``) and the
    number of raw queries left out."""
    queries = gap_queries.column("query").to_pylist()
    counts = gap_queries.column("n_events").to_pylist()
    norm_index: dict[str, int] = {}
    norm_of: list[int] = []
    for q in queries:
        key = normalize_query(q) or q
        norm_of.append(norm_index.setdefault(key, len(norm_index)))
    kept = min(len(norm_index), settings.max_gap_queries)
    norms = list(norm_index)[:kept]
    labels = cluster_texts(norms, settings.cluster_threshold, settings.num_perm)
    size: dict[int, int] = {}
    for q_norm, n in zip(norm_of, counts, strict=True):
        if q_norm < kept:
            size[labels[q_norm]] = size.get(labels[q_norm], 0) + int(n)
    order = sorted(size, key=lambda c: (-size[c], c))
    rank = {c: i for i, c in enumerate(order)}
    out_q, out_c = [], []
    for q, q_norm in zip(queries, norm_of, strict=True):
        if q_norm < kept:
            out_q.append(q)
            out_c.append(rank[labels[q_norm]])
    table = pa.table(
        {"query": pa.array(out_q, pa.string()), "cluster_id": pa.array(out_c, pa.int32())}
    )
    return table, len(queries) - len(out_q)


# ---------------------------------------------------------------------------- mining


def _fetch(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> pa.Table:
    return con.sql(load_sql(name), params=params).to_arrow_table()


def compute_week(
    con: duckdb.DuckDBPyConnection,
    week: str,
    settings: MiningSettings,
    mined_at: datetime | None = None,
) -> dict[str, Any]:
    """Compute one week's review rows from the log tables on ``con``.

    Returns ``{"low_click_answers": Table, "kb_gaps": Table, "weekly_metrics": Table,
    "unclustered": int}``; writes nothing."""
    start, end = week_bounds(week, settings.timezone)
    prev_start, prev_end = week_bounds(previous_week(week), settings.timezone)
    mined_at = mined_at or datetime.now(UTC)
    window = {"start_at": start, "end_at": end}
    answers = _fetch(
        con,
        "mining/select_answer_stats",
        {
            **window,
            "week": week,
            "min_impressions": settings.min_impressions,
            "ctr_threshold": settings.ctr_threshold,
            "n_samples": settings.sample_queries,
            "mined_at": mined_at,
        },
    )
    gap_queries = _fetch(con, "mining/select_gap_queries", window)
    assignments, unclustered = assign_gap_clusters(gap_queries, settings)
    con.register("staged_gap_assignments", assignments)
    try:
        gaps = _fetch(
            con,
            "mining/select_gap_clusters",
            {**window, "week": week, "n_samples": settings.example_queries, "mined_at": mined_at},
        )
    finally:
        con.unregister("staged_gap_assignments")
    metrics = _fetch(
        con,
        "mining/select_weekly_metrics",
        {
            **window,
            "week": week,
            "prev_start_at": prev_start,
            "prev_end_at": prev_end,
            "n_bins": settings.histogram_bins,
            "p95_alert_ms": settings.p95_alert_ms,
            "fallback_alert_rate": settings.fallback_alert_rate,
            "handoff_alert_rate": settings.handoff_alert_rate,
            "ks_alert_threshold": settings.ks_alert_threshold,
            "min_ks_samples": settings.min_ks_samples,
            "mined_at": mined_at,
        },
    )
    return {
        "low_click_answers": answers,
        "kb_gaps": gaps,
        "weekly_metrics": metrics,
        "unclustered": unclustered,
    }


def write_review_tables(
    con: duckdb.DuckDBPyConnection, week: str, tables: dict[str, pa.Table]
) -> None:
    """Replace ``week``'s rows of the three review tables in one transaction."""
    con.execute(load_sql("schema/create_review_tables"))
    con.execute("begin transaction")
    try:
        for name in REVIEW_TABLES:
            con.execute(load_sql(f"mining/delete_week_{name}"), {"week": week})
            staged = f"staged_review_{name}"
            con.register(staged, tables[name])
            con.execute(load_sql(f"mining/insert_review_{name}"))
            con.unregister(staged)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _config(settings: MiningSettings) -> dict[str, Any]:
    cfg: dict[str, Any] = {"memory_limit": settings.duckdb_memory_limit}
    if settings.duckdb_threads:
        cfg["threads"] = settings.duckdb_threads
    return cfg


def mine_week(
    logs_path: Path,
    week: str,
    settings: MiningSettings | None = None,
    mined_at: datetime | None = None,
) -> dict[str, Any]:
    """Mine ``week`` of ``logs.duckdb`` into its review tables (rerun-safe: replaces the week).

    Returns a small summary: week, row counts, flagged answers, clusters, the metrics row and
    the alert names raised. Raises ``ConfigError`` for a malformed week."""
    settings = settings or MiningSettings()
    parse_week(week)
    with connect_logs(logs_path, retry_s=60.0, config=_config(settings)) as con:
        tables = compute_week(con, week, settings, mined_at)
        write_review_tables(con, week, tables)
    metrics = _plain(tables["weekly_metrics"].to_pylist()[0])
    answers = tables["low_click_answers"]
    summary = {
        "week": week,
        "answers": answers.num_rows,
        "flagged_answers": sum(1 for f in answers.column("flagged").to_pylist() if f),
        "gap_clusters": tables["kb_gaps"].num_rows,
        "unclustered_queries": tables["unclustered"],
        "metrics": metrics,
        "alerts": alerts_of(metrics),
    }
    log.info(
        "mine: %s: %d queries, %d answers (%d flagged), %d gap clusters, alerts %s",
        week,
        metrics["n_queries"],
        summary["answers"],
        summary["flagged_answers"],
        summary["gap_clusters"],
        summary["alerts"] or "none",
    )
    return summary


def alerts_of(metrics: dict[str, Any]) -> list[str]:
    names = {
        "alert_p95": "p95_latency",
        "alert_fallback": "fallback_rate",
        "alert_handoff": "handoff_rate",
        "alert_score_shift": "top1_score_shift",
    }
    return [name for col, name in names.items() if metrics.get(col)]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def read_review_tables(logs_path: Path, week: str) -> dict[str, pa.Table]:
    """The week's rows of the three review tables (empty tables if never mined)."""
    with connect_logs(logs_path, retry_s=60.0) as con:
        con.execute(load_sql("schema/create_review_tables"))
        return {
            name: _fetch(con, f"mining/select_review_{name}", {"week": week})
            for name in REVIEW_TABLES
        }


# ---------------------------------------------------------------------------- export

_FORMULA_START = ("=", "+", "-", "@")


def excel_safe(value: Any) -> str:
    """A CSV cell that Excel will not run as a formula: text starting with ``= + - @`` (or a
    tab/CR, which Excel strips before them) gets a leading apostrophe. Lists become JSON."""
    import json

    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if text.startswith(_FORMULA_START + ("\t", "\r")):
        return "'" + text
    return text


def write_csv(table: pa.Table, path: Path) -> Path:
    """Write ``table`` as an Excel-safe UTF-8 CSV (with BOM, so Excel reads Chinese)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow([excel_safe(v) for v in row.values()])
    tmp.replace(path)
    return path


def export_week(
    logs_path: Path, week: str, out_dir: Path, catalog_path: Path | None = None
) -> dict[str, str]:
    """Export the week's review tables as ``<name>.csv`` and ``<name>.parquet`` under
    ``out_dir`` (``reports/weekly/<week>/``); returns ``{"<name>.csv": path, ...}``.

    With them go the KB review tables of the live index version (``semantic_duplicates``,
    ``contradictions``; ``kbflow.review``) from the catalog (default: ``catalog.duckdb``
    beside ``logs.duckdb``, as in the data home)."""
    from kbflow.review import read_review_tables as read_kb_review

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    catalog_path = catalog_path or logs_path.with_name("catalog.duckdb")
    tables = {**read_review_tables(logs_path, week), **read_kb_review(catalog_path)}
    for name, table in tables.items():
        pq.write_table(table, out_dir / f"{name}.parquet")
        paths[f"{name}.parquet"] = str(out_dir / f"{name}.parquet")
        paths[f"{name}.csv"] = str(write_csv(table, out_dir / f"{name}.csv"))
    return paths


def render_week_report(
    logs_path: Path, week: str, out_dir: Path, catalog_path: Path | None = None
) -> Path:
    """Write ``out_dir/report.html`` for the week from its review tables (and the live
    version's KB review tables, see ``export_week``); returns the path."""
    from kbflow.report import write_weekly_report
    from kbflow.review import latest_review
    from kbflow.review import read_review_tables as read_kb_review

    tables = read_review_tables(logs_path, week)
    catalog_path = catalog_path or logs_path.with_name("catalog.duckdb")
    info = latest_review(catalog_path)
    kb = read_kb_review(catalog_path, info["version"]) if info else {}
    return write_weekly_report(
        out_dir / "report.html",
        week,
        [_plain(r) for r in tables["weekly_metrics"].to_pylist()],
        tables["low_click_answers"].to_pylist(),
        tables["kb_gaps"].to_pylist(),
        review={"info": info, **{name: t.to_pylist() for name, t in kb.items()}},
    )
