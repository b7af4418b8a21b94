"""Search over the live version: ``searcher`` (fusion, hand-off, the fallback ladder), ``rerank``
(SGLang's ``/v1/rerank``), ``service`` (``kbflow serve``, HTTP)."""
