"""Stage ``clean``: normalise, drop what must not be published, merge duplicates.

``normalize`` (HTML to text, NFKC, whitespace), ``expiry`` (dates and deadline phrases),
``minhash`` (the near-duplicate engine), ``dedup`` (the decisions, one outcome per row),
``stage`` (the stage)."""
