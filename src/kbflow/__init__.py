"""kbflow: the nightly knowledge-base pipeline behind semantic retrieval for customer service.

The core library. It never imports Prefect; ``flows/`` and ``tasks/`` wrap it.
"""

__version__ = "0.1.0"
