-- purpose: the macro norm_query(q): a query or question folded for comparison (lower case, no
--          spaces or punctuation, ASCII or CJK), so "怎么 修改发票抬头？" and "怎么修改发票抬头"
--          are one text.
-- inputs:  none
-- output:  the temp macro norm_query(q)
-- grain:   -
create or replace temp macro norm_query(q) as
    regexp_replace(lower(trim(q)), '[[:space:][:punct:]，。？！、；：“”‘’（）【】《》…—·～]+', '', 'g')
