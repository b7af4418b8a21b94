-- purpose: whether a decision with this id was recorded (a form submitted twice).
-- inputs:  review_decisions; $decision_id
-- output:  one row: present (boolean)
-- grain:   one row
-- key:     -
with final as (
    select count(*) > 0 as present
    from review_decisions
    where decision_id = $decision_id
)

select * from final
