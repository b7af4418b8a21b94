-- purpose: write one version's contradicting facts into review_contradictions.
-- inputs:  staged_contradictions (registered Arrow table, REVIEW_CONTRADICTION schema);
--          $reviewed_at
-- output:  rows inserted into review_contradictions
-- grain:   one row per contradicting fact of a near-duplicate pair (semantic or merged)
insert into review_contradictions
with staged as (
    select * from staged_contradictions
),

final as (
    select
        version,
        run_id,
        source,
        entry_a,
        entry_b,
        title_a,
        title_b,
        similarity,
        fact_kind,
        unit,
        topic,
        value_a,
        value_b,
        normalized_a,
        normalized_b,
        evidence_a,
        evidence_b,
        note,
        $reviewed_at as reviewed_at
    from staged
)

select * from final
