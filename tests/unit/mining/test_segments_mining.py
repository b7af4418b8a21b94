"""Weekly mining over Parquet log segments + logs.duckdb equals mining logs.duckdb alone for the
same events (real DuckDB files, real Parquet segments, simulated events at a modest scale)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from kbflow.mining.mine import mine_week
from kbflow.mining.simulate import simulated_pool, synthesize_events
from kbflow.mining.tables import read_week_tables
from kbflow.settings import MiningSettings
from kbflow.store.logs import append_events, connect_logs, event_counts
from kbflow.store.segments import write_segments

WEEKS = (("2026-W46", 3_000, 2), ("2026-W47", 20_000, 3))
MINED_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def canonical(table: pa.Table) -> list[tuple]:
    rows = [tuple(sorted((k, repr(v)) for k, v in r.items())) for r in table.to_pylist()]
    return sorted(rows)


def test_mining_segments_and_logs_db_equals_logs_db_alone(tmp_path: Path):
    pool = simulated_pool(600, 400, seed=1)
    whole, part = tmp_path / "whole.duckdb", tmp_path / "part.duckdb"
    segments = str(tmp_path / "segments")
    n_events = {"searches": 0, "clicks": 0}
    with connect_logs(whole) as all_con, connect_logs(part) as part_con:
        for week, n, seed in WEEKS:
            for i, (s, c) in enumerate(synthesize_events(pool, week, n, seed=seed, chunk=5_000)):
                n_events["searches"] += s.num_rows
                n_events["clicks"] += c.num_rows
                append_events(all_con, s, c)
                # half of each batch straight into logs.duckdb, the other half as segments,
                # and a tenth of the first half in both (a spool replayed, an import repeated)
                hs, hc = s.num_rows // 2, c.num_rows // 2
                append_events(part_con, s.slice(0, hs), c.slice(0, hc))
                write_segments(
                    segments,
                    f"{week}-{i}",
                    {
                        "search": pa.concat_tables([s.slice(hs), s.slice(0, hs // 10)]),
                        "click": pa.concat_tables([c.slice(hc), c.slice(0, hc // 10)]),
                    },
                )
    assert event_counts(part) != n_events  # the split is real: logs.duckdb alone lacks half
    assert event_counts(part, segments) == event_counts(whole) == n_events
    settings = MiningSettings(min_impressions=5)
    alone = mine_week(whole, "2026-W47", settings, mined_at=MINED_AT)
    mixed = mine_week(part, "2026-W47", settings, mined_at=MINED_AT, segments=segments)
    assert alone["metrics"]["n_queries"] == 20_000 and alone["gap_clusters"] > 0
    assert alone == mixed
    a, b = read_week_tables(whole, "2026-W47"), read_week_tables(part, "2026-W47")
    for name in a:
        assert a[name].num_rows > 0, name
        assert canonical(a[name]) == canonical(b[name]), name
