"""Backfills (``kb-backfill``): replay landed exports, re-embed the live snapshot, re-mine weeks.

A backfill is a list of *units* (one landed export, one re-embed, one ISO week), each run as its
own flow run. ``request`` parses what was asked, ``units`` plans the units, runs them in order
and keeps the ledger that makes a backfill idempotent (the catalog table ``backfill_units``: a
unit recorded ``done`` is skipped when the same backfill is triggered again), ``reembed`` forks
the live version's run for a blue/green re-embed. No Prefect here: ``kbflow_flows.backfill``
says which flow runs a unit."""
