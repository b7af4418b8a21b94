-- purpose: the version whose review rows the weekly bundle exports: the live version (last
--          publish or rollback event) when it was reviewed, else the most recently reviewed.
-- inputs:  review_versions, publish_events
-- output:  one row (version, is_live, reviewed_at), or none when nothing was ever reviewed
-- grain:   one row
-- key:     -
with live as (
    select version from publish_events order by event_at desc limit 1
),

ranked as (
    select
        version,
        version in (select version from live) as is_live,
        reviewed_at
    from review_versions
),

final as (
    select * from ranked order by is_live desc, reviewed_at desc limit 1
)

select * from final
