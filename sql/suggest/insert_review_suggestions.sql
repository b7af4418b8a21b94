-- purpose: write one week's suggestions into review_suggestions, leaving out those a reviewer
--          accepted, edited or rejected in an earlier week's queue unless their evidence
--          (distinct sessions) has grown past $resurface_factor times what it was when decided
--          (at least one session: a KB-side suggestion decided with none comes back once users
--          meet it);
--          deferred ones return, and a rerun of the week decided in keeps its rows.
-- inputs:  staged_review_suggestions (review_suggestions columns), review_decisions;
--          $resurface_factor
-- output:  rows inserted into review_suggestions
-- grain:   as review_suggestions (keyed by week, suggestion_id)
insert into review_suggestions
with latest as (
    select suggestion_id, week, decision, evidence_sessions
    from review_decisions
    qualify row_number() over (partition by suggestion_id order by decided_at desc, decision_id) = 1
),

final as (
    select s.*
    from staged_review_suggestions as s
    where not exists (
        select 1 from latest as d
        where
            d.suggestion_id = s.suggestion_id
            and d.week < s.week
            and d.decision in ('accept', 'edit', 'reject')
            and s.n_sessions < greatest(d.evidence_sessions, 1) * $resurface_factor
    )
)

select * from final
