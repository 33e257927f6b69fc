"""``--target k3cloud`` for ``demo`` and ``dev``: the Kingdee K/3 Cloud simulator as the target.

The simulator (okki_assets/simulator/k3cloud.py) runs on loopback beside OKKI's, with faults that
follow the demo's profile; the pipeline reaches it through ``TARGET_URL=k3cloud+http://...``
and the simulator's own demo credentials, exactly as it would reach a Kingdee server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from okki_assets.resources import K3CloudConfig, TargetResource
from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.k3cloud import K3CloudSimConfig, K3CloudSimulator

#: Kingdee faults per demo profile (the late commits are waited out: SETTLE_SECONDS).
FAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "moderate": {"drop_reply_rate": 0.05, "html_before_rate": 0.03, "limit_rate": 0.03},
    "heavy": {
        "drop_reply_rate": 0.1,
        "html_before_rate": 0.05,
        "html_after_rate": 0.05,
        "http519_rate": 0.03,
        "limit_rate": 0.05,
        "late_commit_rate": 0.05,
        "max_batch": 20,
        "session_max_calls": 200,
    },
}
SETTLE_SECONDS = 1.0  # past the simulator's late commits (0.5 s)


@dataclass(frozen=True)
class RunningKingdee:
    sim: K3CloudSimulator
    url: str  # TARGET_URL

    def resource(self) -> TargetResource:
        c = self.sim.config
        return TargetResource(
            url=self.url,
            k3cloud=K3CloudConfig(
                acct_id=c.acct_id,
                username=c.username,
                app_id=c.app_id,
                app_secret=c.app_secret,
                settle_seconds=SETTLE_SECONDS,
            ),
        )

    def environment(self) -> dict[str, str]:
        c = self.sim.config
        return {
            "TARGET_URL": self.url,
            "K3CLOUD_ACCT_ID": c.acct_id,
            "K3CLOUD_USERNAME": c.username,
            "K3CLOUD_APP_ID": c.app_id,
            "K3CLOUD_APP_SECRET": c.app_secret,
            "K3CLOUD_SETTLE_SECONDS": str(SETTLE_SECONDS),
        }

    def summary(self) -> str:
        held = self.sim.customers()
        forbidden = sum(c["FForbidStatus"] == "B" for c in held)
        audited = sum(c["FDocumentStatus"] == "C" for c in held)
        faults = sum(v for k, v in self.sim.stats.items() if k.startswith("fault."))
        return (
            f"Kingdee now holds {len(held)} customers ({audited} audited, {forbidden} forbidden;"
            f" {faults} faults survived, {len(self.sim.duplicates())} numbers created twice)"
        )


@contextmanager
def running_kingdee(profile: str, seed: int, port: int = 0) -> Iterator[RunningKingdee]:
    sim = K3CloudSimulator(K3CloudSimConfig(seed=seed, **FAULTS.get(profile, {})))
    with ServerThread(sim, port=port) as server:
        yield RunningKingdee(sim, f"k3cloud+{server.url}/k3cloud/")


@contextmanager
def kingdee_if(wanted: bool, profile: str, seed: int) -> Iterator[RunningKingdee | None]:
    """``running_kingdee`` when ``wanted``, else None (the batch target simulator serves)."""
    if not wanted:
        yield None
        return
    with running_kingdee(profile, seed) as kingdee:
        yield kingdee
