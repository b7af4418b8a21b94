-- purpose: the most asked distinct queries of a window of the search log, with the entries
--          users clicked for them, for the quality gate's replay of real traffic.
-- inputs:  search_log, click_log (the log views: logs.duckdb and the Parquet segments, each
--          event once; kbflow.store.segments.attach_log_views); $start_at, $end_at (the
--          window, [start, end)), $limit
-- output:  query, n_searches, n_sessions, clicked (entry ids, most clicked first),
--          click_counts (clicks per entry, same order), n_click_sessions (same order)
-- grain:   one row per distinct query text
-- key:     query
with searches as (
    select query_id, query, session_id
    from search_log
    where ts >= $start_at and ts < $end_at
),

per_query as (
    select query, count(*) as n_searches, count(distinct session_id) as n_sessions
    from searches
    group by query
),

clicks as (
    select
        s.query,
        c.entry_id,
        count(*) as n_clicks,
        count(distinct s.session_id) as n_click_sessions
    from click_log as c
    inner join searches as s on s.query_id = c.query_id
    group by s.query, c.entry_id
),

click_lists as (
    select
        query,
        list(entry_id order by n_clicks desc, entry_id) as clicked,
        list(n_clicks order by n_clicks desc, entry_id) as click_counts,
        list(n_click_sessions order by n_clicks desc, entry_id) as n_click_sessions
    from clicks
    group by query
),

final as (
    select
        p.query,
        p.n_searches,
        p.n_sessions,
        coalesce(cl.clicked, []) as clicked,
        coalesce(cl.click_counts, []) as click_counts,
        coalesce(cl.n_click_sessions, []) as n_click_sessions
    from per_query as p
    left join click_lists as cl on cl.query = p.query
    order by p.n_searches desc, p.query
    limit $limit
)

select * from final
