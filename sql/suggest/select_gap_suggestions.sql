-- purpose: "new entry needed": the week's gap topics (kb_gaps: queries the KB did not answer,
--          grouped by meaning) asked in at least $min_sessions distinct sessions, with their
--          example queries and the nearest entry. The "other" cluster is not a topic.
-- inputs:  staged_kb_gaps (the week's review_kb_gaps rows); staged_kb_entries; norm_query
--          (create_norm_query); $week, $min_sessions, $mined_at
-- output:  rows for review_suggestions, kind 'gap' (entry_id '' = a new entry; other_entry_id =
--          the nearest entry)
-- grain:   one row per gap topic
-- key:     suggestion_id
with topics as (
    select *
    from staged_kb_gaps
    where cluster_id >= 0 and n_sessions >= $min_sessions and norm_query(label) <> ''
),

final as (
    select
        $week as week,
        md5('gap|' || norm_query(g.label)) as suggestion_id,
        'gap' as kind,
        '' as entry_id,
        g.nearest_entry_id as other_entry_id,
        g.label as text,
        norm_query(g.label) as norm,
        g.n_sessions::bigint as n_sessions,
        g.n_users::bigint as n_users,
        g.size::bigint as n_searches,
        0::bigint as n_clicks,
        g.example_queries,
        null::double as score_gap,
        g.n_sessions::bigint as impact,
        $mined_at as mined_at,
        e.category,
        json_object(
            'nearest_entry_id', g.nearest_entry_id,
            'nearest_title', e.title,
            'nearest_score', g.nearest_score,
            'distinct_queries', g.n_distinct_queries,
            'handoffs', g.n_handoff,
            'low_score', g.n_low_score,
            'no_click', g.n_no_click
        )::varchar as detail
    from topics as g
    left join staged_kb_entries as e on e.entry_id = g.nearest_entry_id
    order by g.n_sessions desc, g.label
)

select * from final
