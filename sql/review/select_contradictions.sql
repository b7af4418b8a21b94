-- purpose: one version's contradicting facts, for the weekly bundle and reports.
-- inputs:  review_contradictions; $version
-- output:  the version's rows: semantic pairs first, then those hidden by merges
-- grain:   one row per contradicting fact of a near-duplicate pair
-- key:     source, entry_a, entry_b, fact_kind, value_a, value_b
with version_rows as (
    select * from review_contradictions where version = $version
),

final as (
    select * from version_rows
    order by
        case source when 'semantic' then 0 when 'minhash_near' then 1 else 2 end,
        entry_a,
        entry_b,
        fact_kind
)

select * from final
