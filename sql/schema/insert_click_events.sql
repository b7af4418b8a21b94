-- purpose: append staged click events to click_events, skipping exact repeats
--          (same query, entry and time: a retried flush or a re-imported file).
-- inputs:  staged_click_events (registered Arrow table with the click_events columns)
-- output:  rows inserted into click_events
-- grain:   one row per click
insert into click_events
with staged as (
    select distinct on (query_id, entry_id, ts) * from staged_click_events
),

final as (
    select s.query_id, s.ts, s.session_id, s.user_id, s.entry_id, s.position
    from staged as s
    where not exists (
        select 1 from click_events as c
        where c.query_id = s.query_id and c.entry_id = s.entry_id and c.ts = s.ts
    )
)

select * from final
