"""Stage ``review``: semantic near-duplicates and contradicting answers of a new index version.

``semantic`` (pairs of entries whose questions mean the same, thresholds calibrated per
version), ``facts`` (values stated in answers), ``contradictions`` (differing facts of
near-duplicate pairs), ``tables`` (the catalog's review tables), ``stage`` (the stage)."""
