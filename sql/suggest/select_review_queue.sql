-- purpose: the review queue: each suggestion's newest week, with its latest decision (none,
--          'defer', 'accept', 'edit', 'reject'), ordered by impact (distinct sessions).
-- inputs:  review_suggestions, review_decisions
-- output:  one row per suggestion: review_suggestions columns + decision, reviewer, decided_at,
--          decided_text, decided_entry_id, comment
-- grain:   one row per suggestion_id
-- key:     suggestion_id
with newest as (
    select *
    from review_suggestions
    qualify row_number() over (partition by suggestion_id order by week desc) = 1
),

latest as (
    select *
    from review_decisions
    qualify row_number() over (partition by suggestion_id order by decided_at desc, decision_id) = 1
),

final as (
    select
        n.*,
        d.decision,
        d.reviewer,
        d.decided_at,
        d.text as decided_text,
        d.entry_id as decided_entry_id,
        d.comment
    from newest as n
    left join latest as d on d.suggestion_id = n.suggestion_id
    order by n.impact desc, n.kind, n.entry_id, n.norm
)

select * from final
