"""Mapping cleaned companies to target records: the default shape, mapping files, errors, hashes.

Covers the built-in mapping's exact output (nested contactInfo, ISO 8601 with +08:00, missing
values as the default), custom YAML and JSON mapping files with dotted keys and per-field
defaults, every kind of bad mapping file (the error names the file and the key; an unknown
column lists the valid ones, closest first), docs/mapping.md listing every column, the content
hash the ledger relies on (stable across processes, sensitive to any change) and tombstones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from okki_assets.errors import MappingConfigError
from okki_assets.mapping import (
    DEFAULT_MAPPING_SPEC,
    canonical_json,
    content_hash,
    load_mapping,
    map_records,
    parse_mapping,
    tombstone,
)
from okki_assets.schemas import CLEANED_COLUMNS, FLAG_COLUMNS, CleanedCompany

CST = "Asia/Shanghai"
ROOT = Path(__file__).resolve().parents[2]


def cleaned(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A validated cleaned frame; each dict overrides the defaults of one row."""
    base: dict[str, Any] = {
        "partition_key": "2026-11-20",
        "company_id": 55280038,
        "serial_id": "C100001",
        "name": "深圳市华盛科技有限公司",
        "short_name": "华盛",
        "owner_ids": ["1001", "1002"],
        "archive_type": 1,
        "country": "CN",
        "contact_name": "Li Si",
        "email": "li.si@acme.example",
        "phone": "+86 13800138000",
        "create_time": pd.Timestamp("2025-06-01 08:00:00", tz=CST),
        "update_time": pd.Timestamp("2026-11-20 09:15:00", tz=CST),
        "order_time": pd.NaT,
        "edit_time": pd.NaT,
        "archive_time": pd.NaT,
        **dict.fromkeys(FLAG_COLUMNS, False),
    }
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["archive_type"] = frame["archive_type"].astype("Int64")
    for col in ("create_time", "update_time", "order_time", "edit_time", "archive_time"):
        frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(CST)
    return CleanedCompany.validate(frame, lazy=True)


# ------------------------------------------------------------------------------ default mapping


def test_the_default_mapping_gives_exactly_the_target_record() -> None:
    [record] = map_records(cleaned([{}]), load_mapping(None))
    assert record == {
        "id": "55280038",
        "fullName": "深圳市华盛科技有限公司",
        "shortName": "华盛",
        "serialNumber": "C100001",
        "contactInfo": {
            "contactName": "Li Si",
            "emailAddress": "li.si@acme.example",
            "phoneNumber": "+86 13800138000",
        },
        "country": "CN",
        "ownerIds": ["1001", "1002"],
        "createdAt": "2025-06-01T08:00:00+08:00",
        "updatedAt": "2026-11-20T09:15:00+08:00",
        "source": "okki",
    }
    assert list(record) == list(
        dict.fromkeys(k.split(".")[0] for k in DEFAULT_MAPPING_SPEC["fields"])
    )
    assert type(record["id"]) is str


def test_missing_values_become_the_default_empty_string() -> None:
    frame = cleaned(
        [
            {
                "short_name": None,
                "serial_id": None,
                "contact_name": None,
                "email": None,
                "phone": None,
                "country": None,
                "owner_ids": [],
                "create_time": pd.NaT,
            }
        ]
    )
    [record] = map_records(frame)
    assert record["shortName"] == record["serialNumber"] == record["country"] == ""
    assert record["contactInfo"] == {"contactName": "", "emailAddress": "", "phoneNumber": ""}
    assert record["createdAt"] == ""
    assert record["ownerIds"] == []  # an empty list is a value, not a missing one


def test_records_keep_row_order_and_do_not_share_lists_with_the_frame() -> None:
    frame = cleaned([{"company_id": i, "owner_ids": [str(i)]} for i in (3, 1, 2)])
    records = map_records(frame)
    assert [r["id"] for r in records] == ["3", "1", "2"]
    records[0]["ownerIds"].append("x")
    assert frame["owner_ids"].iloc[0] == ["3"]


def test_keys_that_look_like_code_are_taken_literally() -> None:
    spec = {
        "fields": {
            "id": {"column": "company_id", "type": "str"},
            "__import__('os')": "name",  # would run if keys were ever evaluated
            "a'b\"c.{x}": {"const": 1},  # quotes and braces in a nested key
        }
    }
    frame = cleaned([{"company_id": 7}, {"company_id": 8}])
    records = map_records(frame, parse_mapping(spec))
    assert records == [
        {"id": i, "__import__('os')": frame["name"].iloc[0], "a'b\"c": {"{x}": 1}}
        for i in ("7", "8")
    ]


def test_an_empty_frame_maps_to_no_records() -> None:
    assert map_records(cleaned([{}]).iloc[0:0]) == []


def test_times_read_back_without_a_zone_are_taken_as_china_time() -> None:
    frame = cleaned([{}])
    frame["update_time"] = frame["update_time"].dt.tz_localize(None)  # as some readers return it
    assert map_records(frame)[0]["updatedAt"] == "2026-11-20T09:15:00+08:00"


# ------------------------------------------------------------------------------ mapping files

CUSTOM_SPEC: dict[str, Any] = {
    "default": None,
    "fields": {
        "id": {"column": "company_id", "type": "str"},
        "company.name": "name",
        "company.ids.serial": "serial_id",
        "company.ids.okki": {"column": "company_id"},
        "contact.phone": {"column": "phone", "default": "N/A"},
        "contact.email": "email",
        "owners": {"column": "owner_ids", "type": "str"},
        "updatedMs": {"column": "update_time", "type": "epoch_ms"},
        "createdAt": {"column": "create_time", "type": "iso8601"},
        "archiveType": {"column": "archive_type", "type": "int"},
        "needsEmail": "email_missing",
        "source": {"const": "okki"},
        "tags": {"const": ["crm", "okki"]},
    },
}
CUSTOM_YAML = """\
# a custom mapping
default: null
fields:
  id: {column: company_id, type: str}
  company.name: name
  company.ids.serial: serial_id
  company.ids.okki: {column: company_id}
  contact.phone: {column: phone, default: "N/A"}
  contact.email: email
  owners: {column: owner_ids, type: str}
  updatedMs: {column: update_time, type: epoch_ms}
  createdAt: {column: create_time, type: iso8601}
  archiveType: {column: archive_type, type: int}
  needsEmail: email_missing
  source: {const: okki}
  tags: {const: [crm, okki]}
"""


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("mapping.yaml", CUSTOM_YAML),  # YAML
        ("mapping.yml", CUSTOM_YAML),  # YAML, short extension
        ("mapping.json", json.dumps(CUSTOM_SPEC, indent=2)),  # JSON
    ],
)
def test_a_custom_mapping_file_builds_nested_records(
    tmp_path: Path, filename: str, text: str
) -> None:
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8")
    mapping = load_mapping(path)
    frame = cleaned([{"phone": None, "archive_type": None, "email_missing": True, "email": None}])
    [record] = map_records(frame, mapping)
    assert record == {
        "id": "55280038",
        "company": {
            "name": "深圳市华盛科技有限公司",
            "ids": {"serial": "C100001", "okki": 55280038},
        },
        "contact": {"phone": "N/A", "email": None},
        "owners": "1001,1002",
        "updatedMs": 1795137300000,  # 2026-11-20T01:15:00Z
        "createdAt": "2025-06-01T08:00:00+08:00",
        "archiveType": None,
        "needsEmail": True,
        "source": "okki",
        "tags": ["crm", "okki"],
    }
    assert mapping.source == str(path)


def test_constant_lists_are_not_shared_between_records(tmp_path: Path) -> None:
    records = map_records(
        cleaned([{"company_id": 1}, {"company_id": 2}]), parse_mapping(CUSTOM_SPEC)
    )
    records[0]["tags"].append("changed")
    assert records[1]["tags"] == ["crm", "okki"]


@pytest.mark.parametrize(
    ("filename", "text", "key", "detail"),
    [
        ("m.yaml", "fields: [unclosed", "<file>", "not valid YAML"),  # broken YAML
        ("m.json", '{"fields": ', "<file>", "not valid JSON"),  # broken JSON
        ("m.txt", "fields: {}", "<file>", ".yaml, .yml or .json"),  # unknown file type
        ("m.yaml", "- id\n- name\n", "<top>", "object"),  # not a mapping at the top
        ("m.yaml", "fieldz: {id: company_id}\n", "fieldz", "unknown key"),  # a typo at the top
        ("m.yaml", "fields: {}\n", "fields", "non-empty"),  # nothing to map
        ("m.yaml", "fields: {fullName: name}\n", "fields.id", "missing"),  # no id
        (
            "m.yaml",
            "fields: {id: company_id, fullName: nmae}\n",
            "fields.fullName.column",
            "unknown column 'nmae'",
        ),  # a misspelt column
        (
            "m.yaml",
            "fields: {id: company_id, source: okki}\n",
            "fields.source.column",
            "const",
        ),  # a constant written as a column name: the message hints at const
        (
            "m.yaml",
            "fields: {id: company_id, fullName: {column: name, colour: red}}\n",
            "fields.fullName.colour",
            "unknown option",
        ),  # an unknown option
        (
            "m.yaml",
            "fields: {id: company_id, fullName: {column: name, type: upper}}\n",
            "fields.fullName.type",
            "unknown type",
        ),  # an unknown type
        (
            "m.yaml",
            "fields: {id: company_id, fullName: {column: name, type: iso8601}}\n",
            "fields.fullName.type",
            "does not apply",
        ),  # a type that does not fit the column
        (
            "m.yaml",
            "fields: {id: company_id, source: {column: name, const: x}}\n",
            "fields.source",
            "exactly one",
        ),  # both column and const
        (
            "m.yaml",
            "fields: {id: company_id, contact: name, contact.email: email}\n",
            "fields.contact.email",
            "already a value",
        ),  # a key that is both a value and an object
        (
            "m.yaml",
            "fields: {id: company_id, a..b: name}\n",
            "fields.a..b",
            "empty segment",
        ),  # an empty segment in a dotted key
        (
            "m.json",
            '{"fields": {"id": "company_id", "x": {"const": 1, "type": "str"}}}',
            "fields.x.type",
            "no type",
        ),  # a constant with a type
    ],
)
def test_a_bad_mapping_file_names_the_file_and_the_key(
    tmp_path: Path, filename: str, text: str, key: str, detail: str
) -> None:
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingConfigError) as info:
        load_mapping(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key '{key}'" in message
    assert detail in message


def test_an_unknown_column_names_the_valid_ones_closest_first(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("fields: {id: company_id, contactInfo.emailAddress: emial}\n")
    with pytest.raises(MappingConfigError) as info:
        load_mapping(path)
    message = str(info.value)
    assert "\n" not in message
    named = message.split("closest first: ", 1)[1].split(";", 1)[0].split(", ")
    assert named[0] == "email"  # the typo's column first
    assert sorted(named) == sorted(CLEANED_COLUMNS)  # then every other column, once
    assert "docs/mapping.md" in message


def test_the_mapping_doc_lists_every_cleaned_column_with_a_type_and_an_example() -> None:
    doc = (ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[0] != "`column`":
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(CLEANED_COLUMNS)
    for column, (_, kind, _, example, meaning) in rows.items():
        assert kind and example.startswith("`") and meaning, column
    # the README's mapping section links it
    assert "(docs/mapping.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_an_unreadable_mapping_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(MappingConfigError, match="cannot read") as info:
        load_mapping(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------ hashes, tombstones

GOLDEN_RECORD = {
    "source": "okki",
    "ownerIds": ["1001"],
    "id": "55280038",
    "fullName": "深圳市华盛科技有限公司",
    "contactInfo": {"phoneNumber": "", "emailAddress": "li@acme.example"},
}
GOLDEN_JSON = (
    '{"contactInfo":{"emailAddress":"li@acme.example","phoneNumber":""},'
    '"fullName":"深圳市华盛科技有限公司","id":"55280038","ownerIds":["1001"],"source":"okki"}'
)
GOLDEN_HASH = "e15c716592db69c3505b9707bc271746e527823c5207eacfcaada5501c2f2a81"


def test_content_hash_is_sha256_of_canonical_json() -> None:
    assert canonical_json(GOLDEN_RECORD) == GOLDEN_JSON
    assert content_hash(GOLDEN_RECORD) == GOLDEN_HASH


def standard_json(record: Any) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def test_canonical_json_is_the_standard_librarys_for_mapped_records() -> None:
    tricky = "".join(chr(i) for i in range(32)) + '"\\/ \u2028\u00a0🚀\u202eשלום'
    frame = cleaned([{"name": tricky, "email": None}, {"company_id": 2**62}])
    records = map_records(frame, parse_mapping(CUSTOM_SPEC)) + map_records(frame)
    for record in records:
        assert canonical_json(record) == standard_json(record)
    huge = {"id": "1", "n": 2**70}  # beyond orjson's integers: the standard library writes it
    assert canonical_json(huge) == standard_json(huge)


def test_content_hash_ignores_key_order_and_is_the_same_in_another_process() -> None:
    shuffled = dict(reversed(list(GOLDEN_RECORD.items())))
    shuffled["contactInfo"] = {"emailAddress": "li@acme.example", "phoneNumber": ""}
    assert content_hash(shuffled) == GOLDEN_HASH
    code = (
        "import json, sys; from okki_assets.mapping import content_hash; "
        "print(content_hash(json.loads(sys.stdin.read())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(GOLDEN_RECORD),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert out.stdout.strip() == GOLDEN_HASH


@pytest.mark.parametrize(
    "change",
    [
        {"fullName": "深圳市华盛科技有限公司 "},  # a trailing space
        {"ownerIds": ["1001", "1002"]},  # one more owner
        {"contactInfo": {"phoneNumber": "", "emailAddress": "LI@acme.example"}},  # nested case
        {"extra": ""},  # one more key, even empty
    ],
)
def test_content_hash_changes_with_any_change(change: dict[str, Any]) -> None:
    assert content_hash({**GOLDEN_RECORD, **change}) != GOLDEN_HASH


def test_mapped_records_hash_the_same_on_every_run() -> None:
    frame = cleaned([{"company_id": 1}, {"company_id": 2, "email": None}])
    first = [content_hash(r) for r in map_records(frame)]
    second = [content_hash(r) for r in map_records(frame.copy())]
    assert first == second and first[0] != first[1]


@pytest.mark.parametrize(
    "company_id",
    [
        55280038,  # int
        "55280038",  # text
        np.int64(55280038),  # a numpy scalar from a frame
        55280038.0,  # a float from a lossy reader
    ],
)
def test_tombstone(company_id: object) -> None:
    assert tombstone(company_id) == {"id": "55280038", "deleted": True}
