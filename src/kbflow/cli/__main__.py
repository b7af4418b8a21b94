"""``python -m kbflow.cli ...``: the same as ``kbflow ...``."""

from kbflow.cli.main import main

raise SystemExit(main())
