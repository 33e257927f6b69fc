"""The stages: one partition's (or the account's) work, below the assets that call them.

Each stage is plain functions over the clients, the target port, storage and the pure rules
(cleaning.py, loading.py, mapping.py, versions.py), returning a summary the asset turns into
metadata and check results. No stage imports an asset.

- window_pull.py: one window's pull (list, reuse, keep/resume, stage, deletions, publish),
  keeping the info payloads it fetches as they arrive;
- pull.py: the 漏单 guard over OKKI's list and the info fan-out, for a window or the account;
- staging.py: the stager of the window and the account: raw rows staged in chunks, published
  in one go, discarded when the pull fails;
- clean.py: one partition's raw rows cleaned into DuckDB, the stored rows validated;
- load.py: one partition's records and tombstones sent, each outcome kept in the ledger;
- reconcile.py: the whole account (okki_reconcile), with audit.py (the target read back) and
  purged.py (companies gone from OKKI's recycle bin);
- common.py: what they share (the DuckDB connection opener, the clock, client stats).
"""
