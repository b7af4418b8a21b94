"""Many KBs on one pipeline: the KB registry, which KBs are due, every KB's status and the fleet
report. The ``kb-fleet`` flow (``flows/fleet.py``) runs one ``kb-nightly`` per due KB."""
