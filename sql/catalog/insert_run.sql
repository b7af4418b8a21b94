-- purpose: open a run record in status 'running'.
-- inputs:  $run_id, $flow, $run_date, $started_at
insert into runs (run_id, flow, run_date, started_at, status)
values ($run_id, $flow, $run_date, $started_at, 'running')
