"""Stage ``index``: build a versioned dense + keyword index, load it, calibrate it.

``bm25`` (tokenisation and the keyword index), ``dense`` (FAISS factory, hub scores, the dense
scale), ``build`` (the version folder, atomically), ``version`` (a version loaded for search:
candidates and fusion), ``calibrate`` (fusion weight and hand-off threshold per version),
``stage`` (the stage)."""
