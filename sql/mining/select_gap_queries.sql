-- purpose: the week's queries the KB may not answer (top-1 score under the version's
--          hand-off threshold, handed off, or no click), one row per raw query text, for
--          normalising and clustering in Python.
-- inputs:  gap_events (create_gap_events); $start_at, $end_at
-- output:  query, n_events (the most frequent first)
-- grain:   one row per distinct raw query text
-- key:     query
with gaps as (
    select query from gap_events($start_at, $end_at)
),

final as (
    select query, count(*) as n_events
    from gaps
    group by query
    order by n_events desc, query
)

select * from final
