-- purpose: record that a version was reviewed: its semantic threshold, how it was chosen,
--          and the counts (a version with no pair and no contradiction is still recorded).
-- inputs:  $version, $run_id, $reviewed_at, $model_key, $method, $semantic_threshold,
--          $n_semantic_pairs, $n_contradictions, $summary (the stage summary as JSON)
-- output:  one row inserted into review_versions
-- grain:   one row per version
insert into review_versions
with final as (
    select
        $version as version,
        $run_id as run_id,
        $reviewed_at as reviewed_at,
        $model_key as model_key,
        $method as method,
        $semantic_threshold as semantic_threshold,
        $n_semantic_pairs as n_semantic_pairs,
        $n_contradictions as n_contradictions,
        $summary as summary
)

select * from final
