from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from kbflow.contracts import QUARANTINE_ROW, table_from_rows
from kbflow.report.nightly import nightly_markdown, write_nightly_report


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.srcs += [v for k, v in attrs if k in ("src", "href") and v]


def test_report_escapes_user_text_and_loads_nothing_external(tmp_path: Path):
    q = table_from_rows(
        [
            {
                "row_id": 1,
                "source_file": "kb.jsonl",
                "source_line": 2,
                "entry_id": "<script>alert(1)</script>",
                "expectation": "expect_x",
                "detail": "<img src=x onerror=alert(2)>",
            }
        ],
        QUARANTINE_ROW,
    )
    summary = {
        "run_id": "r1",
        "status": "published",
        "rows": {"input": 3, "indexed": 2, "quarantined": 1},
        "timings": {"validate": 1.5, "embed": 3.0},
    }
    path = write_nightly_report(tmp_path / "r.html", summary, quarantine=q, retired=["old-1"])
    text = path.read_text(encoding="utf-8")
    parser = Collect()
    parser.feed(text)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert parser.srcs == []  # self-contained: no CDN, no external file
    assert text.count("<svg") == 2 and "old-1" in text


def test_markdown_summary_lists_every_outcome():
    md = nightly_markdown(
        {"run_id": "r", "status": "published", "rows": {"input": 5, "indexed": 5}}
    )
    for k in ("indexed", "duplicate", "stale", "unpublished", "quarantined"):
        assert f"| {k} |" in md
