"""Stage ``chunk``: clean entries in, passages out (``passages``); ``stage`` is the stage."""
