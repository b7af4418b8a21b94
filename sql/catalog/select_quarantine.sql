-- purpose: the quarantined rows of one run, in input order.
-- inputs:  $run_id
-- grain:   one row per quarantined input row of the run
-- key:     row_id
with final as (
    select row_id, source_file, source_line, entry_id, expectation, detail
    from quarantine
    where run_id = $run_id
    order by row_id
)

select * from final
