-- purpose: "merge or tell apart": the live version's semantic near-duplicate entry pairs (the
--          nightly review stage's; pairs with a contradiction are their own kind), both entries
--          side by side, with the week's sessions that were shown either of them.
-- inputs:  staged_kb_duplicates (entry_a, entry_b, score, matched_a, matched_b);
--          staged_kb_contradictions; week_entry_impact; staged_answers (the week's answer statistics); staged_kb_entries; $week, $mined_at
-- output:  rows for review_suggestions, kind 'duplicate'
-- grain:   one row per entry pair
-- key:     suggestion_id
with pairs as (
    select *
    from staged_kb_duplicates as d
    where not exists (
        select 1 from staged_kb_contradictions as c
        where c.entry_a = d.entry_a and c.entry_b = d.entry_b
    )
),

final as (
    select
        $week as week,
        md5('duplicate|' || p.entry_a || '|' || p.entry_b) as suggestion_id,
        'duplicate' as kind,
        p.entry_b as entry_id,
        p.entry_a as other_entry_id,
        coalesce(eb.title, p.entry_b) as text,
        p.entry_a || '|' || p.entry_b as norm,
        (coalesce(ia.n_sessions, 0) + coalesce(ib.n_sessions, 0))::bigint as n_sessions,
        (coalesce(ia.n_users, 0) + coalesce(ib.n_users, 0))::bigint as n_users,
        (coalesce(ia.n_searches, 0) + coalesce(ib.n_searches, 0))::bigint as n_searches,
        (coalesce(aa.clicks, 0) + coalesce(ab.clicks, 0))::bigint as n_clicks,
        list_distinct(coalesce(aa.sample_queries, []) || coalesce(ab.sample_queries, []))
            as example_queries,
        null::double as score_gap,
        (coalesce(ia.n_sessions, 0) + coalesce(ib.n_sessions, 0))::bigint as impact,
        $mined_at as mined_at,
        coalesce(eb.category, ea.category) as category,
        json_object(
            'score', p.score,
            'a', json_object('entry_id', p.entry_b, 'title', eb.title, 'answer', eb.answer,
                             'matched', p.matched_b),
            'b', json_object('entry_id', p.entry_a, 'title', ea.title, 'answer', ea.answer,
                             'matched', p.matched_a)
        )::varchar as detail
    from pairs as p
    left join week_entry_impact as ia on ia.entry_id = p.entry_a
    left join week_entry_impact as ib on ib.entry_id = p.entry_b
    left join staged_answers as aa on aa.entry_id = p.entry_a
    left join staged_answers as ab on ab.entry_id = p.entry_b
    left join staged_kb_entries as ea on ea.entry_id = p.entry_a
    left join staged_kb_entries as eb on eb.entry_id = p.entry_b
    order by impact desc, p.score desc, p.entry_a, p.entry_b
)

select * from final
