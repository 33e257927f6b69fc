"""Everything that speaks SQL to DuckDB: the intermediate copy of every stage and the load ledger.

Every write that replaces a partition does it in one transaction (delete the partition's rows,
insert the new ones), so a failed or killed run leaves the previous copy intact. Info payloads
are also kept as they arrive (``kept_infos``), so that a pull that ends early does not pay for
them again. Values always travel as parameters or registered DataFrames; table names are
constants of this package.

Times: OKKI's own strings are kept untouched in ``raw_companies``; typed times are TIMESTAMPTZ
(instants) and are handed back to pandas in Asia/Shanghai.

One module per table family, all re-exported here (``storage.stage_raw(...)``):
schema.py (every table's DDL, ``ensure_schema``, ``transaction``), raw.py (raw_companies, its
staging, kept_infos, deleted_companies), cleaned.py (cleaned and quarantined rows), ledger.py
(load_ledger and its statuses), rate.py (the learned OKKI rate), account.py (the whole account).
"""

from __future__ import annotations

from okki_assets.storage.account import (
    known_bad_versions,
    last_info_fetches,
    read_account_list,
    record_info_fetches,
    replace_account_list,
    settle_account_copies,
    unlisted_ledger_rows,
    yield_ledger_to_observation,
)
from okki_assets.storage.audit import acknowledged_versions, demote_for_resend
from okki_assets.storage.cleaned import (
    append_cleaned,
    duplicate_company_ids,
    iter_cleaned,
    quarantine_reason_counts,
    quarantine_sample,
    read_cleaned,
    replacing_cleaned,
)
from okki_assets.storage.ledger import (
    DELETE_DONE,
    SENT_STATUSES,
    UPSERT_DONE,
    Claim,
    LedgerStatus,
    advance_unchanged,
    claim_for_sending,
    ledger_ids_for_run,
    ledger_rows,
    ledger_status_counts,
    record_landed,
    record_outcomes,
    rejected_records,
    unreconciled_rows,
)
from okki_assets.storage.rate import learned_rate, remember_rate
from okki_assets.storage.raw import (
    KeptInfo,
    RawRow,
    discard_staging,
    iter_raw,
    keep_infos,
    kept_info_times,
    prune_kept_infos,
    publish_raw,
    raw_counts,
    read_deleted,
    replace_deleted,
    stage_raw,
    stored_update_times,
)
from okki_assets.storage.schema import ensure_schema, transaction

__all__ = [
    "DELETE_DONE",
    "SENT_STATUSES",
    "UPSERT_DONE",
    "acknowledged_versions",
    "demote_for_resend",
    "Claim",
    "KeptInfo",
    "LedgerStatus",
    "RawRow",
    "append_cleaned",
    "advance_unchanged",
    "claim_for_sending",
    "discard_staging",
    "duplicate_company_ids",
    "ensure_schema",
    "iter_cleaned",
    "iter_raw",
    "keep_infos",
    "kept_info_times",
    "known_bad_versions",
    "last_info_fetches",
    "learned_rate",
    "ledger_ids_for_run",
    "ledger_rows",
    "ledger_status_counts",
    "prune_kept_infos",
    "publish_raw",
    "quarantine_reason_counts",
    "quarantine_sample",
    "raw_counts",
    "read_account_list",
    "read_cleaned",
    "read_deleted",
    "record_info_fetches",
    "record_landed",
    "record_outcomes",
    "rejected_records",
    "remember_rate",
    "replace_account_list",
    "replace_deleted",
    "replacing_cleaned",
    "settle_account_copies",
    "stage_raw",
    "stored_update_times",
    "transaction",
    "unlisted_ledger_rows",
    "unreconciled_rows",
    "yield_ledger_to_observation",
]
