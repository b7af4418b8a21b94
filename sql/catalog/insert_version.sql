-- purpose: register a built index version (published or not).
-- inputs:  $version, $run_id, $created_at, $snapshot_id, $model_key, $n_entries, $n_passages, $manifest
insert or replace into versions
values ($version, $run_id, $created_at, $snapshot_id, $model_key, $n_entries, $n_passages, $manifest::json)
