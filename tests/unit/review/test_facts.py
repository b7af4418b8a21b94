"""Facts in answers and contradictions between two answers (kbflow.review.facts)."""

from __future__ import annotations

import pytest

from kbflow.review.facts import cn_number, compare_facts, extract_facts


def contradictions(a: str, b: str):
    return compare_facts(extract_facts(a), extract_facts(b))


def one(text: str):
    facts = extract_facts(text)
    assert len(facts) == 1, facts
    return facts[0]


@pytest.mark.parametrize(
    ("a", "b", "kind", "values"),
    [
        ("退货期限7天", "退货期限15天", "duration", (("7天",), ("15天",))),
        ("运费10元", "运费免费", "amount", (("10元",), ("免费",))),
        ("自签收起7天内可申请无理由退货。", "15天内都可以退货，请保持商品完好。", "duration", (("7天",), ("15天",))),
        ("退款3-5个工作日到账", "退款7个工作日内到账", "duration", (("3-5个工作日",), ("7个工作日",))),
        ("会员可享9.5%返现", "会员返现比例为百分之五", "percent", (("9.5%",), ("百分之五",))),
        ("活动截至2025年6月30日", "活动截至2025-07-31", "date", (("2025年6月30日",), ("2025-07-31",))),
        ("客服热线400-123-4567", "客服热线 400 765 4321", "phone", (("400-123-4567",), ("400 765 4321",))),
        ("详见 https://shop.example.com/returns", "详见 www.shop.example.com/refund", "url",
         (("https://shop.example.com/returns",), ("www.shop.example.com/refund",))),
        ("Returns are accepted within 30 days.", "You can return items within 14 days.", "duration",
         (("30 days",), ("14 days",))),
        ("Standard shipping costs $5.", "Standard shipping is free.", "amount", (("$5",), ("is free",))),
    ],
)  # fmt: skip
def test_different_values_of_one_fact_are_flagged_with_both(a, b, kind, values):
    found = contradictions(a, b)
    assert [(c.kind, (c.values_a, c.values_b)) for c in found] == [(kind, values)]
    # symmetric: swapping the answers swaps the sides
    back = contradictions(b, a)
    assert [(c.values_a, c.values_b) for c in back] == [(values[1], values[0])]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("7天无理由退货", "七天无理由退货"),
        ("7天无理由退货", "一周内可无理由退货"),
        ("七天无理由退货", "支持一个星期内退货"),
        ("订单24小时内发货", "订单1天内发货"),
        ("运费10元", "运费¥10.00"),
        ("运费10元", "运费：RMB 10"),
        ("运费免费", "全场包邮"),
        ("退货期限十五天", "退货期限15天"),
        ("活动截至2025年6月30日", "活动截至2025-06-30"),
        ("客服热线400-123-4567", "客服热线4001234567"),
        ("详见 https://www.shop.example.com/returns/", "详见 shop.example.com/returns"),
        ("Refunds take 5 business days.", "Refunds take five working days."),
    ],
)
def test_the_same_value_spelt_differently_is_not_a_contradiction(a, b):
    assert contradictions(a, b) == []


def test_unrelated_facts_of_one_kind_are_not_compared():
    # 7 days to return and 15 days of price protection: different topics, no contradiction
    assert contradictions("7天无理由退货", "15天价保") == []
    # a second deadline for another thing does not contradict the shared one
    assert contradictions("7天无理由退货，15天内可换货", "七天内可退货") == []
    # business days and calendar days are not converted into each other
    assert contradictions("退款7天内到账", "退款5个工作日内到账") == []
    # a shared value means the answers agree on it
    assert contradictions("运费10元，满99元包邮", "运费10元") == []


def test_facts_have_canonical_values_and_topics():
    f = one("一周内发货")
    assert (f.kind, f.unit, f.value, f.display, f.topics) == (
        "duration",
        "calendar",
        "10080",
        "7 days",
        frozenset({"发货"}),
    )
    assert one("3-5个工作日").display == "3-5 business days"
    assert one("¥1,299.00").value == "1299 CNY"
    assert one("Call 1-800-555-0199").value == "18005550199"
    assert one("June 30, 2025").value == "2025-06-30"
    assert one("6月30日前").value == "--06-30"


@pytest.mark.parametrize(
    "text",
    ["第一天就坏了", "2025年新规", "请保持商品完好", "订单号12345", "当天发货", "几天后"],
)
def test_no_fact_without_a_unit(text):
    assert extract_facts(text) == []


def test_urls_phones_and_dates_are_not_read_as_numbers():
    kinds = [
        f.kind
        for f in extract_facts("截至2025年6月30日，致电400-123-4567或访问https://x.example.com/7天")
    ]
    assert kinds == ["date", "phone", "url"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("七", 7), ("十", 10), ("十五", 15), ("二十四", 24), ("一百零八", 108), ("两千", 2000), ("三万五千", 35000)],
)  # fmt: skip
def test_chinese_numerals(text, value):
    assert cn_number(text) == value


def test_chinese_numeral_rejects_other_text():
    assert cn_number("七天") is None and cn_number("") is None
