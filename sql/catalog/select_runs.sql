-- purpose: the most recent runs, newest first.
-- inputs:  $limit
-- grain:   one row per run
-- key:     run_id
with final as (
    select run_id, flow, run_date, started_at, finished_at, status, version, message
    from runs
    order by started_at desc
    limit $limit
)

select * from final
