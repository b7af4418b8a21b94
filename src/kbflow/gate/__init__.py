"""Stage ``gate``: the quality gate (``check``), retrieval metrics (``evaluate``), the stage."""
