"""Facts stated in KB answers, and contradictions between two answers.

``extract_facts`` finds the checkable facts of an answer: durations (``7天``, ``七天``, ``一周``,
``24小时``, ``3-5个工作日``, ``7 days``, ``5 business days``), amounts (``10元``, ``¥10``,
``RMB 10``, ``$5``; ``免费``/``包邮``/``free shipping`` = 0), percentages (``10%``, ``百分之十``),
dates and deadlines (``2025年6月30日``, ``2025-06-30``, ``6月30日``, ``June 30, 2025``),
phone numbers (``400-123-4567``, mobile, landline, ``1-800-555-0199``) and URLs. Each fact
gets a canonical value, so the same value spelt differently compares equal: ``7天`` = ``七天``
= ``一周`` = ``168小时``; ``¥10`` = ``10元`` = ``10.00元``; ``www.x.com/a/`` = ``https://x.com/a``.

``compare_facts`` reports the contradictions between two answers. The rule, chosen so that
unrelated facts of one kind do not make noise:

1. Two facts are *comparable* when they have the same kind and unit family (calendar time,
   business days, months; money; percent; date; phone; URL) and talk about the same thing:
   their topic keywords (``退货``, ``退款``, ``运费``, ``发货``, ``保修``... and English
   equivalents, taken from the fact's comma clause, else from its sentence) share a topic,
   or neither has one. Phone numbers and URLs are compared without topics.
2. For a fact of answer A with comparable facts in answer B, the values A states about that
   thing (every A fact comparable with those B facts) and the values B states are compared
   as sets: **disjoint sets are a contradiction**, reported with both sides' values; a shared
   value means the answers agree on it (B may add details A lacks, e.g. a second deadline).
3. Calendar durations compare in minutes (``1天`` = ``24小时``), business days and months only
   with their own kind (``7天`` vs ``5个工作日`` is not compared: the conversion depends on
   the calendar). Ranges (``3-5天``) are values of their own.

Not extracted: discounts written as ``折``, vague durations (``当天``, ``次日``, ``几天``), bare
numbers without a unit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "Contradiction",
    "Fact",
    "compare_facts",
    "cn_number",
    "extract_facts",
]


#: Fact kinds, in the order they are reported.
KINDS = ("duration", "amount", "percent", "date", "phone", "url")


#: Topic keyword -> canonical topic. Longer keywords are matched first (``退货运费`` holds both
#: ``退货`` and ``运费``: a fact in that clause is about both).
_TOPICS: dict[str, tuple[str, ...]] = {
    "退货": ("退货", "退回", "寄回", "无理由", "returns", "return", "send back", "send it back"),
    "换货": ("换货", "更换", "exchange", "exchanges", "replacement"),
    "退款": ("退款", "退钱", "到账", "refund", "refunds", "refunded", "money back"),
    "运费": (
        "运费",
        "邮费",
        "快递费",
        "配送费",
        "包邮",
        "shipping fee",
        "shipping cost",
        "delivery fee",
        "postage",
        "shipping",
    ),  # fmt: skip
    "发货": ("发货", "出库", "发出", "dispatch", "dispatched", "ships", "shipped"),
    "配送": ("配送", "送达", "到货", "签收", "派送", "delivery", "delivered", "arrive", "arrives"),
    "保修": ("保修", "质保", "维修", "warranty", "guarantee", "repair"),
    "价保": ("价保", "保价", "差价", "price protection", "price match"),
    "发票": ("发票", "invoice", "invoices", "receipt"),
    "积分": ("积分", "points", "point"),
    "优惠券": ("优惠券", "优惠码", "红包", "coupon", "coupons", "voucher", "promo code"),
    "会员": ("会员", "plus", "membership", "member"),
    "客服": ("客服", "热线", "人工", "hotline", "customer service", "support", "call us"),
    "取消": ("取消", "撤销", "cancel", "cancellation"),
    "审核": ("审核", "review", "approval"),
    "支付": ("支付", "付款", "payment", "pay"),
    "活动": ("活动", "促销", "campaign", "promotion", "sale"),
    "提现": ("提现", "withdraw", "withdrawal"),
}


_TOPIC_OF: dict[str, str] = {kw: topic for topic, kws in _TOPICS.items() for kw in kws}


_TOPIC_RE = re.compile(
    "|".join(
        # latin keywords only on word boundaries ("pay" must not match "paypal"'s inside)
        rf"(?<![a-z]){re.escape(kw)}(?![a-z])" if kw.isascii() else re.escape(kw)
        for kw in sorted(_TOPIC_OF, key=len, reverse=True)
    ),
    re.IGNORECASE,
)


_SENTENCE_RE = re.compile(r"[^。；;！!？?\n]+")


_CLAUSE_RE = re.compile(r"[^。；;！!？?\n，,、：:]+")


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}  # fmt: skip


_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}


_CN_NUM = "零〇一二两三四五六七八九十百千万"


_EN_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty-eight": 48, "ninety": 90, "a": 1, "an": 1,
}  # fmt: skip


def cn_number(text: str) -> int | None:
    """Value of a Chinese numeral up to 99,999 (``七`` 7, ``十五`` 15, ``二十四`` 24,
    ``一百零八`` 108, ``两千`` 2000); None when ``text`` is not one."""
    if not text or any(ch not in _CN_DIGITS and ch not in _CN_UNITS for ch in text):
        return None
    total = section = 0
    digit: int | None = None
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
            continue
        unit = _CN_UNITS[ch]
        if unit == 10_000:
            total += (section + (digit or 0)) * unit
            section, digit = 0, None
        else:
            section += (1 if digit is None else digit) * unit  # 十五: an implied 一
            digit = None
    return total + section + (digit or 0)


def _number(text: str) -> Decimal | None:
    t = text.strip().replace(",", "")
    if not t:
        return None
    if t == "半":
        return Decimal("0.5")
    low = t.lower()
    if low in _EN_NUMBERS:
        return Decimal(_EN_NUMBERS[low])
    if t[0].isdigit():
        try:
            return Decimal(t)
        except InvalidOperation:
            return None
    n = cn_number(t)
    return None if n is None else Decimal(n)


def _fmt(d: Decimal) -> str:
    """``Decimal`` without trailing zeros or exponent: 10.00 -> ``10``, 0.50 -> ``0.5``."""
    q = d.normalize()
    s = format(q, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


# Arabic numbers (with thousands separators) or Chinese numerals (or 半), then an optional range.
_NUM = rf"(?:\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|[{_CN_NUM}]+|半)"


_EN_NUM = r"(?:\d+(?:\.\d+)?|" + "|".join(sorted(_EN_NUMBERS, key=len, reverse=True)) + ")"


_RANGE = r"\s*(?:-|~|～|至|到|—|–|to)\s*"


# Word edges for latin words that may sit right next to CJK characters (``\b`` fails there).
_NB = r"(?<![A-Za-z0-9])"


_NA = r"(?![A-Za-z])"


_URL_RE = re.compile(r"(?:https?://|www\.)[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?:[/?#][^\s，。；、）)」>\"'<]*)?",
                     re.IGNORECASE)  # fmt: skip


_PHONE_RE = re.compile(
    r"(?<![\d.])(?:"
    r"[48]00[-\s]?\d{3}[-\s]?\d{4}"  # 400/800 service numbers
    r"|(?:\+?86[-\s]?)?1[3-9]\d{9}"  # mobile
    r"|0\d{2,3}[-\s]\d{7,8}"  # landline with area code
    r"|\+?1[-\s.]\(?[2-9]\d{2}\)?[-\s.]\d{3}[-\s.]\d{4}"  # North American (1-800-555-0199)
    r")(?![\d.])"
)


_MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june",
           "july", "august", "september", "october", "november", "december"), 1)}  # fmt: skip


_MONTH_RE = "|".join(sorted(list(_MONTHS) + [m[:3] for m in _MONTHS], key=len, reverse=True))


_DATE_RES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<!\d)(\d{4})\s*[年/.-]\s*(\d{1,2})\s*[月/.-]\s*(\d{1,2})\s*[日号]?"), "ymd"),
    (re.compile(r"(?<!\d)(\d{4})\s*年\s*(\d{1,2})\s*月(?!\d)"), "ym"),
    (re.compile(r"(?<![\d年])(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"), "md"),
    (
        re.compile(
            rf"{_NB}({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})(?!\d)", re.I
        ),
        "mdy",
    ),
    (
        re.compile(
            rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_RE})\.?,?\s+(\d{{4}})(?!\d)", re.I
        ),
        "dmy",
    ),
]


#: Unit -> (family, minutes or count per unit). Longest spellings first in the pattern.
_DURATION_UNITS: dict[str, tuple[str, Decimal]] = {
    "个工作日": ("business_days", Decimal(1)),
    "工作日": ("business_days", Decimal(1)),
    "个小时": ("calendar", Decimal(60)),
    "小时": ("calendar", Decimal(60)),
    "钟头": ("calendar", Decimal(60)),
    "分钟": ("calendar", Decimal(1)),
    "个星期": ("calendar", Decimal(10080)),
    "星期": ("calendar", Decimal(10080)),
    "周": ("calendar", Decimal(10080)),
    "天": ("calendar", Decimal(1440)),
    "日": ("calendar", Decimal(1440)),
    "个月": ("months", Decimal(1)),
    "年": ("months", Decimal(12)),
}


_EN_DURATION_UNITS: dict[str, tuple[str, Decimal]] = {
    "business days": ("business_days", Decimal(1)),
    "business day": ("business_days", Decimal(1)),
    "working days": ("business_days", Decimal(1)),
    "working day": ("business_days", Decimal(1)),
    "minutes": ("calendar", Decimal(1)),
    "minute": ("calendar", Decimal(1)),
    "mins": ("calendar", Decimal(1)),
    "hours": ("calendar", Decimal(60)),
    "hour": ("calendar", Decimal(60)),
    "hrs": ("calendar", Decimal(60)),
    "days": ("calendar", Decimal(1440)),
    "day": ("calendar", Decimal(1440)),
    "weeks": ("calendar", Decimal(10080)),
    "week": ("calendar", Decimal(10080)),
    "months": ("months", Decimal(1)),
    "month": ("months", Decimal(1)),
    "years": ("months", Decimal(12)),
    "year": ("months", Decimal(12)),
}


def _alt(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_DURATION_RE = re.compile(
    rf"(?<!第)(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?P<u>{_alt(list(_DURATION_UNITS))})"
)


_EN_DURATION_RE = re.compile(
    rf"{_NB}(?P<a>{_EN_NUM})(?:{_RANGE}(?P<b>{_EN_NUM}))?[\s-]*(?P<u>{_alt(list(_EN_DURATION_UNITS))}){_NA}",
    re.IGNORECASE,
)


_CNY_AFTER = r"元|块钱|块|RMB|CNY|人民币"


_AMOUNT_RES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?:[¥￥]|RMB|CNY|人民币)\s*(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?", re.I), "CNY"),
    (re.compile(rf"(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?:{_CNY_AFTER})", re.I), "CNY"),
    (re.compile(rf"(?:US\$|\$|USD)\s*(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?", re.I), "USD"),
    (re.compile(rf"(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?:USD|dollars?|美元){_NA}", re.I), "USD"),
]  # fmt: skip


_FREE_RE = re.compile(
    rf"免费|包邮|免运费|免邮|{_NB}free\s+(?:shipping|delivery|returns?|of\s+charge){_NA}"
    rf"|{_NB}(?:is|are|ships?|for)\s+free{_NA}|{_NB}no\s+(?:shipping|delivery)\s+(?:fee|charge)s?{_NA}",
    re.IGNORECASE,
)


_PERCENT_RES = [
    re.compile(
        rf"(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?:%|％|percent{_NA}|per\s+cent{_NA})", re.I
    ),
    re.compile(rf"百分之(?P<a>{_NUM})"),
]


@dataclass(frozen=True)
class Fact:
    """One checkable statement of an answer.

    ``unit``: the family values are compared within (``calendar``, ``business_days``,
    ``months``, ``money``, ``percent``, ``date``, ``phone``, ``url``). ``value``: canonical
    (equal values spelt differently give the same string). ``display``: canonical value for
    people (``7 days``, ``10 CNY``). ``text``: as written. ``topics``: canonical topic
    keywords of its clause. ``clause``: where it was found.
    """

    kind: str
    unit: str
    value: str
    display: str
    text: str
    topics: frozenset[str]
    clause: str
    start: int


def _duration_display(family: str, lo: Decimal, hi: Decimal | None) -> str:
    def one(v: Decimal) -> str:
        if family == "business_days":
            return f"{_fmt(v)} business day{'s' if v != 1 else ''}"
        if family == "months":
            return f"{_fmt(v)} month{'s' if v != 1 else ''}"
        if v % 1440 == 0:
            d = v / 1440
            return f"{_fmt(d)} day{'s' if d != 1 else ''}"
        if v % 60 == 0:
            h = v / 60
            return f"{_fmt(h)} hour{'s' if h != 1 else ''}"
        return f"{_fmt(v)} min"

    if hi is None:
        return one(lo)
    low, high = one(lo), one(hi)
    # "3 business days - 5 business days" -> "3-5 business days" when the units agree
    lo_num, _, lo_unit = low.partition(" ")
    hi_num, _, hi_unit = high.partition(" ")
    return (
        f"{lo_num}-{hi_num} {hi_unit}"
        if lo_unit.rstrip("s") == hi_unit.rstrip("s")
        else f"{low} - {high}"
    )


def _range_value(lo: Decimal, hi: Decimal | None) -> str:
    return _fmt(lo) if hi is None or hi == lo else f"{_fmt(lo)}-{_fmt(hi)}"


def _topics_at(text: str, start: int, end: int) -> tuple[frozenset[str], str]:
    """Topics of the comma clause around ``[start, end)``, else of its sentence."""
    for pattern in (_CLAUSE_RE, _SENTENCE_RE):
        for m in pattern.finditer(text):
            if m.start() <= start < m.end() or (m.start() < end <= m.end()):
                found = frozenset(
                    _TOPIC_OF[k.group(0).lower()] for k in _TOPIC_RE.finditer(m.group(0))
                )
                if found or pattern is _SENTENCE_RE:
                    return found, m.group(0).strip()
                break
    return frozenset(), text[max(0, start - 20) : end + 20].strip()


def _normalize_url(url: str) -> str:
    u = url.rstrip(".,;:!?)").lower()
    u = re.sub(r"^https?://", "", u)
    u = re.sub(r"^www\.", "", u)
    return u.rstrip("/")


def extract_facts(answer: str) -> list[Fact]:
    """Every fact ``answer`` states, in text order (see the module doc for what counts).

    The text is NFKC-normalised first (full-width digits and symbols). URLs, phone numbers
    and dates are taken out before numbers are read, so ``400-123-4567`` gives no amount
    and ``6月30日`` no duration."""
    text = unicodedata.normalize("NFKC", answer or "")
    lower_for_topics = text
    taken = [False] * len(text)
    found: list[
        tuple[int, int, str, str, str, str, str]
    ] = []  # start, end, kind, unit, value, display, raw

    def free(s: int, e: int) -> bool:
        return not any(taken[s:e])

    def take(s: int, e: int, kind: str, unit: str, value: str, display: str) -> None:
        for i in range(s, e):
            taken[i] = True
        found.append((s, e, kind, unit, value, display, text[s:e]))

    for m in _URL_RE.finditer(text):
        url = _normalize_url(m.group(0))
        take(m.start(), m.start() + len(m.group(0).rstrip(".,;:!?)")), "url", "url", url, url)
    for m in _PHONE_RE.finditer(text):
        if free(m.start(), m.end()):
            digits = re.sub(r"\D", "", m.group(0))
            digits = digits[2:] if digits.startswith("86") and len(digits) == 13 else digits
            take(m.start(), m.end(), "phone", "phone", digits, m.group(0))
    for pattern, form in _DATE_RES:
        for m in pattern.finditer(text):
            if not free(m.start(), m.end()):
                continue
            g = m.groups()
            if form == "ymd":
                y, mo, d = int(g[0]), int(g[1]), int(g[2])
            elif form == "ym":
                y, mo, d = int(g[0]), int(g[1]), 0
            elif form == "md":
                y, mo, d = 0, int(g[0]), int(g[1])
            elif form == "mdy":
                y, mo, d = int(g[2]), _MONTHS[_month_key(g[0])], int(g[1])
            else:
                y, mo, d = int(g[2]), _MONTHS[_month_key(g[1])], int(g[0])
            if not (1 <= mo <= 12 and 0 <= d <= 31):
                continue
            value = (f"{y:04d}-" if y else "--") + f"{mo:02d}" + (f"-{d:02d}" if d else "")
            take(m.start(), m.end(), "date", "date", value, value)
    for pattern in _PERCENT_RES:
        for m in pattern.finditer(text):
            lo, hi = _number(m.group("a")), _number(m.groupdict().get("b") or "")
            if lo is None or not free(m.start(), m.end()):
                continue
            v = _range_value(lo, hi)
            take(m.start(), m.end(), "percent", "percent", v, f"{v}%")
    for pattern, currency in _AMOUNT_RES:
        for m in pattern.finditer(text):
            lo, hi = _number(m.group("a")), _number(m.groupdict().get("b") or "")
            if lo is None or not free(m.start(), m.end()):
                continue
            v = _range_value(lo, hi)
            value = "0" if v == "0" else f"{v} {currency}"
            take(m.start(), m.end(), "amount", "money", value, value)
    for m in _FREE_RE.finditer(text):
        if free(m.start(), m.end()):
            take(m.start(), m.end(), "amount", "money", "0", "0 (free)")
    for pattern, units in ((_DURATION_RE, _DURATION_UNITS), (_EN_DURATION_RE, _EN_DURATION_UNITS)):
        for m in pattern.finditer(text):
            if not free(m.start(), m.end()):
                continue
            unit = m.group("u")
            family, scale = units[unit.lower()] if unit.lower() in units else units[unit]
            lo, hi = _number(m.group("a")), _number(m.group("b") or "")
            if lo is None or (m.group("b") and hi is None):
                continue
            if unit == "年" and (lo >= 100 or "." in m.group("a")):
                continue  # "2025年" is a year, not a duration
            if unit == "日" and m.group("a") == "半":
                continue
            lo_v, hi_v = lo * scale, (hi * scale if hi is not None else None)
            value = _range_value(lo_v, hi_v)
            take(m.start(), m.end(), "duration", family, value,
                 _duration_display(family, lo_v, hi_v if hi_v != lo_v else None))  # fmt: skip
    facts = []
    for s, e, kind, unit, value, display, raw in sorted(found):
        if kind in ("phone", "url"):
            topics: frozenset[str] = frozenset()
            clause = _topics_at(lower_for_topics, s, e)[1]
        else:
            topics, clause = _topics_at(lower_for_topics, s, e)
        facts.append(Fact(kind, unit, value, display, raw.strip(), topics, clause, s))
    return facts


def _month_key(name: str) -> str:
    low = name.lower().rstrip(".")
    return next(m for m in _MONTHS if m.startswith(low[:3]))


@dataclass(frozen=True)
class Contradiction:
    """Two answers state different values for the same kind of fact about the same thing."""

    kind: str
    unit: str
    topic: str
    """The shared topics (``退货``, ``运费``), ``,``-joined; empty when neither fact has one."""
    values_a: tuple[str, ...]
    values_b: tuple[str, ...]
    """As written in each answer (``7天``; ``15天``)."""
    normalized_a: tuple[str, ...]
    normalized_b: tuple[str, ...]
    """Canonical values (``7 days``; ``15 days``)."""
    evidence_a: str
    evidence_b: str


def _comparable(f: Fact, g: Fact) -> bool:
    if f.kind != g.kind or f.unit != g.unit:
        return False
    if f.kind in ("phone", "url"):
        return True
    return bool(f.topics & g.topics) or (not f.topics and not g.topics)


def _uniq(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def compare_facts(a: list[Fact], b: list[Fact]) -> list[Contradiction]:
    """Contradictions between the facts of answer ``a`` and answer ``b`` (module doc, rule 2).

    Symmetric up to swapping sides; one contradiction per (kind, unit, topic, values)."""
    out: dict[tuple[object, ...], Contradiction] = {}
    for f in a:
        theirs = [g for g in b if _comparable(f, g)]
        if not theirs:
            continue
        ours = [f2 for f2 in a if any(_comparable(f2, g) for g in theirs)]
        va = {x.value for x in ours}
        vb = {x.value for x in theirs}
        if va & vb:
            continue
        shared = set().union(*(x.topics for x in ours)) & set().union(*(x.topics for x in theirs))
        topic = ",".join(sorted(shared))
        key = (f.kind, f.unit, topic, frozenset(va), frozenset(vb))
        if key in out:
            continue
        out[key] = Contradiction(
            kind=f.kind,
            unit=f.unit,
            topic=topic,
            values_a=_uniq([x.text for x in ours]),
            values_b=_uniq([x.text for x in theirs]),
            normalized_a=_uniq([x.display for x in ours]),
            normalized_b=_uniq([x.display for x in theirs]),
            evidence_a=" … ".join(_uniq([x.clause for x in ours])),
            evidence_b=" … ".join(_uniq([x.clause for x in theirs])),
        )
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out.values(), key=lambda c: (order.get(c.kind, 99), c.topic, c.values_a))
