-- purpose: write one week's rows into review_low_click_answers.
-- inputs:  staged_review_low_click_answers (registered Arrow table with the review_low_click_answers columns)
-- output:  rows inserted into review_low_click_answers
-- grain:   as review_low_click_answers (keyed by week)
insert into review_low_click_answers
with final as (
    select * from staged_review_low_click_answers
)

select * from final
