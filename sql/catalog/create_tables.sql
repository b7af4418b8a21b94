-- purpose: the catalog of a data home: exports seen, runs, row accounting, quarantine,
--          dedup merges, stale entries and index versions.
-- grain:   one table per fact; every run-scoped table is keyed by run_id.
create table if not exists exports (
    snapshot_id varchar primary key,
    snapshot_sha256 varchar not null,
    source varchar not null,
    n_files integer not null,
    files json not null,
    first_seen_at timestamp not null
);

create table if not exists runs (
    run_id varchar primary key,
    flow varchar not null,
    run_date date not null,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,
    snapshot_id varchar,
    version varchar,
    summary json,
    message varchar
);

create table if not exists row_outcomes (
    run_id varchar not null,
    row_id bigint not null,
    entry_id varchar,
    outcome varchar not null,
    reason varchar,
    detail varchar,
    primary key (run_id, row_id)
);

create table if not exists quarantine (
    run_id varchar not null,
    row_id bigint not null,
    source_file varchar,
    source_line bigint,
    entry_id varchar,
    expectation varchar not null,
    detail varchar,
    raw varchar,
    primary key (run_id, row_id)
);

create table if not exists dedup_merges (
    run_id varchar not null,
    kind varchar not null,
    canonical_id varchar not null,
    merged_id varchar not null,
    row_id bigint,
    similarity double,
    canonical_title varchar,
    merged_title varchar
);

create table if not exists stale_entries (
    run_id varchar not null,
    entry_id varchar not null,
    title varchar,
    reason varchar not null,
    evidence varchar,
    stale_since varchar
);

create table if not exists versions (
    version varchar primary key,
    run_id varchar not null,
    created_at timestamp not null,
    snapshot_id varchar,
    model_key varchar not null,
    n_entries integer not null,
    n_passages integer not null,
    manifest json not null
);

create table if not exists publish_events (
    event_at timestamp not null,
    action varchar not null,
    version varchar not null,
    previous_version varchar,
    run_id varchar
);

-- kb-backfill's ledger: one row per unit of work (a replayed export, a re-embed, a re-mined
-- week) and parameter set; a unit recorded 'done' is skipped when the backfill is triggered again.
create table if not exists backfill_units (
    kind varchar not null,
    unit varchar not null,
    params_hash varchar not null,
    status varchar not null,
    run_id varchar,
    started_at timestamp not null,
    finished_at timestamp,
    summary json,
    primary key (kind, unit, params_hash)
);
