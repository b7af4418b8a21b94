-- purpose: how many search_log rows repeat a query id already there (segments that repeat
--          each other: a spool copied by hand); 0 almost always.
-- inputs:  search_log (create_search_log)
-- output:  one row: repeats
-- grain:   whole log
-- key:     -
select count(*) - count(distinct query_id) as repeats from search_log
