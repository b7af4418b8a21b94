-- purpose: one version's semantic near-duplicate pairs, for the weekly bundle and reports.
-- inputs:  review_semantic_duplicates; $version
-- output:  the version's pairs, newest first, then the strongest
-- grain:   one row per entry pair
-- key:     entry_a, entry_b
with version_rows as (
    select * from review_semantic_duplicates where version = $version
),

final as (
    select * from version_rows
    order by newest_updated_at desc nulls last, score desc, entry_a, entry_b
)

select * from final
