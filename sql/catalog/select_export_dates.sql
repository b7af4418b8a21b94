-- purpose: every landed export snapshot with the first kb-nightly run that pulled it: that
--          run's run_date is the export's date (kbflow.backfill.export_dates falls back to
--          the day it was landed when no run recorded it).
-- inputs:  none
-- output:  snapshot_id, snapshot_sha256, source, files (json text), first_seen_at,
--          first_run_id, first_run_date
-- grain:   one row per landed export snapshot
-- key:     snapshot_id
with landed as (
    select snapshot_id, snapshot_sha256, source, files, first_seen_at
    from exports
),

nightly_runs as (
    select
        snapshot_id,
        run_id,
        run_date,
        row_number() over (partition by snapshot_id order by run_date, started_at) as rank_in_snapshot
    from runs
    where flow = 'kb-nightly' and snapshot_id is not null
),

final as (
    select
        landed.snapshot_id,
        landed.snapshot_sha256,
        landed.source,
        landed.files::varchar as files,
        landed.first_seen_at,
        nightly_runs.run_id as first_run_id,
        nightly_runs.run_date as first_run_date
    from landed
    left join nightly_runs
        on nightly_runs.snapshot_id = landed.snapshot_id and nightly_runs.rank_in_snapshot = 1
)

select * from final
order by coalesce(first_run_date, cast(first_seen_at as date)), first_seen_at
