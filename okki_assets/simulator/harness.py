"""Both simulators together, with named fault profiles: what the demo, soak, bench and tests run.

Profiles:
- ``none``: clean services (latency only);
- ``moderate``: a few percent of OKKI calls fail or throttle, some drift while paging, a few
  target batches (one in ten) throttled or committed-then-dropped;
- ``heavy``: the fault matrix of the soak (``benchmarks.soak``): 20 % of OKKI calls failing
  (5xx in the status and in the body, connection resets, HTML pages), a quota answered in every
  throttle shape, latency spikes of 1.5 s (past a client timeout of 1 s), 10 % drift while
  paging, every access token revoked after 150 calls (mid-window); at the target 10 % of batches
  committed with the reply dropped, 5 % answered 429 with Retry-After, 5 % 5xx, and per-record
  rejections of names longer than the target accepts (``reject_overlong_names``).
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


TARGET_NAME_LIMIT = 200


def reject_overlong_names(record: dict[str, Any]) -> str | None:
    """A target-side validation rule: names longer than ``TARGET_NAME_LIMIT`` are refused."""
    name = record.get("fullName")
    if isinstance(name, str) and len(name) > TARGET_NAME_LIMIT:
        return f"fullName is longer than {TARGET_NAME_LIMIT} characters"
    return None


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
            "quota_rps": 80.0,
            "quota_burst": 20.0,
            "latency_spike_rate": 0.02,
            "latency_spike": 1.5,
            "drift_rate": 0.1,
            "revoke_token_after": 150,
        },
        target={
            "throttle_rate": 0.05,
            "drop_reply_rate": 0.1,
            "error_rate": 0.05,
            "retry_after": 0.2,
            "reject_rule": reject_overlong_names,
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
    target: TargetSimulator | None = None,
) -> Iterator[RunningSimulators]:
    """Start both simulators on 127.0.0.1 (free ports by default) and stop them afterwards.

    ``okki`` and ``target`` serve ready-made simulators (a test's subclass, say) instead of
    building them from the profile."""
    profile = profile or PROFILES["none"]
    okki_sim = okki or OkkiSimulator.demo(
        n=companies, days=days, seed=seed, **{**profile.okki, **(okki_overrides or {})}
    )
    target_sim = target or TargetSimulator(
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
