"""Seeded, deterministic OKKI company records for the simulator, the demo and the benchmark.

``generate_companies`` builds full records shaped like ``data`` of ``GET /v1/company/info``, with
the quirks of real export-trade CRM data that the pipeline must survive: Chinese, English,
full-width and Arabic company names with stray spaces; missing and malformed e-mails; phones in
many shapes; companies without contacts and contacts without a primary flag; integers sent as
strings; ``user_id`` as a string or a list; ``1970-01-01 00:00:00`` for unset times; update times
exactly at midnight and at 23:59:59, and ties. ``malformed_rate`` adds record-level invalid
records (no id, a non-numeric id, a blank name, an unparseable ``update_time``) and, at the same
rate, valid but nasty ones (600-character names, control characters, emoji, right-to-left text).

A record whose ``update_time`` cannot be parsed keeps its true update time in ``edit_time``:
the simulator files it under that time (see ``effective_update_time``), so it is listed in the
window it was generated for.

``list_view`` projects a full record to the twelve fields of ``GET /v1/company/list``, with the
list's own representation (``user_id`` a string).

Everything is drawn from ``random.Random(seed)``: the same arguments give the same records.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from okki_assets.gc_pause import gc_paused
from okki_assets.okki_time import UNSET_DATE, UNSET_TIME, parse_okki_time

_T = TypeVar("_T")


LIST_FIELDS: tuple[str, ...] = (
    "company_id",
    "user_id",
    "name",
    "short_name",
    "serial_id",
    "order_time",
    "create_time",
    "update_time",
    "edit_time",
    "create_user",
    "last_edit_user",
    "archive_type",
)

# Record-level invalid shapes (the pipeline must quarantine these) and valid-but-nasty ones.
MALFORMED_KINDS: tuple[str, ...] = (
    "missing_company_id",
    "non_numeric_company_id",
    "blank_name",
    "bad_update_time",
)
NASTY_KINDS: tuple[str, ...] = ("long_name", "control_chars", "emoji", "rtl")
BAD_UPDATE_TIME = "2024-13-45 99:00:00"

_EPOCH = dt.datetime(1970, 1, 1)
_DAY = 86_400
_COMPANY_ID_BASE = 3_000_000_000_000
_CUSTOMER_ID_BASE = 4_100_000_000_000

# --- pools ---------------------------------------------------------------------------------

_EN_HEADS = (
    "Global",
    "Pacific",
    "Atlas",
    "Sunrise",
    "Golden Gate",
    "Blue Ocean",
    "Evergreen",
    "Nordic",
    "Silverline",
    "Prime",
    "United",
    "Delta",
    "Horizon",
    "Apex",
    "Crescent",
    "Northstar",
    "Redwood",
    "Meridian",
    "Summit",
    "Coastal",
    "Royal",
    "Eagle",
    "Orion",
    "Vista",
    "Baltic",
    "Andes",
    "Sahara",
    "Lotus",
    "Falcon",
    "Harbor",
)
_EN_TRADES = (
    "Trading",
    "Imports",
    "Industrial Supply",
    "Textiles",
    "Electronics",
    "Machinery",
    "Home Goods",
    "Auto Parts",
    "Lighting",
    "Packaging",
    "Furniture",
    "Hardware",
    "Solar",
    "Medical Supplies",
    "Toys",
    "Garments",
    "Ceramics",
    "Tools",
    "Distribution",
    "Sourcing",
)
_EN_FORMS = (
    "Co., Ltd.",
    "LLC",
    "GmbH",
    "S.A.",
    "Inc.",
    "Ltd",
    "Pty Ltd",
    "S.R.L.",
    "B.V.",
    "SARL",
    "Sp. z o.o.",
    "FZE",
    "Corp.",
    "Ltda.",
    "",
    "",
)
_ZH_CITIES = (
    "深圳",
    "广州",
    "宁波",
    "义乌",
    "上海",
    "厦门",
    "青岛",
    "苏州",
    "东莞",
    "佛山",
    "杭州",
    "温州",
)
_ZH_CORES = (
    "华盛",
    "鑫源",
    "恒达",
    "宏图",
    "联创",
    "金利",
    "东方",
    "顺发",
    "嘉和",
    "永兴",
    "海纳",
    "瑞丰",
)
_ZH_TRADES = (
    "贸易",
    "进出口",
    "电子科技",
    "照明电器",
    "五金制品",
    "纺织品",
    "机械设备",
    "包装材料",
    "家居用品",
    "汽车配件",
)
_AR_NAMES = ("شركة النور للتجارة", "مؤسسة الخليج للاستيراد", "شركة الأمل التجارية")

# (ISO-2, country_name, timezone, phone country code, web suffix, ((province, city), ...))
_COUNTRIES: tuple[tuple[str, str, int, str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "US",
        "美国",
        -5,
        "1",
        ".com",
        (("California", "Los Angeles"), ("New York", "New York"), ("Texas", "Houston")),
    ),
    ("DE", "德国", 1, "49", ".de", (("Bayern", "München"), ("Hamburg", "Hamburg"))),
    ("GB", "英国", 0, "44", ".co.uk", (("England", "London"), ("England", "Manchester"))),
    ("FR", "法国", 1, "33", ".fr", (("Île-de-France", "Paris"), ("Auvergne-Rhône-Alpes", "Lyon"))),
    ("BR", "巴西", -3, "55", ".com.br", (("São Paulo", "São Paulo"), ("Paraná", "Curitiba"))),
    ("IN", "印度", 5, "91", ".in", (("Maharashtra", "Mumbai"), ("Delhi", "New Delhi"))),
    ("AE", "阿联酋", 4, "971", ".ae", (("Dubai", "Dubai"), ("Sharjah", "Sharjah"))),
    ("SA", "沙特阿拉伯", 3, "966", ".sa", (("Riyadh", "Riyadh"), ("Makkah", "Jeddah"))),
    ("NG", "尼日利亚", 1, "234", ".ng", (("Lagos", "Lagos"), ("", ""))),
    ("MX", "墨西哥", -6, "52", ".mx", (("Jalisco", "Guadalajara"), ("CDMX", "Ciudad de México"))),
    ("RU", "俄罗斯", 3, "7", ".ru", (("Moscow", "Moscow"), ("", "Novosibirsk"))),
    ("AU", "澳大利亚", 10, "61", ".com.au", (("NSW", "Sydney"), ("VIC", "Melbourne"))),
    ("VN", "越南", 7, "84", ".vn", (("", "Ho Chi Minh City"), ("", "Hanoi"))),
    ("TR", "土耳其", 3, "90", ".com.tr", (("İstanbul", "İstanbul"), ("İzmir", "İzmir"))),
    ("PL", "波兰", 1, "48", ".pl", (("Mazowieckie", "Warszawa"), ("", "Kraków"))),
    ("CN", "中国", 8, "86", ".cn", (("广东", "深圳"), ("浙江", "宁波"), ("上海", "上海"))),
    ("HK", "中国香港", 8, "852", ".hk", (("", "Hong Kong"), ("", "Kowloon"))),
)
_ARABIC_COUNTRIES = (6, 7)  # indexes of AE, SA
_CHINESE_COUNTRIES = (15, 16)  # indexes of CN, HK

_USERS: tuple[tuple[int, str], ...] = (
    (55280038, "Lily 王"),
    (55280041, "张伟"),
    (55280052, "Tom Chen"),
    (55280077, "李娜"),
    (55280090, "Kevin"),
    (55280103, "陈静"),
    (55280115, "Amy Liu"),
    (55280126, "王强"),
)
_FIRST = (
    "John",
    "Maria",
    "Ahmed",
    "Olga",
    "Carlos",
    "Priya",
    "Hans",
    "Fatima",
    "David",
    "Anna",
    "Mohammed",
    "Lucas",
    "Sofia",
    "Ivan",
    "Emma",
    "Rajesh",
    "Chloe",
    "Mehmet",
    "Nguyen",
    "Jan",
)
_LAST = (
    "Smith",
    "Garcia",
    "Al-Rashid",
    "Ivanova",
    "Silva",
    "Sharma",
    "Müller",
    "Hassan",
    "Brown",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Yilmaz",
    "Tran",
    "Okafor",
    "Schmidt",
    "O'Brien",
    "Lopez",
)
_ZH_PERSONS = ("王芳", "李强", "张敏", "刘洋", "陈杰", "杨丽", "黄磊", "赵静")
_POSTS = (
    "Purchasing Manager",
    "CEO",
    "Buyer",
    "Sourcing Director",
    "Owner",
    "Import Manager",
    "",
    "采购经理",
    "总经理",
    "",
    "Procurement Officer",
)
_TRAIL = (
    (0, ""),
    (1101, "新询盘"),
    (1102, "报价中"),
    (1103, "样品阶段"),
    (1104, "已成交"),
    (1105, "流失"),
)
_PRODUCTS = (
    "LED灯",
    "Solar panels",
    "不锈钢餐具",
    "Cotton T-shirts",
    "Power tools",
    "汽配刹车片",
    "",
)
_CHANNELS = ("广交会", "Alibaba", "Google", "LinkedIn", "老客户介绍", "Trade show (Dubai)", "")
_REMARKS = (
    "",
    "",
    "",
    "展会认识的客户，对LED感兴趣",
    "Met at Canton Fair 2023",
    "VIP客户👍",
    "Needs CE certificate",
    "报价已发，等待回复",
    "Pays by L/C only",
    "样品已寄出 DHL",
)
_GROUPS = (0, 0, 101, 102, 103, 104)
_ORIGINS: tuple[list[int], ...] = ([], [], [1], [2], [4], [1, 8], [2, 9], [3])
_ARCHIVE_TYPES = (1, 1, 1, 2, 3, 4, 6, 6, 7)
_CONTACT_TYPES = ("linkedin", "whatsapp", "wechat", "skype", "facebook")
_FREE_MAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com")
_CN_MAIL = ("qq.com", "163.com", "126.com")
_STREETS = ("Main St", "Industrial Ave", "Harbor Rd", "Market Street", "Kingsway", "Al Wasl Rd")

_FULLWIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})


def _fmt(seconds: int) -> str:
    return (_EPOCH + dt.timedelta(seconds=seconds)).isoformat(sep=" ")


def _secs(day: dt.date) -> int:
    return (day - _EPOCH.date()).days * _DAY


def parse_time(value: object) -> dt.datetime | None:
    """A record time ('YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD', China time) as a naive datetime.

    ``None`` for anything unparseable. The 1970 sentinel parses (to 1970-01-01): callers that
    care treat it as unset. Stricter than the client's parser: the server takes no padding."""
    if not isinstance(value, str) or len(value) not in (10, 19) or value != value.strip():
        return None
    parsed = parse_okki_time(value)
    return None if parsed is None else parsed.replace(tzinfo=None)


def effective_update_time(record: Mapping[str, Any]) -> dt.datetime:
    """The time a record is filed under: ``update_time``, or when that cannot be parsed,
    ``edit_time``, then ``create_time``, then 1970-01-01."""
    for field in ("update_time", "edit_time", "create_time"):
        parsed = parse_time(record.get(field))
        if parsed is not None:
            return parsed
    return _EPOCH


def owner_ids(record: Mapping[str, Any]) -> list[str]:
    """The owners' user ids of a record, whatever shape ``user_id`` has (list, string, int)."""
    raw = record.get("user_id")
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return [str(x) for x in raw if str(x) != ""]
    return [part.strip() for part in str(raw).split(",") if part.strip()]


def list_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """Project a full record to the twelve fields of the list endpoint.

    The list sends ``user_id`` as a string (owner ids joined by commas, ``""`` for none). A
    field the record lacks (only the malformed ``missing_company_id`` case) stays absent."""
    view = {name: record[name] for name in LIST_FIELDS if name in record}
    view["user_id"] = ",".join(owner_ids(record))
    return view


# --- the generator ---------------------------------------------------------------------------


class _Gen:
    """One generation run: the RNG plus the small helpers that draw realistic values."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rnd = self.rng.random
        self.customer_seq = 0

    # random.Random's randrange/choice/sample are slow in pure Python; these two helpers draw
    # from random() only, which keeps 200,000 records within seconds.
    def below(self, n: int) -> int:
        """An int in [0, n)."""
        return int(self.rnd() * n)

    def pick(self, seq: Sequence[_T]) -> _T:
        return seq[int(self.rnd() * len(seq))]

    def between(self, low: int, high: int) -> int:
        """An int in [low, high)."""
        return low + int(self.rnd() * (high - low))

    def digits(self, n: int) -> str:
        low = 10 ** (n - 1)
        return str(low + int(self.rnd() * 9 * low))

    def phone(self, cc: str) -> list[str]:
        """[area, number] in one of the shapes seen in real exports."""
        shape = self.below(9)
        if shape == 0:  # '+86 138 0013 8000'
            return ["", f"+{cc} {self.digits(3)} {self.digits(4)} {self.digits(4)}"]
        if shape == 1:  # '0086-755-1234567'
            return ["", f"00{cc}-{self.digits(3)}-{self.digits(7)}"]
        if shape == 2:  # '(021) 5555 1234'
            return ["", f"(0{self.digits(2)}) {self.digits(4)} {self.digits(4)}"]
        if shape in (3, 4):  # ['86', '13800138000']
            return [cc, self.digits(11 if cc == "86" else 9)]
        if shape == 5:  # ['+1', '415-555-0134']
            return [f"+{cc}", f"{self.digits(3)}-{self.digits(3)}-{self.digits(4)}"]
        if shape == 6:  # missing
            return ["", ""]
        if shape == 7:  # with an extension
            return [cc, f"{self.digits(3)} {self.digits(4)} ext. {self.between(10, 999)}"]
        return ["", f"+{cc}{self.digits(10)}"]

    def email(self, local: str, domain: str) -> str:
        """An e-mail address, or one of the ways sales people get them wrong."""
        rnd = self.rnd
        good = f"{local}@{domain}".lower()
        roll = rnd()
        if roll < 0.14:
            return ""
        if roll < 0.19:
            return good.upper()
        if roll < 0.22:
            return f"{local.lower()}{domain}"  # no @
        if roll < 0.25:
            return f" {good} " if rnd() < 0.5 else good.replace("@", " @")
        if roll < 0.27:
            return f"{good}; sales@{domain}"
        return good

    def company_name(self, country: int) -> tuple[str, str, str]:
        """(name, short_name, web slug)."""
        rnd = self.rnd
        roll = rnd()
        if country in _CHINESE_COUNTRIES and roll < 0.8:
            core = self.pick(_ZH_CORES)
            name = f"{self.pick(_ZH_CITIES)}{core}{self.pick(_ZH_TRADES)}有限公司"
            return name, core, f"{'hs' if roll < 0.4 else 'xy'}{self.between(100, 999)}"
        if country in _ARABIC_COUNTRIES and roll < 0.25:
            return self.pick(_AR_NAMES), "", f"alnoor{self.between(10, 99)}"
        head = self.pick(_EN_HEADS)
        trade = self.pick(_EN_TRADES)
        slug = (head + trade).lower().replace(" ", "")
        if roll < 0.08:  # 'ＡＢＣ Trading': full-width letters typed by a Chinese IME
            acronym = "".join(chr(self.between(65, 91)) for _ in range(self.between(2, 5)))
            return f"{acronym.translate(_FULLWIDTH)} {trade}", acronym, acronym.lower() + "trade"
        name = f"{head} {trade} {self.pick(_EN_FORMS)}".rstrip()
        return name, (head if rnd() < 0.6 else ""), slug

    def contact(self, company_id: object, cc: str, domain: str, chinese: bool) -> dict[str, Any]:
        rnd = self.rnd
        self.customer_seq += 1
        customer_id: object = _CUSTOMER_ID_BASE + self.customer_seq * 13 + self.below(13)
        if rnd() < 0.1:
            customer_id = str(customer_id)
        if chinese and rnd() < 0.7:
            name = self.pick(_ZH_PERSONS)
            local = f"{self.pick(_FIRST).lower()}{self.between(100, 9999)}"
            domain = self.pick(_CN_MAIL) if rnd() < 0.6 else domain
        else:
            first, last = self.pick(_FIRST), self.pick(_LAST)
            name = f"{first} {last}" if rnd() < 0.9 else ""
            local = f"{first}.{last}".replace("'", "").replace(" ", "")
            if rnd() < 0.2:
                domain = self.pick(_FREE_MAIL)
        tel_list = [self.phone(cc) for _ in range(self.pick((0, 1, 1, 1, 2)))]
        contact = []
        for _ in range(self.pick((0, 0, 1, 1, 2))):
            kind = self.pick(_CONTACT_TYPES)
            if kind == "linkedin":
                value = f"https://www.linkedin.com/in/{local.lower()}-{self.between(100, 999)}"
            elif kind == "whatsapp":
                value = f"+{cc} {self.digits(9)}"
            elif kind == "wechat":
                value = f"wxid_{self.digits(8)}"
            elif kind == "facebook":
                value = f"https://www.facebook.com/{local.lower()}"
            else:
                value = f"live:{local.lower()}"
            contact.append({"type": kind, "value": value})
        roll = rnd()
        external: object = {} if roll < 0.5 else ([] if roll < 0.7 else {"3101": "WhatsApp优先"})
        return {
            "customer_id": customer_id,
            "company_id": company_id,
            "name": name,
            "email": self.email(local, domain),
            "tel_list": tel_list,
            "contact": contact,
            "post": self.pick(_POSTS),
            "main_customer_flag": 0,
            "external_field_data": external,
        }

    def company(self, index: int, company_id: int, update: int) -> dict[str, Any]:
        rnd = self.rnd
        ci = self.below(len(_COUNTRIES))
        iso, country_name, tz, cc, suffix, places = _COUNTRIES[ci]
        province, city = self.pick(places)
        name, short_name, slug = self.company_name(ci)
        roll = rnd()
        if roll < 0.04:
            name = f" {name}"
        elif roll < 0.08:
            name = f"{name}  "
        elif roll < 0.11:
            name = name.replace(" ", "  ", 1) if " " in name else f"{name} "
        domain = f"{slug}{suffix}"

        created = update - (0 if rnd() < 0.05 else self.between(0, 3 * 365 * _DAY))
        edited = update if rnd() < 0.7 else max(created, update - self.between(0, 90 * _DAY))
        public = rnd() < 0.15
        owners = [] if public else [self.pick(_USERS)]
        if owners and rnd() < 0.1:
            owners.append(
                _USERS[(_USERS.index(owners[0]) + 1 + self.below(len(_USERS) - 1)) % len(_USERS)]
            )
        ids = [uid for uid, _ in owners]
        roll = rnd()
        user_id: object
        if roll < 0.6:
            user_id = ids
        elif roll < 0.8:
            user_id = [str(uid) for uid in ids]
        else:
            user_id = ",".join(str(uid) for uid in ids)
        creator = self.pick(_USERS)[0]
        cid: object = str(company_id) if rnd() < 0.1 else company_id
        scale: object = self.between(0, 7)
        if rnd() < 0.15:
            scale = str(scale)
        group: object = self.pick(_GROUPS)
        if rnd() < 0.1:
            group = str(group)
        trail_id, trail_name = self.pick(_TRAIL)

        def maybe(seconds: int, unset: float) -> str:
            return UNSET_TIME if rnd() < unset else _fmt(seconds)

        followed = max(created, update - self.between(0, 30 * _DAY))
        archive = created - (self.between(0, 30 * _DAY) if rnd() < 0.2 else 0)
        n_contacts = self.pick((0, 0, 1, 1, 1, 1, 2, 2, 3, 4))
        chinese = ci in _CHINESE_COUNTRIES
        customers = [self.contact(cid, cc, domain, chinese) for _ in range(n_contacts)]
        if customers and rnd() < 0.88:
            main = 0 if rnd() < 0.7 else self.below(len(customers))
            customers[main]["main_customer_flag"] = 1
        homepage_roll = rnd()
        homepage = (
            ""
            if homepage_roll < 0.2
            else f"www.{domain}"
            if homepage_roll < 0.4
            else f"https://www.{domain}/"
            if homepage_roll < 0.5
            else f"https://www.{domain}"
        )
        address = (
            ""
            if rnd() < 0.25
            else f"{province}{city}高新区科技路{self.between(1, 300)}号"
            if chinese
            else f"{self.between(1, 9999)} {self.pick(_STREETS)}, {city}".rstrip(", ")
        )
        return {
            "company_id": cid,
            "serial_id": f"{'C' if rnd() < 0.7 else 'KH'}{100000 + index}",
            "name": name,
            "short_name": short_name,
            "user_id": user_id,
            "owner": [{"user_id": uid, "nickname": nick} for uid, nick in owners],
            "create_time": _fmt(created),
            "update_time": _fmt(update),
            "order_time": maybe(followed, 0.4),
            "edit_time": UNSET_TIME if rnd() < 0.03 else _fmt(edited),
            "archive_time": maybe(archive, 0.1),
            "archive_type": self.pick(_ARCHIVE_TYPES),
            "create_user": creator,
            "last_edit_user": self.pick(_USERS)[0] if rnd() < 0.9 else creator,
            "recent_follow_up_time": maybe(followed, 0.3),
            "next_follow_up_time": maybe(update + self.between(_DAY, 30 * _DAY), 0.6),
            "private_time": UNSET_TIME if public else maybe(created, 0.2),
            "public_time": _fmt(edited) if public else UNSET_TIME,
            "country": iso,
            "country_name": country_name,
            "province": province,
            "city": city,
            "timezone": "" if rnd() < 0.2 else tz,
            "scale_id": scale,
            "star": self.between(0, 6),
            "intention_level": self.between(0, 4),
            "group_id": group,
            "pool_id": self.between(0, 4) if public else 0,
            "trail_status": {"status_id": trail_id, "status_name": trail_name},
            "origin_list": self.pick(_ORIGINS),
            "homepage": homepage,
            "fax": "" if rnd() < 0.8 else f"+{cc} {self.digits(8)}",
            "tel": self.phone(cc),
            "address": address,
            "remark": self.pick(_REMARKS),
            "company": [
                {
                    "group_id": 1,
                    "name": "基本信息",
                    "fields": [
                        {
                            "id": "1101",
                            "name": "主营产品",
                            "field_type": "1",
                            "value": self.pick(_PRODUCTS),
                        },
                        {
                            "id": "1102",
                            "name": "年采购额(USD)",
                            "field_type": "5",
                            "value": "" if rnd() < 0.4 else str(self.between(1, 500) * 1000),
                        },
                    ],
                },
                {
                    "group_id": 2,
                    "name": "其他信息",
                    "fields": [
                        {
                            "id": "2101",
                            "name": "客户来源渠道",
                            "field_type": "3",
                            "value": self.pick(_CHANNELS),
                        },
                        {
                            "id": "2102",
                            "name": "首次询盘日期",
                            "field_type": "4",
                            "value": UNSET_DATE if rnd() < 0.3 else _fmt(created)[:10],
                        },
                    ],
                },
            ],
            "customers": customers,
        }


def _update_seconds(gen: _Gen, index: int, first: int, days: int) -> int:
    """When record ``index`` was last updated: business hours mostly, edges on purpose."""
    if index == 0:
        return first  # the window's very first second
    if index == 1:
        return first + days * _DAY - 1  # its very last second
    day = first + gen.below(days) * _DAY
    roll = gen.rnd()
    if roll < 0.015:
        return day  # exactly midnight
    if roll < 0.03:
        return day + _DAY - 1  # 23:59:59
    if roll < 0.78:
        return day + gen.between(8 * 3600, 20 * 3600)
    return day + gen.below(_DAY)


HISTORY_YEARS = 5


def _history_seconds(n: int, share: float, before: dt.date, seed: int) -> dict[int, int]:
    """record index -> update second of the history records: between HISTORY_YEARS years and
    one year before ``before``."""
    count = round((n - 2) * share) if n > 2 else 0
    if not count:
        return {}
    rng = random.Random(seed * 104_729 + 3)
    latest = _secs(before) - 365 * _DAY
    earliest = _secs(before) - HISTORY_YEARS * 365 * _DAY
    chosen = rng.sample(range(2, n), count)
    return {index: rng.randrange(earliest, latest) for index in chosen}


def _make_invalid(record: dict[str, Any], kind: str, index: int) -> None:
    if kind == "missing_company_id":
        del record["company_id"]
    elif kind == "non_numeric_company_id":
        record["company_id"] = f"abc{index}"
    elif kind == "blank_name":
        record["name"] = "   "
    else:  # bad_update_time: the true time stays in edit_time (see effective_update_time)
        record["edit_time"] = record["update_time"]
        record["update_time"] = BAD_UPDATE_TIME


def _make_nasty(record: dict[str, Any], kind: str) -> None:
    if kind == "long_name":
        record["name"] = (record["name"].strip() + " International Holdings Group ") * 40
        record["name"] = record["name"][:600]
    elif kind == "control_chars":
        record["name"] = f"ACME\x00 Trading\x07\u200b {record['name']}"
        record["remark"] = "line1\r\nline2\x1b[31m red\x1b[0m\ttab"
    elif kind == "emoji":
        record["name"] = f"🚀 {record['name']} 🌍"
        record["remark"] = "好客户 👍🏽🔥 follow up"
    else:  # rtl
        record["name"] = f"\u202eشركة {record['name']} חברת סחר"
        record["remark"] = "عميل مهم \u200f(VIP)"


def generate_companies(
    n: int,
    start: dt.date,
    end: dt.date,
    *,
    seed: int = 7,
    malformed_rate: float = 0.0,
    history_share: float = 0.0,
    history_before: dt.date | None = None,
) -> list[dict[str, Any]]:
    """``n`` full company records whose ``update_time`` lies in [start 00:00:00, end 23:59:59]
    China time. Deterministic for given arguments; the records drawn for a seed do not depend on
    ``malformed_rate`` except for the records it selects.

    ``history_share`` of them (chosen by their own seeded draw; the two edge records never) are
    history instead: last updated a year or more before ``history_before`` (default ``start``),
    up to ``HISTORY_YEARS`` years before it, the quiet customers no daily window lists."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if not 0.0 <= malformed_rate <= 0.5:
        raise ValueError("malformed_rate must lie in [0, 0.5]")
    if not 0.0 <= history_share <= 1.0:
        raise ValueError("history_share must lie in [0, 1]")
    history = _history_seconds(n, history_share, history_before or start, seed)
    gen = _Gen(seed)
    first = _secs(start)
    days = (end - start).days + 1
    ids = gen.rng.sample(range(_COMPANY_ID_BASE, _COMPANY_ID_BASE + 10**12), n)
    records: list[dict[str, Any]] = []
    update = first
    with gc_paused():
        for index in range(n):
            if index < 2 or gen.rnd() >= 0.03:
                update = _update_seconds(gen, index, first, days)
            # else: the same second as the previous record (a bulk edit by automation)
            records.append(gen.company(index, ids[index], history.get(index, update)))

    bad = round(n * malformed_rate)
    if bad:
        picker = random.Random(seed * 7919 + 1)
        chosen: Sequence[int] = picker.sample(range(n), min(n, 2 * bad))
        for k, index in enumerate(chosen[:bad]):
            _make_invalid(records[index], MALFORMED_KINDS[k % len(MALFORMED_KINDS)], index)
        for k, index in enumerate(chosen[bad:]):
            _make_nasty(records[index], NASTY_KINDS[k % len(NASTY_KINDS)])
    return records
