-- purpose: the week's queries the KB may not answer (top-1 score under the version's
--          hand-off threshold, handed off, or no click), one row per raw query text, for
--          normalising and clustering in Python.
-- inputs:  search_events, click_events; $start_at, $end_at
-- output:  query, n_events (the most frequent first)
-- grain:   one row per distinct raw query text
with searches as (
    select query_id, query, top1_score, threshold, handoff
    from search_events
    where ts >= $start_at and ts < $end_at
),

clicked as (
    select distinct query_id from click_events
    where query_id in (select query_id from searches)
),

gaps as (
    select s.query
    from searches as s
    where s.handoff
        or s.top1_score is null
        or s.top1_score < s.threshold
        or s.query_id not in (select query_id from clicked)
),

final as (
    select query, count(*) as n_events
    from gaps
    group by query
    order by n_events desc, query
)

select * from final
