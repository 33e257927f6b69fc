"""The Kingdee target's configuration: the built-in mapping and the K3CLOUD_* settings.

``FNumber`` is ``K3CLOUD_NUMBER_PREFIX`` + the OKKI company id and ``FCUSTID`` is Kingdee's:
a mapping may set any other ``BD_Customer`` key (custom ``F_...`` fields included), never those.
Organisation and currency numbers come from the settings; ``FCOUNTRY`` (an ISO code in the
record) goes through ``K3CLOUD_COUNTRY_MAP`` to the account's 国家 number (an unmapped code is
sent as it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from okki_assets.clients.http import checked_url, credential
from okki_assets.errors import ConfigError
from okki_assets.mapping import TargetMapping, load_mapping, parse_mapping
from okki_assets.targets.k3cloud_api import K3CloudSettings

OWN_KEYS = frozenset({"fnumber", "fcustid"})

#: The built-in Kingdee mapping (a mapping file replaces it; any BD_Customer key may be set).
K3CLOUD_MAPPING_SPEC: dict[str, Any] = {
    "default": "",
    "fields": {
        "id": {"column": "company_id", "type": "str"},
        "FName": "name",
        "FShortName": "short_name",
        "FTEL": "phone",
        "FCOUNTRY": "country",
    },
}


def k3cloud_mapping() -> TargetMapping:
    return parse_mapping(K3CLOUD_MAPPING_SPEC, "<built-in k3cloud mapping>")


def check_mapping(mapping: TargetMapping) -> None:
    """A Kingdee mapping may set any BD_Customer key but the number and the internal id."""
    own = [k for k in mapping.keys if k.split(".")[0].lower() in OWN_KEYS]
    if own:
        raise ConfigError(f"{mapping.source}: {own[0]} is set by okki-assets (prefix + id)")


def mapping_for(mapping_file: str | None) -> TargetMapping:
    """The mapping file's mapping, or the built-in Kingdee mapping."""
    return load_mapping(mapping_file) if mapping_file else k3cloud_mapping()


def _pairs(name: str, text: str) -> dict[str, str]:
    """``CN=China,US=USA`` as a dict."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{name} must be ISO=number pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def k3cloud_settings(url: str, options: Mapping[str, Any]) -> K3CloudSettings:
    """``TARGET_URL`` (``k3cloud+http(s)://host/k3cloud/``) and the K3CLOUD_* options, checked;
    errors name the setting, never a secret."""
    base = checked_url("TARGET_URL", url.strip().split("+", 1)[1]) + "/"
    opt = {k: v for k, v in options.items() if v not in (None, "")}
    for name in ("acct_id", "username"):
        if not str(opt.get(name, "")).strip():
            raise ConfigError(
                f"K3CLOUD_{name.upper()} is empty or not set (TARGET_URL is k3cloud+)"
            )
    password = credential("K3CLOUD_PASSWORD", str(opt.get("password", "")))
    secret = credential("K3CLOUD_APP_SECRET", str(opt.get("app_secret", "")))
    app_id = str(opt.get("app_id", "")).strip()
    if not password and not (app_id and secret):
        raise ConfigError(
            "set K3CLOUD_APP_ID and K3CLOUD_APP_SECRET (or K3CLOUD_PASSWORD for ValidateUser)"
        )
    d = K3CloudSettings
    return K3CloudSettings(
        base_url=base,
        acct_id=str(opt["acct_id"]).strip(),
        username=str(opt["username"]).strip(),
        app_id=app_id,
        app_secret=secret,
        password=password,
        country_map=_pairs("K3CLOUD_COUNTRY_MAP", str(opt.get("country_map", ""))),
        lcid=int(opt.get("lcid", d.lcid)),
        org=str(opt.get("org", d.org)).strip(),
        currency=str(opt.get("currency", d.currency)).strip(),
        number_prefix=str(opt.get("number_prefix", d.number_prefix)).strip(),
        batch_size=int(opt.get("batch_size", d.batch_size)),
        timeout_seconds=float(opt.get("timeout_seconds", d.timeout_seconds)),
        settle_seconds=float(opt.get("settle_seconds", d.settle_seconds)),
    )
