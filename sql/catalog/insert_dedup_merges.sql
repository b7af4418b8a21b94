-- purpose: store every dedup merge of a run.
-- inputs:  $run_id; staged arrow table staged_merges (DEDUP_MERGE schema)
insert into dedup_merges
select $run_id, kind, canonical_id, merged_id, row_id, similarity, canonical_title, merged_title
from staged_merges
