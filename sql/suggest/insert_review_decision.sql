-- purpose: append one reviewer decision (never updated or deleted: the latest one counts).
-- inputs:  $decision_id, $suggestion_id, $week, $kind, $entry_id, $text, $decision, $reviewer,
--          $decided_at, $comment, $evidence_sessions
-- output:  one row inserted into review_decisions
-- grain:   one row per decision taken
insert into review_decisions
select
    $decision_id, $suggestion_id, $week, $kind, $entry_id, $text, $decision, $reviewer,
    $decided_at, $comment, $evidence_sessions
