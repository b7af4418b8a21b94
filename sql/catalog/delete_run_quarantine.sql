-- purpose: remove one run's rows from quarantine before they are written again (rerun-safe).
-- inputs:  $run_id
delete from quarantine where run_id = $run_id
