"""Stage ``publish``: make a version live (``pointer``: ``CURRENT``, rollback, pruning), the stage."""
