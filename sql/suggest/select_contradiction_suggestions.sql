-- purpose: "make the answers agree": entry pairs of the live version whose answers state
--          different facts (the nightly review stage's contradictions: amounts, durations,
--          dates), both answers side by side with every contradicting fact, and the week's
--          sessions that were shown either entry.
-- inputs:  staged_kb_contradictions; week_entry_impact; staged_answers (the week's answer statistics); staged_kb_entries; $week, $mined_at
-- output:  rows for review_suggestions, kind 'contradiction' (entry_id = entry_a; edit: the
--          corrected answer)
-- grain:   one row per entry pair
-- key:     suggestion_id
with facts as (
    select
        entry_a,
        entry_b,
        max(similarity) as similarity,
        list(
            json_object(
                'kind', fact_kind, 'topic', topic, 'value_a', value_a, 'value_b', value_b,
                'evidence_a', evidence_a, 'evidence_b', evidence_b
            )
            order by fact_kind, topic, value_a, value_b
        ) as facts
    from staged_kb_contradictions
    group by entry_a, entry_b
),

final as (
    select
        $week as week,
        md5('contradiction|' || f.entry_a || '|' || f.entry_b) as suggestion_id,
        'contradiction' as kind,
        f.entry_a as entry_id,
        f.entry_b as other_entry_id,
        coalesce(ea.title, f.entry_a) as text,
        f.entry_a || '|' || f.entry_b as norm,
        (coalesce(ia.n_sessions, 0) + coalesce(ib.n_sessions, 0))::bigint as n_sessions,
        (coalesce(ia.n_users, 0) + coalesce(ib.n_users, 0))::bigint as n_users,
        (coalesce(ia.n_searches, 0) + coalesce(ib.n_searches, 0))::bigint as n_searches,
        (coalesce(aa.clicks, 0) + coalesce(ab.clicks, 0))::bigint as n_clicks,
        list_distinct(coalesce(aa.sample_queries, []) || coalesce(ab.sample_queries, []))
            as example_queries,
        null::double as score_gap,
        (coalesce(ia.n_sessions, 0) + coalesce(ib.n_sessions, 0))::bigint as impact,
        $mined_at as mined_at,
        coalesce(ea.category, eb.category) as category,
        json_object(
            'similarity', f.similarity,
            'a', json_object('entry_id', f.entry_a, 'title', ea.title, 'answer', ea.answer),
            'b', json_object('entry_id', f.entry_b, 'title', eb.title, 'answer', eb.answer),
            'facts', f.facts
        )::varchar as detail
    from facts as f
    left join week_entry_impact as ia on ia.entry_id = f.entry_a
    left join week_entry_impact as ib on ib.entry_id = f.entry_b
    left join staged_answers as aa on aa.entry_id = f.entry_a
    left join staged_answers as ab on ab.entry_id = f.entry_b
    left join staged_kb_entries as ea on ea.entry_id = f.entry_a
    left join staged_kb_entries as eb on eb.entry_id = f.entry_b
    order by impact desc, f.entry_a, f.entry_b
)

select * from final
