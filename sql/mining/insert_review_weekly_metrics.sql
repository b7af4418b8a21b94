-- purpose: write one week's rows into review_weekly_metrics.
-- inputs:  staged_review_weekly_metrics (registered Arrow table with the review_weekly_metrics columns)
-- output:  rows inserted into review_weekly_metrics
-- grain:   as review_weekly_metrics (keyed by week)
insert into review_weekly_metrics
with final as (
    select * from staged_review_weekly_metrics
)

select * from final
