"""Both simulators together, with named fault profiles: what the demo, soak, bench and tests run.

Profiles:
- ``none``: clean services (latency only);
- ``moderate``: a few percent of OKKI calls fail or throttle, some drift while paging, a few
  target batches (one in ten) throttled or committed-then-dropped;
- ``heavy``: 20 % OKKI faults, throttling in every shape, latency spikes past the client's
  timeout, 10 % drift, a token revoked mid-window, 10 % dropped target replies, 429s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator
from okki_assets.simulator.target import TargetSimConfig, TargetSimulator

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"  # the simulator's own, not a real credential
DEMO_TARGET_TOKEN = "demo-target-token"


@dataclass(frozen=True)
class FaultProfile:
    name: str
    okki: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)


PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile("none", okki={"latency": 0.002}),
    "moderate": FaultProfile(
        "moderate",
        okki={"latency": 0.002, "fault_rate": 0.03, "drift_rate": 0.03},
        target={"throttle_rate": 0.1, "drop_reply_rate": 0.1, "retry_after": 0.2},
    ),
    "heavy": FaultProfile(
        "heavy",
        okki={
            "latency": 0.002,
            "fault_rate": 0.2,
            "quota_rps": 150.0,
            "latency_spike_rate": 0.01,
            "latency_spike": 1.5,
            "drift_rate": 0.1,
            "revoke_token_after": 400,
        },
        target={
            "throttle_rate": 0.05,
            "drop_reply_rate": 0.1,
            "error_rate": 0.05,
            "retry_after": 0.2,
        },
    ),
}


def fault_profile(name: str) -> FaultProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown fault profile {name!r}; choose from {sorted(PROFILES)}"
        ) from None


@dataclass
class RunningSimulators:
    okki: OkkiSimulator
    target: TargetSimulator
    okki_url: str
    target_url: str


@contextmanager
def running_simulators(
    *,
    companies: int = 3000,
    days: int = 14,
    profile: FaultProfile | None = None,
    seed: int = 7,
    okki_port: int = 0,
    target_port: int = 0,
    okki_overrides: dict[str, Any] | None = None,
    target_overrides: dict[str, Any] | None = None,
    okki: OkkiSimulator | None = None,
) -> Iterator[RunningSimulators]:
    """Start both simulators on 127.0.0.1 (free ports by default) and stop them afterwards."""
    profile = profile or PROFILES["none"]
    okki_sim = okki or OkkiSimulator.demo(
        n=companies, days=days, seed=seed, **{**profile.okki, **(okki_overrides or {})}
    )
    target_sim = TargetSimulator(
        replace(TargetSimConfig(), seed=seed, **{**profile.target, **(target_overrides or {})})
    )
    with (
        ServerThread(okki_sim, port=okki_port) as o,
        ServerThread(target_sim, port=target_port) as t,
    ):
        yield RunningSimulators(okki_sim, target_sim, o.url, t.url)


__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_TARGET_TOKEN",
    "OkkiSimConfig",
    "PROFILES",
    "FaultProfile",
    "RunningSimulators",
    "fault_profile",
    "running_simulators",
]
