-- purpose: store the final outcome of every input row of a run.
-- inputs:  $run_id; staged arrow table staged_outcomes (ROW_OUTCOME schema)
-- grain:   one row per (run_id, row_id)
insert into row_outcomes
select $run_id, row_id, entry_id, outcome, reason, detail from staged_outcomes
