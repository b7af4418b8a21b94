-- purpose: store the quarantined rows of a run with the expectation each failed.
-- inputs:  $run_id; staged arrow table staged_quarantine (QUARANTINE_ROW schema)
insert into quarantine
select $run_id, row_id, source_file, source_line, entry_id, expectation, detail, raw
from staged_quarantine
