"""The Kingdee simulator's ExecuteBillQuery (spec §4): FieldKeys, string filters, order, paging.

Filters are ``F in ('a','b')``, ``F = 'x'``, ``F <> 'x'``, ``F like 'x%'`` joined by ``and``;
anything else is MsgCode 4 (``GetRealExpress error``), even with no rows to match. A field key
BD_Customer does not have is MsgCode 9 (custom ``F_...`` fields exist). ``Limit`` is silently
capped; without ``OrderString`` the rows come in a new random order on every call.
"""

from __future__ import annotations

import random
import re
from typing import Any

from okki_assets.simulator.k3cloud_store import Customer, Refused, Store

#: BD_Customer's field keys (spec §5), lower case; custom ``F_...`` fields are accepted too.
FIELDS = frozenset(
    k.lower()
    for k in [
        "FCUSTID",
        "FNumber",
        "FName",
        "FShortName",
        "FCreateOrgId",
        "FUseOrgId",
        "FCOUNTRY",
        "FPROVINCIAL",
        "FADDRESS",
        "FZIP",
        "FWEBSITE",
        "FTEL",
        "FFAX",
        "FTAXREGISTERCODE",
        "FINVOICETITLE",
        "FCustTypeId",
        "FGroup",
        "FTRADINGCURRID",
        "FTaxRate",
        "FDescription",
        "FIsTrade",
        "FDocumentStatus",
        "FForbidStatus",
    ]
)


def run_query(store: Store, data: dict[str, Any], cap: int, rng: random.Random) -> list[list[Any]]:
    """ExecuteBillQuery's rows (raises ``Refused`` for the wrapped error replies)."""
    lower = {k.lower(): v for k, v in data.items()}
    if str(lower.get("formid", "")).lower() != "bd_customer":
        raise Refused(f"标识为“{lower.get('formid')}”的业务对象不存在，或者被删除", 4)
    keys = [k.strip() for k in str(lower.get("fieldkeys") or "").split(",") if k.strip()]
    if not keys:
        raise Refused("FieldKeys不能为空", msg_code=8)
    _matches(Customer(0, "", {}), lower.get("filterstring"))  # unreadable: refused, rows or not
    rows = [c for c in store.customers.values() if _matches(c, lower.get("filterstring"))]
    for key in keys:
        base = key.lower().split(".")[0]
        if base not in FIELDS and not base.startswith("f_"):  # F_...: custom fields
            raise Refused(f"元数据中标识为{key}的字段不存在", msg_code=9)
    order = str(lower.get("orderstring") or "").strip()
    if order:
        field_key, _, direction = order.partition(" ")
        rows.sort(key=lambda c: _sort_key(c.value(field_key)))
        if direction.strip().lower() == "desc":
            rows.reverse()
    else:
        rng.shuffle(rows)
    start = int(lower.get("startrow") or 0)
    limit = int(lower.get("limit") or 0) or cap
    top = int(lower.get("toprowcount") or 0)
    if top:
        rows = rows[:top]
    page = rows[start : start + min(limit, cap)]
    return [[c.value(k) for k in keys] for c in page]


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


_CLAUSE = re.compile(
    r"^\s*([A-Za-z_][\w.]*)\s*(=|<>|\bin\b|\blike\b)\s*(.+?)\s*$", re.IGNORECASE | re.DOTALL
)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def _matches(customer: Customer, filter_string: Any) -> bool:
    text = str(filter_string or "").strip()
    if not text:
        return True
    for clause in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
        m = _CLAUSE.match(clause)
        if m is None:
            raise Refused(f"GetRealExpress error: {clause}", msg_code=4)
        key, op, rest = m.group(1), m.group(2).lower(), m.group(3)
        values = [v.replace("''", "'") for v in _QUOTED.findall(rest)]
        if not values and rest.strip().lstrip("-").isdigit():
            values = [rest.strip()]
        if not values:
            raise Refused(f"GetRealExpress error: {clause}", msg_code=4)
        actual = "" if customer.value(key) is None else str(customer.value(key))
        if op == "=" and actual != values[0]:
            return False
        if op == "<>" and actual == values[0]:
            return False
        if op == "in" and actual not in values:
            return False
        if op == "like" and not re.fullmatch(
            re.escape(values[0]).replace("%", ".*").replace("_", "."), actual
        ):
            return False
    return True
