-- purpose: "still asked after it went stale": entries the live version dropped as stale
--          (expired, withdrawn) that were still the top answer of searches this week (served
--          by an older version, or by a cache) in at least $min_sessions distinct sessions.
-- inputs:  search_log, click_log (the log views); staged_kb_stale (entry_id, title, reason,
--          stale_since); staged_kb_entries; $start_at, $end_at, $week, $min_sessions,
--          $n_samples, $mined_at
-- output:  rows for review_suggestions, kind 'stale_asked'
-- grain:   one row per stale entry
-- key:     suggestion_id
with asked as (
    select s.query_id, s.query, s.session_id, s.user_id, s.result_ids[1] as entry_id
    from search_log as s
    where
        s.ts >= $start_at and s.ts < $end_at
        and s.result_ids[1] in (select entry_id from staged_kb_stale)
),

clicked as (
    select a.entry_id, count(*) as n_clicks
    from click_log as c
    inner join asked as a on a.query_id = c.query_id and a.entry_id = c.entry_id
    group by a.entry_id
),

per_query as (
    select entry_id, query, count(*) as n from asked group by entry_id, query
),

per_entry as (
    select
        a.entry_id,
        count(distinct a.session_id) as n_sessions,
        count(distinct a.user_id) as n_users,
        count(distinct a.query_id) as n_searches
    from asked as a
    group by a.entry_id
    having count(distinct a.session_id) >= $min_sessions
),

examples as (
    select entry_id, list(query order by n desc, query)[1:$n_samples] as queries
    from per_query
    group by entry_id
),

final as (
    select
        $week as week,
        md5('stale_asked|' || p.entry_id) as suggestion_id,
        'stale_asked' as kind,
        p.entry_id,
        null::varchar as other_entry_id,
        coalesce(st.title, p.entry_id) as text,
        p.entry_id as norm,
        p.n_sessions::bigint as n_sessions,
        p.n_users::bigint as n_users,
        p.n_searches::bigint as n_searches,
        coalesce(c.n_clicks, 0)::bigint as n_clicks,
        x.queries as example_queries,
        null::double as score_gap,
        p.n_sessions::bigint as impact,
        $mined_at as mined_at,
        null::varchar as category,
        json_object('reason', st.reason, 'stale_since', st.stale_since)::varchar as detail
    from per_entry as p
    inner join (select distinct on (entry_id) * from staged_kb_stale) as st using (entry_id)
    left join clicked as c using (entry_id)
    left join examples as x using (entry_id)
    order by p.n_sessions desc, p.entry_id
)

select * from final
