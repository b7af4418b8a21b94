-- purpose: write one version's semantic near-duplicate pairs into review_semantic_duplicates.
-- inputs:  staged_semantic_duplicates (registered Arrow table, REVIEW_SEMANTIC_DUPLICATE
--          schema); $reviewed_at
-- output:  rows inserted into review_semantic_duplicates
-- grain:   one row per entry pair of the version
insert into review_semantic_duplicates
with staged as (
    select * from staged_semantic_duplicates
),

final as (
    select
        version,
        run_id,
        model_key,
        entry_a,
        entry_b,
        title_a,
        title_b,
        score,
        threshold,
        matched_a,
        matched_b,
        text_a,
        text_b,
        updated_at_a,
        updated_at_b,
        newest_updated_at,
        has_contradiction,
        $reviewed_at as reviewed_at
    from staged
)

select * from final
