"""The command line (``kbflow``): the one outer door of the core. Only the commands that run a
flow reach ``kbflow_flows``, lazily; ``search``, ``eval`` and ``serve`` never start Prefect."""

from kbflow.cli.main import main

__all__ = ["main"]
