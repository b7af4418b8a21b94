-- purpose: the weekly review tables of logs.duckdb, written by kb-weekly-mining.
-- inputs:  none
-- output:  tables review_low_click_answers, review_kb_gaps, review_weekly_metrics
-- grain:   per ISO week (week = '2026-W47'): one row per answer shown, one row per gap
--          cluster, one metrics row. A rerun of a week replaces that week's rows only.
create table if not exists review_low_click_answers (
    week varchar not null,
    entry_id varchar not null,
    impressions bigint not null,
    top1_impressions bigint not null,
    clicks bigint not null,
    ctr double not null,
    flagged boolean not null,
    sample_queries varchar[],
    mined_at timestamptz not null
);

create table if not exists review_kb_gaps (
    week varchar not null,
    cluster_id integer not null,
    label varchar not null,
    size bigint not null,
    n_distinct_queries bigint not null,
    n_users bigint not null,
    n_sessions bigint not null,
    n_low_score bigint not null,
    n_handoff bigint not null,
    n_no_click bigint not null,
    example_queries varchar[],
    nearest_entry_id varchar,
    nearest_score double,
    mined_at timestamptz not null
);

create table if not exists review_weekly_metrics (
    week varchar not null,
    start_at timestamptz not null,
    end_at timestamptz not null,
    n_queries bigint not null,
    n_sessions bigint not null,
    n_users bigint not null,
    n_clicks bigint not null,
    p50_ms double,
    p95_ms double,
    p99_ms double,
    top1_deciles double[],
    top1_histogram bigint[],
    fallback_rate double,
    fallback_l1_rate double,
    fallback_l2_rate double,
    handoff_rate double,
    ctr double,
    prev_n_queries bigint,
    ks_stat double,
    alert_p95 boolean not null,
    alert_fallback boolean not null,
    alert_handoff boolean not null,
    alert_score_shift boolean not null,
    mined_at timestamptz not null
);
