-- purpose: the reviewed versions, newest first, with their threshold and counts.
-- inputs:  review_versions; $limit
-- output:  up to $limit rows
-- grain:   one row per version
-- key:     version
with final as (
    select * from review_versions order by reviewed_at desc limit $limit
)

select * from final
