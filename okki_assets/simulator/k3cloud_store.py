"""The Kingdee simulator's customer store (``BD_Customer``) and its rules (spec §4, §5).

- A create (``FCUSTID`` 0 or absent) needs ``FName`` and a known ``FCreateOrgId``; ``FNumber``
  must be unused (``违反字段唯一性要求：编码唯一``, MsgCode 11); texts over 255 characters and
  numbers over 80 refuse the record. Status A, or C with ``IsAutoSubmitAndAudit``.
- A modify (known ``FCUSTID``) is refused while the customer is B or C (``单据已经审核``) or
  forbidden; every field absent from the model is blanked (no ``NeedUpDateFields``).
- Audit needs A or D; UnAudit needs C and an enabled customer; Forbid needs C and an enabled
  customer; Enable needs a forbidden one: anything else is refused with MsgCode 11.
- ``check_create`` and ``commit_create`` are separate so the handler can check a number at
  arrival and commit later (the uniqueness race: two such creates both commit).
- ``created_numbers`` counts every create per ``FNumber``: a count of 2 is a duplicate.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TEXT_LIMIT = 255
NUMBER_LIMIT = 80
TEXT_KEYS = ("FName", "FShortName", "FADDRESS", "FTEL")


class Refused(Exception):
    """A per-record refusal: ``Errors[]`` entry with this message and MsgCode."""

    def __init__(self, message: str, msg_code: int = 11, field_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.msg_code = msg_code
        self.field_name = field_name


@dataclass
class Customer:
    cust_id: int
    number: str
    fields: dict[str, Any]
    document_status: str = "A"
    forbid_status: str = "A"

    def value(self, key: str) -> Any:
        """A field by FieldKey (case-insensitive; ``X.FNumber`` reads a reference's number)."""
        k = key.strip().lower()
        if k == "fcustid":
            return self.cust_id
        if k == "fnumber":
            return self.number
        if k == "fdocumentstatus":
            return self.document_status
        if k == "fforbidstatus":
            return self.forbid_status
        base, _, sub = k.partition(".")
        for name, v in self.fields.items():
            if name.lower() == base:
                if sub:
                    return v.get("FNumber") if isinstance(v, dict) and sub == "fnumber" else None
                if isinstance(v, dict) and "FNumber" in v:
                    return 0  # a reference alone reads as an internal id
                return v
        return None


def _org_number(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("FNumber")
    return None if value in (None, "") else str(value)


def _get(model: dict[str, Any], key: str) -> Any:
    for k, v in model.items():
        if k.lower() == key.lower():
            return v
    return None


@dataclass
class Store:
    orgs: frozenset[str] = frozenset({"100"})
    customers: dict[int, Customer] = field(default_factory=dict)
    created_numbers: Counter[str] = field(default_factory=Counter)
    next_id: int = 100001
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- reads -----------------------------------------------------------------------------

    def by_number(self, number: str) -> list[Customer]:
        return [c for c in self.customers.values() if c.number == number]

    def one(self, number: str | None = None, cust_id: int | None = None) -> Customer:
        if cust_id:
            found = self.customers.get(cust_id)
        else:
            matches = self.by_number(number or "")
            found = matches[0] if matches else None
        if found is None:
            raise Refused(f"未找到编码为“{number or cust_id}”的数据", msg_code=10)
        return found

    # -- saves -----------------------------------------------------------------------------

    def _validate(self, model: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        number = _get(model, "FNumber")
        if not isinstance(number, str) or not number:
            raise Refused("字段“客户编码”是必填项", field_name="FNumber")
        if len(number) > NUMBER_LIMIT:
            raise Refused(f"客户编码超过长度{NUMBER_LIMIT}", field_name="FNumber")
        if not _get(model, "FName"):
            raise Refused("字段“客户名称”是必填项", field_name="FName")
        for key in TEXT_KEYS:
            v = _get(model, key)
            if isinstance(v, str) and len(v) > TEXT_LIMIT:
                raise Refused(f"字段“{key}”超过长度{TEXT_LIMIT}", field_name=key)
        org = _org_number(_get(model, "FCreateOrgId"))
        if org not in self.orgs:
            raise Refused(f"组织“{org}”不存在", field_name="FCreateOrgId")
        kept = {
            k: copy.deepcopy(v) for k, v in model.items() if k.lower() not in ("fcustid", "fnumber")
        }
        return number, kept

    def check_create(self, model: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        number, kept = self._validate(model)
        if self.by_number(number):
            raise Refused(
                f"违反字段唯一性要求：编码唯一。[{number}]在当前系统中已经被使用。",
                field_name="FNumber",
            )
        return number, kept

    def commit_create(self, number: str, kept: dict[str, Any], audit: bool) -> Customer:
        with self.lock:
            customer = Customer(self.next_id, number, kept, "C" if audit else "A")
            self.next_id += 1
            self.customers[customer.cust_id] = customer
            self.created_numbers[number] += 1
            return customer

    def modify(self, cust_id: int, model: dict[str, Any], audit: bool) -> Customer:
        customer = self.one(cust_id=cust_id)
        if customer.document_status in ("B", "C"):
            raise Refused(f"编码为“{customer.number}”的客户，单据已经审核，不能修改！")
        if customer.forbid_status == "B":
            raise Refused(f"编码为“{customer.number}”的客户已禁用，不能修改！")
        number, kept = self._validate(model)
        if any(c.cust_id != cust_id for c in self.by_number(number)):
            raise Refused(f"违反字段唯一性要求：编码唯一。[{number}]在当前系统中已经被使用。")
        customer.number, customer.fields = number, kept
        customer.document_status = "C" if audit else "A"
        return customer

    # -- operations --------------------------------------------------------------------------

    def operate(self, op: str, customer: Customer) -> str:
        """Apply Submit/Audit/UnAudit/Forbid/Enable to one customer; the success message."""
        op = op.lower()
        who = f"编码为“{customer.number}”的客户"
        if op == "submit":
            if customer.document_status not in ("A", "D", "Z"):
                raise Refused(f"{who}，当前状态不能提交！")
            customer.document_status = "B"
        elif op == "audit":
            if customer.document_status not in ("A", "B", "D"):
                raise Refused(f"{who}，单据已经审核！")
            customer.document_status = "C"
        elif op == "unaudit":
            if customer.document_status != "C":
                raise Refused(f"{who}，单据未审核，不能反审核！")
            if customer.forbid_status == "B":
                raise Refused(f"{who}已禁用，不能反审核！")
            customer.document_status = "D"
        elif op == "forbid":
            if customer.forbid_status == "B":
                raise Refused(f"{who}已经禁用！")
            if customer.document_status != "C":
                raise Refused(f"{who}未审核，不能禁用！")
            customer.forbid_status = "B"
        elif op == "enable":
            if customer.forbid_status != "B":
                raise Refused(f"{who}未禁用，不能反禁用！")
            customer.forbid_status = "A"
        else:
            raise Refused(f"操作“{op}”不存在", msg_code=3)
        return f"{who}，{op}成功！"

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "FCUSTID": c.cust_id,
                    "FNumber": c.number,
                    "FDocumentStatus": c.document_status,
                    "FForbidStatus": c.forbid_status,
                    **copy.deepcopy(c.fields),
                }
                for c in sorted(self.customers.values(), key=lambda c: c.cust_id)
            ]
