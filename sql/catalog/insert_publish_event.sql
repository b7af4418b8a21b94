-- purpose: audit trail of CURRENT moves (publish, rollback).
-- inputs:  $event_at, $action, $version, $previous_version, $run_id
insert into publish_events values ($event_at, $action, $version, $previous_version, $run_id)
