-- purpose: one week's rows of review_kb_gaps, for export and the report.
-- inputs:  review_kb_gaps; $week
-- output:  the week's rows in review order
-- grain:   as review_kb_gaps
-- key:     week, cluster_id
with week_rows as (
    select * from review_kb_gaps where week = $week
),

final as (
    select * from week_rows order by size desc, cluster_id
)

select * from final
