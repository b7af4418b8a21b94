-- purpose: row accounting of one run: rows per outcome.
-- inputs:  $run_id
-- grain:   one row per outcome
-- key:     outcome
with outcomes as (
    select outcome from row_outcomes where run_id = $run_id
),

final as (
    select outcome, count(*) as n_rows from outcomes group by outcome order by outcome
)

select * from final
