-- purpose: one week's rows of review_weekly_metrics, for export and the report.
-- inputs:  review_weekly_metrics; $week
-- output:  the week's rows in review order
-- grain:   as review_weekly_metrics
-- key:     week
with week_rows as (
    select * from review_weekly_metrics where week = $week
),

final as (
    select * from week_rows order by week
)

select * from final
