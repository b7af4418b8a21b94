-- purpose: store the entries a run found stale, with the evidence.
-- inputs:  $run_id; staged arrow table staged_stale (STALE_ENTRY schema)
insert into stale_entries
select $run_id, entry_id, title, reason, evidence, stale_since from staged_stale
