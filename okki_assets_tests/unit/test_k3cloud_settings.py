"""The Kingdee settings: K3CLOUD_* read by definitions.py (secrets as EnvVar names, never values),
checked into K3CloudSettings with one clear line per mistake, the built-in mapping chosen for a
k3cloud+ TARGET_URL; ``demo``/``dev --target k3cloud`` replace a shell's real Kingdee settings."""

from __future__ import annotations

from typing import Any

import pytest

from okki_assets import definitions
from okki_assets.cli.dev import SIMULATOR_VARIABLES
from okki_assets.cli.kingdee import RunningKingdee
from okki_assets.errors import ConfigError
from okki_assets.mapping import parse_mapping
from okki_assets.resources import K3CloudConfig, TargetResource
from okki_assets.simulator.k3cloud import K3CloudSimulator
from okki_assets.targets.k3cloud import K3CloudTarget
from okki_assets.targets.k3cloud_config import k3cloud_settings

URL = "k3cloud+https://erp.example.com/k3cloud/"
ENV = {
    "TARGET_URL": URL,
    "K3CLOUD_ACCT_ID": "6512f0c1",
    "K3CLOUD_USERNAME": "okki-sync",
    "K3CLOUD_APP_ID": "300001_X1teXUtXXFoMG1FfXVZZTE9DXAATUhAS",
    "K3CLOUD_APP_SECRET": "real-secret-value",
    "K3CLOUD_ORG": "101",
    "K3CLOUD_BATCH_SIZE": "20",
    "K3CLOUD_COUNTRY_MAP": "CN=China, US=USA",
}


def test_environment_becomes_settings_and_the_secret_stays_a_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    config = definitions._k3cloud_from_env(definitions._Reader())
    assert config.app_secret == "K3CLOUD_APP_SECRET"  # a dg.EnvVar: resolved at run start only
    assert (config.org, config.batch_size, config.lcid, config.currency) == (
        "101",
        20,
        2052,
        "PRE001",
    )
    resolved = K3CloudConfig(**{**config.model_dump(), "app_secret": "real-secret-value"})
    target = TargetResource(url=URL, k3cloud=resolved)
    with target.open() as opened:
        assert isinstance(opened, K3CloudTarget)
        s = opened.settings
        assert (s.base_url, s.org, s.country_map) == (
            "https://erp.example.com/k3cloud/",
            "101",
            {"CN": "China", "US": "USA"},
        )
        assert "real-secret-value" not in repr(s) + repr(target.settings())
    assert target.mapping().keys == ("id", "FName", "FShortName", "FTEL", "FCOUNTRY")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"username": "u", "app_id": "a_b", "app_secret": "s"}, "K3CLOUD_ACCT_ID is empty"),
        ({"acct_id": "a", "username": "u"}, "K3CLOUD_APP_ID and K3CLOUD_APP_SECRET"),
        # a control character in a secret: named, never shown
        ({"acct_id": "a", "username": "u", "password": "pw\x01"}, "K3CLOUD_PASSWORD contains"),
        ({"acct_id": "a", "username": "u", "password": "p", "country_map": "CN"}, "ISO=number"),
    ],
)
def test_bad_settings_are_one_clear_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        k3cloud_settings(URL, options)
    assert "pw\x01" not in str(info.value)


def test_a_mapping_may_not_set_the_number() -> None:
    with pytest.raises(ConfigError, match="FNumber is set by okki-assets"):
        K3CloudTarget(
            k3cloud_settings(URL, {"acct_id": "a", "username": "u", "password": "p"}),
            parse_mapping({"fields": {"id": {"column": "company_id"}, "FNumber": "serial_id"}}),
        )


def test_dev_replaces_every_kingdee_variable_of_the_shell() -> None:
    env = RunningKingdee(K3CloudSimulator(), "k3cloud+http://127.0.0.1:1/k3cloud/").environment()
    assert set(env) <= set(SIMULATOR_VARIABLES)
    assert {"K3CLOUD_PASSWORD", "K3CLOUD_COUNTRY_MAP", "K3CLOUD_NUMBER_PREFIX"} <= set(
        SIMULATOR_VARIABLES
    )
