-- purpose: write one week's rows into review_kb_gaps.
-- inputs:  staged_review_kb_gaps (registered Arrow table with the review_kb_gaps columns)
-- output:  rows inserted into review_kb_gaps
-- grain:   as review_kb_gaps (keyed by week)
insert into review_kb_gaps
with final as (
    select * from staged_review_kb_gaps
)

select * from final
