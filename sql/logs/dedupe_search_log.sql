-- purpose: keep one row per query id in search_log (the earliest), when repeats were found.
-- inputs:  search_log
-- output:  search_log replaced, one row per query_id
-- grain:   one row per query_id
create or replace temp table search_log as
select * from search_log
qualify row_number() over (partition by query_id order by ts) = 1
