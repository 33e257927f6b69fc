"""deploy/: the environment template names every setting the code and the instance read.

``okki_assets/definitions.py`` is the only reader of the project's settings; ``deploy/dagster.yaml``
reads the ``DAGSTER_PG_*`` ones. A setting missing from ``deploy/okki-assets.env.example`` is
one an operator never learns about; one missing from the top-level ``.env.example`` (the
``dg dev`` recipe) drifts the two apart. The instance file must also pass Dagster's own schema.
(``integration/test_deploy.py`` boots the units' command lines on it.)
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY_ENV = REPO / "deploy" / "okki-assets.env.example"
DEV_ENV = REPO / ".env.example"
DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"


def env_keys(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def settings_read_by_definitions() -> set[str]:
    source = (REPO / "okki_assets" / "definitions.py").read_text(encoding="utf-8")
    return set(re.findall(r'"((?:OKKI|TARGET)_[A-Z_]+)"', source))


def env_vars_of_instance() -> set[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                found.add(str(node["env"]))
            for value in node.values():
                walk(value)

    walk(yaml.safe_load(DAGSTER_YAML.read_text(encoding="utf-8")))
    return found


def test_deploy_env_names_every_setting() -> None:
    settings = settings_read_by_definitions()
    assert len(settings) >= 15  # the regular expression still finds them
    assert settings <= env_keys(DEPLOY_ENV), settings - env_keys(DEPLOY_ENV)
    assert env_vars_of_instance() == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
    }
    assert env_vars_of_instance() <= env_keys(DEPLOY_ENV)


def test_deploy_env_and_dev_env_name_the_same_settings() -> None:
    assert env_keys(DEPLOY_ENV) - env_vars_of_instance() == env_keys(DEV_ENV)


def test_deploy_env_leaves_secrets_empty() -> None:
    values = dict(
        line.split("=", 1)
        for line in DEPLOY_ENV.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for secret in ("DAGSTER_PG_PASSWORD", "OKKI_CLIENT_SECRET", "TARGET_URL", "TARGET_TOKEN"):
        assert values[secret] == ""


def test_instance_file_passes_dagsters_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "okki",
        "DAGSTER_PG_PASSWORD": "secret",
        "DAGSTER_PG_DB": "okki_dagster",
    }.items():
        monkeypatch.setenv(name, value)
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert set(config["storage"]) == {"postgres"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] == 1
