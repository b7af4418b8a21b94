-- purpose: "renew or retire": live entries whose expires_at falls within $expiring_days days
--          after the mined week, with the week's sessions that were shown them.
-- inputs:  staged_kb_entries; week_entry_impact; staged_answers; $week, $end_date (the day after the week),
--          $expiring_days, $mined_at
-- output:  rows for review_suggestions, kind 'expiring'
-- grain:   one row per expiring entry (and expiry date)
-- key:     suggestion_id
with expiring as (
    select *, try_cast(expires_at as date) as expires_on
    from staged_kb_entries
    where
        try_cast(expires_at as date) >= $end_date::date
        and try_cast(expires_at as date) < $end_date::date + $expiring_days::integer
),

final as (
    select
        $week as week,
        md5('expiring|' || e.entry_id || '|' || e.expires_at) as suggestion_id,
        'expiring' as kind,
        e.entry_id,
        null::varchar as other_entry_id,
        coalesce(e.title, e.entry_id) as text,
        e.entry_id as norm,
        coalesce(i.n_sessions, 0)::bigint as n_sessions,
        coalesce(i.n_users, 0)::bigint as n_users,
        coalesce(i.n_searches, 0)::bigint as n_searches,
        coalesce(a.clicks, 0)::bigint as n_clicks,
        coalesce(a.sample_queries, []) as example_queries,
        null::double as score_gap,
        coalesce(i.n_sessions, 0)::bigint as impact,
        $mined_at as mined_at,
        e.category,
        json_object(
            'expires_at', e.expires_at, 'days_left', e.expires_on - $end_date::date,
            'answer', e.answer
        )::varchar as detail
    from expiring as e
    left join week_entry_impact as i using (entry_id)
    left join staged_answers as a using (entry_id)
    order by e.expires_on, e.entry_id
)

select * from final
