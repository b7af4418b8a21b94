"""Stage ``validate``: a Great Expectations suite over the parsed rows (``expectations``)."""
