"""``serve_forever`` (``okki-assets simulate``) stops cleanly on Ctrl-C at any moment, even while
its servers are still starting: CI once sent SIGINT after the first simulator answered and before
the second had started, and the command died with a KeyboardInterrupt traceback."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from types import FrameType

import pytest

from okki_assets.simulator.http import ServerThread, SimRequest, SimResponse, serve_forever
from okki_assets_tests.ports import free_port

STARTING = {ServerThread.__init__.__code__, ServerThread.start.__code__}


def _hello(request: SimRequest) -> SimResponse:
    return SimResponse(200, b"{}")


def _starting(frame: FrameType | None) -> ServerThread | None:
    """The server the main thread is constructing or starting at ``frame``, if any."""
    while frame is not None:
        if frame.f_code in STARTING:
            server = frame.f_locals["self"]
            assert isinstance(server, ServerThread)
            return server
        frame = frame.f_back
    return None


class CtrlC:
    """Sends SIGINT (the key's signal) while the ``nth`` server is starting: a timer looks
    every half millisecond where the main thread is."""

    def __init__(self, nth: int) -> None:
        self.nth, self.seen, self.sent = nth, [], False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        server = _starting(frame)
        if server is not None and all(server is not s for s in self.seen):
            self.seen.append(server)
        if server is not None and len(self.seen) == self.nth:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        else:
            signal.setitimer(signal.ITIMER_REAL, 0.0005)


@pytest.fixture
def default_signals() -> Iterator[None]:
    """SIGINT as the CLI leaves it: KeyboardInterrupt wherever the main thread is."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGALRM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_ctrl_c_while_a_simulator_starts_stops_them_all_without_a_traceback(
    default_signals: None, nth: int
) -> None:
    ports = [free_port(), free_port(), free_port()]
    ctrl_c = CtrlC(nth)
    signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.0005)
    try:
        serve_forever({f"sim{i}": (_hello, port) for i, port in enumerate(ports)})
    except KeyboardInterrupt:
        pytest.fail(f"Ctrl-C while server {nth} started escaped: the command ends in a traceback")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert ctrl_c.sent
    assert all(_bindable(port) for port in ports), "a simulator still holds its port"
