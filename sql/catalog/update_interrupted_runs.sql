-- purpose: close runs left 'running' by a process that died (killed, crashed, host rebooted).
--          Runs are opened only under the data home's run lock, and this is called by the next
--          run while it holds that lock, so no run can still be alive.
-- inputs:  $finished_at, $message
-- output:  the run ids closed as 'interrupted'
-- grain:   one row per run
update runs
set finished_at = $finished_at,
    status = 'interrupted',
    message = $message
where status = 'running'
returning run_id
