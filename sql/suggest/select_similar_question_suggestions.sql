-- purpose: "add as a similar question of E" suggestions of one week: a query (folded by
--          norm_query, so near copies are one) whose users clicked entry E in at least
--          $min_sessions distinct sessions, and that is not already E's title or one of its
--          similar questions in the live version (of an entry that is live, when one is).
-- inputs:  search_log, click_log (the log views, kbflow.store.segments.attach_log_views);
--          staged_entry_questions (entry_id, question: the live version's titles and similar
--          questions); norm_query (create_norm_query); $start_at, $end_at, $week,
--          $min_sessions, $n_samples, $mined_at
-- output:  rows for review_suggestions, kind 'similar_question' (n_searches: the week's searches
--          in the spellings users clicked for)
-- grain:   one row per (folded query, clicked entry)
-- key:     suggestion_id
with clicked as (
    -- the week's clicked searches only, folded here: the regex runs on them, not on every search
    select distinct s.query_id, s.query, norm_query(s.query) as norm, s.session_id, s.user_id,
        c.entry_id
    from click_log as c
    inner join search_log as s on s.query_id = c.query_id
    where s.ts >= $start_at and s.ts < $end_at and norm_query(s.query) <> ''
),

asked as (
    -- searches of the week in any spelling users clicked for (searched, clicked or not)
    select f.norm, count(*) as n_searches
    from search_log as s
    inner join (select distinct query, norm from clicked) as f on f.query = s.query
    where s.ts >= $start_at and s.ts < $end_at
    group by f.norm
),

forms as (
    select norm, entry_id, query, count(*) as n
    from clicked
    group by norm, entry_id, query
),

per_pair as (
    select
        norm,
        entry_id,
        count(distinct session_id) as n_sessions,
        count(distinct user_id) as n_users,
        count(*) as n_clicks
    from clicked
    group by norm, entry_id
),

examples as (
    select
        norm,
        entry_id,
        list(query order by n desc, query)[1] as text,
        list(query order by n desc, query)[1:$n_samples] as example_queries
    from forms
    group by norm, entry_id
),

known as (
    select distinct entry_id, norm_query(question) as norm
    from staged_entry_questions
),

final as (
    select
        $week as week,
        md5('similar_question|' || p.entry_id || '|' || p.norm) as suggestion_id,
        'similar_question' as kind,
        p.entry_id,
        null::varchar as other_entry_id,
        e.text,
        p.norm,
        p.n_sessions,
        p.n_users,
        a.n_searches,
        p.n_clicks,
        e.example_queries,
        null::double as score_gap,
        p.n_sessions as impact,
        $mined_at as mined_at,
        null::varchar as category,
        null::varchar as detail
    from per_pair as p
    inner join examples as e on e.norm = p.norm and e.entry_id = p.entry_id
    inner join asked as a on a.norm = p.norm
    where
        p.n_sessions >= $min_sessions
        and not exists (
            select 1 from known as k where k.entry_id = p.entry_id and k.norm = p.norm
        )
        -- the entry is live (an entry since dropped, stale or deleted, takes no question)
        and (
            not exists (select 1 from known)
            or exists (select 1 from known as k where k.entry_id = p.entry_id)
        )
    order by p.n_sessions desc, p.entry_id, p.norm
)

select * from final
