-- purpose: close a run with its final status, version and summary.
-- inputs:  $run_id, $finished_at, $status, $snapshot_id, $version, $summary (json), $message
update runs
set finished_at = $finished_at,
    status = $status,
    snapshot_id = $snapshot_id,
    version = $version,
    summary = $summary::json,
    message = $message
where run_id = $run_id
