"""The Kingdee K/3 Cloud target: OKKI companies as ``BD_Customer`` customers (spec §7).

A mapped record ``{"id": "<company id>", "FName": ..., ...}`` becomes the customer numbered
``prefix + id``. ``write_batch`` converges each record on its wanted state rather than firing
operations blindly; each round

1. reads ``FCUSTID, FNumber, FDocumentStatus, FForbidStatus`` and the mapped fields of every
   pending number (``ExecuteBillQuery``, ``FNumber in (...)``);
2. settles the records already right (live: audited C, enabled A, the same values; deleted:
   forbidden B or absent), so a repeat sends nothing;
3. acts on the rest, in this order: ``Enable`` (forbidden but live), ``UnAudit`` (values
   differ), ``BatchSave`` with ``IsAutoSubmitAndAudit`` (absent: ``FCUSTID`` 0; differing: its
   ``FCUSTID`` and the full model), ``Audit`` (right values, not audited), ``Forbid`` (deleted).

Per-row outcomes come from ``SuccessEntitys``/``Errors`` by ``DIndex``; a row in neither, or a
call whose reply was lost, is settled by the next round's query. Every verdict carries the
customer's ``FCUSTID`` as its ``target_id`` when there is a customer (``SuccessEntitys[].Id``,
then the query that settles it), for the load ledger to keep. After a create whose outcome is
unknown the next query waits ``settle_seconds`` (a slow first attempt may still commit): never
two customers for one ``FNumber``. A record refused twice (the second time after a fresh read)
is ``rejected`` with Kingdee's message; MsgCode 14 on a BatchSave halves the batch for the rest
of the run. ``read_back`` pages ``ExecuteBillQuery`` by ``FCUSTID ASC`` until an empty page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from okki_assets.clients.http import RetrySettings
from okki_assets.errors import TargetRetriesExhausted
from okki_assets.errors import TargetTransientError as Transient
from okki_assets.mapping import TargetMapping, content_hash
from okki_assets.targets.k3cloud_api import K3CloudApi, K3CloudSettings, ResponseStatus
from okki_assets.targets.k3cloud_config import (
    check_mapping,
    k3cloud_mapping,
    k3cloud_settings,
    mapping_for,
)
from okki_assets.targets.port import RecordResult, RecordVersion, TargetRow, TargetSettings

log = logging.getLogger(__name__)

FORM_ID = "BD_Customer"
STATE_KEYS = ("FCUSTID", "FNumber", "FDocumentStatus", "FForbidStatus")
MAX_ROUNDS = 8
QUERY_LIMIT = 2000
NUMBERS_PER_QUERY = 200
TEXT_LIMIT = 255
NUMBER_LIMIT = 80


@dataclass
class _State:
    cust_id: int
    doc: str
    forbid: str
    values: dict[str, Any]


@dataclass
class _Round:
    """What one round does; indexes into the batch."""

    enable: list[int] = field(default_factory=list)
    unaudit: list[int] = field(default_factory=list)
    save: list[int] = field(default_factory=list)
    audit: list[int] = field(default_factory=list)
    forbid: list[int] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)
    saved_ids: dict[int, int] = field(default_factory=dict)  # SuccessEntitys' Id (FCUSTID)
    unknown_create: bool = False
    transient: bool = False


def _norm(value: Any) -> Any:
    return "" if value is None else value


def _readable(model: dict[str, Any]) -> dict[str, Any]:
    """Model keys as FieldKeys with the value a query returns (references by number)."""
    out: dict[str, Any] = {}
    for key, value in model.items():
        if isinstance(value, dict) and set(value) == {"FNumber"}:
            out[f"{key}.FNumber"] = _norm(value["FNumber"])
        elif value is None or isinstance(value, str | int | float | bool):
            out[key] = _norm(value)
    return out


class K3CloudTarget:
    """The Kingdee adapter of the target port (one session per instance, i.e. per run)."""

    kind = "k3cloud"

    def __init__(
        self,
        settings: K3CloudSettings,
        mapping: TargetMapping | None = None,
        *,
        api: K3CloudApi | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.mapping = mapping or k3cloud_mapping()
        check_mapping(self.mapping)
        self.api = api or K3CloudApi(settings)
        self.stats = self.api.stats
        self._sleep = sleep or self.api.sleep
        self._batch_size = max(1, settings.batch_size)
        self._country_back = {v: k for k, v in settings.country_map.items()}

    # -- port ------------------------------------------------------------------------------

    def check(self) -> None:
        self.api.login()
        self.api.query({"FormId": FORM_ID, "FieldKeys": "FCUSTID", "TopRowCount": 1, "Limit": 1})

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def number(self, record_id: str) -> str:
        return f"{self.settings.number_prefix}{record_id}"

    def model(self, record: dict[str, Any]) -> dict[str, Any]:
        """The full BD_Customer model of a mapped record (without FCUSTID)."""
        s = self.settings
        model: dict[str, Any] = {
            "FCreateOrgId": {"FNumber": s.org},
            "FUseOrgId": {"FNumber": s.org},
            "FTRADINGCURRID": {"FNumber": s.currency},
        }
        for key, value in record.items():
            if key in ("id", "deleted"):
                continue
            if key == "FCOUNTRY" and isinstance(value, str):
                value = {"FNumber": s.country_map.get(value, value)}
            model[key] = value
        model["FNumber"] = self.number(str(record["id"]))
        return model

    def write_batch(
        self,
        records: list[dict[str, Any]],
        attempt: str = "",
        versions: Sequence[RecordVersion] | None = None,
    ) -> list[RecordResult]:
        """One result per record (see the module docstring); ``attempt`` and ``versions`` are
        not needed: every round starts from a fresh read of the customers themselves."""
        results: list[RecordResult | None] = [None] * len(records)
        for i, record in enumerate(records):
            why = self._local_refusal(record)
            if why:
                results[i] = RecordResult(str(record.get("id")), "rejected", why)
        pending = [i for i, r in enumerate(results) if r is None]
        models = {i: self.model(records[i]) for i in pending if not records[i].get("deleted")}
        start: dict[int, _State | None] = {}
        acted: set[int] = set()
        saved: set[int] = set()
        refusals: dict[int, int] = {}
        cust_ids: dict[int, int] = {}  # FCUSTID by index: the last query, or SuccessEntitys
        for round_no in range(MAX_ROUNDS):
            states = self._states([self.number(str(records[i]["id"])) for i in pending], models)
            plan = _Round()
            for i in pending:
                state = states.get(self.number(str(records[i]["id"])))
                start.setdefault(i, state)
                if state is not None:
                    cust_ids[i] = state.cust_id
                verdict = self._plan_one(records[i], models.get(i), state, plan, i, i in saved)
                if verdict is not None:
                    created = start[i] is None and not records[i].get("deleted")
                    status = "created" if created else verdict if i in acted else "unchanged"
                    results[i] = _result(records[i], status, None, cust_ids.get(i))
            pending = [i for i in pending if results[i] is None]
            if not pending:
                break
            refused = self._act(plan, records, models, states)
            acted.update(plan.enable + plan.unaudit + plan.save + plan.audit + plan.forbid)
            saved.update(plan.saved)
            cust_ids.update(plan.saved_ids)
            for i, message in refused.items():
                refusals[i] = refusals.get(i, 0) + 1
                if refusals[i] >= 2:
                    results[i] = _result(records[i], "rejected", message, cust_ids.get(i))
            pending = [i for i in pending if results[i] is None]
            if plan.unknown_create:
                self._sleep(self.settings.settle_seconds)
            elif plan.transient:
                self._sleep(self.api.retry.backoff(round_no + 1))
        if pending:
            raise TargetRetriesExhausted(
                f"{len(pending)} customers not settled after {MAX_ROUNDS} rounds",
                endpoint="BatchSave",
            )
        return [r for r in results if r is not None]

    def read_back(self) -> Iterator[TargetRow]:
        keys = self._field_keys()
        prefix = self.settings.number_prefix
        start = 0
        while True:
            rows = self.api.query(
                {
                    "FormId": FORM_ID,
                    "FieldKeys": ",".join(keys),
                    "FilterString": f"FNumber like '{_quote(prefix)}%'",
                    "OrderString": "FCUSTID ASC",
                    "StartRow": start,
                    "Limit": QUERY_LIMIT,
                }
            )
            log.debug("read back %d customers from row %d", len(rows), start)
            if not rows:
                return
            start += len(rows)
            for row in rows:
                yield self._target_row(dict(zip(keys, row, strict=False)))

    # -- planning --------------------------------------------------------------------------

    def _local_refusal(self, record: dict[str, Any]) -> str | None:
        number = self.number(str(record.get("id")))
        if len(number) > NUMBER_LIMIT:
            return f"FNumber {number[:20]}... is longer than {NUMBER_LIMIT} characters"
        if record.get("deleted"):
            return None
        if not record.get("FName"):
            return "FName (客户名称) is empty and required by Kingdee"
        for key, value in record.items():
            if isinstance(value, str) and len(value) > TEXT_LIMIT:
                return f"{key} is longer than {TEXT_LIMIT} characters"
        return None

    def _plan_one(
        self,
        record: dict[str, Any],
        model: dict[str, Any] | None,
        state: _State | None,
        plan: _Round,
        i: int,
        saved: bool,
    ) -> str | None:
        """Add record ``i``'s next steps to ``plan``, or return its verdict when settled."""
        if model is None:  # a deletion
            if state is None or state.forbid == "B":
                return "deleted"
            if state.doc != "C":
                plan.audit.append(i)
            plan.forbid.append(i)
            return None
        if state is None:
            plan.save.append(i)
            return None
        same = self._same(model, state, saved)
        if same and state.doc == "C" and state.forbid == "A":
            return "updated"
        if state.forbid == "B":
            plan.enable.append(i)
        if not same:
            if state.doc in ("B", "C"):
                plan.unaudit.append(i)
            plan.save.append(i)
        elif state.doc != "C":
            plan.audit.append(i)
        return None

    @staticmethod
    def _same(model: dict[str, Any], state: _State, saved: bool) -> bool:
        readable = _readable(model)
        if len(readable) != len(model) and not saved:  # unreadable keys: trust our own save
            return False
        return all(_norm(state.values.get(k)) == v for k, v in readable.items())

    # -- acting ----------------------------------------------------------------------------

    def _act(
        self,
        plan: _Round,
        records: list[dict[str, Any]],
        models: dict[int, dict[str, Any]],
        states: dict[str, _State],
    ) -> dict[int, str]:
        """Run the round's steps; the refusals by index. A row that fails a step skips the
        later steps of this round."""
        refused: dict[int, str] = {}
        failed: set[int] = set()

        def numbers(rows: list[int]) -> list[int]:
            return [i for i in rows if i not in failed]

        for op, rows in (("Enable", plan.enable), ("UnAudit", plan.unaudit)):
            self._operate(op, numbers(rows), records, plan, refused, failed)
        self._save(numbers(plan.save), models, records, states, plan, refused, failed)
        self._operate("Audit", numbers(plan.audit), records, plan, refused, failed)
        self._operate("Forbid", numbers(plan.forbid), records, plan, refused, failed)
        return refused

    def _operate(
        self,
        op: str,
        rows: list[int],
        records: list[dict[str, Any]],
        plan: _Round,
        refused: dict[int, str],
        failed: set[int],
    ) -> None:
        if not rows:
            return
        data = {"Numbers": [self.number(str(records[i]["id"])) for i in rows], "Ids": ""}
        try:
            if op in ("Enable", "Forbid"):
                body = {"formid": FORM_ID, "opNumber": op, "data": data}
                rs = self.api.write("ExcuteOperation", body)
            else:
                rs = self.api.write(op, {"formid": FORM_ID, "data": data})
        except Transient as exc:
            log.info("%s of %d customers: %s; checking by query", op, len(rows), exc)
            plan.transient = True
            failed.update(rows)
            return
        self._verdicts(op, rows, rs, refused, failed)

    def _save(
        self,
        rows: list[int],
        models: dict[int, dict[str, Any]],
        records: list[dict[str, Any]],
        states: dict[str, _State],
        plan: _Round,
        refused: dict[int, str],
        failed: set[int],
    ) -> None:
        for at in range(0, len(rows), self._batch_size):
            chunk = rows[at : at + self._batch_size]
            batch = []
            for i in chunk:
                state = states.get(self.number(str(records[i]["id"])))
                batch.append({"FCUSTID": state.cust_id if state else 0, **models[i]})
            creates = any(m["FCUSTID"] == 0 for m in batch)
            body = {
                "formid": FORM_ID,
                "data": {"Model": batch, "IsAutoSubmitAndAudit": True, "NeedUpDateFields": []},
            }
            try:
                rs = self.api.write("BatchSave", body)
            except Transient as exc:
                if exc.cause == "limit" and len(chunk) > 1:
                    self._batch_size = max(1, len(chunk) // 2)
                    log.info("BatchSave refused whole (MsgCode 14): batches of %d from now on",
                             self._batch_size)  # fmt: skip
                else:
                    log.info("BatchSave of %d: %s; confirming by query", len(chunk), exc)
                    plan.unknown_create = plan.unknown_create or creates
                plan.transient = True
                failed.update(chunk)
                continue
            self._verdicts("BatchSave", chunk, rs, refused, failed)
            plan.saved += [i for d, i in enumerate(chunk) if d in rs.successes]
            plan.saved_ids.update(
                {i: rs.successes[d] for d, i in enumerate(chunk) if d in rs.successes}
            )
            if creates and len(rs.successes) + len(rs.errors) < len(chunk):
                plan.unknown_create = True

    def _verdicts(
        self,
        op: str,
        rows: list[int],
        rs: ResponseStatus,
        refused: dict[int, str],
        failed: set[int],
    ) -> None:
        for d_index, i in enumerate(rows):
            if d_index in rs.errors:
                refused[i] = f"{FORM_ID} {op}: {rs.errors[d_index]}"
                failed.add(i)
            elif d_index not in rs.successes:
                failed.add(i)  # in neither list: the next query tells

    # -- reading ---------------------------------------------------------------------------

    def _field_keys(self, models: dict[int, dict[str, Any]] | None = None) -> list[str]:
        keys = list(STATE_KEYS)
        sample = self.model(_nested({k: "" for k in self.mapping.keys if k != "id"}, id="0"))
        for m in [sample, *(models or {}).values()]:
            keys += [k for k in _readable(m) if k not in keys and k != "FNumber"]
        return keys

    def _states(self, numbers: list[str], models: dict[int, dict[str, Any]]) -> dict[str, _State]:
        keys = self._field_keys(models)
        out: dict[str, _State] = {}
        for at in range(0, len(numbers), NUMBERS_PER_QUERY):
            chunk = numbers[at : at + NUMBERS_PER_QUERY]
            quoted = ",".join(f"'{_quote(n)}'" for n in chunk)
            start = 0
            while True:
                rows = self.api.query(
                    {
                        "FormId": FORM_ID,
                        "FieldKeys": ",".join(keys),
                        "FilterString": f"FNumber in ({quoted})",
                        "OrderString": "FCUSTID ASC",
                        "StartRow": start,
                        "Limit": QUERY_LIMIT,
                    }
                )
                if not rows:
                    break
                start += len(rows)
                for row in rows:
                    values = dict(zip(keys, row, strict=False))
                    number = str(values["FNumber"])
                    if number in out:
                        log.warning("two Kingdee customers are numbered %s", number)
                        continue
                    out[number] = _State(
                        int(values["FCUSTID"]),
                        str(values["FDocumentStatus"]),
                        str(values["FForbidStatus"]),
                        values,
                    )
        return out

    def _target_row(self, values: dict[str, Any]) -> TargetRow:
        number = str(values["FNumber"])
        record: dict[str, Any] = {"id": number[len(self.settings.number_prefix) :]}
        exact = True
        for key in self.mapping.keys:
            if key == "id":
                continue
            if key == "FCOUNTRY":
                code = _norm(values.get("FCOUNTRY.FNumber"))
                record[key] = self._country_back.get(code, code)
            elif key in values:  # a plain field, or "X.FNumber": a reference by number
                record[key] = _norm(values[key])
            else:
                exact = False
        record = _nested(record)
        return TargetRow(
            id=record["id"],
            values=record,
            content_hash=content_hash(record) if exact else None,
            deleted=str(values.get("FForbidStatus")) == "B",
        )


def _result(
    record: dict[str, Any], status: str, error: str | None, cust_id: int | None
) -> RecordResult:
    """A verdict with the customer's FCUSTID, when one is known (0 is no customer)."""
    target_id = str(cust_id) if cust_id else None
    return RecordResult(str(record["id"]), status, error, target_id=target_id)


def _nested(flat: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Dotted mapping keys as nested objects, the shape of a mapped record."""
    out: dict[str, Any] = dict(more)
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _quote(text: str) -> str:
    return text.replace("'", "''")


def open_target(url: str, settings: TargetSettings) -> K3CloudTarget:
    """The port's entry point for ``k3cloud+`` URLs (okki_assets/targets/__init__.py)."""
    options = settings.k3cloud
    mapping = mapping_for(str(options.get("mapping_file") or "") or None)
    k3 = k3cloud_settings(url, options)
    api = K3CloudApi(k3, retry=RetrySettings(base_delay=settings.retry_base_delay))
    return K3CloudTarget(k3, mapping, api=api)


__all__ = ["K3CloudTarget", "open_target"]
