#!/usr/bin/env python
"""Write one week of SIMULATED search and click logs into a data home's logs.duckdb.

    python examples/simulate_week.py --home .kbflow-demo [--week 2026-W47] [--sessions 200]

The same as `kbflow simulate-logs` (all its options apply): REAL searches on the home's live
index with a click model; every session and user id starts with `sim-`. Then mine the week
with `kbflow mine --home DIR --week ...`.
"""

from __future__ import annotations

import sys

from kbflow.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["simulate-logs", *sys.argv[1:]]))
