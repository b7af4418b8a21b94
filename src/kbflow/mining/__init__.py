"""``kb-weekly-mining``: a week of search and click logs into review tables, exports, a report.

Everything that can be SQL is SQL (``sql/mining/``, loaded by name, parameters bound): per-answer
impressions, clicks and CTR; gap queries and their per-topic aggregates; latency percentiles,
score distribution, rates and alert flags. Python does what SQL cannot: NFKC normalisation and
clustering of the gap queries into topics. ``weeks`` (ISO weeks), ``cluster``, ``mine``,
``tables`` (the week's review tables), ``export`` (CSV/Parquet/HTML), ``simulate`` (demo logs)."""
