-- purpose: remove one week's rows from review_kb_gaps before that week is rewritten
--          (runs inside the same transaction as the insert, so readers never see a half week).
-- inputs:  review_kb_gaps; $week
-- output:  rows deleted
-- grain:   one ISO week
with final as (
    select $week as week
)

delete from review_kb_gaps where week in (select week from final)
