-- purpose: remove one run's rows from row_outcomes before they are written again (rerun-safe).
-- inputs:  $run_id
delete from row_outcomes where run_id = $run_id
