-- purpose: the accepted changes to the KB: each suggestion whose latest decision is accept or
--          edit (an edit carries the reviewer's text and entry), oldest decision first.
-- inputs:  review_decisions
-- output:  suggestion_id, kind, entry_id, text, reviewer, decided_at, comment
-- grain:   one row per accepted suggestion
-- key:     suggestion_id
with latest as (
    select *
    from review_decisions
    qualify row_number() over (partition by suggestion_id order by decided_at desc, decision_id) = 1
),

final as (
    select suggestion_id, kind, entry_id, text, reviewer, decided_at, comment
    from latest
    where decision in ('accept', 'edit')
    order by decided_at, suggestion_id
)

select * from final
