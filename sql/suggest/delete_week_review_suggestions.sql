-- purpose: remove one week's suggestions before they are written again (a rerun of the week).
-- inputs:  review_suggestions; $week
-- output:  rows deleted from review_suggestions
-- grain:   as review_suggestions
delete from review_suggestions where week = $week
