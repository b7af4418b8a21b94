-- purpose: the search log when there are no Parquet segments: search_events as it is.
-- inputs:  search_events
-- output:  the temp view search_log
-- grain:   as search_events
create temp view search_log as
select * from main.search_events
