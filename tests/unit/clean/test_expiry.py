"""kbflow.clean.expiry: deadline phrases, year rules, not-yet-effective phrases, date fields.

Every case is judged against one fixed run date.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import date, timedelta

import pytest

from kbflow.clean.expiry import ExpiryHit, find_expiry, find_not_yet_effective, parse_date

RUN_DATE = date(2026, 11, 24)


@pytest.mark.parametrize(
    ("text", "stale_since", "evidence"),
    [
        # Chinese prefix forms
        ("本活动截至2025年6月30日。", "2025-06-30", "截至2025年6月30日"),
        ("报名截止2025年6月30日", "2025-06-30", "截止2025年6月30日"),
        ("优惠券有效期至2025年6月30日", "2025-06-30", "有效期至2025年6月30日"),
        ("满减活动至2025年6月30日", "2025-06-30", "至2025年6月30日"),
        ("即日起到2025年6月30日", "2025-06-30", "到2025年6月30日"),
        ("截至 2025 年 6 月 30 日", "2025-06-30", "截至 2025 年 6 月 30 日"),
        ("有效期：2025年6月30日", "2025-06-30", "有效期:2025年6月30日"),
        # Chinese suffix forms
        ("本券2025年6月30日前有效", "2025-06-30", "2025年6月30日前有效"),
        ("报名2025年6月30日截止", "2025-06-30", "2025年6月30日截止"),
        ("请在2025-06-30 前完成实名认证", "2025-06-30", "2025-06-30 前"),
        ("2025/6/30止", "2025-06-30", "2025/6/30止"),
        ("2025年6月30日 23:59前有效", "2025-06-30", "2025年6月30日 23:59前有效"),
        # full-width digits and punctuation (NFKC)
        ("截至２０２５年６月３０日", "2025-06-30", "截至2025年6月30日"),
        # year-month forms mean the end of the month; "年底" the end of the year
        ("截至2025年6月", "2025-06-30", "截至2025年6月"),
        ("活动截止到2024年2月", "2024-02-29", "截止到2024年2月"),
        ("优惠截至2025年底", "2025-12-31", "截至2025年底"),
        # ranges: the end is the deadline
        ("活动时间：2025年6月1日至2025年6月30日", "2025-06-30", "至2025年6月30日"),
        ("2025-06-01~2025-06-30", "2025-06-30", "2025-06-01~2025-06-30"),
        # English
        ("Coupon valid until 2025-06-30.", "2025-06-30", "valid until 2025-06-30"),
        ("Free shipping until June 30, 2025.", "2025-06-30", "until June 30, 2025"),
        ("The voucher expires on 30 June 2025", "2025-06-30", "expires on 30 June 2025"),
        ("Spring offer ends March 31, 2025.", "2025-03-31", "offer ends March 31, 2025"),
        ("Returns accepted through 2025-06-30", "2025-06-30", "through 2025-06-30"),
        ("valid until June 2025", "2025-06-30", "valid until June 2025"),
        (
            "Sale runs from June 1, 2025 to June 30, 2025",
            "2025-06-30",
            "June 1, 2025 to June 30, 2025",
        ),
        # year-specific rules and campaigns of a past year
        ("2024年新规：退货需在7天内申请", "2024-12-31", "2024年新规"),
        ("2024年双十一活动规则如下", "2024-12-31", "2024年双十一活动"),
        ("2025年春节活动期间暂停发货", "2025-12-31", "2025年春节活动"),
        ("Our 2024 holiday offer includes free gift wrap", "2024-12-31", "2024 holiday offer"),
        ("Black Friday 2024 deals are over", "2024-12-31", "Black Friday 2024"),
        # a deadline the day before the run date is passed
        ("截至2026年11月23日", "2026-11-23", "截至2026年11月23日"),
    ],
)
def test_find_expiry_past_deadlines(text: str, stale_since: str, evidence: str) -> None:
    hit = find_expiry(text, RUN_DATE)
    assert hit is not None, text
    assert hit.stale_since == stale_since
    assert hit.evidence == evidence
    assert hit.reason in {"deadline", "past_year"}


@pytest.mark.parametrize(
    "text",
    [
        # deadlines in the future, or on the run date itself (the last valid day)
        "活动截至2027年6月30日",
        "有效期至2026年11月24日",
        "valid until 2027-01-01",
        "Offer ends December 31, 2026",
        "2027年6月30日前有效",
        # a campaign of the current year is not stale yet
        "2026年双十一活动",
        "our 2026 holiday offer",
        "2027年新规",
        # one deadline passed but another (an extension) is still ahead
        "原活动截至2025年6月30日，现延长至2027年6月30日",
        # dates that are not deadlines
        "2023年1月1日发布",
        "公司成立于2010年",
        "本文更新于2025-06-30",
        "Published on June 30, 2025",
        "Founded in 2010, we ship worldwide.",
        "截至2025年，我们已服务100万用户",
        # verbs ending in 到 are not "until"
        "我们收到2025年6月账单后处理",
        # impossible dates, version numbers, no year at all
        "2025年2月30日前有效",
        "版本 v1.2025.06.30 until further notice",
        "请在7天内申请退货",
        "截至6月30日",
        "",
    ],
)
def test_find_expiry_not_a_hit(text: str) -> None:
    assert find_expiry(text, RUN_DATE) is None


def test_find_expiry_boundary_is_the_run_date() -> None:
    day = date(2025, 6, 30)
    text = "有效期至2025年6月30日"
    assert find_expiry(text, day) is None
    assert find_expiry(text, day - timedelta(days=1)) is None
    hit = find_expiry(text, day + timedelta(days=1))
    assert hit is not None and hit.stale_since == "2025-06-30"


def test_find_expiry_year_rule_relative_to_run_year() -> None:
    assert find_expiry("2025年双十一活动", date(2025, 12, 31)) is None
    hit = find_expiry("2025年双十一活动", date(2026, 1, 1))
    assert hit == ExpiryHit(
        reason="past_year", evidence="2025年双十一活动", stale_since="2025-12-31"
    )


def test_find_expiry_reports_the_latest_passed_deadline() -> None:
    hit = find_expiry("第一期截至2025年3月31日，第二期截至2025年6月30日", RUN_DATE)
    assert hit is not None and hit.stale_since == "2025-06-30"


def test_expiry_hit_is_frozen() -> None:
    hit = ExpiryHit(reason="deadline", evidence="x", stale_since="2025-06-30")
    with pytest.raises(FrozenInstanceError):
        hit.reason = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("本规定自2027年1月1日起生效", "2027-01-01"),
        ("新运费标准将于2027-03-01正式实施", "2027-03-01"),
        ("2027年1月1日起执行新的退货政策", "2027-01-01"),
        ("自2027年3月起实施", "2027-03-01"),
        ("自2027年起，运费调整为10元", "2027-01-01"),
        ("New return policy, effective from 2027-01-01.", "2027-01-01"),
        ("This policy takes effect on January 1, 2027.", "2027-01-01"),
        ("Effective date: 1 February 2027", "2027-02-01"),
    ],
)
def test_find_not_yet_effective_future_start(text: str, since: str) -> None:
    hit = find_not_yet_effective(text, RUN_DATE)
    assert hit is not None, text
    assert hit.reason == "not_yet_effective"
    assert hit.stale_since == since


@pytest.mark.parametrize(
    "text",
    [
        "本规定自2025年1月1日起生效",
        "effective from 2026-11-24",  # in effect on its first day
        "自2025年1月1日起生效；2027年1月1日起执行第二阶段",  # already partly in effect
        "2023年1月1日发布",
        "满2000元起包邮",
        "活动截至2027年6月30日",
        "自即日起生效",
    ],
)
def test_find_not_yet_effective_not_a_hit(text: str) -> None:
    assert find_not_yet_effective(text, RUN_DATE) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-06-30", date(2025, 6, 30)),
        ("2025-06-30T08:15:00", date(2025, 6, 30)),
        ("2025-06-30T23:15:00Z", date(2025, 6, 30)),
        ("2025-06-30 08:15:00+08:00", date(2025, 6, 30)),
        ("2025/06/30", date(2025, 6, 30)),
        ("2025/6/3", date(2025, 6, 3)),
        ("2025/06/30 12:00", date(2025, 6, 30)),
        ("2025.6.30", date(2025, 6, 30)),
        ("2025年6月30日", date(2025, 6, 30)),
        ("２０２５年６月３０日", date(2025, 6, 30)),
        ("  2025-06-30 ", date(2025, 6, 30)),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_date_accepts(value: str | None, expected: date | None) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    "value",
    ["garbage", "30/06/2025", "2025-13-01", "2025-02-30", "2025年6月", "June 30, 2025", "20250"],
)
def test_parse_date_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        parse_date(value)
