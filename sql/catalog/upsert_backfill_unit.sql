-- purpose: record the state of one backfill unit (running, done or failed); starting a unit
--          again replaces its row, so the ledger holds its latest attempt.
-- inputs:  $kind, $unit, $params_hash, $status, $run_id, $started_at, $finished_at, $summary (json)
-- grain:   one row per (kind, unit, params_hash)
insert or replace into backfill_units
    (kind, unit, params_hash, status, run_id, started_at, finished_at, summary)
values
    ($kind, $unit, $params_hash, $status, $run_id, $started_at, $finished_at, $summary::json)
