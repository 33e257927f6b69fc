"""K3CloudApi against canned replies (httpx.MockTransport): the sdk-py 8.2.0 signature
against a vector computed by hand from the spec's algorithm (§2.1), and every reply shape the
spec names: the §3 envelope as real servers send it and as the doc template types it (strings),
partial batches by DIndex, the query reply and its wrapped error, MsgCode 1 in both login modes,
MsgCode 14, ValidateUser's LoginResultType, HTTP 519 / IIS HTML / ``response_error:`` bodies and
``Fail to verify thirty passport``. Secrets never appear in errors or ``repr``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from okki_assets.clients.http import RetrySettings
from okki_assets.errors import TargetAuthError, TargetPermanentError, TargetTransientError
from okki_assets.targets.k3cloud_api import (
    K3CloudApi,
    K3CloudSettings,
    decode_app_secret,
    parse_status,
    signed_headers,
)

APP_ID = "300001_X1teXUtXXFoMG1FfXVZZTE9DXAATUhAS"
SECRET = "demo-app-secret-0123456789abcdef"
PASSWORD = "pw-never-shown"
SAVE_PATH = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save.common.kdsvc"


def settings(**kw: Any) -> K3CloudSettings:
    base: dict[str, Any] = dict(
        base_url="https://erp.test/k3cloud/",
        acct_id="demo-acct",
        username="okki-sync",
        app_id=APP_ID,
        app_secret=SECRET,
    )
    return K3CloudSettings(**{**base, **kw})


def api_with(
    replies: list[httpx.Response], seen: list[httpx.Request] | None = None, **kw: Any
) -> K3CloudApi:
    queue = list(replies)

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return queue.pop(0)

    return K3CloudApi(
        settings(**kw),
        transport=httpx.MockTransport(handle),
        sleep=lambda _: None,
        retry=RetrySettings(max_attempts=4, jitter=False),
    )


def text(payload: Any, status: int = 200) -> httpx.Response:
    # Kingdee's content type is not JSON's (§1): the body is parsed anyway
    return httpx.Response(status, text=json.dumps(payload, ensure_ascii=False))


def envelope(**rs: Any) -> dict[str, Any]:
    return {"Result": {"ResponseStatus": rs}}


SESSION_LOST = envelope(
    ErrorCode=500,
    IsSuccess=False,
    Errors=[{"FieldName": None, "Message": "会话信息已丢失，请重新登录", "DIndex": 0}],
    SuccessEntitys=[],
    SuccessMessages=[],
    MsgCode=1,
)


def test_signature_matches_the_hand_computed_vector() -> None:
    # Worked by hand from §2.1: the 24 bytes under the AppID's second part XOR ROT13(seed)
    # "0054f397c6234378b09ca7d3e5debce7" give base64("okki-demo-client-secret!"); the string to
    # sign is "POST\n%2Fk3cloud%2FKingdee...Save.common.kdsvc\n\nx-api-nonce:1700000000\n
    # x-api-timestamp:1700000000\n"; each signature is base64 of the hex HMAC-SHA256.
    assert decode_app_secret(APP_ID.split("_")[1]) == "b2traS1kZW1vLWNsaWVudC1zZWNyZXQh"
    h = signed_headers(SAVE_PATH, settings(), "1700000000")
    assert h == {
        "X-Api-ClientID": "300001",
        "X-Api-Auth-Version": "2.0",
        "x-api-timestamp": "1700000000",
        "x-api-nonce": "1700000000",
        "x-api-signheaders": "x-api-timestamp,x-api-nonce",
        "X-Api-Signature": "ZmY0MTUwODhhZWQyNjkxYWZmZTM0NTMwNzViODJkNWM4ZWRhYWRjYWE3Zjk3NmVmM"
        "jFkMDUwYTVkMTgzMWM5OA==",
        "X-Kd-Appkey": APP_ID,
        "X-Kd-Appdata": "ZGVtby1hY2N0LG9ra2ktc3luYywyMDUyLDA=",  # "demo-acct,okki-sync,2052,0"
        "X-Kd-Signature": "NWRjYThhZmQ5NjAwYTkxNDhkMDIyMWMwYTAyMjVkMTUwZjAwN2M5YjUzZmE5MmI1Nm"
        "ZiZTNiODE3NTViNjY1OQ==",
    }
    assert decode_app_secret("short") == ""  # not 32 characters: no key, as the SDK does


@pytest.mark.parametrize(
    ("reply", "ok", "code", "errors", "successes"),
    [
        # a real success: no ErrorCode, booleans and int ids
        (
            envelope(IsSuccess=True, Errors=[], MsgCode=0,
                     SuccessEntitys=[{"Id": 100029, "Number": "OKKI1", "DIndex": 0}]),
            True, 0, {}, {0: 100029},
        ),
        # the doc template's typing: everything a string
        (
            envelope(ErrorCode="500", IsSuccess="false", MsgCode="11",
                     Errors=[{"FieldName": "FNumber", "Message": "编码唯一", "DIndex": "0"}],
                     SuccessEntitys=[]),
            False, 11, {0: "编码唯一"}, {},
        ),
        # a partial batch: rows 0 and 2 saved, row 1 refused
        (
            envelope(ErrorCode=500, IsSuccess=False, MsgCode=11,
                     Errors=[{"FieldName": None, "Message": "bad", "DIndex": 1}],
                     SuccessEntitys=[{"Id": "7", "Number": "A", "DIndex": 0},
                                     {"Id": 8, "Number": "C", "DIndex": 2}]),
            False, 11, {1: "bad"}, {0: 7, 2: 8},
        ),
        # the query reply's wrapped error
        ([[SESSION_LOST]], False, 1, {0: "会话信息已丢失，请重新登录"}, {}),
    ],
)  # fmt: skip
def test_reply_envelopes_parse_leniently(
    reply: Any, ok: bool, code: int, errors: dict[int, str], successes: dict[int, int]
) -> None:
    rs = parse_status(reply)
    assert rs is not None
    assert (rs.ok, rs.msg_code, rs.errors, rs.successes) == (ok, code, errors, successes)


def test_query_rows_and_shapes_that_are_not_an_envelope() -> None:
    assert parse_status([["1", "OKKI1"], ["2", "OKKI2"]]) is None
    assert parse_status([]) is None
    api = api_with([text([[100001, "OKKI1", "C", "A"]])])
    assert api.query({"FormId": "BD_Customer", "FieldKeys": "FCUSTID"}) == [
        [100001, "OKKI1", "C", "A"]
    ]


def test_query_error_is_permanent_with_kingdee_message() -> None:
    bad = envelope(IsSuccess=False, MsgCode=9, SuccessEntitys=[],
                   Errors=[{"Message": "元数据中标识为FX的字段不存在", "DIndex": 0}])  # fmt: skip
    with pytest.raises(TargetPermanentError, match="MsgCode 9.*FX"):
        api_with([text([[bad]])]).query({"FormId": "BD_Customer", "FieldKeys": "FX"})


def test_transient_bodies_are_retried_for_reads() -> None:
    seen: list[httpx.Request] = []
    api = api_with(
        [
            text({"errcode": 5001, "description": "API not found[GW]"}, status=519),
            httpx.Response(500, text="<h1>Server Error in '/K3Cloud' Application.</h1>"),
            httpx.Response(200, text='response_error:{"Message":"boom"}'),
            text([["ok"]]),
        ],
        seen,
    )
    assert api.query({"FormId": "BD_Customer", "FieldKeys": "FNumber"}) == [["ok"]]
    assert len(seen) == 4
    assert api.stats.retries["http5xx"] == 3


def test_write_is_sent_once_and_call_limit_is_transient() -> None:
    limited = envelope(IsSuccess=False, MsgCode=14, SuccessEntitys=[],
                       Errors=[{"Message": "调用限制", "DIndex": 0}])  # fmt: skip
    with pytest.raises(TargetTransientError) as info:
        api_with([text(limited)]).write("BatchSave", {"formid": "BD_Customer", "data": {}})
    assert info.value.cause == "limit"
    with pytest.raises(TargetTransientError):  # an HTML page after a write: not resent here
        api_with([httpx.Response(500, text="<html/>")]).write("Save", {"data": {}})


def test_session_lost_with_signed_headers_is_a_configuration_error() -> None:
    with pytest.raises(TargetAuthError, match="K3CLOUD_APP_SECRET") as info:
        api_with([text(SESSION_LOST)]).query({"FormId": "BD_Customer", "FieldKeys": "FNumber"})
    assert SECRET not in str(info.value)


def test_session_lost_with_cookie_login_logs_in_again_once() -> None:
    login = {"LoginResultType": 1, "KDSVCSessionId": "sid-2", "Context": {"SessionId": "x"}}
    seen: list[httpx.Request] = []
    api = api_with([text(SESSION_LOST), text(login), text([["row"]])], seen, password=PASSWORD)
    assert api.query({"FormId": "BD_Customer", "FieldKeys": "FNumber"}) == [["row"]]
    assert seen[1].url.path.endswith("AuthService.ValidateUser.common.kdsvc")
    assert json.loads(seen[1].content)["password"] == PASSWORD
    assert seen[2].headers["kdservice-sessionid"] == "sid-2"
    assert "kdservice-sessionid=sid-2" in seen[2].headers["cookie"]
    assert "X-Kd-Signature" not in seen[2].headers  # cookie mode signs nothing


def test_failed_login_and_wrong_account_are_clear_errors() -> None:
    refused = {"LoginResultType": 0, "Message": "用户名或密码错误", "Context": None}
    with pytest.raises(TargetAuthError, match="K3CLOUD_PASSWORD") as info:
        api_with([text(refused)], password=PASSWORD).login()
    assert PASSWORD not in str(info.value)
    with pytest.raises(TargetAuthError, match="K3CLOUD_ACCT_ID"):
        api_with([httpx.Response(500, text="Fail to verify thirty passport")]).query({})


def test_secrets_stay_out_of_repr() -> None:
    shown = repr(settings(password=PASSWORD))
    assert SECRET not in shown and PASSWORD not in shown
