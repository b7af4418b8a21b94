-- purpose: per answer (KB entry) shown in the top 3 during one week: impressions, top-1
--          impressions, clicks, CTR, the low-CTR flag and the queries it was shown for most.
-- inputs:  search_log, click_log (the log views: logs.duckdb and the Parquet segments, each
--          event once; kbflow.store.segments.attach_log_views); $start_at, $end_at (the week, [start, end)),
--          $week, $min_impressions, $ctr_threshold, $n_samples, $mined_at
-- output:  rows for review_low_click_answers
-- grain:   one row per entry_id shown at least once in the week
-- key:     entry_id
with searches as (
    select query_id, query, result_ids[1:3] as top3
    from search_log
    where ts >= $start_at and ts < $end_at
),

shown as (
    -- identical (query, top 3) pairs are most of a week: count them once, unnest the groups
    select query, top3, count(*) as n
    from searches
    group by query, top3
),

impressions as (
    select s.query, r.entry_id, r.position, s.n
    from shown as s,
        unnest(s.top3) with ordinality as r(entry_id, position)
),

clicks as (
    -- a click counts for the week of its search and only on a top-3 result it was shown;
    -- repeated clicks on one result count once
    select distinct c.query_id, c.entry_id
    from click_log as c
    inner join searches as s on s.query_id = c.query_id
    where list_contains(s.top3, c.entry_id)
),

click_counts as (
    select entry_id, count(*) as clicks
    from clicks
    group by entry_id
),

per_query as (
    select entry_id, query, sum(n) as n
    from impressions
    group by entry_id, query
),

samples as (
    select entry_id, list(query order by n desc, query)[1:$n_samples] as sample_queries
    from per_query
    group by entry_id
),

per_answer as (
    select
        entry_id,
        sum(n)::bigint as impressions,
        coalesce(sum(n) filter (where position = 1), 0)::bigint as top1_impressions
    from impressions
    group by entry_id
),

final as (
    select
        $week as week,
        a.entry_id,
        a.impressions,
        a.top1_impressions,
        coalesce(c.clicks, 0)::bigint as clicks,
        coalesce(c.clicks, 0) / a.impressions as ctr,
        (
            coalesce(c.clicks, 0) / a.impressions < $ctr_threshold
            and a.impressions >= $min_impressions
        ) as flagged,
        s.sample_queries,
        $mined_at::timestamptz as mined_at
    from per_answer as a
    left join click_counts as c using (entry_id)
    left join samples as s using (entry_id)
    order by flagged desc, a.impressions desc, a.entry_id
)

select * from final
