-- purpose: how many suggestions one week has in the review queue (after write_suggestions).
-- inputs:  review_suggestions; $week
-- output:  one row: n
-- grain:   one week
-- key:     -
select count(*) as n from review_suggestions where week = $week
