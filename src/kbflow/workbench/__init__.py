"""The reviewers' workbench: the review queue (``kbflow.mining.suggest``) as a web page.

``kbflow review serve`` runs it (FastAPI, server-rendered HTML, one CSS file, no script, no
CDN): the queue by impact with filters, each suggestion's evidence, and forms that append
decisions. Loopback by default; bound elsewhere it requires a token. Every change is a POST
with a CSRF token; all text is escaped.
"""
