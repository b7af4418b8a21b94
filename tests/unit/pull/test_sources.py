"""Pull stage: discovery, landing and reading of KB exports (kbflow.pull)."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.contracts import QUARANTINE_ROW, RAW_ROW
from kbflow.errors import ExportFormatError, SourceError
from kbflow.pull.discover import ExportFile, discover_export, snapshot_id, snapshot_sha256
from kbflow.pull.land import COMPLETE_MARKER, land_export
from kbflow.pull.readers import read_export

# --- helpers ------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """Write objects as JSON lines; a str is written verbatim (for malformed/blank lines)."""
    text = "".join(
        (x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines
    )
    path.write_text(text, encoding="utf-8")
    return path


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None:
                ws.cell(row=r, column=c, value=value)
    wb.save(path)
    return path


def read_folder(folder: Path) -> tuple[list[ExportFile], Any]:
    files = discover_export(str(folder))
    return files, read_export(folder, files)


def by_id(result: Any) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in result.rows.to_pylist()}


@pytest.fixture
def mixed_export(tmp_path: Path) -> Path:
    """One snapshot in five files and four formats (names chosen to fix the read order)."""
    src = tmp_path / "export"
    src.mkdir()
    write_jsonl(
        src / "a.jsonl",
        [
            {
                "id": "j1",
                "title": "退货",
                "answer": "七天无理由",
                "similar_questions": ["怎么退", "退款"],
            },
            "",
            {"id": 12, "title": "Refund", "answer": "Yes", "updated_at": "2025-01-02"},
        ],
    )
    # UTF-8 with BOM; the first data record spans two physical lines (quoted newline).
    (src / "b.csv").write_bytes(
        "id,title,answer,tags\n"
        'c1,多行,"第一行\n第二行",售后||退货\n'
        'c2,Plain,Text,"[""x"", ""y""]"\n'.encode("utf-8-sig")
    )
    (src / "c.csv").write_bytes(
        "ID , Title,ANSWER,category\ng1,发票怎么开,在订单页申请电子发票,财务\n".encode("gb18030")
    )
    pq.write_table(
        pa.table(
            {
                "id": pa.array([101, 102], pa.int64()),
                "title": ["p1", "p2"],
                "answer": ["pa1", "pa2"],
                "similar_questions": pa.array([["q1", "q2"], None], pa.list_(pa.string())),
                "expires_at": pa.array([dt.date(2025, 6, 30), None], pa.date32()),
            }
        ),
        src / "d.parquet",
    )
    write_xlsx(
        src / "e.xlsx",
        [
            ["id", "title", "answer", "similar_questions", "effective_from"],
            [7, "x1", "xa1", "问一||问二", dt.datetime(2025, 3, 1, 8, 30)],
            [None, None, None, None, None],  # blank sheet row: skipped, no row_id
            [8.0, "x2", "xa2", None, None],
        ],
    )
    (src / "README.md").write_text("not data", encoding="utf-8")
    (src / ".DS_Store").write_bytes(b"\x00junk")
    return src


# --- reading --------------------------------------------------------------------------------


def test_mixed_formats_read_together_with_row_ids_and_lines(mixed_export: Path) -> None:
    files, result = read_folder(mixed_export)

    assert [f.name for f in files] == ["a.jsonl", "b.csv", "c.csv", "d.parquet", "e.xlsx"]
    assert [f.format for f in files] == ["jsonl", "csv", "csv", "parquet", "xlsx"]
    assert result.rows.schema.equals(RAW_ROW)
    assert result.quarantine.schema.equals(QUARANTINE_ROW)
    rows = result.rows.to_pylist()
    assert [r["row_id"] for r in rows] == list(range(9))
    where = [(r["source_file"], r["source_line"], r["id"]) for r in rows]
    assert where == [
        ("a.jsonl", 1, "j1"),
        ("a.jsonl", 3, "12"),  # line 2 is blank
        ("b.csv", 2, "c1"),  # header is line 1
        ("b.csv", 4, "c2"),  # c1 spans lines 2-3
        ("c.csv", 2, "g1"),
        ("d.parquet", 1, "101"),
        ("d.parquet", 2, "102"),
        ("e.xlsx", 2, "7"),
        ("e.xlsx", 4, "8"),  # sheet row 3 is empty
    ]
    assert result.encodings == {"a.jsonl": "utf-8", "b.csv": "utf-8-sig", "c.csv": "gb18030"}
    assert result.counts == {
        "files": 5,
        "records": 9,
        "rows": 9,
        "quarantined": 0,
        "blank_lines": 2,
    }
    assert result.file_counts["e.xlsx"] == {"records": 2, "rows": 2, "quarantined": 0}

    got = by_id(result)
    assert got["j1"]["similar_questions"] == ["怎么退", "退款"]
    assert got["12"]["updated_at"] == "2025-01-02"
    assert got["c1"]["answer"] == "第一行\n第二行"
    assert got["c1"]["tags"] == ["售后", "退货"]
    assert got["c2"]["tags"] == ["x", "y"]  # JSON list string in a CSV cell
    # GB18030 decoded, header names matched case-insensitively with whitespace stripped.
    assert (got["g1"]["title"], got["g1"]["category"]) == ("发票怎么开", "财务")
    assert got["101"]["similar_questions"] == ["q1", "q2"]
    assert got["101"]["expires_at"] == "2025-06-30"
    assert got["102"]["similar_questions"] is None
    assert got["7"]["similar_questions"] == ["问一", "问二"]
    assert got["7"]["effective_from"] == "2025-03-01T08:30:00"
    assert got["8"]["title"] == "x2"  # 8.0 in the sheet reads as "8", never "8.0"
    assert all(r["metadata"] is None for r in rows)


def test_values_become_strings_and_unknown_columns_go_to_metadata(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    write_jsonl(
        src / "kb.jsonl",
        [
            {
                "Id": 12,
                " TITLE ": "t",
                "answer": "",
                "status": True,
                "score": 12.0,
                "ratio": 0.25,
                "owner": "ops",
                "extra": {"k": [1, 2.0]},
                "empty": None,
            },
            {"id": "plain", "title": "t2", "answer": "a2"},
        ],
    )
    _, result = read_folder(src)
    first, second = result.rows.to_pylist()
    assert (first["id"], first["title"]) == ("12", "t")
    assert first["answer"] is None  # empty string becomes null
    assert first["status"] == "true"
    assert json.loads(first["metadata"]) == {
        "score": "12",
        "ratio": "0.25",
        "owner": "ops",
        "extra": {"k": ["1", "2"]},
    }
    assert second["metadata"] is None


def test_missing_required_column_gives_nulls_not_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.csv").write_text("id,question,note\n1,q,n\n", encoding="utf-8")
    _, result = read_folder(src)
    (row,) = result.rows.to_pylist()
    assert (row["id"], row["title"], row["answer"]) == ("1", None, None)
    assert json.loads(row["metadata"]) == {"question": "q", "note": "n"}


def test_malformed_jsonl_lines_are_quarantined_and_the_rest_read(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    long_garbage = "{" + "x" * 5000
    write_jsonl(
        src / "kb.jsonl",
        [
            {"id": "1", "title": "a", "answer": "b"},
            '{"id": "2", "title": "broken"',
            "[1, 2]",
            long_garbage,
            {"id": "3", "title": "c", "answer": "d"},
        ],
    )
    _, result = read_folder(src)
    assert [(r["row_id"], r["id"], r["source_line"]) for r in result.rows.to_pylist()] == [
        (0, "1", 1),
        (4, "3", 5),
    ]
    bad = result.quarantine.to_pylist()
    assert [(q["row_id"], q["source_line"], q["expectation"]) for q in bad] == [
        (1, 2, "parseable_row"),
        (2, 3, "parseable_row"),
        (3, 4, "parseable_row"),
    ]
    assert "invalid JSON" in bad[0]["detail"]
    assert bad[0]["raw"] == '{"id": "2", "title": "broken"'
    assert "expected a JSON object, found list" in bad[1]["detail"]
    assert len(bad[2]["raw"]) == 2000
    assert result.counts["records"] == 5
    assert result.counts["rows"] + result.counts["quarantined"] == result.counts["records"]


def test_csv_record_with_wrong_field_count_is_quarantined(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.csv").write_text(
        "id,title,answer\nok1,t,a\nbad,t,a,surplus\n\nok2,t,a\nshort,t\n", encoding="utf-8"
    )
    _, result = read_folder(src)
    assert [(r["id"], r["row_id"], r["source_line"]) for r in result.rows.to_pylist()] == [
        ("ok1", 0, 2),
        ("ok2", 2, 5),
    ]
    bad = result.quarantine.to_pylist()
    assert [(q["entry_id"], q["row_id"], q["source_line"]) for q in bad] == [
        ("bad", 1, 3),
        ("short", 3, 6),
    ]
    assert "expected 3 fields" in bad[0]["detail"] and "found 4" in bad[0]["detail"]
    assert json.loads(bad[0]["raw"]) == ["bad", "t", "a", "surplus"]
    assert result.counts["blank_lines"] == 1


def test_csv_encoding_detection(tmp_path: Path) -> None:
    text = "id,title,answer\n1,营业时间,早九点到晚六点\n"
    src = tmp_path / "export"
    src.mkdir()
    (src / "a.csv").write_bytes(text.encode("utf-8"))
    (src / "b.csv").write_bytes(text.encode("utf-8-sig"))
    (src / "c.csv").write_bytes(text.encode("gb18030"))
    _, result = read_folder(src)
    assert result.encodings == {"a.csv": "utf-8", "b.csv": "utf-8-sig", "c.csv": "gb18030"}
    assert {r["answer"] for r in result.rows.to_pylist()} == {"早九点到晚六点"}
    # A BOM is not part of the first column's name.
    assert [r["id"] for r in result.rows.to_pylist()] == ["1", "1", "1"]


def test_undecodable_csv_raises_export_format_error_naming_the_file(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.csv").write_bytes(b"id,title,answer\n1,\xff\xfe\xff,x\n")
    with pytest.raises(ExportFormatError, match=r"kb\.csv.*line 2"):
        read_folder(src)


def test_non_utf8_jsonl_raises_export_format_error(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.jsonl").write_bytes('{"id": "1", "title": "退货"}\n'.encode("gb18030"))
    with pytest.raises(ExportFormatError, match=r"kb\.jsonl.*UTF-8"):
        read_folder(src)


def test_long_csv_answer_is_not_cut_by_the_csv_field_limit(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    answer = "长" * 300_000
    (src / "kb.csv").write_text(f"id,title,answer\n1,t,{answer}\n", encoding="utf-8")
    _, result = read_folder(src)
    assert result.rows.column("answer").to_pylist() == [answer]


# --- xlsx safety ----------------------------------------------------------------------------


def test_xlsx_with_a_wrong_recorded_sheet_size_is_read_in_full(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    good = write_xlsx(
        tmp_path / "good.xlsx", [["id", "title", "answer"], ["1", "t", "a"], ["2", "u", "b"]]
    )
    # Some exporters write <dimension ref="A1"/> whatever the sheet holds.
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(src / "kb.xlsx", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert b'<dimension ref="A1:C3" />' in data
                data = data.replace(b'<dimension ref="A1:C3" />', b'<dimension ref="A1"/>')
            zout.writestr(item, data)
    _, result = read_folder(src)
    assert [(r["id"], r["title"], r["answer"]) for r in result.rows.to_pylist()] == [
        ("1", "t", "a"),
        ("2", "u", "b"),
    ]


def test_xlsx_that_is_not_a_zip_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.xlsx").write_text("id,title,answer\n1,t,a\n", encoding="utf-8")
    with pytest.raises(ExportFormatError, match=r"kb\.xlsx.*not an XLSX file"):
        read_folder(src)


def test_xlsx_zip_bomb_is_rejected_before_opening(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    with zipfile.ZipFile(src / "kb.xlsx", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/worksheets/sheet1.xml", b"\x00" * (20 * 1024 * 1024))
    with pytest.raises(ExportFormatError, match=r"kb\.xlsx.*zip bomb"):
        read_folder(src)


def test_xlsx_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    write_xlsx(src / "kb.xlsx", [["id", "title", "answer"], ["1", "t", "a"]])
    files = discover_export(str(src))
    assert read_export(src, files).counts["rows"] == 1
    with pytest.raises(ExportFormatError, match="limit"):
        read_export(src, files, xlsx_max_uncompressed=1000)


# --- discovery --------------------------------------------------------------------------------


def test_symlink_escaping_the_source_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("id,title,answer\ns,t,a\n", encoding="utf-8")
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.csv").write_text("id,title,answer\n1,t,a\n", encoding="utf-8")
    (src / "evil.csv").symlink_to(outside)
    with pytest.raises(SourceError, match=r"evil\.csv.*outside"):
        discover_export(str(src))
    with pytest.raises(SourceError, match=r"evil\.csv"):
        land_export(str(src), tmp_path / "raw")
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_symlinked_folder_escaping_the_source_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.csv").write_text("id\n1\n", encoding="utf-8")
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.csv").write_text("id,title,answer\n1,t,a\n", encoding="utf-8")
    (src / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SourceError, match="outside"):
        discover_export(str(src))


def test_symlink_inside_the_source_folder_is_read(tmp_path: Path) -> None:
    src = tmp_path / "export"
    (src / "data").mkdir(parents=True)
    (src / "data" / "kb.csv").write_text("id,title,answer\n1,t,a\n", encoding="utf-8")
    (src / "link.csv").symlink_to(src / "data" / "kb.csv")
    files = discover_export(str(src))
    assert [f.name for f in files] == ["data/kb.csv", "link.csv"]
    assert files[0].sha256 == files[1].sha256


def test_unsupported_extension_raises_naming_file_and_formats(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    (src / "kb.csv").write_text("id,title,answer\n1,t,a\n", encoding="utf-8")
    (src / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ExportFormatError, match=r"notes\.txt.*\.jsonl.*\.xlsx"):
        discover_export(str(src))


def test_hidden_and_readme_files_are_ignored(tmp_path: Path) -> None:
    src = tmp_path / "export"
    (src / ".git").mkdir(parents=True)
    (src / ".git" / "config").write_text("x", encoding="utf-8")
    (src / "README.txt").write_text("x", encoding="utf-8")
    (src / ".hidden.csv").write_text("x", encoding="utf-8")
    (src / "sub").mkdir()
    (src / "sub" / "kb.jsonl").write_text('{"id": "1"}\n', encoding="utf-8")
    assert [f.name for f in discover_export(str(src))] == ["sub/kb.jsonl"]


def test_missing_or_empty_source_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        discover_export(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("x", encoding="utf-8")
    with pytest.raises(SourceError, match="no export files"):
        discover_export(str(empty))


def test_single_file_source(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "kb.jsonl", [{"id": "1", "title": "t", "answer": "a"}])
    files = discover_export(str(path))
    assert [(f.name, f.format, f.size) for f in files] == [
        ("kb.jsonl", "jsonl", path.stat().st_size)
    ]
    assert read_export(tmp_path, files).rows.column("id").to_pylist() == ["1"]


def test_snapshot_id_depends_on_names_and_hashes_only() -> None:
    a = ExportFile("a.csv", "1" * 64, 10, "csv")
    b = ExportFile("b.jsonl", "2" * 64, 20, "jsonl")
    full = snapshot_sha256([a, b])
    assert len(full) == 64
    assert snapshot_id([b, a]) == snapshot_id([a, b]) == full[:16]
    assert snapshot_id([a, ExportFile("b.jsonl", "2" * 64, 999, "jsonl")]) == full[:16]
    assert snapshot_id([a, ExportFile("c.jsonl", "2" * 64, 20, "jsonl")]) != full[:16]
    assert snapshot_id([a, ExportFile("b.jsonl", "3" * 64, 20, "jsonl")]) != full[:16]


# --- landing ------------------------------------------------------------------------------


def test_land_is_immutable_and_idempotent(mixed_export: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    first = land_export(str(mixed_export), raw)
    assert not first.already_landed
    assert first.root == raw / first.snapshot_id
    assert first.snapshot_id == snapshot_id(first.files) == first.snapshot_sha256[:16]
    marker = json.loads((first.root / COMPLETE_MARKER).read_text(encoding="utf-8"))
    assert [f["name"] for f in marker["files"]] == [f.name for f in first.files]
    for f in first.files:
        copy = first.root / f.name
        assert copy.read_bytes() == (mixed_export / f.name).read_bytes()
        assert copy.stat().st_mode & 0o222 == 0  # landed copies are read-only
    # Nothing but the export files and the marker (no temp files, no README).
    landed = sorted(p.relative_to(first.root).as_posix() for p in first.root.rglob("*"))
    assert landed == sorted([f.name for f in first.files] + [COMPLETE_MARKER])
    mtimes = {p: p.stat().st_mtime_ns for p in first.root.rglob("*")}

    second = land_export(str(mixed_export), raw)
    assert second.already_landed
    assert second.snapshot_id == first.snapshot_id
    assert second.files == first.files
    assert {p: p.stat().st_mtime_ns for p in first.root.rglob("*")} == mtimes
    assert [p.name for p in raw.iterdir()] == [first.snapshot_id]

    # The landed copy reads the same as the source.
    from_raw = read_export(second.root, second.files)
    from_src = read_export(mixed_export, second.files)
    assert from_raw.rows.equals(from_src.rows)


def test_changed_file_gives_a_new_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    write_jsonl(src / "kb.jsonl", [{"id": "1", "title": "t", "answer": "a"}])
    raw = tmp_path / "raw"
    first = land_export(str(src), raw)
    write_jsonl(src / "kb.jsonl", [{"id": "1", "title": "t", "answer": "changed"}])
    second = land_export(str(src), raw)
    assert not second.already_landed
    assert second.snapshot_id != first.snapshot_id
    assert sorted(p.name for p in raw.iterdir()) == sorted([first.snapshot_id, second.snapshot_id])
    assert read_export(first.root, first.files).rows.column("answer").to_pylist() == ["a"]


def test_incomplete_landing_is_completed(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    write_jsonl(src / "kb.jsonl", [{"id": "1", "title": "t", "answer": "a"}])
    files = discover_export(str(src))
    partial = tmp_path / "raw" / snapshot_id(files)
    partial.mkdir(parents=True)
    (partial / "kb.jsonl").write_text("half", encoding="utf-8")  # crashed mid-copy, no marker
    (partial / ".kb.jsonl.kbflow-tmp-1-ab").write_text("stale", encoding="utf-8")
    landed = land_export(str(src), tmp_path / "raw")
    assert not landed.already_landed
    assert (partial / "kb.jsonl").read_bytes() == (src / "kb.jsonl").read_bytes()
    assert not (partial / ".kb.jsonl.kbflow-tmp-1-ab").exists()
    assert (partial / COMPLETE_MARKER).exists()


def test_read_refuses_a_landed_file_that_changed(tmp_path: Path) -> None:
    src = tmp_path / "export"
    src.mkdir()
    write_jsonl(src / "kb.jsonl", [{"id": "1", "title": "t", "answer": "a"}])
    landed = land_export(str(src), tmp_path / "raw")
    path = landed.root / "kb.jsonl"
    os.chmod(path, 0o644)
    path.write_text('{"id": "2"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="does not match"):
        read_export(landed.root, landed.files)


def test_read_never_leaves_its_root(tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("id\n1\n", encoding="utf-8")
    root = tmp_path / "root"
    root.mkdir()
    f = ExportFile("../secret.csv", "0" * 64, 5, "csv")
    with pytest.raises(SourceError, match="unsafe file name"):
        read_export(root, [f])


# --- fsspec -------------------------------------------------------------------------------


@pytest.fixture
def memory_export() -> Iterator[str]:
    import fsspec

    fs = fsspec.filesystem("memory")
    base = f"/kbflow-test-{uuid.uuid4().hex}"
    fs.pipe(f"{base}/faq.jsonl", b'{"id": "m1", "title": "t", "answer": "a"}\n')
    fs.pipe(f"{base}/more/sop.csv", "id,title,answer\nm2,标题,答案\n".encode("gb18030"))
    fs.pipe(f"{base}/README.md", b"ignored")
    try:
        yield f"memory://{base}"
    finally:
        fs.rm(base, recursive=True)


def test_memory_fsspec_source_discovers_lands_and_reads(memory_export: str, tmp_path: Path) -> None:
    files = discover_export(memory_export)
    assert [(f.name, f.format) for f in files] == [("faq.jsonl", "jsonl"), ("more/sop.csv", "csv")]
    landed = land_export(memory_export, tmp_path / "raw")
    assert landed.snapshot_id == snapshot_id(files)
    assert (landed.root / "more" / "sop.csv").is_file()
    result = read_export(landed.root, landed.files)
    assert result.rows.column("id").to_pylist() == ["m1", "m2"]
    assert result.rows.column("title").to_pylist() == ["t", "标题"]
    assert result.encodings["more/sop.csv"] == "gb18030"
    assert land_export(memory_export, tmp_path / "raw").already_landed


def test_missing_memory_source_raises_source_error() -> None:
    with pytest.raises(SourceError, match="does not exist"):
        discover_export(f"memory:///kbflow-test-missing-{uuid.uuid4().hex}")
