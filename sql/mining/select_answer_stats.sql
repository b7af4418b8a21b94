-- purpose: per answer (KB entry) shown in the top 3 during one week: impressions, top-1
--          impressions, clicks, CTR, the low-CTR flag and the queries it was shown for most.
-- inputs:  search_events, click_events; $start_at, $end_at (the week, [start, end)),
--          $week, $min_impressions, $ctr_threshold, $n_samples, $mined_at
-- output:  rows for review_low_click_answers
-- grain:   one row per entry_id shown at least once in the week
with searches as (
    select query_id, query, result_ids
    from search_events
    where ts >= $start_at and ts < $end_at
),

impressions as (
    select s.query_id, s.query, r.entry_id, r.position
    from searches as s,
        unnest(s.result_ids[1:3]) with ordinality as r(entry_id, position)
),

clicks as (
    -- a click counts for the week of its search; repeated clicks on one result count once
    select distinct c.query_id, c.entry_id
    from click_events as c
    where c.query_id in (select query_id from searches)
),

joined as (
    select
        i.entry_id,
        i.query,
        i.position,
        c.query_id is not null as clicked
    from impressions as i
    left join clicks as c on c.query_id = i.query_id and c.entry_id = i.entry_id
),

per_query as (
    select entry_id, query, count(*) as n
    from joined
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
        count(*) as impressions,
        count(*) filter (where position = 1) as top1_impressions,
        count(*) filter (where clicked) as clicks
    from joined
    group by entry_id
),

final as (
    select
        $week as week,
        a.entry_id,
        a.impressions,
        a.top1_impressions,
        a.clicks,
        a.clicks / a.impressions as ctr,
        (a.clicks / a.impressions < $ctr_threshold and a.impressions >= $min_impressions) as flagged,
        s.sample_queries,
        $mined_at::timestamptz as mined_at
    from per_answer as a
    left join samples as s using (entry_id)
    order by flagged desc, a.impressions desc, a.entry_id
)

select * from final
