-- purpose: "rewrite the answer": answers the week's mining flagged (shown in the top 3 often,
--          rarely clicked), with the queries they were shown for and the answer itself.
-- inputs:  staged_answers (the week's review_low_click_answers rows); week_entry_impact
--          (create_week_entry_impact); staged_kb_entries; $week, $mined_at
-- output:  rows for review_suggestions, kind 'low_click'
-- grain:   one row per flagged answer
-- key:     suggestion_id
with flagged as (
    select * from staged_answers where flagged
),

final as (
    select
        $week as week,
        md5('low_click|' || a.entry_id) as suggestion_id,
        'low_click' as kind,
        a.entry_id,
        null::varchar as other_entry_id,
        coalesce(e.title, a.entry_id) as text,
        a.entry_id as norm,
        coalesce(i.n_sessions, 0)::bigint as n_sessions,
        coalesce(i.n_users, 0)::bigint as n_users,
        a.impressions::bigint as n_searches,
        a.clicks::bigint as n_clicks,
        a.sample_queries as example_queries,
        null::double as score_gap,
        coalesce(i.n_sessions, 0)::bigint as impact,
        $mined_at as mined_at,
        e.category,
        json_object(
            'answer', e.answer, 'ctr', a.ctr, 'impressions', a.impressions, 'clicks', a.clicks
        )::varchar as detail
    from flagged as a
    left join week_entry_impact as i using (entry_id)
    left join staged_kb_entries as e using (entry_id)
    order by impact desc, a.entry_id
)

select * from final
