-- purpose: how many search and click events logs.duckdb holds (for tools and tests).
-- inputs:  none
-- output:  one row: n_searches, n_clicks
-- grain:   whole database
-- key:     -
with searches as (
    select count(*) as n_searches from search_events
),

clicks as (
    select count(*) as n_clicks from click_events
),

final as (
    select searches.n_searches, clicks.n_clicks from searches cross join clicks
)

select * from final
