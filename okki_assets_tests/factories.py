"""Payload factories for tests: OKKI list and info records, the OKKI envelope, token replies,
target batch replies, and a fake clock whose ``sleep`` advances it (so nothing really waits).

Records follow docs/okki-api.md: a list record has exactly the twelve documented fields;
an info record has the identity fields plus the contact and address fields that only the detail
endpoint gives. Pass keyword overrides to vary one field.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

OKKI_NOW = "2025-03-07 13:52:49"

LIST_FIELDS = (
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


def okki_list_record(company_id: int | str, **overrides: Any) -> dict[str, Any]:
    """One ``/v1/company/list`` record (the documented twelve fields), ints as OKKI sends them."""
    record: dict[str, Any] = {
        "company_id": company_id,
        "user_id": "55280038",
        "name": f"Company {company_id}",
        "short_name": f"C{company_id}",
        "serial_id": f"S{company_id}",
        "order_time": "1970-01-01 00:00:00",
        "create_time": "2024-11-02 09:15:00",
        "update_time": "2025-03-07 10:00:00",
        "edit_time": "2025-03-07 10:00:00",
        "create_user": "55280038",
        "last_edit_user": "55280038",
        "archive_type": 1,
    }
    record.update(overrides)
    return record


def okki_contact(customer_id: int | str, **overrides: Any) -> dict[str, Any]:
    """One entry of ``data.customers`` on ``/v1/company/info``."""
    contact: dict[str, Any] = {
        "customer_id": customer_id,
        "name": f"Contact {customer_id}",
        "email": f"contact{customer_id}@example.com",
        "tel_list": [["+86", "13800000000"]],
        "contact": [{"type": "linkedin", "value": f"https://linkedin.example/{customer_id}"}],
        "post": "Buyer",
        "main_customer_flag": 1,
        "external_field_data": {},
    }
    contact.update(overrides)
    return contact


def okki_info_record(
    company_id: int | str, *, customers: Iterable[dict[str, Any]] | None = None, **overrides: Any
) -> dict[str, Any]:
    """One ``/v1/company/info`` ``data`` object (a representative subset of its ~80 fields)."""
    base = okki_list_record(company_id)
    base.update(
        {
            "user_id": ["55280038"],
            "archive_time": "2024-11-02 09:15:00",
            "recent_follow_up_time": "1970-01-01 00:00:00",
            "next_follow_up_time": "1970-01-01 00:00:00",
            "owner": [{"user_id": "55280038", "nickname": "Sales A"}],
            "country": "DE",
            "country_name": "Germany",
            "province": "",
            "city": "Hamburg",
            "timezone": "",
            "scale_id": 2,
            "star": 3,
            "intention_level": 1,
            "group_id": 0,
            "pool_id": 0,
            "trail_status": {"status_id": 1, "status_name": "New"},
            "origin_list": [],
            "homepage": f"https://company{company_id}.example.com",
            "fax": "",
            "tel": ["+49", "40123456"],
            "address": "Hafenstrasse 1",
            "remark": "",
            "company": [],
            "customers": list(customers) if customers is not None else [okki_contact(1)],
        }
    )
    base.update(overrides)
    return base


def okki_envelope(data: Any = None, *, code: int | str = 200, message: str = "success") -> dict:
    """The OKKI reply envelope around ``data``."""
    return {"code": code, "message": message, "now": OKKI_NOW, "data": data}


def okki_list_data(
    records: list[dict[str, Any]], *, total_item: int | str | None = None, count: Any = None
) -> dict[str, Any]:
    """``data`` of a list reply; ``total_item`` defaults to the number of records given."""
    return {
        "list": records,
        "totalItem": len(records) if total_item is None else total_item,
        "count": len(records) if count is None else count,
    }


def okki_token_reply(
    access_token: str = "tok-1",
    *,
    expires_in: int | str | None = 28800,
    token_type: str | None = "Bearer",
) -> dict[str, Any]:
    """The token endpoint's reply; ``None`` leaves a field out (both are optional in the wild)."""
    reply: dict[str, Any] = {
        "access_token": access_token,
        "refresh_token": f"refresh-{access_token}",
    }
    if token_type is not None:
        reply["token_type"] = token_type
    if expires_in is not None:
        reply["expires_in"] = expires_in
    return reply


def target_batch_reply(records: list[dict[str, Any]], status: str = "created") -> dict[str, Any]:
    """A target reply with one result per record, in order."""
    return {"code": 0, "results": [{"id": r["id"], "status": status} for r in records]}


class FakeClock:
    """A clock that only moves when someone sleeps on it. Thread-safe; records every sleep."""

    def __init__(self, start: float = 1_741_326_769.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
