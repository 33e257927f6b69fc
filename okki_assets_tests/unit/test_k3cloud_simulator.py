"""The K/3 Cloud simulator follows the spec (kingdee-k3cloud.md), in process (mock transport):

- both body conventions (named with ``data`` an object or a JSON string; positional
  ``parameters``) and case-insensitive method names give the same answers;
- logins: ValidateUser/LoginByAppSecret answer LoginResultType 1 with the session cookies, or 0;
  a wrong account id is HTTP 500 "Fail to verify thirty passport"; a bad signature or no
  credentials is MsgCode 1, wrapped ``[[...]]`` for ExecuteBillQuery;
- the audited-update rule and the status rules: Save on C refused, UnAudit of a forbidden
  customer refused, Forbid twice refused; View's shape and its not-found (MsgCode 10);
- MsgCode 9 for an unknown field, 4 for a filter it cannot read, 14 for a BatchSave over the cap
  (nothing saved), 11 for a number already used.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from okki_assets.simulator.http import mock_transport
from okki_assets.simulator.k3cloud import K3CloudSimConfig, K3CloudSimulator
from okki_assets.targets.k3cloud_api import K3CloudSettings, signed_headers

BASE = "http://k3.test/k3cloud/"
FORM = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService."
AUTH = "Kingdee.BOS.WebApi.ServicesStub.AuthService."


class Client:
    def __init__(self, sim: K3CloudSimulator, **override: Any) -> None:
        c = sim.config
        fields = dict(acct_id=c.acct_id, username=c.username, app_id=c.app_id,
                      app_secret=c.app_secret)  # fmt: skip
        self.settings = K3CloudSettings(base_url=BASE, **{**fields, **override})
        self.http = httpx.Client(base_url="http://k3.test", transport=mock_transport(sim))

    def post(self, service: str, body: Any, signed: bool = True) -> httpx.Response:
        path = f"/k3cloud/{service}.common.kdsvc"
        headers = signed_headers(path, self.settings, str(int(time.time()))) if signed else {}
        return self.http.post(path, content=json.dumps(body), headers=headers)

    def call(self, service: str, body: Any) -> Any:
        reply = self.post(service, body)
        self.http.cookies.clear()  # each call signs afresh unless a test sends a session
        assert reply.status_code == 200, reply.text
        return json.loads(reply.text)


def customer(n: int, **extra: Any) -> dict[str, Any]:
    return {"FNumber": f"C{n}", "FName": f"Customer {n}", "FCreateOrgId": {"FNumber": "100"},
            **extra}  # fmt: skip


def status(reply: Any) -> dict[str, Any]:
    if isinstance(reply, list):
        reply = reply[0][0]
    return reply["Result"]["ResponseStatus"]  # type: ignore[no-any-return]


@pytest.fixture
def sim() -> K3CloudSimulator:
    return K3CloudSimulator(K3CloudSimConfig(max_batch=3))


def test_body_conventions_and_method_spelling_agree(sim: K3CloudSimulator) -> None:
    c = Client(sim)
    data = {"Model": customer(1), "IsAutoSubmitAndAudit": "true"}
    named = c.call(FORM + "Save", {"formid": "BD_Customer", "data": data})
    assert status(named)["IsSuccess"] is True and isinstance(named["Result"]["Id"], int)
    as_string = {"formid": "BD_Customer", "data": json.dumps({"Model": customer(2)})}
    assert status(c.call(FORM + "save", as_string))["IsSuccess"] is True
    positional = {"parameters": ["BD_Customer", json.dumps({"Model": customer(3)})]}
    assert status(c.call(FORM + "SAVE", positional))["IsSuccess"] is True
    query = {"FormId": "BD_Customer", "FieldKeys": "FNumber,FDocumentStatus",
             "OrderString": "FCUSTID ASC"}  # fmt: skip
    assert c.call(FORM + "ExecuteBillQuery", {"data": query}) == [
        ["C1", "C"], ["C2", "A"], ["C3", "A"]
    ]  # fmt: skip
    again = c.call(FORM + "ExecuteBillQuery", {"parameters": [json.dumps(query)]})
    assert again == [["C1", "C"], ["C2", "A"], ["C3", "A"]]


def test_logins_and_refusals(sim: K3CloudSimulator) -> None:
    c = Client(sim)
    cfg = sim.config
    login = {"acctID": cfg.acct_id, "username": cfg.username, "password": cfg.password}
    ok = c.post(AUTH + "ValidateUser", {**login, "lcid": 2052}, signed=False)
    body = json.loads(ok.text)
    assert (
        body["LoginResultType"] == 1 and ok.cookies["kdservice-sessionid"] == body["KDSVCSessionId"]
    )
    by_secret = [cfg.acct_id, cfg.username, cfg.app_id, cfg.app_secret, 2052]
    reply = c.call(AUTH + "LoginByAppSecret", {"parameters": by_secret})
    assert reply["LoginResultType"] == 1
    wrong = c.call(AUTH + "ValidateUser", {"acctid": cfg.acct_id, "username": cfg.username,
                                           "password": "nope"})  # fmt: skip
    assert wrong["LoginResultType"] == 0 and wrong["Context"] is None
    # a session from ValidateUser is enough, with no signature
    sid = body["KDSVCSessionId"]
    path = f"/k3cloud/{FORM}ExecuteBillQuery.common.kdsvc"
    query = {"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber"}}
    c.http.cookies.clear()
    served = c.http.post(path, json=query, headers={"Cookie": f"kdservice-sessionid={sid}"})
    assert served.json() == []
    c.http.cookies.clear()
    # no credentials: MsgCode 1, wrapped for a query
    lost = c.post(FORM + "ExecuteBillQuery", query, signed=False)
    assert status(json.loads(lost.text))["MsgCode"] == 1
    assert status(Client(sim, app_secret="wrong").call(FORM + "View", {}))["MsgCode"] == 1
    passport = Client(sim, acct_id="other").post(FORM + "View", {})
    assert passport.status_code == 500 and "thirty passport" in passport.text


def test_status_rules(sim: K3CloudSimulator) -> None:
    c = Client(sim)
    save = {"formid": "BD_Customer", "data": {"Model": customer(1), "IsAutoSubmitAndAudit": True}}
    cust_id = c.call(FORM + "Save", save)["Result"]["Id"]
    modify = {"formid": "BD_Customer", "data": {"Model": {**customer(1), "FCUSTID": cust_id}}}
    refused = status(c.call(FORM + "Save", modify))
    assert refused["MsgCode"] == 11 and "已经审核" in refused["Errors"][0]["Message"]
    assert status(c.call(FORM + "Save", save))["Errors"][0]["Message"].startswith(
        "违反字段唯一性要求：编码唯一"
    )
    forbid = {"formid": "BD_Customer", "opNumber": "Forbid", "data": {"Numbers": ["C1"]}}
    assert status(c.call(FORM + "ExcuteOperation", forbid))["IsSuccess"] is True
    assert status(c.call(FORM + "ExcuteOperation", forbid))["IsSuccess"] is False
    unaudit = {"formid": "BD_Customer", "data": {"Numbers": ["C1"]}}
    assert status(c.call(FORM + "UnAudit", unaudit))["IsSuccess"] is False
    enable = {"formid": "BD_Customer", "opNumber": "enable", "data": {"Numbers": "C1"}}
    assert status(c.call(FORM + "ExcuteOperation", enable))["IsSuccess"] is True
    assert status(c.call(FORM + "UnAudit", unaudit))["IsSuccess"] is True
    view = c.call(FORM + "View", {"formid": "BD_Customer", "data": {"Number": "C1"}})
    assert view["Result"]["ResponseStatus"] is None
    shown = view["Result"]["Result"]
    assert (shown["Number"], shown["DocumentStatus"], shown["ForbidStatus"]) == ("C1", "D", "A")
    missing = c.call(FORM + "View", {"formid": "BD_Customer", "data": {"Number": "C9"}})
    assert status(missing)["MsgCode"] == 10


def test_whole_call_refusals(sim: K3CloudSimulator) -> None:
    c = Client(sim)
    batch = {"formid": "BD_Customer", "data": {"Model": [customer(i) for i in range(4)]}}
    assert status(c.call(FORM + "BatchSave", batch))["MsgCode"] == 14
    assert sim.customers() == []  # nothing saved
    bad_field = {"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber,FX"}}
    assert status(c.call(FORM + "ExecuteBillQuery", bad_field))["MsgCode"] == 9
    bad_filter = {"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber",
                           "FilterString": "FNumber ~ 1"}}  # fmt: skip
    assert status(c.call(FORM + "ExecuteBillQuery", bad_filter))["MsgCode"] == 4
    unknown_form = {"formid": "BD_Nothing", "data": {"Model": customer(1)}}
    assert status(c.call(FORM + "Save", unknown_form))["MsgCode"] == 4
