-- purpose: remove the log views of a connection before they are made again.
-- inputs:  none
-- output:  no search_log / click_log view or temp table on the connection
-- grain:   -
drop view if exists search_log;
drop view if exists click_log;
drop table if exists temp.search_log;
drop table if exists temp.click_log;
