-- purpose: the one definition of a gap: a search of the week the KB may not have answered
--          (handed off, no top-1 score, top-1 under the version's hand-off threshold, or no
--          click), as the table macro gap_events that select_gap_queries and
--          select_gap_clusters read.
-- inputs:  search_log, click_log (the log views: logs.duckdb and the Parquet segments, each
--          event once; kbflow.store.segments.attach_log_views); the macro's arguments: the week's bounds [start, end)
-- output:  the temp table macro gap_events(start_at, end_at): query_id, query, session_id,
--          user_id, result_ids, top1_score, handoff, threshold of the gap events, plus
--          low_score and no_click (why they are gaps)
-- grain:   one row per search event that is a gap
create or replace temp macro gap_events(start_at, end_at) as table
with searches as (
    -- the columns the gap statements read (not result_scores, latency...: 10M rows a week)
    select query_id, query, session_id, user_id, result_ids, top1_score, handoff, threshold
    from search_log
    where ts >= start_at and ts < end_at
),

clicked as (
    select distinct query_id from click_log
    where query_id in (select query_id from searches)
),

final as (
    select
        s.*,
        (s.top1_score is null or s.top1_score < s.threshold) as low_score,
        s.query_id not in (select query_id from clicked) as no_click
    from searches as s
    where s.handoff
        or s.top1_score is null
        or s.top1_score < s.threshold
        or s.query_id not in (select query_id from clicked)
)

select * from final
