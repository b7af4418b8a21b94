-- purpose: the week's suggestions with their entry's category where the kind's own statement
--          left it empty (similar questions, confusions: the clicked entry's category).
-- inputs:  staged_week_suggestions (review_suggestions columns); staged_kb_entries
-- output:  review_suggestions columns
-- grain:   one row per suggestion
-- key:     suggestion_id
with final as (
    select s.* replace (coalesce(s.category, e.category) as category)
    from staged_week_suggestions as s
    left join (select distinct on (entry_id) entry_id, category from staged_kb_entries) as e
        on e.entry_id = coalesce(nullif(s.entry_id, ''), s.other_entry_id)
    order by s.impact desc, s.kind, s.entry_id, s.norm
)

select * from final
