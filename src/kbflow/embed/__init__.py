"""Stage ``embed`` (and ``model``): backends behind one interface, the cache, the drift guard.

``base`` (the ``Embedder`` protocol, model keys), ``local`` (all-MiniLM-L6-v2), ``e5``
(multilingual-e5-small), ``openai`` (any OpenAI-compatible endpoint), ``sglang`` (GPU workers
a run starts and stops), ``factory`` (the configured backend), ``cache`` (vectors by text hash),
``drift`` (canaries), ``choose`` (``auto``: the KB's language picks the model), ``server``
(``kbflow serve-embeddings``), ``stage`` (the ``model`` and ``embed`` stages)."""
