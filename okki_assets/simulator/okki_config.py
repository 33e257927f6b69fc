"""The OKKI simulator's switches and counters.

``OkkiSimConfig`` holds every switch of ``okki.OkkiSimulator`` (checked when it is made; the
module docstring of ``okki`` tells what each variant reproduces), ``OkkiSimStats`` what the
simulator saw. The tuples name the shapes the switches choose from: window boundary modes,
throttle shapes, fault kinds (``httpNNN``, ``bodyNNN`` for any 5xx, ``reset``, ``invalid_json``),
drift kinds, empty-page shapes, ``totalItem`` shapes and unusable info payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BOUNDARIES: tuple[str, ...] = ("inclusive", "exclusive_end", "exclusive_start", "exclusive")
THROTTLE_SHAPES: tuple[str, ...] = ("http429_retry_after", "http429", "body429", "body503")
FAULT_KINDS: tuple[str, ...] = ("http500", "http502", "http503", "body500", "reset", "invalid_json")
DRIFT_KINDS: tuple[str, ...] = ("leave", "enter", "bump")
EMPTY_PAGE_SHAPES: tuple[str, ...] = ("empty", "null", "zero_total")
TOTAL_ITEM_SHAPES: tuple[str, ...] = ("number", "string", "missing", "not_a_number")
INFO_PAYLOAD_FAULTS: tuple[str, ...] = ("nested_too_deep", "invalid_utf8")
DEFAULT_TOKEN_LIFETIME = 28800


def fault_status(kind: str) -> int | None:
    """500-599 for 'httpNNN' and 'bodyNNN' kinds, else None."""
    digits = kind[4:]
    if kind[:4] in ("http", "body") and digits.isdigit() and 500 <= int(digits) <= 599:
        return int(digits)
    return None


@dataclass
class OkkiSimConfig:
    """Every switch of the simulator. The defaults behave like a healthy live API."""

    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    scopes: tuple[str, ...] = ("company",)  # the modules this client may ask for
    token_expires_in: int | None = DEFAULT_TOKEN_LIFETIME  # None: omit expires_in (8 h still)
    success_code: int = 200  # 200 or 0 in the envelope
    max_page_size: int = 100  # count above this is clamped: pages smaller than asked
    default_page_size: int = 10  # when count is absent
    latency: float = 0.0  # seconds added to every answer (SimResponse.delay)
    latency_spike_rate: float = 0.0  # business answers delayed by latency_spike on top
    latency_spike: float = 0.0
    quota_rps: float | None = None  # token bucket per access token; None = no quota
    quota_burst: float | None = None  # bucket size (default: quota_rps, at least 1)
    throttle_shapes: tuple[str, ...] = THROTTLE_SHAPES  # cycled through when throttling
    quota_after: tuple[tuple[int, float], ...] = ()  # (granted requests, new quota_rps), ...
    # Business requests (1-based, over the simulator's life) answered with a throttle whatever
    # the quota: each shape served on a schedule that does not depend on the client's pace.
    throttle_calls: tuple[int, ...] = ()
    daily_budget: int | None = None  # business requests granted per day; None = no budget
    daily_retry_after: float | None = None  # Retry-After once spent; None = until midnight
    fault_rate: float = 0.0  # fraction of business calls answered with a fault
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    list_error_code: int | None = None  # every list request answered with this business code
    echo_token_in_errors: bool = False  # error messages repeat the request's access token
    revoke_token_after: int | None = None  # each token dies after N served business calls
    denied_in_body: bool = False  # HTTP 200 + {"error":"access_denied"} instead of 401
    drift_rate: float = 0.0  # fraction of a window's companies mutated on its first pass
    drift_kinds: tuple[str, ...] = DRIFT_KINDS
    boundary: str = "inclusive"  # inclusive | exclusive_end | exclusive_start | exclusive
    # How a list may end or lie. The counters count over the simulator's life; tests may raise
    # them at any time (they are read on every request).
    empty_first_pages: int = 0  # page-1 answers with no rows while totalItem > 0, N times
    empty_first_page_every: int = 1  # ... on every k-th page-1 request (1: the first N in a row)
    # Page 2+ requests that hold rows answered with no rows (totalItem unchanged), N times: an
    # empty page once in the middle of a list.
    empty_middle_pages: int = 0
    # such a page's list: "empty" ([]), "null", or "zero_total" ([] with totalItem 0)
    empty_page_shape: str = "empty"
    total_item_cap: int | None = None  # totalItem reported as at most this
    total_item_shape: str = "number"  # number | string | missing | not_a_number
    page_shift_times: int = 0  # requests for page 2+ answered with the page before's rows
    # Info per company: another business code instead of the record, or an update_time this many
    # seconds ahead of the list's (the list keeps the older time).
    info_error_codes: dict[str, int] = field(default_factory=dict)
    info_time_ahead: dict[str, int] = field(default_factory=dict)
    # Info per company: a payload that is JSON but cannot be used, on every call: a custom field
    # nested 5,000 levels deep ("nested_too_deep") or a name that is not UTF-8 ("invalid_utf8").
    info_payload_faults: dict[str, str] = field(default_factory=dict)
    # False (the default, the worst case): a deletion or restore keeps the company's old
    # update_time unless the test names a time; True: it moves to the next second held.
    deletion_moves_time: bool = False
    seed: int = 7

    def __post_init__(self) -> None:
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, not {self.boundary!r}")
        for shape in self.throttle_shapes:
            if shape not in THROTTLE_SHAPES:
                raise ValueError(f"unknown throttle shape {shape!r}")
        if not self.throttle_shapes:
            raise ValueError("throttle_shapes must not be empty")
        for kind in self.fault_kinds:
            if kind not in ("reset", "invalid_json") and fault_status(kind) is None:
                raise ValueError(f"unknown fault kind {kind!r}")
        for kind in self.drift_kinds:
            if kind not in DRIFT_KINDS:
                raise ValueError(f"unknown drift kind {kind!r}")
        if self.max_page_size < 1 or self.default_page_size < 1:
            raise ValueError("page sizes must be positive")
        if self.quota_rps is not None and self.quota_rps <= 0:
            raise ValueError("quota_rps must be positive (None disables the quota)")
        if self.empty_page_shape not in EMPTY_PAGE_SHAPES:
            raise ValueError(f"empty_page_shape must be one of {EMPTY_PAGE_SHAPES}")
        if self.total_item_shape not in TOTAL_ITEM_SHAPES:
            raise ValueError(f"total_item_shape must be one of {TOTAL_ITEM_SHAPES}")
        if self.empty_middle_pages < 0:
            raise ValueError("empty_middle_pages must not be negative")
        for kind in self.info_payload_faults.values():
            if kind not in INFO_PAYLOAD_FAULTS:
                raise ValueError(f"unknown info payload fault {kind!r}")
        if self.empty_first_page_every < 1:
            raise ValueError("empty_first_page_every must be at least 1")
        if self.total_item_cap is not None and self.total_item_cap < 0:
            raise ValueError("total_item_cap must not be negative")
        if any(n < 1 for n in self.throttle_calls):
            raise ValueError("throttle_calls counts business requests from 1")
        if any(rps <= 0 for _, rps in self.quota_after) or (
            self.quota_after and self.quota_rps is None
        ):
            raise ValueError("quota_after needs a quota_rps and positive rates")


@dataclass
class OkkiSimStats:
    """What the simulator saw. ``calls`` counts every request per path; ``request_times`` holds
    the clock value of every business request (throttled, faulted and denied ones included),
    ``granted_times`` the same value for every one the quota let through; ``throttled`` counts
    refusals per throttle shape (``daily_budget`` for the long wait once the budget is spent);
    ``info_by_company`` counts the info answers served per company_id asked for (the 404s too;
    throttled, faulted and denied requests are not answers)."""

    calls: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    denied: int = 0
    request_times: list[float] = field(default_factory=list)
    info_by_company: dict[str, int] = field(default_factory=dict)
    granted_times: list[float] = field(default_factory=list)

    def copy(self) -> OkkiSimStats:
        return OkkiSimStats(
            dict(self.calls),
            dict(self.throttled),
            dict(self.faults),
            self.denied,
            list(self.request_times),
            dict(self.info_by_company),
            list(self.granted_times),
        )
