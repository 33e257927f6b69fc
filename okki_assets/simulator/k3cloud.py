"""The Kingdee K/3 Cloud (金蝶云星空) WebAPI simulator for ``BD_Customer`` (spec kingdee-k3cloud).

``POST {base}/{Service}.common.kdsvc`` (method names case-insensitive), bodies in the named form
(``{"formid","data"}``, ``data`` an object or a JSON string) or the positional form
(``{"parameters": [...]}``). Replies are HTTP 200 for business success and failure alike, with a
``text/plain`` content type (the spec assumes it is not JSON's).

- Authentication (``k3cloud_auth``): a live ``kdservice-sessionid`` is served without a
  signature check; otherwise the signed headers are verified and a new session issued; a wrong
  account id answers HTTP 500 ``Fail to verify thirty passport``; anything else wrong, or no
  credentials, answers MsgCode 1 (``会话信息已丢失，请重新登录``). ``ValidateUser`` and
  ``LoginByAppSecret`` answer ``LoginResultType`` 1 with the two session cookies, or 0.
- ``Save``/``BatchSave`` (partial batches: ``SuccessEntitys``/``Errors`` by ``DIndex``, the good
  rows committed), ``Submit``/``Audit``/``UnAudit``, ``ExcuteOperation`` Forbid/Enable, ``View``,
  ``ExecuteBillQuery`` (string filters ``F in ('a','b')``, ``F = 'x'``, ``F like 'x%'`` joined
  by ``and``; ``Limit`` silently capped at ``query_cap``; without ``OrderString`` the rows come in
  a new random order on every call; ``k3cloud_query``) and ``Logout``. The store's rules are in
  ``k3cloud_store``.
- Faults, from a seeded RNG, on form-service calls: ``http519_rate`` (gateway JSON, nothing
  done), ``html_before_rate`` (IIS HTML 500, nothing done), ``limit_rate`` (MsgCode 14 调用限制,
  nothing done), and on writes ``html_after_rate`` (done, then the HTML page), ``drop_reply_rate``
  (done, then the connection reset) and ``late_commit_rate`` (a create checked for uniqueness now,
  committed ``late_commit_seconds`` later, the reply reset at once: a resend before then creates
  the number twice, as Kingdee's own concurrency warning says). ``refuse_rule`` refuses chosen
  models row by row. ``max_batch`` refuses a larger BatchSave whole with MsgCode 14.
  ``session_max_calls`` kills a session after that many calls.
- For tests: ``forbid_by_hand``/``rename_by_hand``, ``customers()`` (the store, late commits
  due applied), ``duplicates()`` and ``stats``.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.k3cloud_auth import (
    Identity,
    Session,
    Sessions,
    api_signature,
    kd_signature,
)
from okki_assets.simulator.k3cloud_query import run_query
from okki_assets.simulator.k3cloud_store import Customer, Refused, Store

SUFFIX = ".common.kdsvc"
SESSION_LOST = "会话信息已丢失，请重新登录"
IIS_PAGE = (
    "<html><head><title>Runtime Error</title></head><body><h1>Server Error in '/K3Cloud' "
    "Application.</h1><h2><i>Runtime Error</i></h2></body></html>"
)
WRITE_METHODS = frozenset({"save", "batchsave", "submit", "audit", "unaudit", "excuteoperation"})


@dataclass
class K3CloudSimConfig:
    """Knobs, read at every request (a test may change them live)."""

    acct_id: str = "demo-acct"
    username: str = "okki-sync"
    app_id: str = "300001_X1teXUtXXFoMG1FfXVZZTE9DXAATUhAS"
    app_secret: str = "demo-app-secret-0123456789abcdef"
    password: str = "demo-password"
    orgs: frozenset[str] = frozenset({"100"})
    max_batch: int = 100
    query_cap: int = 2000
    max_sessions: int = 20
    session_max_calls: int | None = None
    http519_rate: float = 0.0
    html_before_rate: float = 0.0
    limit_rate: float = 0.0
    html_after_rate: float = 0.0
    drop_reply_rate: float = 0.0
    late_commit_rate: float = 0.0
    late_commit_seconds: float = 0.5
    refuse_rule: Callable[[dict[str, Any]], str | None] | None = None  # model -> Errors[] text
    seed: int = 7


@dataclass
class _Pending:
    due: float
    number: str
    kept: dict[str, Any]
    audit: bool


@dataclass
class _Call:
    """One parsed form-service call."""

    method: str
    formid: str
    op: str
    data: dict[str, Any]


def status(
    errors: list[dict[str, Any]] | None = None,
    successes: list[dict[str, Any]] | None = None,
    msg_code: int = 0,
    messages: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ok = not errors
    out: dict[str, Any] = {} if ok else {"ErrorCode": 500}
    out.update(
        IsSuccess=ok,
        Errors=errors or [],
        SuccessEntitys=successes or [],
        SuccessMessages=messages or [],
        MsgCode=msg_code,
    )
    return out


def _reply(payload: Any, headers: dict[str, str] | None = None) -> SimResponse:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return SimResponse(200, body, {"content-type": "text/plain; charset=utf-8", **(headers or {})})


def _failure(message: str, msg_code: int, query: bool = False) -> SimResponse:
    err = {"FieldName": None, "Message": message, "DIndex": 0}
    result = {"Result": {"ResponseStatus": status([err], msg_code=msg_code)}}
    return _reply([[result]] if query else result)


class K3CloudSimulator:
    """The simulator's request handler (``ServerThread(K3CloudSimulator(...))``)."""

    def __init__(
        self,
        config: K3CloudSimConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or K3CloudSimConfig()
        self.store = Store(orgs=self.config.orgs)
        self.sessions = Sessions()
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(self.config.seed)
        self._clock = clock
        self._pending: list[_Pending] = []
        self._lock = threading.RLock()

    # -- test helpers ------------------------------------------------------------------------

    def forbid_by_hand(self, number: str) -> None:
        with self._lock:
            customer = self.store.one(number)
            if customer.document_status != "C":
                self.store.operate("audit", customer)
            self.store.operate("forbid", customer)

    def rename_by_hand(self, number: str, name: str) -> None:
        with self._lock:
            self.store.one(number).fields["FName"] = name

    def customers(self) -> list[dict[str, Any]]:
        """Every customer, by FCUSTID (late commits that are due applied first)."""
        with self._lock:
            self._apply_due()
            return self.store.snapshot()

    def flush(self) -> None:
        """Commit every late create now, due or not (a test's "much later")."""
        with self._lock:
            self._apply_due(force=True)

    def duplicates(self) -> dict[str, int]:
        """FNumbers created more than once (after ``flush`` this includes late commits)."""
        with self._lock:
            return {n: c for n, c in self.store.created_numbers.items() if c > 1}

    def kill_sessions(self) -> int:
        return self.sessions.kill_all()

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        with self._lock:
            self._apply_due()
            return self._handle(request)

    def _handle(self, request: SimRequest) -> SimResponse:
        if request.method != "POST" or not request.path.lower().endswith(SUFFIX):
            return SimResponse.text(IIS_PAGE, status=404)
        service = request.path.rsplit("/", 1)[-1][: -len(SUFFIX)]
        family, _, method = service.rpartition(".")
        method = method.lower()
        self.stats[f"calls.{method}"] += 1
        try:
            body = json.loads(request.body.decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            return SimResponse.text("response_error:" + json.dumps({"Message": "bad json"}), 200)
        if family.lower().endswith("authservice"):
            return self._auth_service(method, body, request)
        if not family.lower().endswith("dynamicformservice"):
            return SimResponse.text(IIS_PAGE, status=404)
        query = method == "executebillquery"
        session, denied = self._authenticate(request)
        if denied is not None:
            return denied
        assert session is not None
        fault = self._fault(method)
        if fault is not None:
            return fault
        cookies = self._cookies(session)
        call = self._parse(method, body)
        try:
            response = self._dispatch(call)
        except Refused as exc:
            response = _failure(exc.message, exc.msg_code, query)
        response.headers.update(cookies)
        return self._after_fault(method, response)

    def _dispatch(self, call: _Call) -> SimResponse:
        if call.method != "executebillquery" and call.formid.lower() != "bd_customer":
            raise Refused(f"标识为“{call.formid}”的业务对象不存在，或者被删除", msg_code=4)
        if call.method == "executebillquery":
            return self._query(call.data)
        if call.method == "view":
            return self._view(call.data)
        if call.method in ("save", "batchsave"):
            return self._save(call)
        if call.method in ("submit", "audit", "unaudit", "excuteoperation"):
            return self._operate(call)
        raise Refused(f"方法“{call.method}”不存在", msg_code=4)

    @staticmethod
    def _parse(method: str, body: dict[str, Any]) -> _Call:
        if "parameters" in body:
            params = body["parameters"]
            params = json.loads(params) if isinstance(params, str) else list(params)
        else:
            lower = {k.lower(): v for k, v in body.items()}
            names = ["data"] if method == "executebillquery" else ["formid", "data"]
            if method == "excuteoperation":
                names = ["formid", "opnumber", "data"]
            params = [lower.get(n) for n in names]
        data = params[-1] if params else {}
        data = json.loads(data) if isinstance(data, str) else (data or {})
        formid = str(params[0]) if len(params) > 1 else str(data.get("FormId", ""))
        op = str(params[1]) if len(params) > 2 else method
        return _Call(method, formid, op, data)

    # -- auth --------------------------------------------------------------------------------

    def _auth_service(self, method: str, body: dict[str, Any], req: SimRequest) -> SimResponse:
        if method == "logout":
            self.sessions.close(self._sid(req))
            return _reply(True)
        if "parameters" in body:
            params = body["parameters"]
            params = json.loads(params) if isinstance(params, str) else params
            names = ["acctid", "username", "password", "lcid"]
            if method == "loginbyappsecret":
                names = ["acctid", "username", "appid", "appsecret", "lcid"]
            args = dict(zip(names, params, strict=False))
        else:
            args = {k.lower(): v for k, v in body.items()}
        cfg = self.config
        ok = args.get("acctid") == cfg.acct_id and args.get("username") == cfg.username
        if method == "validateuser":
            ok = ok and args.get("password") == cfg.password
        elif method == "loginbyappsecret":
            ok = ok and args.get("appid") == cfg.app_id and args.get("appsecret") == cfg.app_secret
        else:
            return SimResponse.text(IIS_PAGE, status=404)
        self.stats[f"logins.{method}"] += 1
        if not ok:
            return _reply(
                {"Message": "用户名或密码错误", "MessageCode": "", "LoginResultType": 0,
                 "Context": None, "KDSVCSessionId": None, "IsSuccessByAPI": False}
            )  # fmt: skip
        identity = Identity(cfg.acct_id, cfg.username, int(args.get("lcid") or 2052))
        session = self.sessions.open(identity, cfg.max_sessions)
        reply = {
            "Message": None,
            "MessageCode": "CheckPasswordPolicy",
            "LoginResultType": 1,
            "Context": {"UserName": cfg.username, "SessionId": "asp-" + session.sid,
                        "UserToken": session.sid, "DBid": cfg.acct_id},
            "KDSVCSessionId": session.sid,
            "FormId": None,
            "IsSuccessByAPI": True,
        }  # fmt: skip
        return _reply(reply, self._cookies(session))

    @staticmethod
    def _sid(req: SimRequest) -> str | None:
        sid = req.headers.get("kdservice-sessionid")
        if sid:
            return sid
        for part in req.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "kdservice-sessionid":
                return value
        return None

    @staticmethod
    def _cookies(session: Session) -> dict[str, str]:
        return {
            "set-cookie": f"kdservice-sessionid={session.sid}; path=/",
            "kdservice-sessionid": session.sid,
        }

    def _authenticate(self, req: SimRequest) -> tuple[Session | None, SimResponse | None]:
        query = req.path.lower().endswith("executebillquery" + SUFFIX)
        session = self.sessions.use(self._sid(req), self.config.session_max_calls)
        if session is not None:
            return session, None
        h = req.headers
        if "x-kd-appkey" not in h:
            self.stats["session_lost"] += 1
            return None, _failure(SESSION_LOST, 1, query)
        cfg = self.config
        try:
            app_data = base64.b64decode(h.get("x-kd-appdata", "")).decode("utf-8")
            acct, user, lcid, _org = app_data.split(",")
        except ValueError:
            acct, user, lcid, app_data = "", "", "", ""
        if acct != cfg.acct_id:
            return None, SimResponse.text("Fail to verify thirty passport", status=500)
        expected_api = api_signature(
            req.path, cfg.app_id, h.get("x-api-timestamp", ""), h.get("x-api-nonce", "")
        )
        good = (
            h.get("x-kd-appkey") == cfg.app_id
            and h.get("x-api-clientid") == cfg.app_id.split("_")[0]
            and user == cfg.username
            and lcid in ("2052", "1033", "3076")
            and h.get("x-api-signature") == expected_api
            and h.get("x-kd-signature") == kd_signature(cfg.app_id, cfg.app_secret, app_data)
        )
        if not good:
            self.stats["bad_signature"] += 1
            return None, _failure(SESSION_LOST, 1, query)
        return self.sessions.open(Identity(acct, user, int(lcid)), cfg.max_sessions), None

    # -- faults ------------------------------------------------------------------------------

    def _fault(self, method: str) -> SimResponse | None:
        cfg, r = self.config, self._rng.random()
        for name, rate in (("http519", cfg.http519_rate), ("html_before", cfg.html_before_rate)):
            if r < rate:
                self.stats[f"fault.{name}"] += 1
                if name == "http519":
                    gateway = {"errcode": 5001, "description": "API not found[GW]"}
                    return SimResponse.json(gateway, status=519)
                return SimResponse.text(IIS_PAGE, status=500)
            r -= rate
        if r < cfg.limit_rate:
            self.stats["fault.limit"] += 1
            return _failure("调用限制：超过单位时间内的调用次数", 14, method == "executebillquery")
        return None

    def _after_fault(self, method: str, response: SimResponse) -> SimResponse:
        if method not in WRITE_METHODS:
            return response
        cfg, r = self.config, self._rng.random()
        if r < cfg.html_after_rate:
            self.stats["fault.html_after"] += 1
            return SimResponse.text(IIS_PAGE, status=500)
        if r - cfg.html_after_rate < cfg.drop_reply_rate:
            self.stats["fault.drop_reply"] += 1
            response.fault = "reset"
        return response

    def _apply_due(self, force: bool = False) -> None:
        now = self._clock()
        due = [p for p in self._pending if force or p.due <= now]
        self._pending = [p for p in self._pending if p not in due]
        for p in due:
            self.store.commit_create(p.number, p.kept, p.audit)

    # -- operations --------------------------------------------------------------------------

    def _save(self, call: _Call) -> SimResponse:
        data = {k.lower(): v for k, v in call.data.items()}
        models = data.get("model")
        batch = call.method == "batchsave"
        models = (models if isinstance(models, list) else [models]) if batch else [models]
        if batch and len(models) > self.config.max_batch:
            self.stats["refused.batch_size"] += 1
            return _failure(f"批量保存的数据包数量{len(models)}超过上限{self.config.max_batch}", 14)
        audit = str(data.get("isautosubmitandaudit", False)).lower() == "true"
        late = self._rng.random() < self.config.late_commit_rate
        errors, successes = [], []
        for i, model in enumerate(models):
            try:
                customer = self._save_one(model if isinstance(model, dict) else {}, audit, late)
            except Refused as exc:
                errors.append({"FieldName": exc.field_name, "Message": exc.message, "DIndex": i})
                continue
            cid, number = (0, "") if customer is None else (customer.cust_id, customer.number)
            successes.append({"Id": cid, "Number": number, "DIndex": i})
        rs = status(errors, successes, msg_code=11 if errors else 0)
        result: dict[str, Any] = {"ResponseStatus": rs, "NeedReturnData": [{}]}
        if not batch:
            result.update(Id=successes[0]["Id"] if successes else "", Number="")
        response = _reply({"Result": result})
        if late and any(s["Id"] == 0 for s in successes):
            self.stats["fault.late_commit"] += 1
            response.fault = "reset"
        return response

    def _save_one(self, model: dict[str, Any], audit: bool, late: bool) -> Customer | None:
        why = self.config.refuse_rule(model) if self.config.refuse_rule else None
        if why:
            raise Refused(why)
        cust_id = next((v for k, v in model.items() if k.lower() == "fcustid"), 0)
        if cust_id not in (0, "0", "", None):
            return self.store.modify(int(cust_id), model, audit)
        number, kept = self.store.check_create(model)
        if late:
            due = self._clock() + self.config.late_commit_seconds
            self._pending.append(_Pending(due, number, kept, audit))
            return None
        return self.store.commit_create(number, kept, audit)

    def _operate(self, call: _Call) -> SimResponse:
        op = call.op if call.method == "excuteoperation" else call.method
        data = {k.lower(): v for k, v in call.data.items()}
        numbers = data.get("numbers") or []
        numbers = [numbers] if isinstance(numbers, str) else list(numbers)
        ids = [int(x) for x in str(data.get("ids") or "").split(",") if x.strip()]
        targets: list[tuple[str | None, int | None]] = [(n, None) for n in numbers]
        targets += [(None, i) for i in ids]
        if not targets:
            raise Refused("单据标识为空", msg_code=5)
        errors, successes, messages = [], [], []
        for i, (number, cust_id) in enumerate(targets):
            try:
                customer = self.store.one(number, cust_id)
                messages.append({"FieldName": None, "Message": self.store.operate(op, customer),
                                 "DIndex": i})  # fmt: skip
            except Refused as exc:
                errors.append({"FieldName": None, "Message": exc.message, "DIndex": i})
                continue
            successes.append({"Id": customer.cust_id, "Number": customer.number, "DIndex": i})
        rs = status(errors, successes, msg_code=11 if errors else 0, messages=messages)
        return _reply({"Result": {"ResponseStatus": rs}})

    def _view(self, data: dict[str, Any]) -> SimResponse:
        lower = {k.lower(): v for k, v in data.items()}
        customer = self.store.one(lower.get("number"), int(lower.get("id") or 0) or None)
        result = {
            "Id": customer.cust_id,
            "Number": customer.number,
            "Name": [{"Key": 2052, "Value": customer.fields.get("FName", "")}],
            "DocumentStatus": customer.document_status,
            "ForbidStatus": customer.forbid_status,
        }
        return _reply({"Result": {"ResponseStatus": None, "Result": result}})

    def _query(self, data: dict[str, Any]) -> SimResponse:
        rows = run_query(self.store, data, self.config.query_cap, self._rng)
        return _reply(rows)
