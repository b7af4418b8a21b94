"""Reports: Markdown summaries (Prefect artifacts) and self-contained HTML pages.

``html`` (the page, charts inline as SVG, every piece of user text escaped), ``nightly``,
``weekly``, ``review`` (the review lists' sections), ``stage`` (the nightly ``report`` stage:
the run summary assembled from the stage markers)."""
