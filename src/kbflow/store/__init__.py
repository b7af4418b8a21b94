"""The data home and its stores: ``home`` (paths, locks, atomic writes), ``versions`` (which
version is live, manifests), ``catalog`` (``catalog.duckdb``), ``logs`` (``logs.duckdb``),
``golden`` (the golden queries), ``sql`` (statements by name), ``db`` (transactions)."""
