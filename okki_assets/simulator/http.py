"""The simulators' HTTP plumbing, shared by the OKKI and the target simulator.

A simulator is a plain object with ``handle(SimRequest) -> SimResponse``: no framework in the
business logic. This module turns such a handler into

- an ASGI application (``asgi_app``), served by uvicorn on 127.0.0.1 (``ServerThread``), so tests
  and the demo speak real HTTP over loopback; and
- an ``httpx.MockTransport`` (``mock_transport``), so unit tests of one class run in-process.

Faults that are not an HTTP answer are expressed on the response: ``delay`` (seconds to wait
before answering: latency, or a spike past the client's timeout) and ``fault="reset"`` (the
connection is closed in the middle of the reply, which a client sees as a protocol error).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl

import httpx
import uvicorn

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    fault: Literal["reset"] | None = None

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> SimResponse:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        hdrs = {"content-type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status=status, body=body, headers=hdrs)

    @classmethod
    def text(cls, text: str, status: int = 200) -> SimResponse:
        return cls(status=status, body=text.encode("utf-8"), headers={"content-type": "text/html"})


class Handler(Protocol):
    def handle(self, request: SimRequest) -> SimResponse: ...


def asgi_app(handler: Handler) -> Callable[..., Any]:
    """Wrap a simulator as an ASGI 3 application."""

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = SimRequest(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        response = handler.handle(request)
        if response.delay > 0:
            await asyncio.sleep(response.delay)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        if response.fault == "reset":
            # Promise a body, send half of it and hang up: the client sees the connection
            # drop in the middle of the reply, as with a reset by a proxy.
            promised = max(len(response.body), 64)
            headers.append((b"content-length", str(promised).encode()))
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": response.body[:8], "more_body": True})
            return
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    return app


def mock_transport(handler: Handler, *, sleep: bool = True) -> httpx.MockTransport:
    """Wrap a simulator as an in-process httpx transport (unit tests of one class)."""

    def handle(request: httpx.Request) -> httpx.Response:
        sim_request = SimRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.url.params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.read(),
        )
        response = handler.handle(sim_request)
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if response.delay > 0:
            if read_timeout is not None and response.delay >= read_timeout:
                if sleep:
                    time.sleep(read_timeout)
                raise httpx.ReadTimeout("simulated read timeout", request=request)
            if sleep:
                time.sleep(response.delay)
        if response.fault == "reset":
            raise httpx.RemoteProtocolError("simulated connection reset", request=request)
        return httpx.Response(
            response.status, headers=response.headers, content=response.body, request=request
        )

    return httpx.MockTransport(handle)


class ServerThread:
    """A simulator served over real HTTP on 127.0.0.1, in a background thread.

    ``port=0`` picks a free port. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, handler: Handler, *, port: int = 0, host: str = LOOPBACK) -> None:
        if host not in (LOOPBACK, "localhost"):
            raise ValueError("the simulators bind the loopback interface only")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._prepare(handler, port)
        except BaseException:  # a port taken, or Ctrl-C: the socket is not left open
            self._sock.close()
            raise

    def _prepare(self, handler: Handler, port: int) -> None:
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = uvicorn.Config(
            asgi_app(handler),
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=1024,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            daemon=True,
            name=f"sim-{self.port}",
        )

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"simulator on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.ident is not None:  # started (a Ctrl-C may come before)
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(handlers: Mapping[str, tuple[Handler, int]]) -> None:
    """Serve several simulators in the foreground until SIGINT or SIGTERM (``okki-assets
    simulate``).

    The signals only ask for the stop: it comes once every server has started, whenever they
    arrive (a script that waits for the first port to answer and then interrupts must not catch
    the second server half-started, leaving a traceback and a port held)."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    servers: list[ServerThread] = []
    log = logging.getLogger(__name__)
    try:
        for name, (handler, port) in handlers.items():
            servers.append(ServerThread(handler, port=port).start())
            log.info("%s simulator listening on %s", name, servers[-1].url)
        while not stop.wait(3600):
            pass
    finally:
        for server in servers:
            server.stop()
        for sig, previous_handler in previous.items():
            signal.signal(sig, previous_handler)
