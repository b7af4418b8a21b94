"""A corpus of bad KB exports, each with the outcome kbflow must give.

Every case is *generated* (``build(src)`` writes an export into the empty folder ``src``), so
the big ones (a 50 MB answer, a million empty rows, a zip bomb) never sit in git and the byte-
level ones (invalid UTF-8, NUL bytes, BOMs) are exact. ``test_badinputs.py`` runs each case
through pull → validate → clean → chunk → account and checks the expected outcome; run this
file to write the corpus to a folder for a look by hand::

    python tests/badinputs/corpus.py /tmp/kbflow-badinputs        # small cases only
    python tests/badinputs/corpus.py /tmp/kbflow-badinputs --big  # and the big ones

An outcome is either a clear, typed error (``error`` + a regex its message must match) or a
completed run whose quarantined rows have the expected reasons (``quarantined``: expectation
name -> count), with ``indexed`` rows published and ``blank`` blank lines skipped. Cases that
need a file *outside* the source (symlink targets) write it to ``src.parent / "outside"``,
whose content holds :data:`OUTSIDE_MARKER`; the test checks the marker never reaches the
data home.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbflow.errors import ExportFormatError, KbflowError, SourceError, ValidationFailed

OUTSIDE_MARKER = "OUTSIDE-THE-SOURCE-7f3a9c"

#: Twelve unrelated FAQ entries: no two are near duplicates, none has a date phrase.
GOOD = [
    ("How do I reset my password?", "Open Settings, tap Security and choose Reset password."),
    ("Where is my parcel?", "Track it under Orders; the courier scan appears within a day."),
    (
        "Can I pay by bank transfer?",
        "Yes, choose Bank transfer at checkout and use the IBAN shown.",
    ),
    ("发票怎么开？", "在订单详情页点击申请发票，电子发票会发送到您的邮箱。"),
    ("退货运费谁承担？", "质量问题由商家承担运费，其他原因由买家承担。"),
    ("How long is the warranty?", "Every device carries a two year manufacturer warranty."),
    ("会员积分怎么用？", "结算时勾选使用积分，每一百积分抵扣一元。"),
    ("Do you ship abroad?", "We deliver to forty countries; duties are shown before payment."),
    ("How do I delete my account?", "Write to privacy support; we erase the data within a month."),
    ("可以修改收货地址吗？", "订单发货前可在订单页修改地址，发货后请联系快递员。"),
    ("Why was my card declined?", "Banks decline unusual amounts; call your bank and retry."),
    ("How do I change the language?", "Pick a language at the bottom of any page of the site."),
]

Q_UNIQUE = "expect_column_values_to_be_unique(id)"
Q_ID_NULL = "expect_column_values_to_not_be_null(id)"
Q_ID_UNSAFE = "expect_column_values_to_be_in_set(id_is_safe)"
Q_TITLE = "expect_column_values_to_be_between(title_chars)"
Q_ANSWER = "expect_column_values_to_be_between(answer_chars)"
Q_STATUS = "expect_column_values_to_be_in_set(status)"
Q_DATE = "expect_column_values_to_be_in_set(updated_at_parseable)"
Q_PARSE = "parseable_row"


def good_rows(n: int = 10, prefix: str = "g") -> list[dict[str, Any]]:
    """``n`` valid, mutually distinct rows (``n`` <= 12)."""
    return [{"id": f"{prefix}{i}", "title": t, "answer": a} for i, (t, a) in enumerate(GOOD[:n])]


def jsonl_bytes(rows: list[Any]) -> bytes:
    """Objects as JSON lines; ``bytes`` items are written verbatim (one line each)."""
    out = io.BytesIO()
    for r in rows:
        out.write(r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode())
        out.write(b"\n")
    return out.getvalue()


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def good_csv_rows(n: int = 10) -> list[list[str]]:
    return [[r["id"], r["title"], r["answer"]] for r in good_rows(n)]


def xlsx_bytes(rows: list[list[Any]], *, as_text: bool = False) -> bytes:
    """A workbook with ``rows`` on its first sheet. ``as_text`` stores every value as a string
    cell, even one starting with ``=`` (a formula cell otherwise)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            cell = ws.cell(row=r, column=c, value=value)
            if as_text and isinstance(value, str):
                cell.data_type = "s"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _patch_zip(data: bytes, member: str, fix: Callable[[bytes], bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item.filename)
            zout.writestr(item, fix(body) if item.filename == member else body)
    return out.getvalue()


def _outside(src: Path) -> Path:
    out = src.parent / "outside"
    out.mkdir(exist_ok=True)
    (out / "secret.jsonl").write_text(
        json.dumps({"id": "leak", "title": OUTSIDE_MARKER, "answer": OUTSIDE_MARKER}) + "\n",
        encoding="utf-8",
    )
    return out


# --- builders -----------------------------------------------------------------------------------


def truncated_jsonl(src: Path) -> None:
    data = jsonl_bytes(good_rows())
    (src / "kb.jsonl").write_bytes(data + b'{"id": "cut", "title": "Half a li')


def invalid_utf8_jsonl(src: Path) -> None:
    data = jsonl_bytes([*good_rows(5), b'{"id": "bad", "title": "caf\xe9", "answer": "x"}'])
    (src / "kb.jsonl").write_bytes(data + jsonl_bytes(good_rows(10)[5:]))


def invalid_utf8_csv(src: Path) -> None:
    text = csv_text(["id", "title", "answer"], good_csv_rows()).encode()
    (src / "kb.csv").write_bytes(text + b"bad,\xff\xfe broken,answer\n")


def mixed_encodings_csv(src: Path) -> None:
    # UTF-8 lines, then one record saved as GB18030. These UTF-8 bytes happen to be valid
    # GB18030 too, so decoding the whole file as GB18030 would "work" and silently turn every
    # UTF-8 line into mojibake (会员积分 -> 浼氬憳绉垎).
    rows = [*good_csv_rows(3), ["z1", "会员积分", "结算使用"], ["z2", "货运费用", "商家承担"]]
    head = csv_text(["id", "title", "answer"], rows).encode("utf-8")
    tail = "gbk1,发票怎么开,在订单页申请电子发票\n".encode("gb18030")
    data = head + tail
    data.decode("gb18030")  # the trap is real: no decode error
    (src / "kb.csv").write_bytes(data)


def gb18030_csv(src: Path) -> None:
    text = csv_text(["id", "title", "answer"], good_csv_rows())
    (src / "kb.csv").write_bytes(text.encode("gb18030"))


def utf8_bom_files(src: Path) -> None:
    rows = good_rows()
    (src / "a.jsonl").write_bytes(codecs.BOM_UTF8 + jsonl_bytes(rows[:5]))
    text = csv_text(
        ["id", "title", "answer"], [[r["id"], r["title"], r["answer"]] for r in rows[5:]]
    )
    (src / "b.csv").write_bytes(text.encode("utf-8-sig"))


def bom_mid_file_jsonl(src: Path) -> None:
    # Two exports concatenated with `cat`: the second one's BOM lands at the start of a line.
    rows = good_rows()
    (src / "kb.jsonl").write_bytes(
        codecs.BOM_UTF8 + jsonl_bytes(rows[:5]) + codecs.BOM_UTF8 + jsonl_bytes(rows[5:])
    )


def utf16_csv(src: Path) -> None:
    text = csv_text(["id", "title", "answer"], good_csv_rows())
    (src / "kb.csv").write_bytes(text.encode("utf-16"))


def nul_bytes_jsonl(src: Path) -> None:
    rows: list[Any] = good_rows()
    rows[2] = {**rows[2], "title": "Where\u0000 is my parcel?"}  # escaped NUL inside a string
    (src / "kb.jsonl").write_bytes(
        jsonl_bytes(rows) + b'{"id": "raw", "title": "t"}\x00\x00\n'  # raw NUL after the object
    )


def nul_bytes_csv(src: Path) -> None:
    text = csv_text(["id", "title", "answer"], good_csv_rows())
    (src / "kb.csv").write_bytes(text.encode() + b"nul,Title with \x00 NUL,Answer\n")


def nul_id(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(
        jsonl_bytes([*good_rows(), {"id": "a\u0000b", "title": "NUL id", "answer": "x y"}])
    )


def csv_unbalanced_quote_eof(src: Path) -> None:
    text = csv_text(["id", "title", "answer"], good_csv_rows())
    (src / "kb.csv").write_text(text + 'open,"never closed,answer\nx,y,z\n', encoding="utf-8")


def csv_unbalanced_quote_mid(src: Path) -> None:
    rows = good_csv_rows()
    head = csv_text(["id", "title", "answer"], rows[:5])
    tail = csv_text(["id", "title", "answer"], rows[5:]).split("\n", 1)[1]
    # The quote opened on line 7 closes on line 8: two physical lines become one bad record.
    (src / "kb.csv").write_text(
        head + 'q1,"Quoted title,answer one\nq2,title two,"answer two"\n' + tail,
        encoding="utf-8",
    )


def csv_ragged_rows(src: Path) -> None:
    text = csv_text(["id", "title", "answer"], good_csv_rows())
    (src / "kb.csv").write_text(text + "r1,too,many,fields\nr2,too few\n", encoding="utf-8")


def csv_header_only(src: Path) -> None:
    (src / "kb.csv").write_text("id,title,answer\n", encoding="utf-8")


def csv_missing_columns(src: Path) -> None:
    (src / "kb.csv").write_text(
        csv_text(["question", "reply"], [[r["title"], r["answer"]] for r in good_rows()]),
        encoding="utf-8",
    )


def answer_50mb(src: Path) -> None:
    words = "the refund reaches the card within five working days "
    big = {"id": "big", "title": "A very long answer", "answer": words * (50_000_000 // len(words))}
    (src / "kb.jsonl").write_bytes(jsonl_bytes([*good_rows(), big]))


def title_10k(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(
        jsonl_bytes([*good_rows(), {"id": "t", "title": "长" * 10_000, "answer": "x y"}])
    )


def xlsx_zip_bomb(src: Path) -> None:
    with zipfile.ZipFile(src / "kb.xlsx", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/worksheets/sheet1.xml", b"\x00" * (40 * 1024 * 1024))


def xlsx_not_a_zip(src: Path) -> None:
    (src / "kb.xlsx").write_text(csv_text(["id", "title", "answer"], good_csv_rows()))


def xlsx_truncated(src: Path) -> None:
    data = xlsx_bytes([["id", "title", "answer"], *good_csv_rows()])
    (src / "kb.xlsx").write_bytes(data[: len(data) // 2])


def xlsx_not_a_workbook(src: Path) -> None:
    # A valid zip, but no workbook inside (a renamed .docx or a plain archive).
    with zipfile.ZipFile(src / "kb.xlsx", "w") as zf:
        zf.writestr("hello.txt", "not a spreadsheet")


def xlsx_formula_titles(src: Path) -> None:
    # Formulas that Excel saved with their computed value (cell type "str" + <v>), and a formula
    # cell a script wrote without one: kbflow reads values, never formulas.
    rows: list[list[Any]] = [["id", "title", "answer"], *good_csv_rows()]
    rows.append(["f1", "PLACEHOLDER1", "Click the link in the title."])
    rows.append(["f2", '=HYPERLINK("http://evil.example/x","no cached value")', "x y"])
    data = xlsx_bytes(rows)

    def fix(xml: bytes) -> bytes:
        cell = re.search(rb'<c r="B12"[^>]*>.*?</c>', xml, re.S)
        assert cell is not None, "formula cell not found"
        formula = (
            b'<c r="B12" t="str"><f>HYPERLINK("http://evil.example/x","Track my order")</f>'
            b"<v>Track my order</v></c>"
        )
        return xml.replace(cell.group(0), formula)

    (src / "kb.xlsx").write_bytes(_patch_zip(data, "xl/worksheets/sheet1.xml", fix))


def formula_text_titles(src: Path) -> None:
    rows = good_csv_rows()
    rows.append(["f1", '=HYPERLINK("http://evil.example/x","Click me")', "Formula as plain text."])
    rows.append(["f2", "+cmd|' /C calc'!A0", "DDE payload as plain text."])
    (src / "kb.csv").write_text(csv_text(["id", "title", "answer"], rows), encoding="utf-8")
    (src / "more.xlsx").write_bytes(
        xlsx_bytes(
            [["id", "title", "answer"], ["f3", "=1+1", "A string cell starting with ="]],
            as_text=True,
        )
    )


def duplicate_ids_different_content(src: Path) -> None:
    rows = good_rows()
    older = {**rows[0], "answer": "An outdated answer.", "updated_at": "2024-01-01"}
    newer = {**rows[0], "updated_at": "2025-06-01"}
    (src / "kb.jsonl").write_bytes(jsonl_bytes([older, *rows[1:], newer]))


def duplicate_ids_same_content(src: Path) -> None:
    rows = good_rows()
    (src / "a.jsonl").write_bytes(jsonl_bytes(rows))
    (src / "b.jsonl").write_bytes(jsonl_bytes(rows[:3]))


def path_ids(src: Path) -> None:
    bad = [
        {"id": "../../etc/passwd", "title": "Path id", "answer": "root:x:0:0"},
        {"id": "/etc/shadow", "title": "Absolute id", "answer": "x y"},
        {"id": "..\\..\\windows\\system32", "title": "Backslash id", "answer": "x y"},
    ]
    # ".." alone has no separator: it is a legal (if odd) id and must stay a plain string.
    odd = {"id": "..", "title": "Dot-dot id", "answer": "Ids are never used as paths."}
    (src / "kb.jsonl").write_bytes(jsonl_bytes([*good_rows(12), *bad[:2], odd]))
    (src / "more.csv").write_text(
        csv_text(["id", "title", "answer"], [[bad[2]["id"], bad[2]["title"], bad[2]["answer"]]]),
        encoding="utf-8",
    )


def long_and_blank_ids(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(
        jsonl_bytes(
            [
                *good_rows(12),
                {"id": "x" * 300, "title": "Long id", "answer": "x y"},
                {"id": "   ", "title": "Blank id", "answer": "x y"},
            ]
        )
    )


def html_and_script(src: Path) -> None:
    rows = good_rows()
    rows[0]["answer"] = "<p>Open <b>Settings</b>.</p><script>alert(document.cookie)</script>"
    rows[1]["title"] = "<img src=x onerror=alert(1)>Where is my parcel?"
    rows[2]["answer"] = "&lt;script&gt;alert(1)&lt;/script&gt;Pay by bank transfer at checkout."
    only_script = {"id": "s", "title": "Script only", "answer": "<script>alert(1)</script>"}
    (src / "kb.jsonl").write_bytes(jsonl_bytes([*rows, only_script]))


def empty_file(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(b"")


def empty_files_beside_data(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "empty.csv").write_bytes(b"")
    (src / "blank.jsonl").write_bytes(b"\n\n  \n")


def empty_xlsx_and_parquet(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "empty.xlsx").write_bytes(b"")


def corrupt_parquet(src: Path) -> None:
    (src / "kb.parquet").write_bytes(b"PAR1" + os.urandom(64) + b"PAR1")


def million_blank_csv_rows(src: Path) -> None:
    head = csv_text(["id", "title", "answer"], good_csv_rows())
    (src / "kb.csv").write_text(head + ",,\n" * 1_000_000, encoding="utf-8")


def million_empty_jsonl_rows(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()) + b"{}\n" * 1_000_000)


def symlink_file_outside(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "leak.jsonl").symlink_to(_outside(src) / "secret.jsonl")


def symlink_dir_outside(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "more").symlink_to(_outside(src), target_is_directory=True)


def symlink_relative_escape(src: Path) -> None:
    _outside(src)
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "rel.jsonl").symlink_to(Path("..") / "outside" / "secret.jsonl")


def broken_symlink(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "gone.jsonl").symlink_to(src / "does-not-exist.jsonl")


def fifo_in_source(src: Path) -> None:
    # Reading a named pipe would block the run forever.
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    os.mkfifo(src / "pipe.jsonl")


def unsupported_file(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes(good_rows()))
    (src / "notes.txt").write_text("meeting notes", encoding="utf-8")


def json_array_lines(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(jsonl_bytes([*good_rows(12), ["a", "list"], "a string", 42]))


def pretty_json_document(src: Path) -> None:
    (src / "kb.jsonl").write_text(json.dumps(good_rows(), indent=2), encoding="utf-8")


def deeply_nested_json(src: Path) -> None:
    deep = b'{"id": "deep", "title": "t", "answer": "a", "extra": ' + b"[" * 100_000
    deep += b"]" * 100_000 + b"}"
    nested = b'{"id": "nested", "title": "t2", "answer": "a2", "extra": '
    nested += b"[" * 5_000 + b"]" * 5_000 + b"}"
    (src / "kb.jsonl").write_bytes(jsonl_bytes([*good_rows(12), deep, nested]))


def lone_surrogates(src: Path) -> None:
    rows = good_rows()
    surrogate = b'{"id": "sur", "title": "Broken \\ud800 emoji", "answer": "half a pair \\udc00"}'
    (src / "kb.jsonl").write_bytes(jsonl_bytes([*rows, surrogate]))


def nan_and_infinity(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(
        jsonl_bytes(good_rows(12))
        + b'{"id": NaN, "title": "NaN id", "answer": "x y"}\n'
        + b'{"id": "inf", "title": Infinity, "answer": -Infinity}\n'
    )


def bad_status_and_dates(src: Path) -> None:
    rows = good_rows(12)
    rows[0]["status"] = " Published "  # case and spaces are fine
    rows[1]["status"] = "deleted"
    rows[2]["updated_at"] = "2025-13-45"
    (src / "kb.jsonl").write_bytes(jsonl_bytes(rows))


def control_only_title(src: Path) -> None:
    (src / "kb.jsonl").write_bytes(
        jsonl_bytes([*good_rows(), {"id": "c", "title": "\u200b\t\u00ad \r\n", "answer": "x y"}])
    )


def crlf_and_odd_names(src: Path) -> None:
    rows = good_rows()
    (src / "知识库 export (1).jsonl").write_bytes(jsonl_bytes(rows[:5]).replace(b"\n", b"\r\n"))
    (src / "sub").mkdir()
    (src / "sub" / "more.csv").write_text(
        csv_text(
            ["ID ", " Title", "ANSWER"], [[r["id"], r["title"], r["answer"]] for r in rows[5:]]
        ),
        encoding="utf-8",
        newline="",
    )
    (src / ".DS_Store").write_bytes(b"\x00\x01junk")
    (src / "README.md").write_text("not data", encoding="utf-8")


def bad_row_majority(src: Path) -> None:
    rows: list[Any] = good_rows(3) + [b"{not json" for _ in range(7)]
    (src / "kb.jsonl").write_bytes(jsonl_bytes(rows))


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    """Writes the export into the (empty) source folder it is given."""
    error: type[KbflowError] | None = None
    """The typed error the run must stop with (exactly this class); None = the run completes."""
    match: str = ""
    """Regex the error message must contain."""
    quarantined: dict[str, int] = field(default_factory=dict)
    """Quarantine reasons (expectation) -> rows; the run's quarantine holds exactly these."""
    indexed: int | None = None
    blank: int | None = None
    """Blank lines/rows skipped (they get no row id)."""
    big: bool = False
    """Generated at test time only (tens of MB, or a million rows)."""
    check: Callable[[Any], None] | None = None
    """Extra assertions on the run (``test_badinputs.Run``)."""


def _titles_literal(run: Any) -> None:
    titles = {e["entry_id"]: e["title"] for e in run.entries}
    assert titles["f1"] == '=HYPERLINK("http://evil.example/x","Click me")'
    assert titles["f2"] == "+cmd|' /C calc'!A0"
    assert titles["f3"] == "=1+1"


def _xlsx_formula_values(run: Any) -> None:
    titles = {e["entry_id"]: e["title"] for e in run.entries}
    assert titles["f1"] == "Track my order"  # the value Excel stored, not the formula
    assert "f2" not in titles


def _no_script(run: Any) -> None:
    for e in run.entries:
        for text in (e["title"], e["answer"]):
            assert "<script" not in text.lower() and "onerror" not in text.lower(), text
    answers = {e["entry_id"]: e["answer"] for e in run.entries}
    assert answers["g0"] == "Open Settings."
    assert answers["g2"] == "Pay by bank transfer at checkout."


def _path_ids(run: Any) -> None:
    ids = {q["entry_id"] for q in run.quarantine}
    assert {"../../etc/passwd", "/etc/shadow", "..\\..\\windows\\system32"} <= ids
    assert ".." in {e["entry_id"] for e in run.entries}


def _newer_kept(run: Any) -> None:
    answers = {e["entry_id"]: e["answer"] for e in run.entries}
    assert answers["g0"] == GOOD[0][1]
    (q,) = run.quarantine
    assert "An outdated answer" in q["raw"] and "appears again" in q["detail"]


def _same_id_dups(run: Any) -> None:
    assert run.rows["duplicate"] == 3 and run.rows["input"] == 13


def _nul_dropped(run: Any) -> None:
    titles = {e["entry_id"]: e["title"] for e in run.entries}
    assert titles["g2"] == "Where is my parcel?"


def _surrogates_replaced(run: Any) -> None:
    entry = next(e for e in run.entries if e["entry_id"] == "sur")
    assert entry["title"].startswith("Broken") and "\ud800" not in entry["title"]
    entry["title"].encode("utf-8")  # would raise on a lone surrogate


def _bom_lines(run: Any) -> None:
    assert sorted(e["entry_id"] for e in run.entries) == sorted(f"g{i}" for i in range(10))


def _encodings(expected: dict[str, str]) -> Callable[[Any], None]:
    def check(run: Any) -> None:
        assert run.encodings == expected

    return check


CASES: list[Case] = [
    # --- text encodings and bytes
    Case("truncated_jsonl", truncated_jsonl, quarantined={Q_PARSE: 1}, indexed=10),
    Case(
        "invalid_utf8_jsonl",
        invalid_utf8_jsonl,
        error=ExportFormatError,
        match=r"kb\.jsonl: not valid UTF-8 \(line 6\)",
    ),
    Case(
        "invalid_utf8_csv",
        invalid_utf8_csv,
        error=ExportFormatError,
        match=r"kb\.csv: cannot be decoded as utf-8 or gb18030 \(first bad byte on line 12\)",
    ),
    Case(
        "mixed_encodings_csv",
        mixed_encodings_csv,
        error=ExportFormatError,
        match=r"kb\.csv: mixed encodings: line 5 is UTF-8 but line 7 is not",
    ),
    Case(
        "gb18030_csv",
        gb18030_csv,
        indexed=10,
        check=_encodings({"kb.csv": "gb18030"}),
    ),
    Case(
        "utf8_bom_jsonl_and_csv",
        utf8_bom_files,
        indexed=10,
        check=_encodings({"a.jsonl": "utf-8-sig", "b.csv": "utf-8-sig"}),
    ),
    Case("bom_in_the_middle_of_jsonl", bom_mid_file_jsonl, indexed=10, check=_bom_lines),
    Case("utf16_csv", utf16_csv, error=ExportFormatError, match=r"kb\.csv: UTF-16"),
    Case(
        "nul_bytes_jsonl",
        nul_bytes_jsonl,
        quarantined={Q_PARSE: 1},
        indexed=10,
        check=_nul_dropped,
    ),
    Case("nul_bytes_csv", nul_bytes_csv, indexed=11),
    Case("nul_in_id", nul_id, quarantined={Q_ID_UNSAFE: 1}, indexed=10),
    Case("lone_surrogate_escapes", lone_surrogates, indexed=11, check=_surrogates_replaced),
    Case("nan_and_infinity", nan_and_infinity, quarantined={Q_ID_NULL: 1}, indexed=13),
    # --- CSV structure
    Case(
        "csv_unbalanced_quote_at_eof",
        csv_unbalanced_quote_eof,
        error=ExportFormatError,
        match=r"kb\.csv: unbalanced quote: the record starting on line 12 runs to line 13",
    ),
    Case(
        "csv_unbalanced_quote_mid_file",
        csv_unbalanced_quote_mid,
        error=ExportFormatError,
        match=r"kb\.csv: unbalanced quote: the record starting on line 7 runs to line 8 ",
    ),
    Case("csv_ragged_rows", csv_ragged_rows, quarantined={Q_PARSE: 2}, indexed=10),
    Case("csv_header_only", csv_header_only, error=ValidationFailed, match="no rows"),
    Case(
        "csv_missing_required_columns",
        csv_missing_columns,
        error=ValidationFailed,
        match=r"missing required columns \(kb\.csv: id, kb\.csv: title, kb\.csv: answer\)",
    ),
    # --- sizes
    Case("answer_50mb", answer_50mb, quarantined={Q_ANSWER: 1}, indexed=10, big=True),
    Case("title_10k_chars", title_10k, quarantined={Q_TITLE: 1}, indexed=10),
    Case(
        "million_blank_csv_rows",
        million_blank_csv_rows,
        indexed=10,
        blank=1_000_000,
        big=True,
    ),
    Case(
        "million_empty_jsonl_objects",
        million_empty_jsonl_rows,
        indexed=10,
        blank=1_000_000,
        big=True,
    ),
    # --- XLSX and Parquet
    Case("xlsx_zip_bomb", xlsx_zip_bomb, error=ExportFormatError, match=r"kb\.xlsx.*zip bomb"),
    Case(
        "xlsx_not_a_zip",
        xlsx_not_a_zip,
        error=ExportFormatError,
        match=r"kb\.xlsx: not an XLSX file \(not a zip",
    ),
    Case("xlsx_truncated", xlsx_truncated, error=ExportFormatError, match=r"kb\.xlsx: not an XLSX"),
    Case(
        "xlsx_zip_without_workbook",
        xlsx_not_a_workbook,
        error=ExportFormatError,
        match=r"kb\.xlsx: not a readable XLSX workbook",
    ),
    Case(
        "xlsx_formula_titles",
        xlsx_formula_titles,
        quarantined={Q_TITLE: 1},
        indexed=11,
        check=_xlsx_formula_values,
    ),
    Case("formula_text_in_titles", formula_text_titles, indexed=13, check=_titles_literal),
    Case("corrupt_parquet", corrupt_parquet, error=ExportFormatError, match=r"kb\.parquet"),
    # --- ids and duplicates
    Case(
        "duplicate_ids_different_content",
        duplicate_ids_different_content,
        quarantined={Q_UNIQUE: 1},
        indexed=10,
        check=_newer_kept,
    ),
    Case("duplicate_ids_same_content", duplicate_ids_same_content, indexed=10, check=_same_id_dups),
    Case("path_ids", path_ids, quarantined={Q_ID_UNSAFE: 3}, indexed=13, check=_path_ids),
    Case(
        "long_and_blank_ids",
        long_and_blank_ids,
        quarantined={Q_ID_UNSAFE: 1, Q_ID_NULL: 1},
        indexed=12,
    ),
    # --- content
    Case(
        "html_and_script",
        html_and_script,
        quarantined={Q_ANSWER: 1},
        indexed=10,
        check=_no_script,
    ),
    Case("control_chars_only_title", control_only_title, quarantined={Q_TITLE: 1}, indexed=10),
    Case(
        "bad_status_and_dates",
        bad_status_and_dates,
        quarantined={Q_STATUS: 1, Q_DATE: 1},
        indexed=10,
    ),
    Case(
        "json_values_that_are_not_objects", json_array_lines, quarantined={Q_PARSE: 3}, indexed=12
    ),
    Case(
        "pretty_printed_json_not_jsonl",
        pretty_json_document,
        error=ValidationFailed,
        match=r"rows failed checks",
    ),
    Case("deeply_nested_json", deeply_nested_json, quarantined={Q_PARSE: 2}, indexed=12),
    Case("majority_of_rows_broken", bad_row_majority, error=ValidationFailed, match="7 of 10 rows"),
    # --- files
    Case("empty_file", empty_file, error=ValidationFailed, match="the export has no rows"),
    Case("empty_files_beside_data", empty_files_beside_data, indexed=10, blank=3),
    Case(
        "empty_xlsx",
        empty_xlsx_and_parquet,
        error=ExportFormatError,
        match=r"empty\.xlsx: not an XLSX file",
    ),
    Case(
        "symlink_file_out_of_source",
        symlink_file_outside,
        error=SourceError,
        match=r"leak\.jsonl .* is a symlink to .*outside the export folder",
    ),
    Case(
        "symlink_dir_out_of_source",
        symlink_dir_outside,
        error=SourceError,
        match=r"more .* is a symlink to .*outside the export folder",
    ),
    Case(
        "relative_symlink_escape",
        symlink_relative_escape,
        error=SourceError,
        match=r"rel\.jsonl .*outside the export folder",
    ),
    Case(
        "broken_symlink",
        broken_symlink,
        error=SourceError,
        match=r"gone\.jsonl .*not a regular file",
    ),
    Case("fifo_in_source", fifo_in_source, error=SourceError, match=r"pipe\.jsonl .*not a regular"),
    Case("unsupported_file", unsupported_file, error=ExportFormatError, match=r"notes\.txt"),
    Case("crlf_odd_names_hidden_files", crlf_and_odd_names, indexed=10),
]


def build_all(out: Path, big: bool = False) -> list[Path]:
    """Write every case (the big ones only with ``big``) to ``out/<name>/export``."""
    written = []
    for case in CASES:
        if case.big and not big:
            continue
        src = out / case.name / "export"
        src.mkdir(parents=True)
        case.build(src)
        written.append(src)
    return written


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python tests/badinputs/corpus.py OUT_DIR [--big]")
    for path in build_all(Path(sys.argv[1]), big="--big" in sys.argv[2:]):
        print(path)
