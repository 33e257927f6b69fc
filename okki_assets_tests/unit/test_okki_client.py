"""OkkiClient against httpx.MockTransport handlers that reproduce each variant of the OKKI spec:
token forms and renewal, success codes 0/200, every throttle shape (HTTP 429 with and without
Retry-After, body 429, body 5xx, HTTP 5xx, timeouts, resets, non-JSON pages), revoked tokens,
refused credentials, business errors, info 404, and the paging stop rules (totalItem reached,
empty page, repeated page, max_pages) over a live result set. Each test asserts on the rows that
come out and on the requests the client made."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from okki_assets.clients.okki import (
    InfoResult,
    OkkiClient,
    RetrySettings,
    record_key,
)
from okki_assets.clients.ratecontrol import AutoRate
from okki_assets.errors import (
    OkkiAuthError,
    OkkiError,
    OkkiPermanentError,
    OkkiQuotaExhausted,
    OkkiRetriesExhausted,
    PaginationError,
)
from okki_assets.okki_time import format_okki_time
from okki_assets_tests.factories import (
    FakeClock,
    okki_envelope,
    okki_info_record,
    okki_list_data,
    okki_list_record,
    okki_token_reply,
)

BASE = "https://okki.test"
SECRET = "s3cr3t-never-shown"
TOKEN = "/v1/oauth2/access_token"
LIST = "/v1/company/list"
INFO = "/v1/company/info"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def ok(data: Any, **kw: Any) -> httpx.Response:
    return httpx.Response(200, json=okki_envelope(data, **kw))


def denied(status: int = 401) -> httpx.Response:
    return httpx.Response(
        status, json={"error": "access_denied", "error_description": "token revoked"}
    )


class FakeOkki:
    """A scripted OKKI. The token endpoint mints tok-1, tok-2, ... (or plays ``token_steps``);
    business paths play their script in order (the last step repeats) after checking the
    Authorization header the way the live API does: bare or Bearer, any issued and unrevoked
    token. Every request is recorded."""

    def __init__(
        self,
        scripts: dict[str, list[Step]] | None = None,
        *,
        token_steps: list[Step] | None = None,
        expires_in: int | str | None = 28800,
        revoke_every_token: bool = False,
    ) -> None:
        self.scripts = {path: list(steps) for path, steps in (scripts or {}).items()}
        self.token_steps = list(token_steps or [])
        self.expires_in = expires_in
        self.revoke_every_token = revoke_every_token
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if request.url.path == TOKEN:
                step: Step | None = self._next(self.token_steps) if self.token_steps else None
                if step is None:
                    token = f"tok-{len(self.issued) + 1}"
                    self.issued.append(token)
                    if self.revoke_every_token:
                        self.revoked.add(token)
                    return httpx.Response(
                        200, json=okki_token_reply(token, expires_in=self.expires_in)
                    )
            else:
                auth = request.headers.get("authorization", "")
                token = auth.removeprefix("Bearer ").strip()
                if token not in self.issued or token in self.revoked:
                    return denied()
                step = self._next(self.scripts[request.url.path])
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        assert step is not None
        return step(request)

    @staticmethod
    def _next(steps: list[Step]) -> Step:
        return steps.pop(0) if len(steps) > 1 else steps[0]

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def params(self, path: str) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.calls(path)]


def make_client(fake: Callable[[httpx.Request], httpx.Response], **kw: Any) -> OkkiClient:
    clock = kw.pop("clock", None) or FakeClock()
    kw.setdefault("rate_limit", None)
    return OkkiClient(
        BASE,
        "client-42",
        SECRET,
        transport=httpx.MockTransport(fake),
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )


def list_ok(ids: list[int], total: int | str | None = None) -> httpx.Response:
    return ok(okki_list_data([okki_list_record(i) for i in ids], total_item=total))


class Pager:
    """A list endpoint over a fixed id sequence that honours start_index and count."""

    def __init__(
        self, ids: list[int], total: int | str | None = None, max_count: int | None = None
    ) -> None:
        self.ids = ids
        self.total = len(ids) if total is None else total
        self.max_count = max_count  # a server that serves fewer rows a page than asked

    def __call__(self, request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["start_index"])
        size = int(request.url.params["count"])
        if self.max_count is not None:
            size = min(size, self.max_count)
        chunk = self.ids[(page - 1) * size : page * size]
        return list_ok(chunk, self.total)


def all_rows(client: OkkiClient, **kw: Any) -> list[dict[str, Any]]:
    return [r for page in client.iter_list_pages(**kw) for r in page.records]


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        okki_token_reply("tok-1"),  # the documented reply
        okki_token_reply("tok-1", token_type=None),  # no token_type
        okki_token_reply("Bearer tok-1"),  # the token already carries the scheme
        {"code": 200, "data": okki_token_reply("tok-1")},  # wrapped in the business envelope
    ],
)
def test_token_request_and_bearer_header(reply: dict[str, Any]) -> None:
    fake = FakeOkki(
        {INFO: [ok(okki_info_record(7))]},
        token_steps=[httpx.Response(200, json=reply)],
    )
    fake.issued.append("tok-1")  # the scripted reply issued it
    with make_client(fake) as client:
        result = client.company_info(7)
    assert result.data is not None and result.data["company_id"] == 7
    (token_req,) = fake.calls(TOKEN)
    assert token_req.method == "POST"
    assert token_req.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(token_req.content.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "client-42",
        "client_secret": SECRET,
        "scope": "company",
    }
    (info_req,) = fake.calls(INFO)
    assert info_req.headers["authorization"] == "Bearer tok-1"
    assert dict(info_req.url.params) == {"company_id": "7"}


@pytest.mark.parametrize(
    "header_form",
    [
        "Bearer {}",  # what the client sends
        "{}",  # the bare token the docs show
    ],
)
def test_the_fake_server_accepts_bare_and_bearer_like_the_live_api(header_form: str) -> None:
    """The mock mirrors the live API: either form authenticates, anything else is refused."""
    fake = FakeOkki({INFO: [ok(okki_info_record(1))]})
    fake.issued.append("tok-9")
    req = httpx.Request("GET", BASE + INFO, headers={"Authorization": header_form.format("tok-9")})
    assert fake(req).status_code == 200
    bad = httpx.Request("GET", BASE + INFO, headers={"Authorization": header_form.format("nope")})
    assert fake(bad).status_code == 401


@pytest.mark.parametrize(
    "code",
    [
        200,  # the live API
        0,  # old documentation templates
        "200",  # code as a string
    ],
)
def test_success_codes(code: int | str) -> None:
    fake = FakeOkki({LIST: [ok(okki_list_data([okki_list_record(1)]), code=code)]})
    with make_client(fake) as client:
        page = client.list_page(1)
    assert [r["company_id"] for r in page.records] == [1]
    assert len(fake.calls(LIST)) == 1


def test_token_is_cached_across_calls() -> None:
    fake = FakeOkki({INFO: [ok(okki_info_record(1))]})
    with make_client(fake) as client:
        for cid in range(5):
            client.company_info(cid)
    assert len(fake.calls(TOKEN)) == 1
    assert len(fake.calls(INFO)) == 5


@pytest.mark.parametrize(
    ("expires_in", "renew_after"),
    [
        (None, 28800 - 300),  # missing: assume 8 h, renew 5 min early
        (28799, 28799 - 300),  # what the live API sends
        ("7200", 7200 - 300),  # as a string
        (600, 600 - 60),  # a short token renews a tenth of its life early
    ],
)
def test_token_renewed_before_expiry(expires_in: int | str | None, renew_after: float) -> None:
    clock = FakeClock()
    fake = FakeOkki({INFO: [ok(okki_info_record(1))]}, expires_in=expires_in)
    with make_client(fake, clock=clock) as client:
        client.company_info(1)
        clock.advance(renew_after - 1)
        client.company_info(1)
        assert len(fake.calls(TOKEN)) == 1  # still fresh one second before the renewal point
        clock.advance(1)
        client.company_info(1)
    assert len(fake.calls(TOKEN)) == 2
    assert [r.headers["authorization"] for r in fake.calls(INFO)] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_revoked_token_is_renewed_once_and_the_call_repeated() -> None:
    fake = FakeOkki({LIST: [list_ok([1, 2])]})
    with make_client(fake) as client:
        client.list_page(1)
        fake.revoked.add("tok-1")  # revoked server-side: HTTP 401 access_denied
        page = client.list_page(2)
        assert client.stats.retries["token_renewed"] == 1
    assert [r["company_id"] for r in page.records] == [1, 2]
    assert len(fake.calls(TOKEN)) == 2
    assert [r.headers["authorization"] for r in fake.calls(LIST)] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert fake.params(LIST)[1] == fake.params(LIST)[2]  # the same call, repeated


def test_access_denied_in_a_200_body_renews_the_token() -> None:
    fake = FakeOkki({INFO: [denied(status=200), ok(okki_info_record(3))]})
    with make_client(fake) as client:
        result = client.company_info(3)
    assert result.data is not None and result.data["company_id"] == 3
    assert len(fake.calls(TOKEN)) == 2
    assert [r.headers["authorization"] for r in fake.calls(INFO)] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_a_token_refused_right_after_renewal_is_an_auth_error() -> None:
    fake = FakeOkki({INFO: [ok(okki_info_record(1))]}, revoke_every_token=True)
    with make_client(fake) as client, pytest.raises(OkkiAuthError) as info:
        client.company_info(1)
    assert len(fake.calls(TOKEN)) == 2
    assert len(fake.calls(INFO)) == 2
    assert "OKKI_CLIENT_ID" in str(info.value)
    assert SECRET not in str(info.value) and "tok-" not in str(info.value)


@pytest.mark.parametrize(
    ("reply", "hint"),
    [
        (  # bad credentials, as documented
            httpx.Response(
                400,
                json={
                    "error": "invalid_client",
                    "error_description": "Client authentication failed",
                    "message": f"client_secret {SECRET} is wrong",  # even if a server echoed it
                },
            ),
            "OKKI_CLIENT_SECRET",
        ),
        (  # unknown grant, seen live
            httpx.Response(400, json={"error": "unsupported_grant_type"}),
            "OKKI_CLIENT_ID",
        ),
        (  # the app lacks the company scope
            httpx.Response(200, json={"code": 403, "message": "no permission company scopes"}),
            "scope",
        ),
    ],
)
def test_refused_credentials_stop_at_once(reply: httpx.Response, hint: str) -> None:
    fake = FakeOkki({LIST: [list_ok([1])]}, token_steps=[reply])
    with make_client(fake) as client, pytest.raises(OkkiAuthError) as info:
        client.list_page(1)
    message = str(info.value)
    assert hint in message
    assert SECRET not in message
    assert len(fake.calls(TOKEN)) == 1  # not retried
    assert fake.calls(LIST) == []
    assert client.stats.retries["http5xx"] == 0


def test_missing_scope_on_a_business_call_is_an_auth_error() -> None:
    fake = FakeOkki({LIST: [ok(None, code=40003, message="no permission company scopes")]})
    with make_client(fake) as client, pytest.raises(OkkiAuthError, match="scope"):
        client.list_page(1)
    assert len(fake.calls(LIST)) == 1


# -- transient signals --------------------------------------------------------------------------


def html_page(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html><body>502 Bad Gateway</body></html>")


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (httpx.Response(429), "http429"),  # HTTP 429 without Retry-After
        (httpx.Response(429, headers={"Retry-After": "3"}), "http429"),  # small Retry-After
        (ok(None, code=429, message="too many requests"), "body429"),  # throttle in the body
        (ok(None, code=503, message="busy"), "body5xx"),  # 5xx in the body
        (ok(None, code="500"), "body5xx"),  # 5xx in the body, as a string
        (httpx.Response(500, text="oops"), "http5xx"),  # HTTP 500
        (httpx.Response(502, text="<html>bad gateway</html>"), "http5xx"),  # proxy error page
        (httpx.Response(503, json={"code": 503}), "http5xx"),  # HTTP 503
        (httpx.ReadTimeout("timed out"), "timeout"),  # the reply never came
        (httpx.ConnectTimeout("timed out"), "timeout"),  # the connection never opened
        (httpx.RemoteProtocolError("peer closed connection"), "transport"),  # reset mid-reply
        (httpx.ReadError("[Errno 104] Connection reset by peer"), "transport"),  # reset
        (httpx.ConnectError("connection refused"), "transport"),  # server down for a moment
        (html_page, "invalid_json"),  # an HTML error page with HTTP 200
        (httpx.Response(200, content=b'{"code": 200, "data": {"li'), "invalid_json"),  # cut off
    ],
)
def test_transient_signal_is_retried_then_succeeds(fault: Step, cause: str) -> None:
    clock = FakeClock()
    fake = FakeOkki({LIST: [fault, fault, list_ok([11, 12])]})
    with make_client(fake, clock=clock) as client:
        page = client.list_page(3, count=2)
        stats = client.stats
    assert [r["company_id"] for r in page.records] == [11, 12]
    params = fake.params(LIST)
    assert len(params) == 3
    assert params[0] == params[1] == params[2]
    assert params[0]["start_index"] == "3"
    assert stats.retries[cause] == 2
    assert stats.requests["list"] == 3
    assert len(clock.sleeps) == 2 and all(s > 0 for s in clock.sleeps)
    assert stats.seconds_backoff == pytest.approx(sum(clock.sleeps))


@pytest.mark.parametrize(
    ("answer", "throttle"),
    [
        (httpx.Response(429, headers={"Retry-After": "1"}), True),  # HTTP 429 with Retry-After
        (httpx.Response(429), True),  # HTTP 429 without Retry-After
        (ok(None, code=429, message="too many requests"), True),  # code 429 in a 200 body
        (ok(None, code=503, message="busy"), True),  # code 503 in a 200 body
        (httpx.Response(503, json={"code": 503}), True),  # HTTP 503
        (httpx.Response(500, text="oops"), False),  # a server fault: no throttle
        (ok(None, code="500"), False),  # code 500 in the body: no throttle
        (httpx.ReadTimeout("timed out"), False),  # no answer at all
        (html_page, False),  # an HTML page
    ],
)
def test_adaptive_pacing_cuts_its_rate_on_every_throttle_shape(
    answer: Step, throttle: bool
) -> None:
    fake = FakeOkki({INFO: [answer, ok(okki_info_record(5))]})
    with make_client(fake, rate_limit=AutoRate(start=8.0)) as client:
        assert client.company_info(5).data is not None
        pacer = client.pacer
    assert len(fake.calls(INFO)) == 2
    if throttle:
        assert pacer.ceiling == 8.0, "the rate of the throttle is the ceiling"
        assert pacer.rate is not None and pacer.rate < 8.0
        assert pacer.answers() == (2, 1)
    else:
        assert pacer.ceiling is None, "only throttles cut"
        assert pacer.rate is not None and pacer.rate >= 8.0
        assert pacer.answers() == (1, 0)


@pytest.mark.parametrize(
    ("answer", "until"),
    [
        # HTTP 429 asking for two hours (the fake clock reads 13:52:49 China time).
        (httpx.Response(429, headers={"Retry-After": "7200"}), "until 15:52 (China time)"),
        # Code 429 in a 200 body with a Retry-After of a day: the date is named too.
        (
            httpx.Response(
                200, json=okki_envelope(None, code=429), headers={"Retry-After": "86400"}
            ),
            "until 2025-03-08 13:52 (China time)",
        ),
    ],
)
@pytest.mark.parametrize("pacing", [AutoRate(), 10.0])  # adaptive and fixed pacing alike
def test_a_retry_after_past_the_budget_stops_every_call_at_once(
    answer: Step, until: str, pacing: AutoRate | float
) -> None:
    clock = FakeClock()
    fake = FakeOkki({INFO: [answer, ok(okki_info_record(5))]})
    with make_client(fake, clock=clock, rate_limit=pacing) as client:
        with pytest.raises(OkkiQuotaExhausted) as stopped:
            client.company_info(5)
        with pytest.raises(OkkiQuotaExhausted, match=re.escape(until)):
            list(client.company_infos([6, 7, 8]))
    message = str(stopped.value)
    assert until in message and "retry budget of 300 s" in message
    assert "\n" not in message and SECRET not in message and "tok-1" not in message
    assert len(fake.calls(INFO)) == 1, "neither retried nor any call after the stop"
    assert sum(clock.sleeps) < 1.0, "nothing slept towards the Retry-After"


@pytest.mark.parametrize(
    "retry_after",
    [
        "7",  # above every backoff step used here
        "45",  # above max_delay: still a floor
    ],
)
def test_retry_after_is_a_floor_for_the_wait(retry_after: str) -> None:
    clock = FakeClock()
    throttle = httpx.Response(429, headers={"Retry-After": retry_after})
    fake = FakeOkki({INFO: [throttle, ok(okki_info_record(5))]})
    with make_client(fake, clock=clock) as client:
        result = client.company_info(5)
    assert result.data is not None
    assert len(fake.calls(INFO)) == 2
    assert clock.sleeps == [pytest.approx(float(retry_after))]
    assert clock.sleeps[0] >= float(retry_after)


def test_body_throttle_honours_a_retry_after_header_too() -> None:
    clock = FakeClock()
    throttle = httpx.Response(
        200, json=okki_envelope(None, code=429), headers={"Retry-After": "12"}
    )
    fake = FakeOkki({INFO: [throttle, ok(okki_info_record(5))]})
    with make_client(fake, clock=clock) as client:
        client.company_info(5)
    assert clock.sleeps[0] >= 12


def test_transient_failures_past_the_attempt_cap_exhaust() -> None:
    fake = FakeOkki({LIST: [httpx.Response(503)]})
    retry = RetrySettings(max_attempts=4)
    with make_client(fake, retry=retry) as client, pytest.raises(OkkiRetriesExhausted) as info:
        client.list_page(1)
    message = str(info.value)
    assert "/v1/company/list" in message and "http5xx" in message and "start_index=1" in message
    assert SECRET not in message and "tok-1" not in message
    assert len(fake.calls(LIST)) == 4


def test_transient_failures_past_the_time_budget_exhaust() -> None:
    clock = FakeClock()
    fake = FakeOkki({LIST: [httpx.Response(429, headers={"Retry-After": "40"})]})
    retry = RetrySettings(max_attempts=100, budget_seconds=100.0)
    with (
        make_client(fake, clock=clock, retry=retry) as client,
        pytest.raises(OkkiRetriesExhausted, match="http429"),
    ):
        client.list_page(1)
    assert len(fake.calls(LIST)) == 3  # at 0, 40 and 80 s; the next would start at 120 s
    assert sum(clock.sleeps) <= 100.0


# -- business errors ----------------------------------------------------------------------------


def test_info_404_is_a_deleted_company_not_an_error() -> None:
    fake = FakeOkki({INFO: [ok(None, code=404, message="Not Found Resource")]})
    with make_client(fake) as client:
        result = client.company_info("900001")
        assert client.stats.info_not_found == 1
    assert result == InfoResult("900001", None)
    assert len(fake.calls(INFO)) == 1


def test_permanent_business_error_names_endpoint_params_and_code() -> None:
    fake = FakeOkki({LIST: [ok(None, code=10001, message="param start_time invalid")]})
    with make_client(fake) as client, pytest.raises(OkkiPermanentError) as info:
        client.list_page(2, start_time=datetime(2025, 3, 1, 0, 0, 0))
    message = str(info.value)
    assert "/v1/company/list" in message
    assert "code=10001" in message
    assert "start_time=2025-03-01 00:00:00" in message and "start_index=2" in message
    assert "param start_time invalid" in message
    assert SECRET not in message and "tok-1" not in message
    assert len(fake.calls(LIST)) == 1  # not retried


def test_list_404_is_permanent() -> None:
    """Only /v1/company/info treats code 404 as 'deleted'."""
    fake = FakeOkki({LIST: [ok(None, code=404)]})
    with make_client(fake) as client, pytest.raises(OkkiPermanentError, match="code=404"):
        client.list_page(1)


def test_http_404_is_permanent() -> None:
    fake = FakeOkki({LIST: [httpx.Response(404, text="no such route")]})
    with make_client(fake) as client, pytest.raises(OkkiPermanentError, match="HTTP 404"):
        client.list_page(1)
    assert len(fake.calls(LIST)) == 1


# -- list parameters and paging -----------------------------------------------------------------


def test_list_page_parameters() -> None:
    fake = FakeOkki({LIST: [list_ok([1])]})
    with make_client(fake, page_size=50) as client:
        client.list_page(
            4,
            start_time=datetime(2025, 3, 7, 5, 0, 0, tzinfo=UTC),  # 13:00 in China
            end_time=datetime(2025, 3, 7, 14, 0, 0),  # naive: already China time
            time_type=2,
            removed=1,
            all=0,
            group_id=77,
        )
        client.list_page(1)
    assert fake.params(LIST) == [
        {
            "start_index": "4",
            "count": "50",
            "removed": "1",
            "all": "0",
            "time_type": "2",
            "group_id": "77",
            "start_time": "2025-03-07 13:00:00",
            "end_time": "2025-03-07 14:00:00",
        },
        {"start_index": "1", "count": "50", "removed": "0", "all": "1", "time_type": "1"},
    ]


def test_format_okki_time() -> None:
    assert format_okki_time(datetime(2025, 1, 1, 16, 30, tzinfo=UTC)) == "2025-01-02 00:30:00"
    assert format_okki_time(datetime(2025, 1, 1, 16, 30)) == "2025-01-01 16:30:00"


def test_paging_stops_at_the_empty_page_after_the_last() -> None:
    ids = list(range(1, 251))
    fake = FakeOkki({LIST: [Pager(ids)]})
    with make_client(fake, page_size=100) as client:
        rows = all_rows(client)
    assert [r["company_id"] for r in rows] == ids
    # page 3 is short and the ids reached totalItem: still only the empty page 4 ends the list
    assert [p["start_index"] for p in fake.params(LIST)] == ["1", "2", "3", "4"]
    assert {p["count"] for p in fake.params(LIST)} == {"100"}


def test_total_item_as_a_string() -> None:
    fake = FakeOkki({LIST: [Pager(list(range(1, 151)), total="150")]})
    with make_client(fake, page_size=100) as client:
        pages = list(client.iter_list_pages())
    assert [p.total_item for p in pages] == [150, 150]
    assert sum(len(p.records) for p in pages) == 150
    assert len(fake.calls(LIST)) == 3


def test_paging_stops_on_an_empty_page() -> None:
    fake = FakeOkki({LIST: [Pager(list(range(1, 151)), total=500)]})  # totalItem overstates
    with make_client(fake, page_size=100) as client:
        rows = all_rows(client)
    assert len(rows) == 150
    assert [p["start_index"] for p in fake.params(LIST)] == ["1", "2", "3"]


def test_rows_repeated_across_pages_do_not_count_twice() -> None:
    """A company updated while paging jumps to the front and shows up on two pages: the loop
    keeps going while pages are full, until the list ends with an empty page."""
    steps = [list_ok([1, 2], 5), list_ok([2, 3], 5), list_ok([4, 5], 5), list_ok([], 5)]
    fake = FakeOkki({LIST: steps})
    with make_client(fake, page_size=2) as client:
        rows = all_rows(client)
    assert [r["company_id"] for r in rows] == [1, 2, 2, 3, 4, 5]
    assert len(fake.calls(LIST)) == 4


def test_a_capped_total_item_does_not_end_the_list() -> None:
    """totalItem capped at 60 for 80 companies: the pages go on until one is empty."""
    fake = FakeOkki({LIST: [Pager(list(range(1, 81)), total=60)]})
    with make_client(fake, page_size=20) as client:
        rows = all_rows(client, prefetch=True)
    assert [r["company_id"] for r in rows] == list(range(1, 81))
    assert sorted(int(p["start_index"]) for p in fake.params(LIST)) == [1, 2, 3, 4, 5]


def test_a_capped_total_item_and_a_capped_page_size_do_not_end_the_list() -> None:
    """OKKI serves 15 rows a page when asked for 20 and caps totalItem at 10 for 80 companies:
    every page looks short and the count is long passed, so only an empty page ends the list."""
    fake = FakeOkki({LIST: [Pager(list(range(1, 81)), total=10, max_count=15)]})
    with make_client(fake, page_size=20) as client:
        rows = all_rows(client, prefetch=True)
    assert [r["company_id"] for r in rows] == list(range(1, 81))


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_small_server_page_with_a_capped_total_item_lists_every_row(prefetch: bool) -> None:
    """OKKI serves 10 rows a page when asked for 20 and caps totalItem at 40 for 80 companies:
    every page is short of count and the distinct rows reach the count at page 4; only the
    empty page 9 ends the list."""
    fake = FakeOkki({LIST: [Pager(list(range(1, 81)), total=40, max_count=10)]})
    with make_client(fake, page_size=20) as client:
        rows = all_rows(client, prefetch=prefetch)
    assert [r["company_id"] for r in rows] == list(range(1, 81))
    assert max(int(p["start_index"]) for p in fake.params(LIST)) == 9


def test_a_short_page_in_the_middle_does_not_end_the_list() -> None:
    """A page shorter than the ones before, with the distinct rows at totalItem (capped): the
    list goes on to the empty page."""
    steps = [list_ok([1, 2, 3], 5), list_ok([4, 5], 5), list_ok([6, 7, 8], 5), list_ok([], 5)]
    fake = FakeOkki({LIST: steps})
    with make_client(fake, page_size=3) as client:
        rows = all_rows(client)
    assert [r["company_id"] for r in rows] == list(range(1, 9))


def test_a_short_page_before_total_item_is_reached_asks_for_one_more() -> None:
    fake = FakeOkki({LIST: [list_ok([1, 2, 3], 5), list_ok([4], 5), list_ok([], 5)]})
    with make_client(fake, page_size=3) as client:
        rows = all_rows(client)
    assert [r["company_id"] for r in rows] == [1, 2, 3, 4]
    assert len(fake.calls(LIST)) == 3


@pytest.mark.parametrize(
    "total",
    [
        None,  # the key is missing
        "many",  # not a number
        -1,  # not a count
    ],
)
def test_a_missing_or_non_numeric_total_item_is_a_permanent_error(total: object) -> None:
    data: dict[str, Any] = {"list": [okki_list_record(1)], "count": 1}
    if total is not None:
        data["totalItem"] = total
    fake = FakeOkki({LIST: [ok(data)]})
    with make_client(fake) as client, pytest.raises(OkkiPermanentError, match="totalItem"):
        client.list_page(1)
    assert len(fake.calls(LIST)) == 1


@pytest.mark.parametrize("empty", [[], None])  # list: [] and list: null
def test_an_empty_first_page_while_total_item_is_positive_is_retried(empty: object) -> None:
    glitch = ok({"list": empty, "totalItem": 3, "count": 0})
    fake = FakeOkki({LIST: [glitch, glitch, list_ok([1, 2, 3], 3), list_ok([], 3)]})
    with make_client(fake, page_size=10) as client:
        rows = all_rows(client)
        retries = client.stats.as_metadata()
    assert [r["company_id"] for r in rows] == [1, 2, 3]
    assert len(fake.calls(LIST)) == 4
    assert retries["retries_empty_first_page"] == 2


def test_an_empty_first_page_that_persists_gives_up() -> None:
    fake = FakeOkki({LIST: [ok({"list": [], "totalItem": 3, "count": 0})]})
    with (
        make_client(fake, retry=RetrySettings(max_attempts=3, base_delay=0.0)) as client,
        pytest.raises(OkkiRetriesExhausted, match="empty_first_page"),
    ):
        all_rows(client)
    assert len(fake.calls(LIST)) == 3


def test_ids_as_strings_and_ints_are_one_company() -> None:
    page1 = ok(okki_list_data([okki_list_record(1), okki_list_record("2")], total_item=3))
    page2 = ok(okki_list_data([okki_list_record("1"), okki_list_record(3)], total_item=3))
    fake = FakeOkki({LIST: [page1, page2, list_ok([])]})
    with make_client(fake, page_size=2) as client:
        rows = all_rows(client)
    assert [r["company_id"] for r in rows] == [1, "2", "1", 3]  # kept exactly as received
    assert len(fake.calls(LIST)) == 3  # page 2 was full: only the empty page 3 ends the list


def test_records_without_company_id_still_count_as_rows() -> None:
    odd: list[dict[str, Any]] = [{"name": "no id A"}, {"name": "no id B", "company_id": None}]
    page1 = ok(okki_list_data(odd, total_item=3))
    fake = FakeOkki({LIST: [page1, list_ok([9], 3), list_ok([], 3)]})
    with make_client(fake, page_size=2) as client:
        rows = all_rows(client)
    assert rows[:2] == odd and rows[2]["company_id"] == 9
    assert len(fake.calls(LIST)) == 3


def test_a_repeated_page_is_a_pagination_error() -> None:
    fake = FakeOkki({LIST: [list_ok([1, 2, 3], 300)]})  # the server ignores start_index
    with make_client(fake, page_size=3) as client:
        pages = client.iter_list_pages()
        first = next(pages)
        with pytest.raises(PaginationError, match="page 2 repeats page 1"):
            next(pages)
    assert [r["company_id"] for r in first.records] == [1, 2, 3]
    assert len(fake.calls(LIST)) == 2


def test_company_id_zero_is_an_id_like_any_other() -> None:
    # The pull keys companies by record_key; the page checks must count the same way, so a
    # page whose rows are the same companies as the page before is a repeat, id 0 included.
    page1 = ok(okki_list_data([okki_list_record(0, name="A")], total_item=300))
    page2 = ok(okki_list_data([okki_list_record("0", name="B")], total_item=300))
    fake = FakeOkki({LIST: [page1, page2]})
    with make_client(fake, page_size=1) as client:
        pages = client.iter_list_pages()
        next(pages)
        with pytest.raises(PaginationError, match="page 2 repeats page 1"):
            next(pages)


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"company_id": 0}, "0"),  # zero is an id (cleaning decides whether it is usable)
        ({"company_id": "0"}, "0"),
        ({"company_id": " 42 "}, "42"),  # text and numbers are one company
        ({"company_id": 42}, "42"),
    ],
)
def test_record_key_is_the_company_id_as_text(record: dict[str, Any], key: str) -> None:
    assert record_key(record) == key


@pytest.mark.parametrize("missing", [None, "", "  "])
def test_a_record_without_an_id_is_keyed_by_its_content(missing: object) -> None:
    a, b = {"company_id": missing, "name": "A"}, {"company_id": missing, "name": "B"}
    assert record_key(a).startswith("raw:") and record_key(a) != record_key(b)
    assert record_key({"name": "A"}) != record_key(a)  # an absent id differs from a blank one


def test_max_pages_is_a_pagination_error() -> None:
    fake = FakeOkki({LIST: [Pager(list(range(1, 1001)))]})
    with make_client(fake, page_size=10, max_pages=3) as client:
        seen: list[int] = []
        with pytest.raises(PaginationError, match="max_pages=3"):
            for page in client.iter_list_pages():
                seen.extend(r["company_id"] for r in page.records)
    assert seen == list(range(1, 31))
    assert len(fake.calls(LIST)) == 3


def test_records_are_kept_as_received() -> None:
    raw = okki_list_record("55280038", archive_type="1", user_id=["1", "2"], extra={"k": [1]})
    fake = FakeOkki({LIST: [ok({"list": [raw], "totalItem": "1", "count": "100"})]})
    with make_client(fake) as client:
        page = client.list_page(1)
    assert page.records == [raw]
    assert (page.total_item, page.raw_count) == (1, "100")


def test_list_requests_pass_the_rate_limiter() -> None:
    clock = FakeClock()
    sent: list[float] = []

    def stamp(request: httpx.Request) -> httpx.Response:
        sent.append(clock())
        return Pager(list(range(1, 41)))(request)

    fake = FakeOkki({LIST: [stamp]})
    with make_client(fake, clock=clock, rate_limit=4.0, page_size=2) as client:
        assert len(all_rows(client)) == 40
        throttled = client.stats.seconds_throttled
    assert len(sent) == 21  # 20 full pages, then the empty one that ends the list
    assert max(sum(1 for u in sent if t <= u <= t + 1.0) for t in sent) <= 4 + 1
    assert sent[-1] - sent[0] == pytest.approx(20 / 4)
    assert throttled == pytest.approx(20 / 4)


# -- detail fan-out -----------------------------------------------------------------------------


def test_company_infos_returns_every_id_once_with_bounded_concurrency() -> None:
    in_flight = 0
    peak = 0
    joined = threading.Condition()

    def info(request: httpx.Request) -> httpx.Response:
        # The first call waits for a second to join it (no sleep racing the threads' start).
        nonlocal in_flight, peak
        with joined:
            in_flight += 1
            peak = max(peak, in_flight)
            joined.notify_all()
            joined.wait_for(lambda: peak > 1, timeout=120)
        with joined:
            in_flight -= 1
        cid = request.url.params["company_id"]
        if int(cid) % 10 == 0:
            return ok(None, code=404, message="Not Found Resource")
        return ok(okki_info_record(cid))

    fake = FakeOkki({INFO: [info]})
    ids = list(range(1, 61))
    with make_client(fake, concurrency=4) as client:
        results = list(client.company_infos(ids))
        not_found = client.stats.info_not_found
    assert sorted(int(r.company_id) for r in results) == ids
    assert {r.company_id for r in results if r.data is None} == {str(i) for i in ids if i % 10 == 0}
    assert all(r.data["company_id"] == r.company_id for r in results if r.data is not None)
    assert not_found == 6
    assert sorted(int(p["company_id"]) for p in fake.params(INFO)) == ids
    assert len(fake.calls(TOKEN)) == 1  # one shared token
    assert 1 < peak <= 4


def test_company_infos_streams_its_input() -> None:
    pulled = 0

    def ids() -> Iterator[int]:
        nonlocal pulled
        for i in range(1, 1001):
            pulled += 1
            yield i

    fake = FakeOkki({INFO: [lambda req: ok(okki_info_record(req.url.params["company_id"]))]})
    with make_client(fake, concurrency=3) as client:
        stream = client.company_infos(ids())
        assert isinstance(stream, Generator)
        next(stream)
        assert pulled <= 2 * 3 + 1  # not a million futures at once
        stream.close()
    assert len(fake.calls(INFO)) <= 2 * 3 + 1


def test_company_infos_shares_one_renewal_between_threads() -> None:
    clock = FakeClock()
    fake = FakeOkki({INFO: [lambda req: ok(okki_info_record(req.url.params["company_id"]))]})
    with make_client(fake, clock=clock, concurrency=8) as client:
        client.company_info(0)
        fake.revoked.add("tok-1")
        results = list(client.company_infos(range(1, 41)))
    assert len(results) == 40
    assert fake.issued == ["tok-1", "tok-2"]  # one renewal for all the threads


def test_company_infos_propagates_a_permanent_error() -> None:
    def info(request: httpx.Request) -> httpx.Response:
        if request.url.params["company_id"] == "13":
            return httpx.Response(400, json={"message": "bad request"})
        return ok(okki_info_record(request.url.params["company_id"]))

    fake = FakeOkki({INFO: [info]})
    with make_client(fake, concurrency=2) as client, pytest.raises(OkkiPermanentError) as exc:
        list(client.company_infos(range(1, 30)))
    assert "company_id=13" in str(exc.value) and "code=400" in str(exc.value)


def test_company_infos_yields_the_calls_in_flight_when_another_fails() -> None:
    """A permanent failure stops the fan-out, but an answer already on its way is still handed
    over (a failed pull keeps it): CI once saw one answered payload missing from the kept ones,
    because the failure was raised before the answer that completed with it was yielded."""
    failed = threading.Event()
    answered: list[str] = []

    def info(request: httpx.Request) -> httpx.Response:
        cid = request.url.params["company_id"]
        if cid == "2":
            failed.set()
            return httpx.Response(400, json={"message": "bad request"})
        if cid == "1":
            assert failed.wait(120), "company 2 was never asked"
        answered.append(cid)
        return ok(okki_info_record(cid))

    fake = FakeOkki({INFO: [info]})
    got: list[str] = []
    with make_client(fake, concurrency=2) as client, pytest.raises(OkkiPermanentError):
        for result in client.company_infos([1, 2, 3, 4, 5]):
            got.append(result.company_id)
    assert "1" in answered
    assert sorted(got) == sorted(answered), "an answered payload was dropped"


@pytest.mark.parametrize("code", [403, "10002"])  # an int code, and one sent as a string
def test_info_answering_another_business_code_is_kept_for_that_company(code: object) -> None:
    def info(request: httpx.Request) -> httpx.Response:
        if request.url.params["company_id"] == "13":
            return ok(None, code=code, message="no permission")
        return ok(okki_info_record(request.url.params["company_id"]))

    fake = FakeOkki({INFO: [info]})
    with make_client(fake, concurrency=2) as client:
        results = {r.company_id: r for r in client.company_infos(range(1, 30))}
    assert len(results) == 29
    assert (results["13"].data, results["13"].code) == (None, int(str(code)))
    assert all(r.data is not None and r.code is None for c, r in results.items() if c != "13")


def test_info_scope_refusal_still_fails() -> None:
    fake = FakeOkki({INFO: [ok(None, code=403, message="no permission company scopes")]})
    with make_client(fake) as client, pytest.raises(OkkiAuthError, match="scope"):
        client.company_info(7)


def test_stats_metadata_after_a_sync() -> None:
    fake = FakeOkki({LIST: [httpx.Response(429), Pager([1, 2, 3])], INFO: [ok(None, code=404)]})
    with make_client(fake, page_size=2) as client:
        all_rows(client)
        list(client.company_infos([1, 2]))
        meta = client.stats.as_metadata()
    assert meta["requests_list"] == 4  # 429, page 1, page 2, the empty page 3
    assert meta["requests_info"] == 2
    assert meta["requests_token"] == 1
    assert meta["requests_total"] == 7
    assert meta["retries_http429"] == 1 and meta["retries_total"] == 1
    assert meta["info_not_found_for_listed"] == 2
    assert {"seconds_throttled", "seconds_backoff", "retries_token_renewed"} <= set(meta)
    assert json.loads(json.dumps(meta)) == meta  # plain numbers only


def test_a_transient_token_endpoint_failure_is_retried() -> None:
    fake = FakeOkki(
        {INFO: [ok(okki_info_record(1))]},
        token_steps=[
            httpx.Response(503, text="busy"),
            httpx.Response(200, json=okki_token_reply()),
        ],
    )
    fake.issued.append("tok-1")
    with make_client(fake) as client:
        result = client.company_info(1)
        retries = client.stats.retries
    assert result.data is not None
    assert len(fake.calls(TOKEN)) == 2
    assert len(fake.calls(INFO)) == 1
    assert retries["http5xx"] == 1


def test_logs_never_carry_the_secret_or_a_token(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeOkki({LIST: [httpx.Response(429), Pager([1, 2, 3])], INFO: [denied(200), ok(None)]})
    with caplog.at_level(logging.DEBUG), make_client(fake, page_size=2) as client:
        all_rows(client)
        client.company_info(1)
    assert "list page 1" in caplog.text  # pages are logged at DEBUG
    assert SECRET not in caplog.text
    assert "tok-1" not in caplog.text and "tok-2" not in caplog.text


def test_an_unreachable_host_at_first_contact_fails_at_once_naming_the_setting() -> None:
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    with make_client(refuse) as client, pytest.raises(OkkiError) as info:
        client.list_page(1)
    assert attempts == [TOKEN], "a host never reached is not retried"
    assert "OKKI_BASE_URL" in str(info.value) and "okki.test" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_connection_error_after_first_contact_is_retried() -> None:
    fake = FakeOkki({LIST: [list_ok([1])]})
    refused = {"left": 2}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path == LIST and refused["left"]:
            refused["left"] -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return fake(request)

    with make_client(flaky) as client:
        page = client.list_page(1)
        assert client.stats.retries["transport"] == 2
    assert [r["company_id"] for r in page.records] == [1]
