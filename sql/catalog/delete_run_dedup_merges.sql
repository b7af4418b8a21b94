-- purpose: remove one run's rows from dedup_merges before they are written again (rerun-safe).
-- inputs:  $run_id
delete from dedup_merges where run_id = $run_id
