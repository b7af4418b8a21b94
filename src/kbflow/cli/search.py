"""``kbflow search``, ``eval``, ``versions``, ``rollback``, ``runs`` and ``serve``: reading and
serving the live version, without Prefect."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kbflow.cli.common import print_json, resolve_home
from kbflow.errors import ConfigError
from kbflow.store.home import DataHome


def searcher_for(home: Path) -> Any:
    from kbflow.search.searcher import make_searcher
    from kbflow.settings import load_settings

    return make_searcher(home, load_settings(str(home)))


def cmd_search(args: argparse.Namespace) -> int:
    searcher = searcher_for(resolve_home(args.home))
    searcher.version(wait=True)  # no published version: one clear line, not a hand-off
    try:
        searcher.warm_up()  # load the model before the clock starts: latency_ms is the query's own
    except Exception as exc:  # noqa: BLE001 - the search itself reports the fallback level
        logging.getLogger(__name__).warning("embedder not available: %s", exc)
    res = searcher.search(args.query, k=args.k)
    if args.json:
        print_json(res.as_dict())
        return 0
    print(
        f"[{res.version}] {res.latency_ms:.0f} ms"
        + ("  -> hand-off to a human" if res.handoff else "")
        + (f"  (fallback level {res.fallback_level})" if res.fallback_level else "")
    )
    for i, h in enumerate(res.results, 1):
        print(f"  {i}. {h.score:.3f}  {h.entry_id}  {h.title}")
        print(f"     {h.passage[:120].replace(chr(10), ' ')}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from kbflow.gate.evaluate import evaluate
    from kbflow.store.golden import load_golden

    home = resolve_home(args.home)
    searcher = searcher_for(home)
    version = searcher.version()
    queries = load_golden(args.golden, args.split)
    weight = {"fused": None, "dense": 1.0, "bm25": 0.0}[args.mode]
    vectors = (
        None
        if args.mode == "bm25"
        else searcher.embedder(version.embedding).embed_queries([q.query for q in queries])
    )
    res = evaluate(version, queries, vectors, weight=weight)
    res["mode"] = args.mode
    failures = res.pop("failures")
    if args.failures:
        res["failures"] = failures[: args.failures]
    if args.json:
        print_json(res)
        return 0
    print(
        f"version {res['version']} ({args.mode}): {res['n']} in-scope queries, {res['n_out_of_scope']} out of scope"
    )
    print(f"  hit@1 {res['hit@1']}  hit@3 {res['hit@3']}  hit@10 {res['hit@10']}  MRR {res['mrr']}")
    if "handoff" in res:
        h = res["handoff"]
        print(
            f"  hand-off: threshold {h['threshold']}  precision {h['precision']}  recall {h['recall']}  AUROC {h['auroc']}"
        )
    for f in res.get("failures", []):
        print(f"  miss: {f['query']!r} expected {f['expected']} got {f['got']}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from kbflow.store.versions import list_versions

    infos = list_versions(DataHome(resolve_home(args.home)).indexes)
    if args.json:
        print_json([i.__dict__ for i in infos])
        return 0
    if not infos:
        print("no index versions yet; run `kbflow nightly --source ...`")
    for i in infos:
        print(
            f"{'*' if i.live else ' '} {i.version}  {i.created_at}  {i.model_key}  entries {i.entries}  passages {i.passages}  {i.status}"
        )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from kbflow.publish.pointer import rollback
    from kbflow.store import catalog

    home = resolve_home(args.home)
    data = DataHome(home)
    new, old = rollback(data.indexes, args.version)
    catalog.record_publish_event(data.catalog_path, "rollback", new, old, None)
    print(f"rolled back: {new} is live (was {old})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from kbflow.store import catalog

    for r in catalog.recent_runs(DataHome(resolve_home(args.home)).catalog_path, args.n):
        print(
            f"{r['run_id']}  {r['run_date']}  {r['status']:<10} {r['version'] or '-':<28} {r['message'] or ''}"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kbflow.search.service import serve
    from kbflow.settings import load_settings

    home = resolve_home(args.home)
    if args.workers < 1:
        raise ConfigError("--workers must be 1 or more")
    if args.rerank_url:
        # in the environment, so worker processes (--workers N) load the same settings
        os.environ["KBFLOW_SEARCH__RERANK__ENABLED"] = "true"
        os.environ["KBFLOW_SEARCH__RERANK__URL"] = args.rerank_url
    settings = load_settings(str(home))
    if not DataHome(home).indexes.is_dir():
        print(
            f"kbflow: no index in {home} yet; the service answers with hand-offs until "
            "`kbflow nightly` publishes one",
            file=sys.stderr,
        )
    workers = f" with {args.workers} worker processes" if args.workers > 1 else ""
    print(f"kbflow: serving {home} on http://{args.host}:{args.port}{workers} (Ctrl-C to stop)")
    serve(home, settings, args.host, args.port, workers=args.workers)
    return 0
