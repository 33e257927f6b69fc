"""Paging ``/v1/company/list``: what one list reply holds, the order pages are fetched in, and
how a list ends.

- ``start_index`` is a page number; ``totalItem`` and ids may arrive as strings; records are kept
  exactly as received.
- Only an empty page ends a list. A page shorter than ``count`` does not: a server that serves
  fewer rows than asked makes every page short, and a page can come short in the middle.
  ``totalItem`` does not either: it may be capped or briefly wrong. An empty page that comes
  too early (a glitch) is the pass guard's to catch (``okki_assets.stages.pull``): the pass
  then shows fewer companies than ``totalItem`` or differs from the next one. The cost is one
  request per list: the empty page after the last.
- An empty page 1 while ``totalItem`` > 0 is a glitch, retried like a transient answer; a missing
  or non-numeric ``totalItem`` is a permanent error naming it.
- Paging refuses a page that repeats the previous one (``RepeatedPageError``) or a run past
  ``max_pages`` (``PaginationError``).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from okki_assets.clients.okki_api import LIST_PATH, ListPage, coerce_int, record_key
from okki_assets.errors import (
    OkkiPermanentError,
    OkkiTransientError,
    PaginationError,
    RepeatedPageError,
)

log = logging.getLogger(__name__)


def _all_dicts(items: list[Any]) -> bool:
    return all(isinstance(item, dict) for item in items)


def list_reply(page: int, params: dict[str, Any], body: dict[str, Any]) -> ListPage:
    """A list reply as a ListPage; an empty page 1 while ``totalItem`` > 0 is transient."""
    data = body.get("data")
    if data is None or data == []:  # an empty result set, however it is spelled
        data = {"list": [], "totalItem": 0}
    if not isinstance(data, dict):
        raise OkkiPermanentError(
            f"data is a {type(data).__name__}, expected an object",
            endpoint=LIST_PATH,
            params=params,
        )
    records = data.get("list") or []
    if not isinstance(records, list) or not _all_dicts(records):
        raise OkkiPermanentError(
            "data.list is not a list of objects", endpoint=LIST_PATH, params=params
        )
    total = coerce_int(data.get("totalItem"))
    if total is None or total < 0:
        raw = data.get("totalItem", "<missing>")
        raise OkkiPermanentError(
            f"data.totalItem is missing or not a count: {str(raw)[:40]!r}",
            endpoint=LIST_PATH,
            params=params,
        )
    if page == 1 and not records and total > 0:
        raise OkkiTransientError(
            f"page 1 is empty while totalItem is {total}",
            cause="empty_first_page",
            endpoint=LIST_PATH,
            params=params,
        )
    return ListPage(page=page, records=records, total_item=total, raw_count=data.get("count"))


def checked_pages(
    pages: Iterator[ListPage],
    window: dict[str, Any],
    *,
    max_pages: int,
) -> Iterator[ListPage]:
    """The stop rules and checks of ``OkkiClient.iter_list_pages`` over pages 1, 2, ... in
    order: the non-empty pages until the list ends (``window``: the list's parameters, for
    errors)."""
    seen: set[str] = set()
    previous: list[str] | None = None
    rows = 0
    for page_no, page in zip(range(1, max_pages + 1), pages, strict=False):
        if not page.records:
            log.debug("list page %d is empty: done", page_no)
            break
        ids = [record_key(r) for r in page.records]
        if ids == previous:
            raise RepeatedPageError(
                f"page {page_no} repeats page {page_no - 1} (same {len(ids)} rows in the "
                "same order): the server ignores start_index, or the list shifted by a"
                " page while paging",
                endpoint=LIST_PATH,
                params={**window, "start_index": page_no},
            )
        new = len(set(ids) - seen)
        seen.update(ids)
        rows += len(ids)
        log.debug(
            "list page %d: %d rows, %d new, %d distinct of totalItem %d",
            page_no,
            len(ids),
            new,
            len(seen),
            page.total_item,
        )
        yield page
        previous = ids
    else:
        raise PaginationError(
            f"the list did not finish within max_pages={max_pages} pages "
            f"({len(seen)} distinct rows seen)",
            endpoint=LIST_PATH,
            params=window,
        )
    log.info("listed %d rows (%d distinct companies)", rows, len(seen))


def pages_in_order(
    fetch: Callable[[int], ListPage],
    prefetch: bool,
    *,
    max_pages: int,
    concurrency: int,
) -> Generator[ListPage, None, None]:
    """Pages 1, 2, 3, ... in order, fetched one at a time, or (``prefetch``) the pages that
    page 1's ``totalItem`` implies, and the empty one after them, ``concurrency`` at a time, at
    most ``2 * concurrency`` ahead of the consumer; queued requests are cancelled when the
    consumer stops."""
    first = fetch(1)
    yield first
    planned = 1
    size = len(first.records)
    if prefetch and size and first.total_item > size:
        planned = min(max_pages, -(-first.total_item // size) + 1)
    next_no = 2
    if planned >= next_no:
        ahead: deque[Future[ListPage]] = deque()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="okki-list")
        try:
            while next_no <= planned or ahead:
                while next_no <= planned and len(ahead) < 2 * concurrency:
                    ahead.append(pool.submit(fetch, next_no))
                    next_no += 1
                yield ahead.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for page_no in itertools.count(next_no):
        yield fetch(page_no)
