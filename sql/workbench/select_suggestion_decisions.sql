-- purpose: every decision taken on one suggestion, oldest first: the history the reviewers'
--          workbench shows beside its evidence (review_decisions is append-only; the latest
--          decision counts).
-- inputs:  review_decisions; $suggestion_id
-- output:  decision_id, week, decision, reviewer, decided_at, entry_id, text, comment,
--          evidence_sessions
-- grain:   one row per decision
-- key:     decision_id
with final as (
    select
        decision_id,
        week,
        decision,
        reviewer,
        decided_at,
        entry_id,
        text,
        comment,
        evidence_sessions
    from review_decisions
    where suggestion_id = $suggestion_id
    order by decided_at, decision_id
)

select * from final
