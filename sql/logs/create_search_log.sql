-- purpose: the search log of a window: logs.duckdb's search events plus those of the Parquet
--          segments that are not stored already (same query id), read once into a temp table.
-- inputs:  search_events; $files (segment paths or URLs), $start_at, $end_at ([start, end))
-- output:  the temp table search_log (search_events' columns)
-- grain:   one row per search event (repeats within the segments: see dedupe_search_log)
create temp table search_log as
with stored as (
    select * from main.search_events
    where ts >= $start_at and ts < $end_at
),

segments as (
    select * from read_parquet($files) as s
    where
        s.ts >= $start_at and s.ts < $end_at
        and not exists (select 1 from main.search_events as e where e.query_id = s.query_id)
),

final as (
    select * from stored
    union all by name
    select * from segments
)

select * from final
