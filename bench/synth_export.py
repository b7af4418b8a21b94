"""Synthetic KB exports for the stage benchmark, grown from the project's own sample KB.

``write_export(sample_dir, out_dir, n, seed)`` writes an export of exactly ``n`` records built
from real-looking variants of the sample's entries (``examples/kb_zh/export`` by default):

* regular entries (the rest): a sample FAQ entry with a new id; title, answer and similar
  questions perturbed (synonyms swapped, a "请问"-style prefix, a business-line scope such as
  "（跨境购·小程序）", small numbers changed, sentences reordered, one to three sentences from
  other entries of the same category added), so that entries are mostly distinct: two variants
  of one sample entry stay well below the clean stage's near-duplicate Jaccard of 0.8;
* ``near`` (~2%): a copy of an earlier entry with a small edit (Jaccard >= 0.85, checked here);
* ``exact`` (~1%): a copy with a new id (or, one in five, the same id) and the same content;
* ``expired`` (~1%): ``expires_at`` in the past, or a passed deadline phrase in the answer;
* ``draft`` (~0.5%): status draft or archived;
* ``broken`` (~0.2%): unparseable JSON lines, non-object lines, CSV records with too few fields,
  missing title, empty answer, bad status, bad date, unsafe id;
* ``sop`` (~1%): the sample's long SOP documents, varied paragraph by paragraph.

Each variant goes to a file of the same family and format as its sample entry (``faq`` JSONL in
shards of 50,000 lines, ``policies.csv`` UTF-8 with BOM, ``legacy.csv`` GB18030, ...), so the
reader paths are exercised in the sample's proportions. Deterministic for a given sample,
``n`` and ``seed``. Streaming: memory stays small whatever ``n`` is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from kbflow.contracts import EXPORT_FIELDS

#: Shares of the export, by kind (the rest is regular entries).
SHARES = {
    "near": 0.02,
    "exact": 0.01,
    "expired": 0.01,
    "draft": 0.005,
    "broken": 0.002,
    "sop": 0.01,
}
JSONL_SHARD_ROWS = 50_000
#: FAQ answers are kept under this many characters, so they stay one passage (256 tokens).
FAQ_MAX_CHARS = 230
#: Longer sample titles (a whole complaint pasted as a title) are edge cases for the tests; a
#: hundred thousand variants of them would over-represent them, so they are not seeds.
MAX_SEED_TITLE_CHARS = 80
STAMP = ".bench-export.json"  # hidden: the export reader ignores it
GENERATOR_VERSION = 5

_YEAR = re.compile(r"(?:19|20|21)\d{2}")
_SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]*")
_NUMBER = re.compile(r"(?<![\d.:])\d{1,3}(?![\d.:年月日号])")
_HTMLISH = re.compile(r"[<&]")
_CJK = re.compile(r"[\u4e00-\u9fff]")

# Interchangeable words of customer-service Chinese; any member may replace any other.
# A negative lookahead keeps compounds intact ("快递员" is not "物流员").
_SYNONYMS: list[tuple[tuple[str, ...], str]] = [
    (("如何", "怎么", "怎样"), ""),
    (("查看", "查询", "查一下"), ""),
    (("修改", "更改", "变更"), ""),
    (("取消", "撤销"), ""),
    (("退款", "退费"), r"(?!流水)"),
    (("收货地址", "收件地址", "配送地址"), ""),
    (("商家", "卖家", "店家"), ""),
    (("点击", "点选", "轻点"), ""),
    (("一般", "通常"), ""),
    (("可以", "可"), r"(?!以)"),
    (("需要", "须"), ""),
    (("如果", "若", "如"), r"(?![何果])"),
    (("联系", "联络"), r"(?!方式|人)"),
    (("用户", "顾客", "买家"), r"(?!名|协议)"),
    (("App", "APP", "手机客户端"), ""),
    (("页面", "页"), r"(?!面)"),
    (("无法", "不能"), ""),
    (("申请", "提交申请"), r"(?!售后|退|换|取消|开具)"),
    (("立即", "马上"), ""),
]
_SYN_RE = [
    (
        re.compile(
            "(?:" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + ")" + guard
        ),
        words,
    )
    for words, guard in _SYNONYMS
]

_TITLE_PREFIXES = ("请问", "请问一下，", "想问下", "咨询一下：", "你好，", "麻烦问下")
_QUESTION_TAILS = ("？", "呢", "啊", "呀", "吗")
_LINES = (
    "跨境购",
    "生鲜",
    "家电",
    "数码",
    "图书",
    "服饰",
    "美妆",
    "母婴",
    "家居",
    "汽车用品",
    "医药健康",
    "宠物",
    "运动户外",
    "珠宝首饰",
    "大件家具",
    "虚拟商品",
    "企业采购",
    "二手优品",
    "酒水",
    "奢品",
    "农特产",
    "手机通讯",
    "电脑办公",
    "食品饮料",
    "个护清洁",
)
_CHANNELS = ("App", "小程序", "网页端", "门店自提", "社区团购", "直播间", "会员专享", "海外站")
_SCOPE_SENTENCES = (
    "以上说明适用于{s}。",
    "{s}订单同样按此处理。",
    "注：{s}另有规定的，以活动页面说明为准。",
    "{s}的咨询也可以在对应频道页联系专属客服。",
    "本条适用于{s}，其他业务线请查看对应说明。",
)
_CLOSINGS = ("谢谢。", "感谢支持。", "祝您购物愉快。", "如有疑问请随时联系。")
_DEADLINES = (
    "本活动截至{y}年{m}月{d}日。",
    "该规则有效期至{y}年{m}月{d}日。",
    "活动时间截止到{y}-{m:02d}-{d:02d}。",
)
_BROKEN_KINDS = (
    "bad_json",
    "not_object",
    "csv_fields",
    "missing_title",
    "empty_answer",
    "bad_status",
    "bad_date",
    "unsafe_id",
)
_COLUMNS = EXPORT_FIELDS  # the export format's columns (kbflow.contracts)


@dataclass
class Seed:
    family: str  # output file family: the sample file's stem
    title: str
    answer: str
    questions: list[str]
    category: str
    tags: list[str]
    lang: str
    extra: dict[str, str]  # unknown columns of the sample row (e.g. owner)


@dataclass
class Family:
    stem: str
    format: str  # "jsonl" | "csv"
    encoding: str  # for CSV: "utf-8", "utf-8-sig", "gb18030"
    extra_columns: list[str]


@dataclass
class ExportStats:
    entries: int
    kinds: dict[str, int]
    broken: dict[str, int]
    files: dict[str, int]
    bytes: int
    seconds: float
    seeds: dict[str, int]
    sample: str
    sample_files: list[str]
    seed: int
    run_date: str
    reused: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- seeds ------------------------------------------------------------------------------------


def load_seeds(
    sample_dir: Path, run_date: date
) -> tuple[list[Seed], list[Seed], dict[str, Family], dict[str, list[str]]]:
    """Usable entries of the sample: (faq seeds, long-document seeds, families, sentence pool).

    Kept: rows the pipeline would index as they are (id, title and answer present, published,
    no date fields, no date phrases, no 4-digit years in FAQ text so that no variant can expire
    by accident), one per distinct title+answer.
    """
    from kbflow.chunk.passages import count_tokens
    from kbflow.clean.expiry import find_expiry, find_not_yet_effective
    from kbflow.clean.normalize import normalize_text
    from kbflow.pull.discover import discover_export
    from kbflow.pull.readers import read_export

    files = discover_export(str(sample_dir))
    read = read_export(sample_dir, files)
    families: dict[str, Family] = {}
    for f in files:
        stem = Path(f.name).stem
        if f.format == "jsonl":
            families[stem] = Family(stem, "jsonl", "utf-8", [])
        elif f.format == "csv":
            families[stem] = Family(stem, "csv", read.encodings.get(f.name, "utf-8"), [])
        # parquet/xlsx sample files: their entries are written to a JSONL family instead
    faq: list[Seed] = []
    sop: list[Seed] = []
    pool: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for row in read.rows.to_pylist():
        title, answer = row["title"], row["answer"]
        status = (row["status"] or "published").strip().lower()
        if not row["id"] or not title or not answer or status != "published":
            continue
        if (
            len(title) > MAX_SEED_TITLE_CHARS
        ):  # the sample's deliberate edge case, not typical content
            continue
        if row["expires_at"] or row["effective_from"]:
            continue
        text = normalize_text(f"{title}\n{answer}")
        if (
            not normalize_text(answer)
            or find_expiry(text, run_date)
            or find_not_yet_effective(text, run_date)
        ):
            continue
        key = (normalize_text(title), normalize_text(answer))
        if key in seen:
            continue
        seen.add(key)
        stem = Path(row["source_file"]).stem
        if stem not in families:
            stem = "faq"
            families.setdefault(stem, Family(stem, "jsonl", "utf-8", []))
        extra = json.loads(row["metadata"]) if row["metadata"] else {}
        extra = {k: v for k, v in extra.items() if isinstance(v, str) and k.isidentifier()}
        for k in extra:
            if k not in families[stem].extra_columns:
                families[stem].extra_columns.append(k)
        seed = Seed(
            stem,
            title,
            answer,
            list(row["similar_questions"] or []),
            row["category"] or "其他",
            list(row["tags"] or []),
            row["lang"] or "zh",
            extra,
        )
        if count_tokens(answer) > 256:
            sop.append(seed)
            continue
        if _YEAR.search(title + answer + "".join(seed.questions)):
            continue
        faq.append(seed)
        if not _HTMLISH.search(answer):
            for s in _SENTENCE.findall(answer):
                s = s.strip()
                if 8 <= len(s) <= 60 and _CJK.search(s) and not _NUMBER.fullmatch(s):
                    pool.setdefault(seed.category, []).append(s)
    if not faq:
        raise ValueError(f"{sample_dir}: no usable published FAQ entries to build variants from")
    for cat in list(pool):
        pool[cat] = sorted(set(pool[cat]))
    return faq, sop, families, pool


# --- variation --------------------------------------------------------------------------------


class Varier:
    def __init__(self, rng: random.Random, pool: dict[str, list[str]]) -> None:
        self.rng = rng
        self.pool = pool
        self.all_pool = sorted({s for v in pool.values() for s in v})

    def scope(self) -> str:
        line = self.rng.choice(_LINES)
        return line if self.rng.random() < 0.4 else f"{line}·{self.rng.choice(_CHANNELS)}"

    def synonyms(self, text: str, p: float) -> str:
        rng = self.rng
        for pattern, words in _SYN_RE:
            if pattern.search(text):
                text = pattern.sub(
                    lambda m, w=words: rng.choice(w) if rng.random() < p else m.group(0), text
                )
        return text

    def numbers(self, text: str, p: float) -> str:
        rng = self.rng

        def change(m: re.Match[str]) -> str:
            if rng.random() >= p:
                return m.group(0)
            v = int(m.group(0))
            if v <= 10:
                return str(rng.randint(1, 10))
            return str(min(999, max(1, round(v * rng.choice((0.5, 0.8, 1.2, 1.5, 2.0))))))

        return _NUMBER.sub(change, text)

    def title(self, title: str, p_scope: float = 0.75) -> str:
        rng = self.rng
        t = self.numbers(self.synonyms(title, 0.5), 0.3)
        if rng.random() < p_scope:
            s = self.scope()
            form = rng.randrange(3)
            t = f"{t}（{s}）" if form == 0 else f"【{s}】{t}" if form == 1 else f"{s}：{t}"
        if rng.random() < 0.3:
            t = rng.choice(_TITLE_PREFIXES) + t
        return t

    def answer(self, answer: str, category: str) -> str:
        rng = self.rng
        if _HTMLISH.search(
            answer
        ):  # HTML: leave the markup alone, vary words and add text after it
            parts = [self.numbers(self.synonyms(answer, 0.4), 0.3)]
        else:
            sentences = [s.strip() for s in _SENTENCE.findall(answer) if s.strip()]
            # Each variant keeps most, not all, of the sample's sentences: a hundred thousand
            # entries from a few hundred sample entries must not all share one core text.
            kept = [s for s in sentences if rng.random() < 0.5] or (
                [rng.choice(sentences)] if sentences else [answer.strip()]  # e.g. "。" alone
            )
            parts = [self.numbers(self.synonyms(s, 0.5), 0.3) for s in kept]
            if len(parts) > 1 and rng.random() < 0.4:
                i = rng.randrange(len(parts) - 1)
                parts[i], parts[i + 1] = parts[i + 1], parts[i]
        # At most one added sentence from the entry's own category: many sentences from one
        # category's small pool would make all of a category's entries alike.
        own = self.pool.get(category) or self.all_pool
        for k in range(rng.randint(3, 5)):
            pick = rng.choice(own if k == 0 and rng.random() < 0.7 else self.all_pool)
            if pick in answer:
                continue
            extra = self.synonyms(pick, 0.3)
            if sum(map(len, parts)) + len(extra) > FAQ_MAX_CHARS:
                break
            parts.insert(rng.randint(1, len(parts)), extra)
        if rng.random() < 0.6:
            parts.append(rng.choice(_SCOPE_SENTENCES).format(s=self.scope()))
        text = "".join(_end_sentence(p) for p in parts)
        return text[:-1] + "。" if text.endswith(("；", ";")) else text

    def questions(self, questions: list[str], title: str) -> list[str]:
        rng = self.rng
        out = []
        for q in questions:
            if rng.random() < 0.15:
                continue
            v = self.numbers(self.synonyms(q, 0.5), 0.3)
            if rng.random() < 0.5:
                v = f"{self.scope()}{v}" if rng.random() < 0.5 else f"{v}（{self.scope()}）"
            if rng.random() < 0.2:
                v = rng.choice(_TITLE_PREFIXES) + v
            if rng.random() < 0.25 and not v.endswith(_QUESTION_TAILS):
                v += rng.choice(_QUESTION_TAILS)
            out.append(v)
        if rng.random() < 0.3:
            out.append(self.title(title, p_scope=1.0).rstrip("？?"))
        rng.shuffle(out)
        return list(dict.fromkeys(out))

    def long_document(self, answer: str, category: str) -> str:
        """An SOP varied paragraph by paragraph: some paragraphs dropped, words swapped, one or
        two sentences of other entries added to most; heading and blank lines kept. Hundreds of
        variants of one SOP must not chain into one near-duplicate cluster."""
        rng = self.rng
        own = self.pool.get(category) or self.all_pool
        lines: list[str] = []
        scoped = False
        for line in answer.split("\n"):
            s = line.strip()
            if not s or s.startswith("#") or len(s) <= 40 and not s.endswith(("。", "”", "；")):
                lines.append(line)
                continue
            if scoped and rng.random() < 0.25:
                continue
            v = self.numbers(self.synonyms(line, 0.6), 0.5)
            for _ in range(rng.choice((0, 1, 1, 2))):
                pick = rng.choice(own if rng.random() < 0.3 else self.all_pool)
                v = _end_sentence(v) + _end_sentence(self.synonyms(pick, 0.3))
            if not scoped:
                v = _end_sentence(v) + rng.choice(_SCOPE_SENTENCES).format(s=self.scope())
                scoped = True
            lines.append(v)
        return "\n".join(lines)


def _end_sentence(s: str) -> str:
    return s if s.endswith(("。", "！", "？", "!", "?", "；", ";", ">", "”")) else s + "。"


def _jaccard2(a: str, b: str) -> float:
    from kbflow.clean.normalize import normalize_text, shingle_text

    def grams(t: str) -> set[str]:
        t = shingle_text(normalize_text(t))
        return {t[i : i + 2] for i in range(len(t) - 1)} if len(t) > 2 else {t}

    x, y = grams(a), grams(b)
    return len(x & y) / max(1, len(x | y))


# --- writing ----------------------------------------------------------------------------------


@dataclass
class _Open:
    fh: IO[bytes]
    name: str
    shard: int
    rows: int = 0


class _Writers:
    """One open file per family (JSONL families in shards), created on first use."""

    def __init__(self, out_dir: Path, families: dict[str, Family]) -> None:
        self.out_dir = out_dir
        self.families = families
        self.open: dict[str, _Open] = {}
        self.rows: dict[str, int] = {}
        self.bytes = 0

    def _file(self, fam: Family) -> _Open:
        cur = self.open.get(fam.stem)
        if cur is not None and (fam.format != "jsonl" or cur.rows < JSONL_SHARD_ROWS):
            return cur
        shard = 0
        if cur is not None:
            cur.fh.close()
            shard = cur.shard + 1
        name = f"{fam.stem}-{shard:03d}.jsonl" if fam.format == "jsonl" else f"{fam.stem}.csv"
        fh = open(self.out_dir / name, "wb")  # noqa: SIM115 - closed in close()
        if fam.format == "csv":
            header = _csv_line([*_COLUMNS, *fam.extra_columns])
            fh.write(
                ("\ufeff" + header if fam.encoding == "utf-8-sig" else header).encode(_codec(fam))
            )
        cur = self.open[fam.stem] = _Open(fh, name, shard)
        return cur

    def write(self, stem: str, row: dict[str, Any] | None, raw: str | None = None) -> None:
        fam = self.families[stem]
        cur = self._file(fam)
        if raw is not None:
            line = raw
        elif row is not None and fam.format == "jsonl":
            line = (
                json.dumps(
                    {k: v for k, v in row.items() if v not in (None, [], "")}, ensure_ascii=False
                )
                + "\n"
            )
        elif row is not None:
            line = _csv_line([_cell(row.get(c)) for c in (*_COLUMNS, *fam.extra_columns)])
        else:
            raise ValueError("write needs a row or a raw line")
        data = line.encode(_codec(fam))
        cur.fh.write(data)
        cur.rows += 1
        self.bytes += len(data)
        self.rows[cur.name] = self.rows.get(cur.name, 0) + 1

    def close(self) -> None:
        for cur in self.open.values():
            cur.fh.close()


def _codec(fam: Family) -> str:
    return "utf-8" if fam.encoding == "utf-8-sig" else fam.encoding


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "||".join(v)
    return str(v)


def _csv_line(cells: list[str] | tuple[str, ...]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


# --- the export -------------------------------------------------------------------------------


def _kinds(n: int, rng: random.Random) -> list[str]:
    """``n`` kinds in a seeded order; at least one of each special kind from 100 rows up.
    The first rows are regular, so that every copy (near, exact) has an original before it."""
    counts = {
        k: max(1, round(n * share)) if n >= 100 else round(n * share) for k, share in SHARES.items()
    }
    special = [k for k, c in counts.items() for _ in range(c)]
    n_regular = n - len(special)
    head = min(n_regular, max(20, n // 200))
    tail = special + ["regular"] * (n_regular - head)
    rng.shuffle(tail)
    return ["regular"] * head + tail


def export_fingerprint(sample_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(sample_dir.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            h.update(p.relative_to(sample_dir).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def write_export(
    sample_dir: Path, out_dir: Path, n: int, seed: int = 0, run_date: date = date(2026, 11, 24)
) -> ExportStats:
    """Write an export of exactly ``n`` records under ``out_dir`` (emptied first).

    Reuses an existing export in ``out_dir`` made from the same sample, ``n``, seed and generator
    version (recorded in the hidden ``.bench-export.json``).
    """
    sample_dir = Path(sample_dir)
    out_dir = Path(out_dir)
    params = {
        "sample": export_fingerprint(sample_dir),
        "n": n,
        "seed": seed,
        "run_date": run_date.isoformat(),
        "generator": GENERATOR_VERSION,
    }
    stamp = out_dir / STAMP
    if stamp.is_file():
        saved = json.loads(stamp.read_text(encoding="utf-8"))
        if saved.get("params") == params:
            stats = ExportStats(**saved["stats"])
            stats.reused = True
            return stats
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in out_dir.iterdir():
        if p.is_file():
            p.unlink()
    start = time.perf_counter()
    faq, sop, families, pool = load_seeds(sample_dir, run_date)
    notes = []
    if not sop:
        notes.append(
            "the sample has no long documents: SOP rows are built from FAQ answers under headings"
        )
    rng = random.Random(seed)
    var = Varier(rng, pool)
    writers = _Writers(out_dir, families)
    jsonl_stems = [s for s, f in families.items() if f.format == "jsonl"]
    csv_stems = [s for s, f in families.items() if f.format == "csv"]
    kinds_written = {k: 0 for k in ("regular", *SHARES)}
    broken_written: dict[str, int] = {}
    reservoir: list[tuple[str, dict[str, Any]]] = []
    first_day = datetime(2023, 1, 1)
    span = (
        int((datetime(run_date.year, run_date.month, run_date.day) - first_day).total_seconds())
        - 86400 * 4
    )

    def stamp_time() -> str:
        return (first_day + timedelta(seconds=rng.randrange(span))).isoformat(timespec="seconds")

    def regular(i: int, s: Seed) -> dict[str, Any]:
        title = var.title(s.title)
        return {
            "id": f"{s.family}-{i:07d}",
            "title": title,
            "answer": var.answer(s.answer, s.category),
            "similar_questions": var.questions(s.questions, s.title),
            "category": s.category,
            "tags": s.tags,
            "status": "published",
            "updated_at": stamp_time(),
            "lang": s.lang,
            **s.extra,
        }

    for i, kind in enumerate(_kinds(n, rng)):
        if kind in ("near", "exact") and not reservoir:
            kind = "regular"
        if kind == "regular" or kind in ("expired", "draft"):
            s = rng.choice(faq)
            stem, row = s.family, regular(i, s)
            if kind == "expired":
                if rng.random() < 0.5:
                    row["expires_at"] = (run_date - timedelta(days=rng.randint(1, 700))).isoformat()
                else:
                    past = run_date - timedelta(days=rng.randint(30, 700))
                    row["answer"] += rng.choice(_DEADLINES).format(
                        y=past.year, m=past.month, d=min(past.day, 28)
                    )
            elif kind == "draft":
                row["status"] = "draft" if rng.random() < 0.8 else "archived"
            else:
                if len(reservoir) < 2000:
                    reservoir.append((stem, row))
                elif rng.random() < 0.05:
                    reservoir[rng.randrange(len(reservoir))] = (stem, row)
        elif kind == "exact":
            stem, orig = rng.choice(reservoir)
            row = dict(orig)
            if rng.random() < 0.8:
                row["id"] = f"{stem}-{i:07d}"
                row["answer"] = orig["answer"] + rng.choice(("", " ", "\u3000"))  # normalises away
                row["updated_at"] = stamp_time()
        elif kind == "near":
            stem, orig = rng.choice(reservoir)
            row = _near_copy(orig, f"{stem}-{i:07d}", var, rng)
            row["updated_at"] = stamp_time()
        elif kind == "sop":
            if sop:
                s = rng.choice(sop)
                answer = var.long_document(s.answer, s.category)
            else:
                s = rng.choice(faq)
                picks = [x for x in faq if x.category == s.category] or faq
                answer = "\n\n".join(
                    f"## {k + 1}. {x.title}\n\n{x.answer}"
                    for k, x in enumerate(rng.sample(picks, min(12, len(picks))))
                )
            stem = s.family
            row = {
                "id": f"{stem}-{i:07d}",
                "title": var.title(s.title),
                "answer": answer,
                "similar_questions": var.questions(s.questions, s.title),
                "category": s.category,
                "tags": s.tags,
                "status": "published",
                "updated_at": stamp_time(),
                "lang": s.lang,
                **s.extra,
            }
        else:  # broken
            bk = rng.choice(_BROKEN_KINDS)
            if (
                bk in ("bad_json", "not_object")
                and not jsonl_stems
                or bk == "csv_fields"
                and not csv_stems
            ):
                bk = "missing_title"
            s = rng.choice(faq)
            stem, row = s.family, regular(i, s)
            if bk == "bad_json":
                stem = rng.choice(jsonl_stems)
                line = json.dumps(row, ensure_ascii=False)
                writers.write(stem, None, raw=line[: len(line) // 2] + "\n")
            elif bk == "not_object":
                stem = rng.choice(jsonl_stems)
                writers.write(
                    stem,
                    None,
                    raw=json.dumps([row["id"], row["title"], row["answer"]], ensure_ascii=False)
                    + "\n",
                )
            elif bk == "csv_fields":
                stem = rng.choice(csv_stems)
                # One physical line: a short record spanning lines reads as an unbalanced quote,
                # which fails the whole file (real multi-line answers, e.g. taipei_faq's).
                cells = [row["id"], row["title"], row["answer"].replace("\n", " ")]
                writers.write(stem, None, raw=_csv_line(cells))
            else:
                if bk == "missing_title":
                    row["title"] = None
                elif bk == "empty_answer":
                    row["answer"] = "<p> </p><p><br/></p>&nbsp;"
                elif bk == "bad_status":
                    row["status"] = "publish3d"
                elif bk == "bad_date":
                    row["updated_at"] = f"2025-{rng.randint(13, 19)}-{rng.randint(32, 45)}"
                elif bk == "unsafe_id":
                    row["id"] = f"{stem}/{i:07d}"
                writers.write(stem, row)
            broken_written[bk] = broken_written.get(bk, 0) + 1
            kinds_written["broken"] += 1
            continue
        writers.write(stem, row)
        kinds_written[kind] += 1
    writers.close()
    stats = ExportStats(
        entries=n,
        kinds=kinds_written,
        broken=broken_written,
        files=dict(sorted(writers.rows.items())),
        bytes=writers.bytes,
        seconds=round(time.perf_counter() - start, 2),
        seeds={"faq": len(faq), "long": len(sop), "pool_sentences": len(var.all_pool)},
        sample=str(sample_dir),
        sample_files=sorted(p.name for p in sample_dir.iterdir() if p.is_file()),
        seed=seed,
        run_date=run_date.isoformat(),
        notes=notes,
    )
    stamp.write_text(
        json.dumps({"params": params, "stats": stats.as_dict()}, ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    return stats


def _near_copy(
    orig: dict[str, Any], new_id: str, var: Varier, rng: random.Random
) -> dict[str, Any]:
    """A copy with one small edit whose title+answer bigram Jaccard with ``orig`` is >= 0.85."""
    base = f"{orig['title']}\n{orig['answer']}"
    for edit in _near_edits(orig, var, rng):
        row = {**orig, **edit, "id": new_id}
        text = f"{row['title']}\n{row['answer']}"
        if text.strip() != base.strip() and _jaccard2(base, text) >= 0.85:
            return row
    return {**orig, "id": new_id, "title": "请问" + orig["title"]}


def _near_edits(orig: dict[str, Any], var: Varier, rng: random.Random) -> Iterator[dict[str, Any]]:
    yield from rng.sample(
        [
            {"answer": orig["answer"] + rng.choice(_CLOSINGS)},
            {"title": rng.choice(_TITLE_PREFIXES) + orig["title"]},
            {"answer": var.synonyms(orig["answer"], 0.5)},
            {"answer": var.numbers(orig["answer"], 0.5)},
        ],
        4,
    )
    yield {"answer": orig["answer"] + "谢谢。"}


# --- derived exports: the next night's export, for the incremental benchmark -------------------

#: Sentences appended to an edited answer: no digits (no date or deadline can be read into
#: them), and short, so the entry stays itself (its near-duplicate copies may still merge).
_EDITS = (
    "本条内容已复核更新，以此为准。",
    "具体以页面最新说明为准。",
    "如有变化将另行通知。",
    "处理进度可在消息中心查看。",
)


@dataclass
class DerivedStats:
    entries_in: int
    eligible: int
    changed: int
    deleted: int
    changed_ids: list[str]
    deleted_ids: list[str]
    files: dict[str, int]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["changed_ids"] = self.changed_ids[:20]  # a sample: the full lists can be 10^5 long
        d["deleted_ids"] = self.deleted_ids[:20]
        return d


def _read_records(path: Path) -> tuple[str, str, list[Any]]:
    """(format, encoding, records) of one export file written by ``write_export``: JSONL lines
    as raw strings; CSV as a header row then rows (lists of cells)."""
    raw = path.read_bytes()
    if path.suffix == ".jsonl":
        return "jsonl", "utf-8", raw.decode("utf-8").splitlines(keepends=True)
    if raw.startswith(b"\xef\xbb\xbf"):
        encoding, text = "utf-8-sig", raw.decode("utf-8-sig")
    else:
        try:
            encoding, text = "utf-8", raw.decode("utf-8")
        except UnicodeDecodeError:
            encoding, text = "gb18030", raw.decode("gb18030")
    return "csv", encoding, list(csv.reader(io.StringIO(text, newline="")))


def _as_entry(fmt: str, rec: Any, header: list[str] | None) -> dict[str, Any] | None:
    if fmt == "jsonl":
        try:
            row = json.loads(rec)
        except ValueError:
            return None
        return row if isinstance(row, dict) else None
    if header is None or len(rec) != len(header):
        return None
    return dict(zip(header, rec, strict=True))


def _editable(row: dict[str, Any] | None) -> bool:
    """A published entry the pipeline indexes as it is (no expiry fields, a safe id)."""
    if not row:
        return False
    rid, title, answer = row.get("id"), row.get("title"), row.get("answer")
    return bool(
        isinstance(rid, str)
        and rid
        and "/" not in rid
        and isinstance(title, str)
        and title.strip()
        and isinstance(answer, str)
        and _CJK.search(answer)
        and (row.get("status") or "published") == "published"
        and not row.get("expires_at")
        and not row.get("effective_from")
    )


def derive_export(
    src_dir: Path, out_dir: Path, change: float = 0.0, delete: int = 0, seed: int = 0
) -> DerivedStats:
    """Write a copy of the export in ``src_dir`` to ``out_dir`` (emptied first) in which a share
    ``change`` of its records has its answer edited (one sentence appended) and ``delete``
    records are gone. Only published entries with a safe id and no expiry field are picked, in a
    seeded order; every other record is written back unchanged (same format and encoding)."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    start = time.perf_counter()
    files = sorted(p for p in src_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    eligible: list[tuple[str, int]] = []
    n_records = 0
    loaded: dict[str, tuple[str, str, list[Any]]] = {}
    for p in files:
        fmt, enc, recs = loaded[p.name] = _read_records(p)
        header = recs[0] if fmt == "csv" and recs else None
        body = range(1, len(recs)) if fmt == "csv" else range(len(recs))
        n_records += len(body)
        for i in body:
            if _editable(_as_entry(fmt, recs[i], header)):
                eligible.append((p.name, i))
    rng = random.Random(f"derive:{seed}:{change}:{delete}")
    n_change = round(n_records * change)
    if n_change + delete > len(eligible):
        raise ValueError(f"{n_change + delete} edits asked, only {len(eligible)} eligible records")
    picked = rng.sample(eligible, n_change + delete)
    to_delete = set(picked[:delete])
    to_change = set(picked[delete:])
    changed_ids: list[str] = []
    deleted_ids: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in out_dir.iterdir():
        if p.is_file():
            p.unlink()
    written: dict[str, int] = {}
    for p in files:
        fmt, enc, recs = loaded[p.name]
        header = recs[0] if fmt == "csv" and recs else None
        out: list[Any] = []
        for i, rec in enumerate(recs):
            key = (p.name, i)
            if key in to_delete:
                deleted_ids.append(str((_as_entry(fmt, rec, header) or {}).get("id")))
                continue
            if key in to_change:
                row = _as_entry(fmt, rec, header)
                assert row is not None
                row["answer"] = _end_sentence(row["answer"].rstrip()) + rng.choice(_EDITS)
                changed_ids.append(row["id"])
                if fmt == "jsonl":
                    rec = json.dumps(row, ensure_ascii=False) + "\n"
                else:
                    assert header is not None
                    rec = [row[c] for c in header]
            out.append(rec)
        if fmt == "jsonl":
            data = "".join(out).encode("utf-8")
        else:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerows(out)
            text = buf.getvalue()
            data = ("\ufeff" + text if enc == "utf-8-sig" else text).encode(
                "utf-8" if enc == "utf-8-sig" else enc
            )
        (out_dir / p.name).write_bytes(data)
        written[p.name] = len(out) - (1 if fmt == "csv" else 0)
    return DerivedStats(
        entries_in=n_records,
        eligible=len(eligible),
        changed=len(changed_ids),
        deleted=len(deleted_ids),
        changed_ids=changed_ids,
        deleted_ids=deleted_ids,
        files=written,
        seconds=round(time.perf_counter() - start, 2),
    )
