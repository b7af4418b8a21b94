-- purpose: the log tables of logs.duckdb: one row per search and one row per click.
-- inputs:  none
-- output:  tables search_events and click_events (created if missing)
-- grain:   search_events: one row per query served (query_id); click_events: one row per click.
-- note:    no primary key on purpose: an ART index on 10M+ rows a week costs memory on every
--          append; the insert statements skip query ids (and clicks) already stored instead.
create table if not exists search_events (
    query_id varchar not null,
    ts timestamptz not null,
    session_id varchar,
    user_id varchar,
    query varchar not null,
    version varchar,
    result_ids varchar[],
    result_scores double[],
    top1_score double,
    latency_ms double,
    fallback_level integer not null default 0,
    handoff boolean not null default false,
    threshold double
);

create table if not exists click_events (
    query_id varchar not null,
    ts timestamptz not null,
    session_id varchar,
    user_id varchar,
    entry_id varchar not null,
    position integer
);
