-- purpose: the latest attempt of one backfill unit, if any.
-- inputs:  $kind, $unit, $params_hash
-- output:  status, run_id, started_at, finished_at, summary (json text)
-- grain:   at most one row
-- key:     -
with units as (
    select * from backfill_units
),

final as (
    select status, run_id, started_at, finished_at, summary::varchar as summary
    from units
    where kind = $kind and unit = $unit and params_hash = $params_hash
)

select * from final
