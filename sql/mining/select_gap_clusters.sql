-- purpose: gap topics of one week: the gap queries grouped by the cluster Python assigned to
--          their normalised text, with size, distinct users and sessions, why they are gaps,
--          example queries and the nearest KB entry (the most frequent top-1 result) and score.
-- inputs:  gap_events (create_gap_events), staged_gap_assignments (query, cluster_id);
--          $start_at, $end_at, $week, $n_samples, $mined_at
-- output:  rows for review_kb_gaps
-- grain:   one row per cluster; cluster_id -1 ("other") holds the queries that formed no topic
--          with another, listed last
-- key:     cluster_id
with gaps as (
    select * from gap_events($start_at, $end_at)
),

assigned as (
    select g.*, a.cluster_id
    from gaps as g
    inner join staged_gap_assignments as a on a.query = g.query
),

per_query as (
    select cluster_id, query, count(*) as n
    from assigned
    group by cluster_id, query
),

examples as (
    select
        cluster_id,
        list(query order by n desc, query)[1:$n_samples] as example_queries,
        list(query order by n desc, query)[1] as label,  -- ties broken by text: reruns agree
        count(*) as n_distinct_queries
    from per_query
    group by cluster_id
),

per_entry as (
    select cluster_id, result_ids[1] as entry_id, count(*) as n, max(top1_score) as best
    from assigned
    where len(result_ids) > 0
    group by cluster_id, result_ids[1]
),

nearest as (
    select
        cluster_id,
        list(entry_id order by n desc, entry_id)[1] as nearest_entry_id,
        list(best order by n desc, entry_id)[1] as nearest_score
    from per_entry
    group by cluster_id
),

per_cluster as (
    select
        cluster_id,
        count(*) as size,
        count(distinct user_id) as n_users,
        count(distinct session_id) as n_sessions,
        count(*) filter (where low_score) as n_low_score,
        count(*) filter (where handoff) as n_handoff,
        count(*) filter (where no_click) as n_no_click
    from assigned
    group by cluster_id
),

final as (
    select
        $week as week,
        c.cluster_id::integer as cluster_id,
        case when c.cluster_id < 0 then 'other (其他)' else e.label end as label,
        c.size,
        e.n_distinct_queries,
        c.n_users,
        c.n_sessions,
        c.n_low_score,
        c.n_handoff,
        c.n_no_click,
        e.example_queries,
        n.nearest_entry_id,
        n.nearest_score,
        $mined_at::timestamptz as mined_at
    from per_cluster as c
    inner join examples as e using (cluster_id)
    left join nearest as n using (cluster_id)
    order by c.cluster_id < 0, c.size desc, c.cluster_id
)

select * from final
