-- purpose: health of search over one week: volume, latency percentiles, top-1 score deciles
--          and histogram, fallback and hand-off rates, CTR, and alert flags, including a
--          two-sample Kolmogorov-Smirnov statistic of the top-1 scores against the week before.
-- inputs:  search_log, click_log (the log views: logs.duckdb and the Parquet segments, each
--          event once; kbflow.store.segments.attach_log_views); $week, $start_at, $end_at, $prev_start_at,
--          $prev_end_at, $n_bins (histogram bins over [0, 1]), $p95_alert_ms,
--          $fallback_alert_rate, $handoff_alert_rate, $ks_alert_threshold, $min_ks_samples,
--          $mined_at
-- output:  one row for review_weekly_metrics (also when the week has no events)
-- grain:   one row per week
-- key:     week
with searches as (
    select query_id, session_id, user_id, latency_ms, top1_score, fallback_level, handoff
    from search_log
    where ts >= $start_at and ts < $end_at
),

previous as (
    select top1_score
    from search_log
    where ts >= $prev_start_at and ts < $prev_end_at and top1_score is not null
),

clicks as (
    select query_id, count(*) as n
    from click_log
    where query_id in (select query_id from searches)
    group by query_id
),

volume as (
    select
        count(*) as n_queries,
        count(distinct session_id) as n_sessions,
        count(distinct user_id) as n_users,
        quantile_cont(latency_ms, 0.50) as p50_ms,
        quantile_cont(latency_ms, 0.95) as p95_ms,
        quantile_cont(latency_ms, 0.99) as p99_ms,
        quantile_cont(top1_score, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) as top1_deciles,
        avg((fallback_level > 0)::integer) as fallback_rate,
        avg((fallback_level = 1)::integer) as fallback_l1_rate,
        avg((fallback_level = 2)::integer) as fallback_l2_rate,
        avg(handoff::integer) as handoff_rate
    from searches
),

click_totals as (
    select
        coalesce(sum(n), 0)::bigint as n_clicks,
        count(*) as n_clicked_queries
    from clicks
),

bins as (
    select range as bin from range($n_bins)
),

binned as (
    select
        least(greatest(floor(top1_score * $n_bins), 0), $n_bins - 1)::bigint as bin,
        count(*) as n
    from searches
    where top1_score is not null
    group by 1
),

histogram as (
    select list(coalesce(binned.n, 0) order by bins.bin) as top1_histogram
    from bins
    left join binned on binned.bin = bins.bin
),

pooled as (
    select top1_score as score, 1 as in_current, 0 as in_previous
    from searches
    where top1_score is not null
    union all
    select top1_score as score, 0 as in_current, 1 as in_previous
    from previous
),

pool_sizes as (
    select sum(in_current) as n_current, sum(in_previous) as n_previous from pooled
),

per_score as (
    select score, sum(in_current) as n_current, sum(in_previous) as n_previous
    from pooled
    group by score
),

ecdf as (
    select
        sum(p.n_current) over (order by p.score) / nullif(sizes.n_current, 0) as f_current,
        sum(p.n_previous) over (order by p.score) / nullif(sizes.n_previous, 0) as f_previous
    from per_score as p
    cross join pool_sizes as sizes
),

ks as (
    select
        (select n_previous from pool_sizes) as prev_n_queries,
        case
            when (select n_previous from pool_sizes) > 0 and (select n_current from pool_sizes) > 0
                then max(abs(f_current - f_previous))
        end as ks_stat
    from ecdf
),

final as (
    select
        $week as week,
        $start_at::timestamptz as start_at,
        $end_at::timestamptz as end_at,
        v.n_queries,
        v.n_sessions,
        v.n_users,
        t.n_clicks,
        v.p50_ms,
        v.p95_ms,
        v.p99_ms,
        v.top1_deciles,
        h.top1_histogram,
        v.fallback_rate,
        v.fallback_l1_rate,
        v.fallback_l2_rate,
        v.handoff_rate,
        t.n_clicked_queries / nullif(v.n_queries, 0) as ctr,
        coalesce(k.prev_n_queries, 0)::bigint as prev_n_queries,
        k.ks_stat,
        coalesce(v.p95_ms > $p95_alert_ms, false) as alert_p95,
        coalesce(v.fallback_rate > $fallback_alert_rate, false) as alert_fallback,
        coalesce(v.handoff_rate > $handoff_alert_rate, false) as alert_handoff,
        coalesce(
            k.ks_stat > $ks_alert_threshold
            and k.prev_n_queries >= $min_ks_samples
            and v.n_queries >= $min_ks_samples,
            false
        ) as alert_score_shift,
        $mined_at::timestamptz as mined_at
    from volume as v
    cross join click_totals as t
    cross join histogram as h
    cross join ks as k
)

select * from final
