-- purpose: the review tables of the catalog written by the nightly review stage: semantic
--          near-duplicate pairs and contradicting answers of an index version.
-- inputs:  none
-- output:  tables review_versions, review_semantic_duplicates, review_contradictions
-- grain:   per index version: one row per reviewed version (threshold, counts), one row per
--          entry pair (semantic duplicates), one row per contradicting fact of a near-duplicate
--          pair. A rerun of a version replaces its rows.
create table if not exists review_versions (
    version varchar not null,
    run_id varchar,
    reviewed_at timestamp not null,
    model_key varchar,
    method varchar,
    semantic_threshold double,
    n_semantic_pairs integer not null,
    n_contradictions integer not null,
    summary json
);

create table if not exists review_semantic_duplicates (
    version varchar not null,
    run_id varchar,
    model_key varchar not null,
    entry_a varchar not null,
    entry_b varchar not null,
    title_a varchar,
    title_b varchar,
    score double not null,
    threshold double,
    matched_a varchar,
    matched_b varchar,
    text_a varchar,
    text_b varchar,
    updated_at_a varchar,
    updated_at_b varchar,
    newest_updated_at varchar,
    has_contradiction boolean,
    reviewed_at timestamp not null
);

create table if not exists review_contradictions (
    version varchar not null,
    run_id varchar,
    source varchar not null,
    entry_a varchar not null,
    entry_b varchar not null,
    title_a varchar,
    title_b varchar,
    similarity double,
    fact_kind varchar not null,
    unit varchar,
    topic varchar,
    value_a varchar,
    value_b varchar,
    normalized_a varchar,
    normalized_b varchar,
    evidence_a varchar,
    evidence_b varchar,
    note varchar,
    reviewed_at timestamp not null
);
