-- purpose: keep one row per click (query, entry, time) in click_log, when repeats were found.
-- inputs:  click_log
-- output:  click_log replaced, one row per click
-- grain:   one row per (query_id, entry_id, ts)
create or replace temp table click_log as
select * from click_log
qualify row_number() over (partition by query_id, entry_id, ts order by ts) = 1
