-- purpose: the latest move of CURRENT recorded in the catalog (publish, rollback, recovered).
-- inputs:  none
-- output:  at most one row: version, previous_version, action
-- grain:   one publish event
-- key:     -
with final as (
    select version, previous_version, action
    from publish_events
    order by event_at desc
    limit 1
)

select * from final
