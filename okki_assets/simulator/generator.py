"""One seeded generation run of OKKI company records: ``CompanyGenerator``.

It holds the RNG and the helpers that draw realistic values from the word pools (see ``pools``):
a full company record shaped like ``data`` of ``GET /v1/company/info``, its contacts, company
names in their many scripts and spacings, e-mails and phones in the shapes real exports have.
``generate_companies`` (see ``data``) decides which records to draw and when they were updated.
Every value comes from ``random.Random(seed)``, in a fixed order: the same calls give the same
records.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any, TypeVar

from okki_assets.simulator.clock import UNSET_DATE, UNSET_TIME
from okki_assets.simulator.pools import (
    AR_NAMES,
    ARABIC_COUNTRIES,
    ARCHIVE_TYPES,
    CHANNELS,
    CHINESE_COUNTRIES,
    CN_MAIL,
    CONTACT_TYPES,
    COUNTRIES,
    EN_FORMS,
    EN_HEADS,
    EN_TRADES,
    FIRST,
    FREE_MAIL,
    FULLWIDTH,
    GROUPS,
    LAST,
    ORIGINS,
    POSTS,
    PRODUCTS,
    REMARKS,
    STREETS,
    TRAIL,
    USERS,
    ZH_CITIES,
    ZH_CORES,
    ZH_PERSONS,
    ZH_TRADES,
)

_T = TypeVar("_T")

EPOCH = dt.datetime(1970, 1, 1)
DAY = 86_400  # seconds
_CUSTOMER_ID_BASE = 4_100_000_000_000


def _fmt(seconds: int) -> str:
    return (EPOCH + dt.timedelta(seconds=seconds)).isoformat(sep=" ")


class CompanyGenerator:
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
        if country in CHINESE_COUNTRIES and roll < 0.8:
            core = self.pick(ZH_CORES)
            name = f"{self.pick(ZH_CITIES)}{core}{self.pick(ZH_TRADES)}有限公司"
            return name, core, f"{'hs' if roll < 0.4 else 'xy'}{self.between(100, 999)}"
        if country in ARABIC_COUNTRIES and roll < 0.25:
            return self.pick(AR_NAMES), "", f"alnoor{self.between(10, 99)}"
        head = self.pick(EN_HEADS)
        trade = self.pick(EN_TRADES)
        slug = (head + trade).lower().replace(" ", "")
        if roll < 0.08:  # 'ＡＢＣ Trading': full-width letters typed by a Chinese IME
            acronym = "".join(chr(self.between(65, 91)) for _ in range(self.between(2, 5)))
            return f"{acronym.translate(FULLWIDTH)} {trade}", acronym, acronym.lower() + "trade"
        name = f"{head} {trade} {self.pick(EN_FORMS)}".rstrip()
        return name, (head if rnd() < 0.6 else ""), slug

    def contact(self, company_id: object, cc: str, domain: str, chinese: bool) -> dict[str, Any]:
        rnd = self.rnd
        self.customer_seq += 1
        customer_id: object = _CUSTOMER_ID_BASE + self.customer_seq * 13 + self.below(13)
        if rnd() < 0.1:
            customer_id = str(customer_id)
        if chinese and rnd() < 0.7:
            name = self.pick(ZH_PERSONS)
            local = f"{self.pick(FIRST).lower()}{self.between(100, 9999)}"
            domain = self.pick(CN_MAIL) if rnd() < 0.6 else domain
        else:
            first, last = self.pick(FIRST), self.pick(LAST)
            name = f"{first} {last}" if rnd() < 0.9 else ""
            local = f"{first}.{last}".replace("'", "").replace(" ", "")
            if rnd() < 0.2:
                domain = self.pick(FREE_MAIL)
        tel_list = [self.phone(cc) for _ in range(self.pick((0, 1, 1, 1, 2)))]
        contact = []
        for _ in range(self.pick((0, 0, 1, 1, 2))):
            kind = self.pick(CONTACT_TYPES)
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
            "post": self.pick(POSTS),
            "main_customer_flag": 0,
            "external_field_data": external,
        }

    def company(self, index: int, company_id: int, update: int) -> dict[str, Any]:
        rnd = self.rnd
        ci = self.below(len(COUNTRIES))
        iso, country_name, tz, cc, suffix, places = COUNTRIES[ci]
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

        created = update - (0 if rnd() < 0.05 else self.between(0, 3 * 365 * DAY))
        edited = update if rnd() < 0.7 else max(created, update - self.between(0, 90 * DAY))
        public = rnd() < 0.15
        owners = [] if public else [self.pick(USERS)]
        if owners and rnd() < 0.1:
            owners.append(
                USERS[(USERS.index(owners[0]) + 1 + self.below(len(USERS) - 1)) % len(USERS)]
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
        creator = self.pick(USERS)[0]
        cid: object = str(company_id) if rnd() < 0.1 else company_id
        scale: object = self.between(0, 7)
        if rnd() < 0.15:
            scale = str(scale)
        group: object = self.pick(GROUPS)
        if rnd() < 0.1:
            group = str(group)
        trail_id, trail_name = self.pick(TRAIL)

        def maybe(seconds: int, unset: float) -> str:
            return UNSET_TIME if rnd() < unset else _fmt(seconds)

        followed = max(created, update - self.between(0, 30 * DAY))
        archive = created - (self.between(0, 30 * DAY) if rnd() < 0.2 else 0)
        n_contacts = self.pick((0, 0, 1, 1, 1, 1, 2, 2, 3, 4))
        chinese = ci in CHINESE_COUNTRIES
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
            else f"{self.between(1, 9999)} {self.pick(STREETS)}, {city}".rstrip(", ")
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
            "archive_type": self.pick(ARCHIVE_TYPES),
            "create_user": creator,
            "last_edit_user": self.pick(USERS)[0] if rnd() < 0.9 else creator,
            "recent_follow_up_time": maybe(followed, 0.3),
            "next_follow_up_time": maybe(update + self.between(DAY, 30 * DAY), 0.6),
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
            "origin_list": self.pick(ORIGINS),
            "homepage": homepage,
            "fax": "" if rnd() < 0.8 else f"+{cc} {self.digits(8)}",
            "tel": self.phone(cc),
            "address": address,
            "remark": self.pick(REMARKS),
            "company": [
                {
                    "group_id": 1,
                    "name": "基本信息",
                    "fields": [
                        {
                            "id": "1101",
                            "name": "主营产品",
                            "field_type": "1",
                            "value": self.pick(PRODUCTS),
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
                            "value": self.pick(CHANNELS),
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
