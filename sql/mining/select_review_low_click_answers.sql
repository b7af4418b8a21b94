-- purpose: one week's rows of review_low_click_answers, for export and the report.
-- inputs:  review_low_click_answers; $week
-- output:  the week's rows in review order
-- grain:   as review_low_click_answers
-- key:     week, entry_id
with week_rows as (
    select * from review_low_click_answers where week = $week
),

final as (
    select * from week_rows order by flagged desc, impressions desc, entry_id
)

select * from final
