-- purpose: confusions of one week: searches where the clicked entry scored within
--          $max_score_gap of an entry ranked above it, grouped by folded query and the pair
--          ("add as a similar question of the clicked entry", and tell the two apart), when
--          seen in at least $min_sessions distinct sessions.
-- inputs:  search_log, click_log (the log views); norm_query (create_norm_query);
--          staged_entry_questions (the live version's entries);
--          $start_at, $end_at, $week, $min_sessions, $n_samples, $max_score_gap, $mined_at
-- output:  rows for review_suggestions, kind 'confusion'
-- grain:   one row per (folded query, clicked entry, entry ranked first)
-- key:     suggestion_id
with clicks as (
    -- clicked searches only, folded after the join: the regex runs on them, not on every search
    select
        s.query_id, s.query, norm_query(s.query) as norm, s.session_id, s.user_id, c.entry_id,
        s.result_ids[1] as top_entry_id,
        s.result_scores[1] - s.result_scores[list_position(s.result_ids, c.entry_id)] as gap
    from click_log as c
    inner join search_log as s on s.query_id = c.query_id
    where
        s.ts >= $start_at and s.ts < $end_at
        and len(s.result_ids) > 1
        and list_position(s.result_ids, c.entry_id) > 1
        and norm_query(s.query) <> ''
),

close_calls as (
    select * from clicks where gap <= $max_score_gap
),

per_pair as (
    select
        norm,
        entry_id,
        top_entry_id,
        count(distinct session_id) as n_sessions,
        count(distinct user_id) as n_users,
        count(distinct query_id) as n_searches,
        count(*) as n_clicks,
        avg(gap) as score_gap,
        list(distinct query order by query) as queries
    from close_calls
    group by norm, entry_id, top_entry_id
),

final as (
    select
        $week as week,
        md5('confusion|' || entry_id || '|' || top_entry_id || '|' || norm) as suggestion_id,
        'confusion' as kind,
        entry_id,
        top_entry_id as other_entry_id,
        queries[1] as text,
        norm,
        n_sessions,
        n_users,
        n_searches,
        n_clicks,
        queries[1:$n_samples] as example_queries,
        score_gap,
        n_sessions as impact,
        $mined_at as mined_at,
        null::varchar as category,
        null::varchar as detail
    from per_pair
    where
        n_sessions >= $min_sessions
        -- the clicked entry is live (when the live version is known)
        and (
            not exists (select 1 from staged_entry_questions)
            or entry_id in (select entry_id from staged_entry_questions)
        )
    order by n_sessions desc, entry_id, top_entry_id, norm
)

select * from final
