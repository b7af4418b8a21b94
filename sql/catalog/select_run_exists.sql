-- purpose: whether a run id is already recorded (a run id names one run for good).
-- inputs:  $run_id
-- grain:   at most one row
-- key:     -
select 1 from runs where run_id = $run_id
