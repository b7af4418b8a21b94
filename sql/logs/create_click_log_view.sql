-- purpose: the click log when there are no Parquet segments: click_events as it is.
-- inputs:  click_events
-- output:  the temp view click_log
-- grain:   as click_events
create temp view click_log as
select * from main.click_events
