"""Stage ``pull``: find an export, land an immutable copy under ``raw/``, and read it.

An export (``--source``) is one file, or a folder whose files together are one full snapshot
of the KB (JSONL, CSV, Parquet, XLSX). ``discover`` lists and hashes its files (local path or
fsspec URL), ``land`` copies them to ``raw/<snapshot_id>/`` (idempotent), ``readers`` parse the
landed copy into ``RAW_ROW`` rows (the validate stage reads them), ``stage`` is the stage."""
