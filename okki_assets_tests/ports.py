"""Free ports for servers that a test starts in another process.

Asking the kernel for port 0 and handing the number to a process that binds it seconds later is a
race on a busy machine: every outgoing connection and every ``bind(0)`` of the other xdist workers
draws from the same ephemeral range (32768-60999 on Linux), and once in three CI runs one of them
took the port first (``dg dev`` then logs "address already in use" and never serves).

So the ports handed out here come from below the ephemeral range, from a block of its own for each
xdist worker: the kernel never gives them out, and no two workers share one. Each candidate is still
checked by binding it, for a process outside the suite that may hold it.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

BASE = 20_000
BLOCK = 400  # ports per xdist worker: 24 workers fit below 29,600
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_INDEX = int(_WORKER) if _WORKER.isdecimal() else 0
_FIRST = BASE + (_INDEX % 24) * BLOCK
# A random start inside the block: two suites running at once rarely meet.
_NEXT = itertools.count(random.randrange(BLOCK))


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port of this worker's block that nothing holds now; each call gives the next one."""
    for _ in range(BLOCK):
        port = _FIRST + next(_NEXT) % BLOCK
        if _bindable(port, host):
            return port
    raise RuntimeError(f"no free port in {_FIRST}-{_FIRST + BLOCK - 1}")
