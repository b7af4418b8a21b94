-- purpose: append staged search events to search_events, skipping query ids already stored
--          (a retried flush or a re-imported file never duplicates an event).
-- inputs:  staged_search_events (registered Arrow table with the search_events columns)
-- output:  rows inserted into search_events
-- grain:   one row per query_id
insert into search_events
with staged as (
    select distinct on (query_id) * from staged_search_events
),

final as (
    select
        s.query_id, s.ts, s.session_id, s.user_id, s.query, s.version, s.result_ids,
        s.result_scores, s.top1_score, s.latency_ms, s.fallback_level, s.handoff, s.threshold
    from staged as s
    where not exists (select 1 from search_events as e where e.query_id = s.query_id)
)

select * from final
