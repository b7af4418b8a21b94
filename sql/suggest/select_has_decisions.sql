-- purpose: whether logs.duckdb has the review_decisions table yet (a read-only reader cannot
--          create it).
-- inputs:  the database's catalog
-- output:  one row: present
-- grain:   whole database
-- key:     -
select count(*) > 0 as present from duckdb_tables() where table_name = 'review_decisions'
