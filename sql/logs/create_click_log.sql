-- purpose: the click log from a time on: logs.duckdb's click events plus those of the Parquet
--          segments that are not stored already (same query, entry and time), read once into a
--          temp table.
-- inputs:  click_events; $files (segment paths or URLs), $start_at, $end_at
-- output:  the temp table click_log (click_events' columns)
-- grain:   one row per click (repeats within the segments: see dedupe_click_log)
create temp table click_log as
with stored as (
    select * from main.click_events
    where ts >= $start_at and ts < $end_at
),

segments as (
    select * from read_parquet($files) as s
    where
        s.ts >= $start_at and s.ts < $end_at
        and not exists (
            select 1 from main.click_events as e
            where e.query_id = s.query_id and e.entry_id = s.entry_id and e.ts = s.ts
        )
),

final as (
    select * from stored
    union all by name
    select * from segments
)

select * from final
