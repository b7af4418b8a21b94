-- purpose: how many users met each entry of interest in one week: distinct sessions and users
--          whose searches showed it in their top 3, and those searches (the impact of a
--          KB-side suggestion: a low-click answer, a duplicate, an expiring entry). Clicks and
--          example queries come from the week's answer statistics.
-- inputs:  search_log (the log view); staged_impact_entries (entry_id); $start_at, $end_at
-- output:  temp table week_entry_impact (entry_id, n_sessions, n_users, n_searches)
-- grain:   one row per entry of staged_impact_entries shown at least once in the week
create or replace temp table week_entry_impact as
with wanted as (
    select distinct entry_id from staged_impact_entries
),

shown as (
    -- one row per search and entry of its top 3 (the week's searches)
    select session_id, user_id, unnest(result_ids[1:3]) as entry_id
    from search_log
    where ts >= $start_at and ts < $end_at
),

per_session as (
    -- a session belongs to one user: (entry, session, user) rows count sessions, and the
    -- users are counted over these few rows, not over every search
    select h.entry_id, h.session_id, h.user_id, count(*) as n_searches
    from shown as h
    semi join wanted as w on w.entry_id = h.entry_id
    group by h.entry_id, h.session_id, h.user_id
),

final as (
    select
        entry_id,
        count(*) as n_sessions,
        count(distinct user_id) as n_users,
        sum(n_searches)::bigint as n_searches
    from per_session
    group by entry_id
)

select * from final
