-- purpose: remove one run's rows from stale_entries before they are written again (rerun-safe).
-- inputs:  $run_id
delete from stale_entries where run_id = $run_id
