"""Dates in KB entries: explicit date fields and deadline phrases in the text.

``parse_date`` reads the explicit ``updated_at``/``effective_from``/``expires_at`` fields.
``find_expiry`` finds deadline phrases whose date has passed ("截至2025年6月30日",
"valid until 2025-06-30", "2024年双十一活动"); ``find_not_yet_effective`` finds rules that
only start later ("自2027年1月1日起生效"). All functions are pure; the run date is an argument,
never "today".
"""

from __future__ import annotations

import calendar
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from kbflow.clean.normalize import nfkc

log = logging.getLogger(__name__)


__all__ = [
    "DatePhrases",
    "ExpiryHit",
    "date_phrases",
    "find_expiry",
    "find_not_yet_effective",
    "names_a_year",
    "parse_date",
]


@dataclass(frozen=True)
class ExpiryHit:
    """A date phrase that makes an entry unpublishable on the run date.

    ``reason``: ``"deadline"`` (a dated deadline has passed), ``"past_year"`` (a rule or
    campaign of a past year) or ``"not_yet_effective"``. ``evidence``: the matched phrase.
    ``stale_since``: ISO date of the last day the entry was valid (the deadline; Dec 31 for a
    past year; the month's last day for a year-month deadline); for ``not_yet_effective``, the
    day it takes effect.
    """

    reason: str
    evidence: str
    stale_since: str


_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip


_MON = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)


_ORD = r"(?:st|nd|rd|th)?"


_YEAR_RE = re.compile(r"(?<!\d)(?:19|20|21)\d{2}(?!\d)")


# Forms that start at the year: (pattern, precision).
_FORWARD_FORMS = [
    (
        re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})(?:\s*[日号]|(?!\d))"),
        "day",
    ),
    (re.compile(r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月(?!\s*\d)"), "month"),
    (re.compile(r"(?P<y>\d{4})\s*年\s*(?:年底|年末|底|末)"), "year_end"),
    (re.compile(r"(?<!\.)(?P<y>\d{4})([-/.])(?P<m>\d{1,2})\2(?P<d>\d{1,2})(?!\d|\.\d)"), "day"),
    (re.compile(r"(?<!\.)(?P<y>\d{4})[-/](?P<m>\d{1,2})(?![-/\d]|\.\d)"), "month"),
]


# English forms that end at the year, searched in a short window before it.
_BACKWARD_FORMS = [
    (re.compile(rf"\b(?P<mon>{_MON})\s+(?P<d>\d{{1,2}}){_ORD},?\s+(?P<y>\d{{4}})$", re.I), "day"),
    (
        re.compile(
            rf"(?<!\d)(?P<d>\d{{1,2}}){_ORD}\s+(?:of\s+)?(?P<mon>{_MON}),?\s+(?P<y>\d{{4}})$", re.I
        ),
        "day",
    ),
    (re.compile(rf"\b(?P<mon>{_MON}),?\s+(?P<y>\d{{4}})$", re.I), "month"),
]


_BACKWARD_WINDOW = 32


# A bare year ("2027年", "2027"); only "effective from" phrases use it. Not before a unit:
# "2000元" is a price.
_YEAR_FORMS = [
    (re.compile(r"(?P<y>\d{4})\s*年(?!\s*\d)"), "year"),
    (re.compile(r"(?<!\.)(?P<y>\d{4})(?![-/年元件个号]|\.\d)"), "year"),
]


@dataclass(frozen=True)
class _Date:
    start: int
    end: int
    first: date  # first day it names (what "effective from" means)
    last: date  # last day it names (what a deadline means)
    precision: str  # day | month | year_end | year


def _make_date(m: re.Match[str], precision: str) -> _Date | None:
    g = m.groupdict()
    try:
        year = int(g["y"])
        if precision in ("year", "year_end"):
            first = date(year, 12, 31) if precision == "year_end" else date(year, 1, 1)
            return _Date(m.start(), m.end(), first, date(year, 12, 31), precision)
        mon = g.get("mon")
        month = _MONTHS[mon.lower()[:3]] if mon else int(g["m"])
        if precision == "month":
            last = calendar.monthrange(year, month)[1]
            return _Date(
                m.start(), m.end(), date(year, month, 1), date(year, month, last), precision
            )
        day = date(year, month, int(g["d"]))
        return _Date(m.start(), m.end(), day, day, precision)
    except (ValueError, KeyError, calendar.IllegalMonthError):
        return None  # 2025年2月30日, month 13: not a date


def _date_at(text: str, s: int, e: int) -> _Date | None:
    """The date whose year is ``text[s:e]``, if the year is part of one."""
    for rx, precision in _FORWARD_FORMS:
        if (m := rx.match(text, s)) is not None:
            return _make_date(m, precision)
    for rx, precision in _BACKWARD_FORMS:
        if (m := rx.search(text, max(0, s - _BACKWARD_WINDOW), e)) is not None:
            return _make_date(m, precision)
    for rx, precision in _YEAR_FORMS:
        if (m := rx.match(text, s)) is not None:
            return _make_date(m, precision)
    return None


def _dates(text: str, years: list[tuple[int, int]]) -> list[_Date]:
    """Dates in ``text`` around the given year spans, in text order; impossible ones dropped."""
    out: list[_Date] = []
    for s, e in years:
        d = _date_at(text, s, e)
        if d is not None and not (out and d.start < out[-1].end):
            out.append(d)
    return out


_TIME = r"(?:\s*\d{1,2}:\d{2}(?::\d{2})?)?"


# "至" before a date is "until" wherever it stands; "到" is too, except as the end of a verb
# (收到, 得到, 找到 ...: "收到2025年6月账单" is no deadline).
_BARE_TO = r"(?:至|(?<![收得找遇回做达来想看提拿用听见接转寄送办猜学])到)"


_CN_PREFIX = (
    r"(?:有效期\s*(?:至|到|截至|截止(?:到|至)?)?|有效(?:至|到)|截止(?:日期|时间)?\s*(?:到|至|为)?"
    r"|截至|到期(?:日期|时间|日)?\s*(?:为)?|(?:延长|延期|持续|开放|进行|保留|展示|适用)(?:至|到)"
    rf"|{_BARE_TO})"
)


_EN_PREFIX = (
    r"\b(?:valid\s+(?:until|till|through|thru|to)|(?:good|available)\s+(?:until|till|through|thru)"
    r"|until|till|through|thru"
    r"|expir(?:es|ed|ing|y|ation)(?:\s+date)?(?:\s+(?:on|at|is))?"
    r"|(?:offer|promotion|promo|sale|campaign|deal|event|discount|coupon|program(?:me)?)\s+"
    r"(?:ends?|ended|ending|closes?|closed|runs?\s+(?:until|till|through))(?:\s+on)?"
    r"|ends?\s+on|ending\s+on|closes?\s+on|deadline(?:\s+is)?|no\s+later\s+than"
    r"|on\s+or\s+before|before|by)"
)


_DEADLINE_PREFIX_RE = re.compile(rf"(?:{_CN_PREFIX}|{_EN_PREFIX})\s*:?\s*$", re.I)


_DEADLINE_PREFIX_WINDOW = 40


_DEADLINE_SUFFIX_RE = re.compile(
    rf"{_TIME}\s*(?:(?:之前|以前|前)(?:\s*有效)?|截止|为止|止|结束|到期|失效|过期|作废|下线|下架)"
)


# Between the two dates of a range: its end is a deadline ("6月1日至6月30日", "June 1 - June 30").
_RANGE_GAP_RE = re.compile(rf"{_TIME}\s*(?:-|–|—|~|至|到|to|through|thru|until|till)\s*", re.I)


_CN_EVENTS = (
    r"双十一|双11|双十二|双12|618|年货节|春节|元旦|中秋|国庆|五一|劳动节|端午|七夕|圣诞|元宵"
    r"|情人节|黑五|开学季|周年庆|店庆|年终|年末|暑期|寒假"
)


_EN_EVENTS = (
    r"holiday|christmas|xmas|black\s+friday|cyber\s+monday|new\s+year'?s?|lunar\s+new\s+year"
    r"|spring\s+festival|summer|winter|spring|autumn|fall|easter|thanksgiving|halloween"
    r"|year[-\s]end|back[-\s]to[-\s]school|anniversary|singles'?\s+day|valentine'?s?(?:\s+day)?"
    r"|prime\s+day|boxing\s+day"
)


_EN_KINDS = (
    r"offers?|sales?|promos?|promotions?|campaigns?|deals?|events?|discounts?|specials?"
    r"|coupons?|vouchers?|giveaways?|rules?|polic(?:y|ies)|regulations?"
)


_EN_NAMED_EVENTS = (
    r"black\s+friday|cyber\s+monday|christmas|xmas|holiday\s+season|prime\s+day"
    r"|singles'?\s+day|boxing\s+day"
)


# Rules and campaigns of a year, anchored at the year: "2024年新规", "2024年双十一活动",
# "2025年春节活动", "2024 holiday offer", "2024 Black Friday".
_YEAR_EVENT_FORWARD = [
    re.compile(
        r"\d{4}\s*年\s*(?:度\s*)?(?:的\s*)?(?:新规定?|新政策?"
        rf"|(?:{_CN_EVENTS})(?:\s*(?:活动|促销|大促|优惠|特惠|福利|期间|规则))?"
        r"|活动|促销|大促|优惠|福利)"
    ),
    re.compile(rf"\d{{4}}\s+(?:(?:{_EN_EVENTS})\s+)?(?:{_EN_KINDS})\b", re.I),
    re.compile(rf"\d{{4}}\s+(?:{_EN_NAMED_EVENTS})\b", re.I),
]


# ... or ending at it: "Black Friday 2024", "Holiday sale 2024".
_FOLLOWED_BY_DATE_PART = re.compile(r"[-/]\d|\.\d")


_YEAR_EVENT_BACKWARD = re.compile(
    rf"\b(?:{_EN_NAMED_EVENTS}|holiday|new\s+year'?s?)(?:\s+(?:{_EN_KINDS}))?\s+\d{{4}}$", re.I
)


_EFF_CN_PREFIX_RE = re.compile(r"(?:自|从|于|将于|将自|将从|预计于|计划于)\s*$")


_EFF_CN_SUFFIX_RE = re.compile(
    rf"{_TIME}\s*(?:起|开始)?\s*(?:正式|将)?\s*(?:生效|实施|施行|执行|启用|实行)"
)


_EFF_FROM_SUFFIX_RE = re.compile(rf"{_TIME}\s*(?:起|开始)")  # with 自/从 before the date


_EFF_EN_PREFIX_RE = re.compile(
    r"\b(?:effective(?:\s+(?:from|as\s+of|on|starting|beginning|date))?"
    r"|(?:takes?|taking|will\s+take|to\s+take)\s+effect(?:\s+(?:on|from|as\s+of))?"
    r"|(?:comes?|coming|will\s+come|to\s+come)\s+into\s+(?:effect|force)(?:\s+(?:on|from|as\s+of))?"
    r"|in\s+(?:effect|force)\s+(?:from|as\s+of|starting))\s*:?\s*$",
    re.I,
)


_EFF_PREFIX_WINDOW = 48


def names_a_year(text: str) -> bool:
    """Whether NFKC ``text`` names a year at all: without one neither ``find_expiry`` nor
    ``find_not_yet_effective`` can find anything (one regex search instead of two scans)."""
    return _YEAR_RE.search(text) is not None


def _scan(text: str) -> tuple[str, list[tuple[int, int]]] | None:
    """NFKC text and its year spans, or ``None`` when it names no year (most entries)."""
    if not text:
        return None
    text = nfkc(text)  # cheap when already normalised (the clean stage passes normalised text)
    if _YEAR_RE.search(text) is None:
        return None
    years = [m.span() for m in _YEAR_RE.finditer(text)]
    return (text, years) if years else None


def _deadlines(text: str, years: list[tuple[int, int]]) -> list[tuple[date, str, str]]:
    """(last valid day, reason, evidence) of every deadline phrase in ``text``."""
    hits: list[tuple[date, str, str]] = []
    dates = _dates(text, years)
    for i, d in enumerate(dates):
        if d.precision == "year":  # a bare year is no deadline ("截至2025年，已服务...")
            continue
        start: int | None = None
        end = d.end
        if (
            mp := _DEADLINE_PREFIX_RE.search(
                text, max(0, d.start - _DEADLINE_PREFIX_WINDOW), d.start
            )
        ) is not None:
            start = mp.start()
        if (ms := _DEADLINE_SUFFIX_RE.match(text, d.end)) is not None:
            start, end = (d.start if start is None else start), ms.end()
        if start is None and i > 0:
            prev = dates[i - 1]
            if _RANGE_GAP_RE.fullmatch(text, prev.end, d.start) is not None:
                start = prev.start
        if start is not None:
            hits.append((d.last, "deadline", text[start:end].strip()))
    for s, e in years:
        if s and text[s - 1] in ".-/":  # part of a version or a date, not a year
            continue
        found = [m for rx in _YEAR_EVENT_FORWARD if (m := rx.match(text, s)) is not None]
        if _FOLLOWED_BY_DATE_PART.match(text, e) is None:
            back = _YEAR_EVENT_BACKWARD.search(text, max(0, s - _BACKWARD_WINDOW), e)
            if back is not None:
                found.append(back)
        if found:
            phrase = max(found, key=lambda m: len(m.group(0))).group(0).strip()
            hits.append((date(int(text[s:e]), 12, 31), "past_year", phrase))
    return hits


def _effective_starts(text: str, years: list[tuple[int, int]]) -> list[tuple[date, str]]:
    """(first day in effect, evidence) of every "effective from" phrase in ``text``."""
    starts: list[tuple[date, str]] = []
    for d in _dates(text, years):
        pre = _EFF_CN_PREFIX_RE.search(text, max(0, d.start - 6), d.start)
        start = pre.start() if pre is not None else d.start
        ms = _EFF_CN_SUFFIX_RE.match(text, d.end)
        if ms is None and pre is not None and text[pre.start()] in "自从":
            ms = _EFF_FROM_SUFFIX_RE.match(text, d.end)  # "自<date>起" alone
        if ms is not None:
            starts.append((d.first, text[start : ms.end()].strip()))
        elif (
            me := _EFF_EN_PREFIX_RE.search(text, max(0, d.start - _EFF_PREFIX_WINDOW), d.start)
        ) is not None:
            starts.append((d.first, text[me.start() : d.end].strip()))
    return starts


def find_expiry(text: str, run_date: date) -> ExpiryHit | None:
    """The deadline phrase that makes ``text`` stale on ``run_date``, or ``None``.

    Recognised (Chinese and English): "截至/截止/有效期至/至/到 <date>", "<date>前(有效)",
    "<date>截止/止/结束/到期", "valid until/through <date>", "until/till/through <date>",
    "expires (on) <date>", "offer ends <date>", the end of a date range, and rules or campaigns
    of a year ("2024年新规", "2024年双十一活动", "2024 holiday offer", "Black Friday 2024").
    Dates: 2025年6月30日, 2025-06-30, 2025/6/30, June 30, 2025, 30 June 2025; year-month
    forms (2025年6月, June 2025) mean the month's last day, "2025年底" Dec 31, and a year's
    rule or campaign is stale after Dec 31 of that year.

    A deadline has passed when its date is before ``run_date`` (the last valid day is still
    valid). When the text names several deadlines and any one is still ahead (an extension,
    a current-year campaign), the text is not stale: wrongly dropping a live answer costs more
    than keeping an outdated one for a night. Otherwise the hit with the latest date is
    returned. Dates that are not deadlines ("2023年1月1日发布", "成立于2010年") are ignored.
    """
    return date_phrases(text, run_date).expired


def find_not_yet_effective(text: str, run_date: date) -> ExpiryHit | None:
    """The phrase saying ``text`` only takes effect after ``run_date``, or ``None``.

    Recognised: "自<date>起(生效/实施/执行...)", "<date>起生效", "将于<date>实施",
    "effective (from/as of/on) <date>", "takes effect (on) <date>", "comes into force <date>".
    Year-month and year forms mean their first day ("自2027年起实施" is 2027-01-01). A rule
    is in effect on its first day. When any effective phrase is already in effect, the text
    is treated as current (it describes rules in force); otherwise the earliest future start
    is returned, with ``stale_since`` = that day.
    """
    return date_phrases(text, run_date).not_yet_effective


@dataclass(frozen=True)
class DatePhrases:
    """What a text's date phrases say on one run date, from one scan of the text."""

    not_yet_effective: ExpiryHit | None
    """``find_not_yet_effective``'s answer."""
    expired: ExpiryHit | None
    """``find_expiry``'s answer."""
    changes_on: date | None
    """The first later day on which either answer would be different (a start date reached, the
    last deadline passed); None when neither ever changes. Later run dates only ever make a
    text more effective and more expired, so until that day the answers stand."""


def date_phrases(text: str, run_date: date) -> DatePhrases:
    """``find_not_yet_effective`` and ``find_expiry`` of ``text`` on ``run_date`` from one scan,
    and the day their answers change (``DatePhrases.changes_on``: the clean stage's outputs are
    reused by later runs of the same export until then)."""
    scanned = _scan(text)
    if scanned is None:
        return DatePhrases(None, None, None)
    changes: list[date] = []
    effective = None
    starts = _effective_starts(*scanned)
    if starts and not any(d <= run_date for d, _ in starts):
        d, evidence = min(starts, key=lambda h: (h[0], -len(h[1]), h[1]))
        effective = ExpiryHit(
            reason="not_yet_effective", evidence=evidence, stale_since=d.isoformat()
        )
        changes.append(d)  # in effect on its first day
    expired = None
    hits = _deadlines(*scanned)
    if hits:
        last = max(d for d, _, _ in hits)
        if last < run_date:
            d, reason, evidence = max(hits, key=lambda h: (h[0], len(h[2]), h[2]))
            expired = ExpiryHit(reason=reason, evidence=evidence, stale_since=d.isoformat())
        else:
            changes.append(last + timedelta(days=1))  # the last valid day is still valid
    return DatePhrases(effective, expired, min(changes) if changes else None)


_FIELD_RE = re.compile(
    r"(?P<y>\d{4})\s*(?:[-/.]|年)\s*(?P<m>\d{1,2})\s*(?:[-/.]|月)\s*(?P<d>\d{1,2})\s*[日号]?"
    r"(?:[T\s]+\d{1,2}(?::\d{2}){1,2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


def parse_date(value: str | None) -> date | None:
    """The calendar date of an explicit date field; ``None`` for ``None`` or a blank string.

    Accepts ISO dates (2025-06-30), ISO datetimes (2025-06-30T08:00:00+08:00, "Z" too; the
    date as written, no time-zone shift), 2025/06/30, 2025.6.30 and 2025年6月30日 (optionally
    followed by a time). Full-width digits are accepted (NFKC). Raises ``ValueError`` for
    anything else, including impossible dates (2025-02-30): validation relies on it.
    """
    if value is None:
        return None
    s = unicodedata.normalize("NFKC", str(value)).strip()
    if not s:
        return None
    try:
        return date.fromisoformat(s)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(s).date()
    except ValueError:
        pass
    m = _FIELD_RE.fullmatch(s)
    if m is None:
        raise ValueError(f"not a date: {value!r}")
    return date(int(m["y"]), int(m["m"]), int(m["d"]))  # ValueError for impossible dates
