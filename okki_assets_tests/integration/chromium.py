"""Headless Chromium driven over its DevTools protocol, for tests that look at the Dagster UI.

The distribution's ``chromium`` package and a websocket are all it takes: no browser download, no
driver. One browser per ``Chromium`` context, with a fresh profile in a temporary folder, on a
loopback debugging port; one page, driven with a handful of protocol calls (navigate, evaluate a
script, capture a screenshot).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

#: Where Debian's package puts it (and Ubuntu's snap wrapper, as a fallback).
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # a free port, written to DevToolsActivePort in the profile
)
WIDTH, HEIGHT = 1440, 900
#: The rectangle around the smallest visible element showing each needle (and ``also``).
_BOUNDS_JS = """(needles, also) => {
  const boxes = needles.map((needle) => {
    let best = null;
    for (const el of document.querySelectorAll("body *")) {
      const text = el.innerText || "";
      if (!text.includes(needle) || !text.includes(also) || el.offsetParent === null) continue;
      const r = el.getBoundingClientRect();
      if (!best || r.width * r.height < best.width * best.height) best = r;
    }
    return best;
  });
  if (boxes.some((b) => !b)) return null;
  const left = Math.min(...boxes.map((b) => b.left));
  const top = Math.min(...boxes.map((b) => b.top));
  const right = Math.max(...boxes.map((b) => b.right));
  const bottom = Math.max(...boxes.map((b) => b.bottom));
  return {x: left, y: top, width: right - left, height: bottom - top};
}"""


#: The rectangles of the visible elements whose whole text is one of ``labels``.
_LABELLED_JS = """(labels) => {
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!labels.includes((el.innerText || "").trim()) || el.offsetParent === null) continue;
    const r = el.getBoundingClientRect();
    found.push({x: r.left, y: r.top, width: r.width, height: r.height});
  }
  return found;
}"""


def union(rects: list[dict[str, float]], pad: int = 24) -> dict[str, float]:
    """The rectangle around ``rects``, ``pad`` pixels wider on each side."""
    left = min(r["x"] for r in rects) - pad
    top = min(r["y"] for r in rects) - pad
    right = max(r["x"] + r["width"] for r in rects) + pad
    bottom = max(r["y"] + r["height"] for r in rects) + pad
    return {"x": max(0.0, left), "y": max(0.0, top), "width": right - left, "height": bottom - top}


def find_chromium() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class Chromium:
    """``with Chromium() as page: page.goto(url); page.wait_for_text("...")``."""

    def __init__(self, executable: str | None = None, timeout: float = 120.0) -> None:
        found = executable or find_chromium()
        if not found:
            raise FileNotFoundError("chromium not found: apt-get install chromium")
        self.executable = found
        self.timeout = timeout
        self._profile = Path(tempfile.mkdtemp(prefix="okki-chromium-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._stack = ExitStack()
        self._next_id = 0

    def __enter__(self) -> Chromium:
        self._proc = subprocess.Popen(
            [
                self.executable,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = self._debugging_port()
            pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
            page = next(p for p in pages if p["type"] == "page")
            self._ws = self._stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=60)
            )
            self.call("Page.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self._ws = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _debugging_port(self) -> int:
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not marker.exists() or not marker.read_text().strip():
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its debugging port")
            time.sleep(0.05)
        return int(marker.read_text().split()[0])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One protocol call; events that arrive meanwhile are dropped."""
        assert self._ws is not None, "use Chromium as a context manager"
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=self.timeout))
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def wait_for_text(self, *needles: str, timeout: float | None = None) -> str:
        """The page's text once it contains every needle (the UI renders asynchronously)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise AssertionError(f"{missing} not on the page; it shows:\n{text[:3000]}")
            time.sleep(0.25)

    def click_text(
        self, label: str, selector: str = "button, a, [role=tab]", last: bool = False
    ) -> None:
        """Click the first (or last) visible element matching ``selector`` labelled ``label``."""
        clicked = self.evaluate(
            f"""(() => {{
              const label = {json.dumps(label)};
              const found = [...document.querySelectorAll({json.dumps(selector)})].filter(
                (el) => el.innerText && el.innerText.trim() === label && el.offsetParent !== null);
              const el = found[{"found.length - 1" if last else "0"}];
              if (!el) return false;
              el.click();
              return true;
            }})()"""
        )
        if not clicked:
            raise AssertionError(f"no {selector!r} labelled {label!r} on the page")

    def bounds_of(self, *needles: str, containing: str = "", pad: int = 24) -> dict[str, float]:
        """The rectangle around the smallest elements showing each needle (and ``containing``)."""
        rect = self.evaluate(
            f"({_BOUNDS_JS})({json.dumps(list(needles))}, {json.dumps(containing)})"
        )
        if rect is None:
            raise AssertionError(f"not all of {needles} shown with {containing!r}")
        return {
            "x": max(0.0, rect["x"] - pad),
            "y": max(0.0, rect["y"] - pad),
            "width": rect["width"] + 2 * pad,
            "height": rect["height"] + 2 * pad,
        }

    def labelled(self, *labels: str) -> list[dict[str, float]]:
        """The rectangles of the visible elements whose whole text is one of ``labels``."""
        return list(self.evaluate(f"({_LABELLED_JS})({json.dumps(list(labels))})"))

    def press(self, key: str, *, alt: bool = False) -> None:
        """Press and release a letter key (``alt``: with Alt held), e.g. a UI's shortcut."""
        letter = key.upper()
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                modifiers=1 if alt else 0,
                key=key,
                code=f"Key{letter}",
                windowsVirtualKeyCode=ord(letter),
            )

    def settled(
        self, measure: Callable[[], list[dict[str, float]]], timeout: float | None = None
    ) -> list[dict[str, float]]:
        """``measure()`` once two readings a quarter second apart agree (a layout that has
        stopped moving, such as a graph zooming to fit)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last = measure()
        while True:
            time.sleep(0.25)
            now = measure()
            if now == last:
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"the layout kept moving: {last} then {now}")
            last = now

    def screenshot(
        self, path: Path, clip: dict[str, float] | None = None, scale: float = 1
    ) -> None:
        """A PNG of the viewport, or of ``clip`` (page pixels) magnified by ``scale``."""
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": scale}
        shot = self.call("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
