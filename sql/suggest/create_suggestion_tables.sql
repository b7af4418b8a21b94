-- purpose: the review queue of logs.duckdb: suggestions mined each week from the search log
--          (one row per suggestion and week, with its evidence and impact) and the reviewers'
--          decisions on them (append-only: a decision is never updated or deleted).
-- inputs:  none
-- output:  tables review_suggestions, review_decisions (created if missing; columns added since
--          the first release are added to older files)
-- grain:   review_suggestions: one row per (week, suggestion_id); review_decisions: one row per
--          decision taken (a suggestion may be decided again: the latest decision counts).
create table if not exists review_suggestions (
    week varchar not null,
    suggestion_id varchar not null,
    kind varchar not null,
    entry_id varchar not null,
    other_entry_id varchar,
    text varchar not null,
    norm varchar not null,
    n_sessions bigint not null,
    n_users bigint not null,
    n_searches bigint not null,
    n_clicks bigint not null,
    example_queries varchar[],
    score_gap double,
    impact bigint not null,
    mined_at timestamptz not null,
    category varchar,
    detail varchar
);

-- category: the entry's category; detail: kind-specific evidence as JSON text (scores, answers
-- side by side, the nearest entry of a gap, expiry dates)
alter table review_suggestions add column if not exists category varchar;
alter table review_suggestions add column if not exists detail varchar;

create table if not exists review_decisions (
    decision_id varchar not null,
    suggestion_id varchar not null,
    week varchar not null,
    kind varchar not null,
    entry_id varchar not null,
    text varchar not null,
    decision varchar not null,
    reviewer varchar not null,
    decided_at timestamptz not null,
    comment varchar,
    evidence_sessions bigint not null
);
