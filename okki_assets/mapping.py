"""Cleaned companies -> target records, through a configurable mapping.

A mapping says, for each key of the target record, which cleaned column (or constant) fills it,
how the value is converted, and what to put when the value is missing. Dotted keys build nested
objects (``contactInfo.emailAddress``). The built-in default (``DEFAULT_MAPPING_SPEC``) yields::

    {"id": "55280038", "fullName": ..., "shortName": ..., "serialNumber": ...,
     "contactInfo": {"contactName": ..., "emailAddress": ..., "phoneNumber": ...},
     "country": ..., "ownerIds": [...], "createdAt": "2026-11-20T09:15:00+08:00",
     "updatedAt": ..., "source": "okki"}

A mapping file (``.yaml``/``.yml`` or ``.json``, chosen by extension) has the same shape as
``DEFAULT_MAPPING_SPEC`` and replaces the default entirely::

    default: ""                     # value for missing fields (null, NaT, NA)
    fields:
      id: {column: company_id, type: str}
      fullName: name                # shorthand for {column: name}
      contactInfo.phoneNumber: {column: phone, default: "N/A"}
      createdAt: {column: create_time, type: iso8601}
      source: {const: okki}

Field options: ``column`` or ``const`` (exactly one), ``type`` (see ``TYPES``), ``default``.
Every problem (unreadable file, bad YAML/JSON, unknown column, option or type, a key that is
both a value and an object, no ``id``) raises ``MappingConfigError`` naming the file and key.

``content_hash`` is the ledger's change detector: sha256 over canonical JSON (sorted keys,
UTF-8 without escapes, compact separators), identical across runs and processes.

Timestamps are written at second resolution in China Standard Time (OKKI's resolution and zone).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import yaml
from pandas.api.types import infer_dtype

from okki_assets.errors import MappingConfigError
from okki_assets.gc_pause import gc_paused
from okki_assets.okki_time import TIMEZONE
from okki_assets.schemas import CLEANED_COLUMNS, FLAG_COLUMNS, TIME_COLUMNS

#: Conversions a field may ask for. ``auto``: times -> ISO 8601, numbers -> int, lists -> list,
#: text as is. ``str``: text (ints as digits, lists comma-joined, times ISO 8601).
#: ``iso8601``: '2026-11-20T09:15:00+08:00'. ``epoch_ms``: milliseconds since the Unix epoch.
TYPES: tuple[str, ...] = ("auto", "str", "int", "bool", "list", "iso8601", "epoch_ms")

_INT_COLUMNS = frozenset({"company_id", "archive_type"})
_LIST_COLUMNS = frozenset({"owner_ids"})
_TIME_COLUMNS = frozenset(TIME_COLUMNS)
_BOOL_COLUMNS = frozenset(FLAG_COLUMNS)
_ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "auto": frozenset(CLEANED_COLUMNS),
    "str": frozenset(CLEANED_COLUMNS),
    "int": _INT_COLUMNS | _BOOL_COLUMNS,
    "bool": _BOOL_COLUMNS,
    "list": _LIST_COLUMNS,
    "iso8601": _TIME_COLUMNS,
    "epoch_ms": _TIME_COLUMNS,
}
_TOP_LEVEL_KEYS = ("default", "fields")
_FIELD_OPTIONS = ("column", "const", "type", "default")
_JSON_SCALARS = (str, int, float, bool, type(None))

#: The built-in mapping, in the mapping-file format.
DEFAULT_MAPPING_SPEC: dict[str, Any] = {
    "default": "",
    "fields": {
        "id": {"column": "company_id", "type": "str"},
        "fullName": "name",
        "shortName": "short_name",
        "serialNumber": "serial_id",
        "contactInfo.contactName": "contact_name",
        "contactInfo.emailAddress": "email",
        "contactInfo.phoneNumber": "phone",
        "country": "country",
        "ownerIds": {"column": "owner_ids", "type": "list"},
        "createdAt": {"column": "create_time", "type": "iso8601"},
        "updatedAt": {"column": "update_time", "type": "iso8601"},
        "source": {"const": "okki"},
    },
}

_UNSET: Any = object()


@dataclass(frozen=True)
class FieldSpec:
    """One target key: where its value comes from and how it is converted."""

    key: str
    path: tuple[str, ...]
    column: str | None = None
    const: Any = _UNSET
    type: str = "auto"
    default: Any = _UNSET


@dataclass(frozen=True)
class TargetMapping:
    """A validated mapping: ordered fields, the missing-value default, where it came from."""

    fields: tuple[FieldSpec, ...]
    default: Any = ""
    source: str = "<default mapping>"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)


# ------------------------------------------------------------------------------- loading


def _fail(source: str, key: str, problem: str) -> MappingConfigError:
    return MappingConfigError(f"mapping {source}: key '{key}': {problem}")


def _check_json_value(source: str, key: str, value: Any) -> None:
    if isinstance(value, _JSON_SCALARS):
        return
    if isinstance(value, list):
        for v in value:
            _check_json_value(source, key, v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(source, key, f"object keys must be strings, got {k!r}")
            _check_json_value(source, key, v)
        return
    raise _fail(source, key, f"value {value!r} is not representable in JSON")


def _parse_field(source: str, key: object, spec: object) -> FieldSpec:
    if not isinstance(key, str) or not key:
        raise _fail(source, f"fields.{key}", "field keys must be non-empty strings")
    where = f"fields.{key}"
    path = tuple(key.split("."))
    if any(not part.strip() for part in path):
        raise _fail(source, where, "empty segment in dotted key")
    if isinstance(spec, str):
        spec = {"column": spec}
    if not isinstance(spec, dict):
        raise _fail(source, where, f"expected a column name or an object of options, got {spec!r}")
    unknown = [o for o in spec if o not in _FIELD_OPTIONS]
    if unknown:
        raise _fail(
            source,
            f"{where}.{unknown[0]}",
            f"unknown option (allowed: {', '.join(_FIELD_OPTIONS)})",
        )
    has_column, has_const = "column" in spec, "const" in spec
    if has_column == has_const:
        raise _fail(source, where, "give exactly one of 'column' and 'const'")
    ftype = spec.get("type", "auto")
    if ftype not in TYPES:
        raise _fail(
            source, f"{where}.type", f"unknown type {ftype!r} (allowed: {', '.join(TYPES)})"
        )
    default = spec.get("default", _UNSET)
    if default is not _UNSET:
        _check_json_value(source, f"{where}.default", default)
    if has_const:
        if "type" in spec:
            raise _fail(source, f"{where}.type", "a constant takes no type")
        _check_json_value(source, f"{where}.const", spec["const"])
        return FieldSpec(key=key, path=path, const=spec["const"], default=default)
    column = spec["column"]
    if column not in CLEANED_COLUMNS:
        hint = "; {const: ...} gives a fixed value" if isinstance(column, str) else ""
        raise _fail(
            source,
            f"{where}.column",
            f"unknown column {column!r}; the cleaned columns (docs/mapping.md), closest first:"
            f" {', '.join(columns_closest_first(column))}{hint}",
        )
    if column not in _ALLOWED_TYPES[ftype]:
        raise _fail(source, f"{where}.type", f"type {ftype!r} does not apply to column {column!r}")
    return FieldSpec(key=key, path=path, column=column, type=ftype, default=default)


def columns_closest_first(name: object) -> list[str]:
    """Every cleaned column, those most like ``name`` (a typo, say) first, the rest in the
    schema's order."""
    close = difflib.get_close_matches(str(name), CLEANED_COLUMNS, n=len(CLEANED_COLUMNS))
    return close + [c for c in CLEANED_COLUMNS if c not in close]


def parse_mapping(spec: object, source: str = "<dict>") -> TargetMapping:
    """Validate a mapping given as a dict (the mapping-file format) into a ``TargetMapping``."""
    if not isinstance(spec, dict):
        raise _fail(source, "<top>", "a mapping must be an object with 'fields'")
    unknown = [k for k in spec if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise _fail(source, str(unknown[0]), f"unknown key (allowed: {', '.join(_TOP_LEVEL_KEYS)})")
    default = spec.get("default", "")
    _check_json_value(source, "default", default)
    fields_spec = spec.get("fields")
    if not isinstance(fields_spec, dict) or not fields_spec:
        raise _fail(source, "fields", "must be a non-empty object of target keys")
    fields = tuple(_parse_field(source, k, v) for k, v in fields_spec.items())

    leaves = {f.path for f in fields}
    for f in fields:
        for i in range(1, len(f.path)):
            if f.path[:i] in leaves:
                raise _fail(
                    source,
                    f"fields.{f.key}",
                    f"'{'.'.join(f.path[:i])}' is already a value, it cannot also be an object",
                )
    if ("id",) not in leaves:
        raise _fail(source, "fields.id", "missing: every record needs an 'id'")
    return TargetMapping(fields=fields, default=default, source=source)


def _one_line(exc: Exception) -> str:
    """A parser's error in one line: YAML's where and what, else the text with its line breaks
    folded (the message ends up in a run's one-line failure)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def load_mapping(path: str | Path | None) -> TargetMapping:
    """The mapping in ``path`` (YAML or JSON by extension), or the built-in one for ``None``."""
    if path is None:
        return parse_mapping(DEFAULT_MAPPING_SPEC, source="<default mapping>")
    p = Path(path)
    source = str(p)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise _fail(source, "<file>", "mapping files must end in .yaml, .yml or .json")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(source, "<file>", f"cannot read the file: {exc}") from exc
    try:
        spec = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix == ".json" else "YAML"
        raise _fail(source, "<file>", f"not valid {kind}: {_one_line(exc)}") from exc
    return parse_mapping(spec, source=source)


# ------------------------------------------------------------------------------- mapping


def _fill(values: list[Any], mask: np.ndarray, default: Any) -> list[Any]:
    """values with the masked (missing) positions replaced by default."""
    if not mask.any():
        return values
    return [default if m else v for v, m in zip(values, mask.tolist(), strict=True)]


def _local_times(series: pd.Series) -> pd.Series:
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        series = pd.to_datetime(series, errors="coerce")
        if series.dt.tz is None:
            return series.dt.tz_localize(TIMEZONE, ambiguous="NaT", nonexistent="NaT")
    return series.dt.tz_convert(TIMEZONE)


def _offset_text(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


def _iso8601(series: pd.Series, default: Any) -> list[Any]:
    """Vectorised '2026-11-20T09:15:00+08:00' (whole seconds); NaT -> default."""
    local = _local_times(series)
    wall = local.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(wall)
    text = wall.astype("datetime64[s]").astype("U19")
    utc = local.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    ok = ~missing
    if not ok.any():
        return [default] * len(wall)
    offsets = ((wall[ok] - utc[ok]) // np.timedelta64(1, "m")).astype(np.int64)
    uniq = np.unique(offsets)
    if len(uniq) == 1:
        out = np.char.add(text, _offset_text(int(uniq[0]))).tolist()
    else:  # zones with DST, or history: one offset per value
        every = np.zeros(len(wall), dtype=np.int64)
        every[ok] = offsets
        out = [t + _offset_text(o) for t, o in zip(text.tolist(), every.tolist(), strict=True)]
    return _fill(out, missing, default)


def _epoch_ms(series: pd.Series, default: Any) -> list[Any]:
    local = _local_times(series)
    ns = local.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return _fill((ns.astype(np.int64) // 1_000_000).tolist(), np.isnat(ns), default)


def _as_list(v: object) -> list[Any] | None:
    if isinstance(v, list | tuple):
        return list(v)
    if isinstance(v, np.ndarray):
        return list(v.tolist())
    return None


def _convert(series: pd.Series, column: str, ftype: str, default: Any) -> list[Any]:
    """One cleaned column -> the list of target values (missing -> default)."""
    if column in _TIME_COLUMNS:
        if ftype == "epoch_ms":
            return _epoch_ms(series, default)
        return _iso8601(series, default)  # auto, str and iso8601 all give ISO 8601 text
    if column in _LIST_COLUMNS:
        lists = [list(v) if type(v) is list else _as_list(v) for v in series.tolist()]
        if ftype == "str":
            return [default if v is None else ",".join(map(str, v)) for v in lists]
        return [default if v is None else v for v in lists]
    values = series.tolist()
    text_column = ftype in ("auto", "str") and series.dtype == object
    if text_column and infer_dtype(series) in ("string", "empty"):
        # Cleaned text columns hold str or None (a C-level check): one pass, no isna().
        return [default if v is None else v for v in values]
    mask = series.isna().to_numpy()
    if ftype == "str":
        if series.dtype == np.int64:
            return [str(v) for v in values]
        values = [v if type(v) is str else str(v) for v in values]
    elif ftype == "int":
        values = [v if m else int(v) for v, m in zip(values, mask.tolist(), strict=True)]
    elif ftype == "bool":
        values = [v if m else bool(v) for v, m in zip(values, mask.tolist(), strict=True)]
    return _fill(values, mask, default)


def _records(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Records from a tree of target keys whose leaves are columns (one value per record):
    a nested object is built column-wise first, then zipped in as one more column."""
    columns = [_records(node) if isinstance(node, dict) else node for node in tree.values()]
    keys = tuple(tree)
    # Each ``values`` has one item per key by construction: only the columns' lengths are checked.
    return [dict(zip(keys, values, strict=False)) for values in zip(*columns, strict=True)]


def map_records(
    cleaned: pd.DataFrame, mapping: TargetMapping | None = None
) -> list[dict[str, Any]]:
    """One target record per cleaned row, in row order (column-wise conversion, then zip)."""
    with gc_paused():
        return _map_records(cleaned, mapping)


def _map_records(cleaned: pd.DataFrame, mapping: TargetMapping | None) -> list[dict[str, Any]]:
    mapping = mapping if mapping is not None else load_mapping(None)
    n = len(cleaned)
    if n == 0:
        return []
    tree: dict[str, Any] = {}
    for f in mapping.fields:
        default = mapping.default if f.default is _UNSET else f.default
        if f.column is None:
            if isinstance(f.const, list | dict):
                values: list[Any] = [copy.deepcopy(f.const) for _ in range(n)]
            else:
                values = [f.const] * n
        else:
            if f.column not in cleaned.columns:
                raise _fail(mapping.source, f"fields.{f.key}.column", "not in the cleaned frame")
            values = _convert(cleaned[f.column], f.column, f.type, default)
            if isinstance(default, list | dict):
                values = [copy.deepcopy(v) if v is default else v for v in values]
        node = tree
        for part in f.path[:-1]:
            node = node.setdefault(part, {})
        node[f.path[-1]] = values
    return _records(tree)


# ------------------------------------------------------------------------------- records


def _canonical_bytes(record: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an int beyond 64 bits, a non-str key: the standard library copes
        return json.dumps(
            record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")


def canonical_json(record: Mapping[str, Any]) -> str:
    """Sorted keys, no ASCII escaping, compact separators: the text ``content_hash`` hashes.

    Written by orjson (six times faster than the standard library, and the ledger hashes every
    record of every run); for the strings, integers, booleans, nulls, lists and objects that
    mappings produce it is byte for byte ``json.dumps(record, sort_keys=True,
    ensure_ascii=False, separators=(",", ":"))``. (Floats, possible only as a mapping constant,
    differ in one place: orjson writes ``1e-7`` where the standard library writes ``1e-07``.)
    """
    return _canonical_bytes(record).decode("utf-8")


def content_hash(record: Mapping[str, Any]) -> str:
    """sha256 hex digest of the record's canonical JSON; stable across runs and processes."""
    return hashlib.sha256(_canonical_bytes(record)).hexdigest()


def tombstone(company_id: object) -> dict[str, Any]:
    """The record that tells the target a company was deleted in OKKI."""
    if isinstance(company_id, np.integer) or (
        isinstance(company_id, float) and company_id.is_integer()
    ):
        company_id = int(company_id)
    return {"id": str(company_id), "deleted": True}


def tombstone_hash(company_id: object) -> str:
    """The content hash of the company's tombstone (what the ledger keeps for a deletion)."""
    return content_hash(tombstone(company_id))


def holds_tombstone(company_ids: pd.Series, hashes: pd.Series) -> pd.Series:
    """Whether each content hash is its company's tombstone: the ledger's word is a deletion
    by its content, whatever its status."""
    flags = [h == tombstone_hash(int(c)) for c, h in zip(company_ids, hashes, strict=True)]
    return pd.Series(flags, index=hashes.index, dtype=bool)
