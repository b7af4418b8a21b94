"""A review queue built the way production builds it: real searches and clicks through the
spool and Parquet segments, mined by ``mine_week`` against a real live version (a similar
question and a confusion), plus rows the mining's newer kinds write (a contradiction, a gap)
and one with hostile text, written through ``write_suggestions``."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from kbflow.mining.suggest import write_suggestions
from kbflow.publish.pointer import publish_version
from kbflow.settings import MiningSettings
from kbflow.store.logs import connect_logs
from kbflow.store.sql import load_sql

from ..helpers import tiny_version
from ..mining.test_suggest import mine, week47

#: The week the extra rows are written for (the mined ones are 2026-W47).
EXTRA_WEEK = "2026-W46"
XSS = "<script>alert(1)</script>"

CONTRADICTION = {
    "a": {"entry_id": "refund-time", "title": "退款多久到账？", "answer": "退款将在 7 个工作日内原路退回。"},
    "b": {"entry_id": "refund-card", "title": "信用卡退款多久到账？", "answer": "退款将在 15 个工作日内退回信用卡。"},
    "facts": [{"kind": "duration", "value_a": "7 个工作日", "value_b": "15 个工作日",
               "evidence_a": "7 个工作日内", "evidence_b": "15 个工作日内"}],
    "score": 0.91,
}  # fmt: skip


def suggestion_row(suggestion_id: str, kind: str, text: str, impact: int, **extra: Any) -> dict:
    return {
        "week": EXTRA_WEEK,
        "suggestion_id": suggestion_id,
        "kind": kind,
        "entry_id": "refund-time",
        "other_entry_id": None,
        "text": text,
        "norm": text.lower(),
        "n_sessions": impact,
        "n_users": impact - 1,
        "n_searches": impact + 2,
        "n_clicks": impact,
        "example_queries": [text],
        "score_gap": None,
        "impact": impact,
        "mined_at": datetime(2026, 11, 16, 2, 0, tzinfo=UTC),
        "category": "退款",
        "detail": None,
        **extra,
    }


def write_rows(logs: Path, week: str, rows: list[dict[str, Any]]) -> int:
    """``rows`` as ``week``'s suggestions (replacing that week), in the table's own schema."""
    with connect_logs(logs) as con:
        con.execute(load_sql("suggest/create_suggestion_tables"))
        schema = con.sql("select * from review_suggestions limit 0").to_arrow_table().schema
        return write_suggestions(
            con, week, pa.Table.from_pylist(rows, schema=schema), MiningSettings()
        )


def extra_rows() -> list[dict[str, Any]]:
    return [
        suggestion_row("c0ffee" * 5 + "01", "contradiction", "退款多久到账", 9,
                       other_entry_id="refund-card", detail=json.dumps(CONTRADICTION, ensure_ascii=False)),
        suggestion_row("bad" * 10 + "02", "gap", XSS, 1, entry_id="", other_entry_id="coupon",
                       category=None, example_queries=[XSS, "<img src=x onerror=alert(2)>"],
                       detail=json.dumps({"nearest_score": 0.21, "note": "<b>bold</b>"})),
    ]  # fmt: skip


def build_home(root: Path) -> Path:
    home = root / "home"
    tiny_version(home / "indexes", "v1")
    publish_version(home / "indexes", "v1", keep=5)
    week47(home)
    mine(home, "2026-W47")
    write_rows(home / "logs.duckdb", EXTRA_WEEK, extra_rows())
    return home


def copy_home(template: Path, root: Path) -> Path:
    home = root / "home"
    shutil.copytree(template, home)
    return home


def decision_rows(logs: Path) -> list[tuple[Any, ...]]:
    with connect_logs(logs, read_only=True) as con:
        return con.execute(
            "select suggestion_id, decision, reviewer, entry_id, text, comment"
            " from review_decisions order by decided_at"
        ).fetchall()


def form_fields(html: str, decision: str) -> dict[str, str]:
    """The hidden fields of the detail page's form for ``decision`` (``edit``: the edit form;
    otherwise the accept/reject/defer form)."""
    forms = re.findall(r"<form class=\"decision-form[^\"]*\".*?</form>", html, flags=re.S)
    form = next(f for f in forms if ('value="edit"' in f) == (decision == "edit"))
    fields = {k: html_lib.unescape(v) for k, v in
              re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form)}  # fmt: skip
    fields["decision"] = decision
    return fields
