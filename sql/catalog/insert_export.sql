-- purpose: record a landed export snapshot once (re-landing the same snapshot is a no-op).
-- inputs:  $snapshot_id, $snapshot_sha256, $source, $n_files, $files (json), $seen_at
insert into exports
select $snapshot_id, $snapshot_sha256, $source, $n_files, $files::json, $seen_at
where not exists (select 1 from exports where snapshot_id = $snapshot_id)
