from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbflow.contracts import RAW_ROW, table_from_rows
from kbflow.errors import ValidationFailed
from kbflow.settings import ValidateSettings
from kbflow.validate.expectations import validate_rows


def row(i: int, id_: str | None, title: str | None = "标题", answer: str | None = "答案内容", **kw):
    return {
        "row_id": i,
        "source_file": "kb.jsonl",
        "source_line": i + 1,
        "id": id_,
        "title": title,
        "answer": answer,
        **kw,
    }


def good(n: int, start: int = 0):
    return [
        row(start + i, f"e{start + i}", f"问题{start + i}", f"回答{start + i}") for i in range(n)
    ]


def test_bad_rows_are_quarantined_with_the_failed_expectation():
    rows = good(40) + [
        row(40, None),
        row(41, "e41", title=""),
        row(42, "e42", answer="<p> </p>"),
        row(43, "e43", status="publish3d"),
        row(44, "e44", expires_at="明年"),
        row(45, "../../etc/passwd"),
        row(46, "e46", title="长" * 600),
    ]
    res = validate_rows(table_from_rows(rows, RAW_ROW), ValidateSettings())
    q = {r["row_id"]: r["expectation"] for r in res.quarantine.to_pylist()}
    assert q == {
        40: "expect_column_values_to_not_be_null(id)",
        41: "expect_column_values_to_be_between(title_chars)",
        42: "expect_column_values_to_be_between(answer_chars)",
        43: "expect_column_values_to_be_in_set(status)",
        44: "expect_column_values_to_be_in_set(expires_at_parseable)",
        45: "expect_column_values_to_be_in_set(id_is_safe)",
        46: "expect_column_values_to_be_between(title_chars)",
    }
    assert res.valid.num_rows == 40
    assert all(r["detail"] for r in res.quarantine.to_pylist())
    assert res.counts["input"] == res.valid.num_rows + res.quarantine.num_rows


def test_same_id_newer_row_wins_and_exact_copy_is_a_duplicate():
    rows = good(10) + [
        row(10, "dup", "旧标题", "旧答案", updated_at="2026-01-01"),
        row(11, "dup", "新标题", "新答案", updated_at="2026-06-01"),
        row(12, "copy", "同样", "同样的答案"),
        row(13, "copy", "同样", "同样的答案"),
    ]
    res = validate_rows(table_from_rows(rows, RAW_ROW), ValidateSettings())
    assert [r["row_id"] for r in res.quarantine.to_pylist()] == [10]
    assert "different content" in res.quarantine.to_pylist()[0]["detail"]
    assert res.outcomes.to_pylist()[0]["outcome"] == "duplicate"
    kept = set(res.valid.column("row_id").to_pylist())
    assert 11 in kept and 10 not in kept and len(kept & {12, 13}) == 1


def test_missing_required_column_stops_the_batch():
    rows = [row(i, f"e{i}", answer=None) for i in range(5)]
    with pytest.raises(ValidationFailed, match="missing required columns.*answer"):
        validate_rows(table_from_rows(rows, RAW_ROW), ValidateSettings())


def test_too_many_bad_rows_stops_the_batch():
    rows = good(5) + [row(5 + i, None) for i in range(5)]
    with pytest.raises(ValidationFailed, match="5 of 10 rows failed"):
        validate_rows(table_from_rows(rows, RAW_ROW), ValidateSettings(max_bad_row_fraction=0.2))


def test_export_that_shrinks_the_kb_stops_the_batch():
    with pytest.raises(ValidationFailed, match="fewer"):
        validate_rows(
            table_from_rows(good(10), RAW_ROW),
            ValidateSettings(max_shrink_fraction=0.3),
            live_entry_count=100,
        )
    assert (
        validate_rows(
            table_from_rows(good(10), RAW_ROW), ValidateSettings(), live_entry_count=12
        ).valid.num_rows
        == 10
    )


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            list("ab 中文，。\n\t&<>＜＆﹤﹠;/")
            + ["<b>", "&amp;", "\u200b", "\u00ad", "\ufdfa", "ﬃ"]
        ),
        max_size=30,
    ).map("".join),
    st.integers(1, 60),
)
def test_the_length_check_gives_the_normalised_texts_verdict(text: str, max_chars: int) -> None:
    from kbflow.clean.normalize import normalize_text
    from kbflow.validate.expectations import _checked_length

    checked = _checked_length(text, max_chars)
    assert (1 <= checked <= max_chars) == (1 <= len(normalize_text(text)) <= max_chars)
