-- purpose: how many search and click events the log holds (logs.duckdb and segments, each once).
-- inputs:  search_log, click_log (kbflow.store.segments.attach_log_views)
-- output:  one row: n_searches, n_clicks
-- grain:   whole database
-- key:     -
with searches as (
    select count(*) as n_searches from search_log
),

clicks as (
    select count(*) as n_clicks from click_log
),

final as (
    select searches.n_searches, clicks.n_clicks from searches cross join clicks
)

select * from final
