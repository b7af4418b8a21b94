-- purpose: how many click_log rows repeat a click already there (same query, entry and time).
-- inputs:  click_log (create_click_log)
-- output:  one row: repeats
-- grain:   whole log
-- key:     -
select count(*) - count(distinct (query_id, entry_id, ts)) as repeats from click_log
