#!/usr/bin/env python
"""Write one week of SIMULATED search and click logs into a data home's logs.duckdb.

    python examples/simulate_week.py --home .kbflow-demo [--week 2026-W47] [--sessions 200]
        [--golden examples/kb_zh/golden.jsonl] [--seed 0]

Runs REAL searches on the home's live index version (build one first with
`kbflow nightly --home DIR --source examples/kb_zh/export`): the golden queries and simple
paraphrases of them (typos, inserted particles), with a click model (relevant results are
clicked more, higher ranks more, some sessions abandon). Every session and user id starts with
`sim-`: these are not real users. Then mine the week with `kbflow mine --home DIR --week ...`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from kbflow.cli import _searcher
    from kbflow.logstore import LogWriter
    from kbflow.mining import default_week, parse_week
    from kbflow.simulate import load_golden, simulate_week

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("KBFLOW_HOME", ".kbflow")))
    ap.add_argument("--week", help="ISO week, Asia/Shanghai (default: the last complete week)")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--golden", type=Path, default=HERE / "kb_zh" / "golden.jsonl")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    week = args.week or default_week()
    parse_week(week)
    home = args.home.expanduser().resolve()
    searcher = _searcher(home)
    with LogWriter(home / "logs.duckdb", batch_size=1000, flush_s=5.0) as writer:
        got = simulate_week(
            searcher, writer, load_golden(args.golden), week, args.sessions, args.seed
        )
    print(
        f"SIMULATED week {week}: {got['sessions']} sessions, {got['searches']} searches, "
        f"{got['clicks']} clicks -> {home / 'logs.duckdb'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
