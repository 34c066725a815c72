"""Reproducible generator of realistic billing-event landing files, with injected faults.

Writes `<root>/landing/billing_events/<arrival YYYY-MM-DD>/part-NNNN.jsonl[.gz]`. Every random
choice comes from one `random.Random(seed)` (no wall clock, no str `hash()`, no uuid4) and
gzip members carry mtime=0, so the same arguments always produce the same bytes. Landing
files are immutable: the generator refuses to write where a file already exists.

Faults come in three families (see `faults` in the summary):
- valid but tricky records that downstream must accept (duplicates, corrections, ...);
- records downstream must quarantine, kept near 2% of each arrival date so a 5% gate passes;
- file-level oddities (CRLF, BOM, no final newline, blank lines, gzip) that must still parse.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from checks.billing_contract import CURRENCIES, EVENT_TYPES, FUTURE_SKEW_DAYS, MAX_EVENT_ID_LENGTH, REQUIRED_FIELDS

DATASET = "billing_events"
EVENT_TYPE_WEIGHTS = (75, 10, 8, 7)  # in the order of EVENT_TYPES
CURRENCY_WEIGHTS = (45, 20, 12, 8, 8, 7)  # in the order of CURRENCIES
MAX_LATENESS_DAYS = 7  # older events are rejected downstream as too_late
FUTURE_HORIZON_DAYS = FUTURE_SKEW_DAYS  # event_ts at or after arrival + 2 days 00:00 UTC is a future_event

VALID_FAULT_KINDS = ("duplicate", "correction", "out_of_order", "late", "schema_drift")
REJECTED_FAULT_KINDS = (
    "malformed_json",
    "invalid_utf8",
    "not_an_object",
    "missing_field",
    "invalid_type",
    "naive_timestamp",
    "invalid_value",
    "sign_mismatch",
    "future_event",
    "too_late",
    "version_conflict",
)
FILE_FAULT_KINDS = ("crlf_file", "bom_file", "no_trailing_newline", "blank_line", "gzip_file")
FAULT_KINDS = VALID_FAULT_KINDS + REJECTED_FAULT_KINDS + FILE_FAULT_KINDS

# Rates are per new event of an arrival date.
DUPLICATE_RATE = 0.03
CORRECTION_RATE = 0.02
LATE_RATE = 0.02
SCHEMA_DRIFT_RATE = 0.01
STALE_REDELIVERY_PROBABILITY = 0.3  # a corrected event's older version shows up again later
TIMESTAMP_SHIFT_PROBABILITY = 0.3  # a correction also moves the event to the previous/next UTC date
PAYLOAD_PROBABILITY = 0.85
PAYLOAD_REORDER_PROBABILITY = 0.4
REJECTED_SHARE_TARGET = (0.015, 0.025)  # about 2% of a day's records
REJECTED_SHARE_CAP = 0.045  # strictly under the 5% daily quality gate, whatever the coverage floor asks
GZIP_PROBABILITY = 0.2
SAME_DAY_PICK_PROBABILITY = 0.6  # redeliveries mostly concern what arrived today
PICK_ATTEMPTS = 25

_UTF8_BOM = b"\xef\xbb\xbf"
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps builds one per call
GZIP_LEVEL = 6  # level 9 costs several times the CPU for a few percent of size
_OFFSETS = ("Z", "+00:00", "+01:00", "+02:00", "-05:00", "-08:00", "+05:30", "+09:00")
_OFFSET_WEIGHTS = (70, 3, 6, 5, 6, 4, 3, 3)
_FRACTION_DIGITS = (0, 3, 6)
_FRACTION_WEIGHTS = (70, 20, 10)
_PLANS = ("starter", "pro", "business", "enterprise")
_PLAN_PRICES_MINOR = (900, 2900, 9900, 49900)
_SKUS = ("seat", "storage_gb", "api_calls_1k", "support_addon")
_CHANNELS = ("web", "api", "mobile", "partner")
# Cumulative weights, computed once: random.choices re-accumulates plain weights on every call.
_EVENT_TYPE_CUMULATIVE = tuple(itertools.accumulate(EVENT_TYPE_WEIGHTS))
_CURRENCY_CUMULATIVE = tuple(itertools.accumulate(CURRENCY_WEIGHTS))
_OFFSET_CUMULATIVE = tuple(itertools.accumulate(_OFFSET_WEIGHTS))
_FRACTION_CUMULATIVE = tuple(itertools.accumulate(_FRACTION_WEIGHTS))
_NOTES = ("goodwill", "Prorrateo – cambio de plan", "Ajustement de période", "月額調整", "service credit")


@dataclass(frozen=True)
class GenerateSummary:
    root: Path
    arrival_dates: list[date]
    files: list[Path]  # every file written, in arrival then name order
    lines: int  # total physical records written (non-blank lines)
    faults: dict[str, int]  # count per injected fault kind (every kind in FAULT_KINDS, zeros included)


@dataclass(frozen=True)
class _Moment:
    """An event time plus how it is spelled, so a correction can move it and keep the spelling."""

    utc: datetime
    offset: str  # "Z", "+05:30", ... or "" for a naive (rejected) timestamp
    fraction_digits: int

    def text(self) -> str:
        local = self.utc.astimezone(timezone(timedelta(minutes=_offset_minutes(self.offset))))
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if self.fraction_digits:
            text += f".{local.microsecond:06d}"[: self.fraction_digits + 1]
        return text + self.offset


@dataclass
class _Delivery:
    """One valid record as delivered on an arrival date."""

    fields: dict[str, Any]
    moment: _Moment
    arrival: date
    sort_key: float  # position within the arrival date; derived records sort after their source

    @property
    def event_id(self) -> str:
        return str(self.fields["event_id"])

    @property
    def version(self) -> int:
        return int(self.fields["source_version"])


@dataclass(frozen=True)
class _FilePlan:
    arrival: date
    index: int
    gzip: bool
    crlf: bool
    bom: bool
    trailing_newline: bool
    blank_lines: int

    @property
    def name(self) -> str:
        return f"part-{self.index:04d}.jsonl" + (".gz" if self.gzip else "")


@dataclass
class _Run:
    """Mutable state shared across arrival dates of one generation run."""

    rng: random.Random
    accounts: list[tuple[str, str]]  # (account_id, its billing currency)
    days: int
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    used_event_ids: set[str] = field(default_factory=set)
    latest_version: dict[str, int] = field(default_factory=dict)
    # Only deliveries young enough to be redelivered within the lateness window are kept.
    recent: deque[list[_Delivery]] = field(default_factory=lambda: deque(maxlen=MAX_LATENESS_DAYS + 1))
    stale_by_arrival: dict[date, list[_Delivery]] = field(default_factory=dict)
    rejected_cycle: list[str] = field(default_factory=list)


def generate_landing(root: Path, start: date, days: int, events_per_day: int, seed: int) -> GenerateSummary:
    """Write `days` arrival dates of landing files starting at `start`; same arguments, same bytes."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if events_per_day < 1:
        raise ValueError(f"events_per_day must be >= 1, got {events_per_day}")
    root = Path(root)
    rng = random.Random(seed)
    arrival_dates = [start + timedelta(days=offset) for offset in range(days)]
    plans = _plan_files(rng, arrival_dates)
    landing_dir = root / "landing" / DATASET
    _refuse_existing(landing_dir, plans)

    run = _Run(rng=rng, accounts=_draw_accounts(rng, events_per_day), days=days)
    written: list[Path] = []
    lines = 0
    for arrival in arrival_dates:
        records = _generate_day(run, arrival, events_per_day, is_last_day=arrival == arrival_dates[-1])
        for plan, chunk in _assign_to_files(rng, plans[arrival], records):
            written.append(_write_file(landing_dir / arrival.isoformat() / plan.name, _encode_file(rng, plan, chunk)))
            lines += len(chunk)
            _count_file_faults(run.faults, plan)
    return GenerateSummary(root, arrival_dates, written, lines, dict(run.faults))


# ---------------------------------------------------------------- files


def _plan_files(rng: random.Random, arrival_dates: list[date]) -> dict[date, list[_FilePlan]]:
    """Decide names and oddities up front, so existing files can be refused before anything is written."""
    slots = [(arrival, index) for arrival in arrival_dates for index in range(rng.randint(1, 3))]
    gzipped = [slot for slot in slots if rng.random() < GZIP_PROBABILITY] or [rng.choice(slots)]
    # Distinct files when there are enough, so each oddity is exercised on its own.
    crlf, bom, no_newline = rng.sample(slots, 3) if len(slots) >= 3 else [rng.choice(slots) for _ in range(3)]
    blank_counts = {slot: rng.randint(1, 2) for slot in rng.sample(slots, min(len(slots), rng.randint(1, 3)))}
    plans: dict[date, list[_FilePlan]] = {arrival: [] for arrival in arrival_dates}
    for slot in slots:
        arrival, index = slot
        plans[arrival].append(
            _FilePlan(
                arrival=arrival,
                index=index,
                gzip=slot in gzipped,
                crlf=slot == crlf,
                bom=slot == bom,
                trailing_newline=slot != no_newline,
                blank_lines=blank_counts.get(slot, 0),
            )
        )
    return plans


def _refuse_existing(landing_dir: Path, plans: dict[date, list[_FilePlan]]) -> None:
    # The same part under the other suffix counts too: it would mix two runs into one arrival date.
    for arrival, day_plans in plans.items():
        for plan in day_plans:
            stem = landing_dir / arrival.isoformat() / f"part-{plan.index:04d}"
            for candidate in (stem.with_name(stem.name + ".jsonl"), stem.with_name(stem.name + ".jsonl.gz")):
                if candidate.exists():
                    raise FileExistsError(
                        f"refusing to overwrite landing file {candidate}: landing files are immutable; "
                        "generate into an empty root or a date range that has not landed yet"
                    )


def _assign_to_files(rng: random.Random, day_plans: list[_FilePlan], records: list[bytes]) -> list[tuple[_FilePlan, list[bytes]]]:
    """Split the day's records, in delivery order, into consecutive non-empty chunks, one per file."""
    file_count = max(1, min(len(day_plans), len(records)))
    cuts = sorted(rng.sample(range(1, len(records)), file_count - 1)) if file_count > 1 else []
    bounds = [0, *cuts, len(records)]
    return [(day_plans[i], records[bounds[i] : bounds[i + 1]]) for i in range(file_count)]


def _encode_file(rng: random.Random, plan: _FilePlan, records: list[bytes]) -> bytes:
    rows = list(records)
    for _ in range(plan.blank_lines):
        # Between records, never last, so the missing-final-newline oddity stays on a real record.
        rows.insert(rng.randint(1, max(1, len(rows) - 1)), b"")
    end = b"\r\n" if plan.crlf else b"\n"
    body = (_UTF8_BOM if plan.bom else b"") + end.join(rows) + (end if plan.trailing_newline else b"")
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if plan.gzip else body


def _write_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as handle:  # exclusive create: never replace a landed file, even in a race
        handle.write(content)
    return path


def _count_file_faults(faults: dict[str, int], plan: _FilePlan) -> None:
    faults["crlf_file"] += plan.crlf
    faults["bom_file"] += plan.bom
    faults["no_trailing_newline"] += not plan.trailing_newline
    faults["blank_line"] += plan.blank_lines
    faults["gzip_file"] += plan.gzip


# ---------------------------------------------------------------- one arrival date


@dataclass
class _Day:
    """What one arrival date delivers, collected with sort keys before it is put in delivery order."""

    arrival: date
    horizon: float  # sort keys of the day live in [0, horizon)
    is_last: bool
    pool: list[_Delivery] = field(default_factory=list)  # valid deliveries later records may derive from
    keyed: list[tuple[float, bytes]] = field(default_factory=list)

    def deliver(self, run: _Run, delivery: _Delivery, fault: str | None, in_pool: bool = True) -> None:
        self.keyed.append((delivery.sort_key, _dumps(delivery.fields)))
        if in_pool:
            self.pool.append(delivery)
        if fault:
            run.faults[fault] += 1

    def in_delivery_order(self) -> list[bytes]:
        return [line for _, line in sorted(self.keyed, key=lambda item: item[0])]


def _generate_day(run: _Run, arrival: date, events_per_day: int, is_last_day: bool) -> list[bytes]:
    """All records of one arrival date, in delivery order."""
    day = _Day(arrival, horizon=float(events_per_day), is_last=is_last_day)
    run.recent.append(day.pool)
    _deliver_new_events(run, day, events_per_day)
    _deliver_stale_versions(run, day)
    _deliver_corrections(run, day, _at_least_one(run.rng, events_per_day * CORRECTION_RATE))
    _deliver_duplicates(run, day, _at_least_one(run.rng, events_per_day * DUPLICATE_RATE))
    _deliver_rejected(run, day)
    return day.in_delivery_order()


def _deliver_new_events(run: _Run, day: _Day, events_per_day: int) -> None:
    rng = run.rng
    late_count = min(events_per_day, _at_least_one(rng, events_per_day * LATE_RATE))
    drift_count = min(events_per_day - late_count, _at_least_one(rng, events_per_day * SCHEMA_DRIFT_RATE))
    special = rng.sample(range(events_per_day), late_count + drift_count)
    late_positions, drift_positions = set(special[:late_count]), set(special[late_count:])
    for position in range(events_per_day):
        is_late = position in late_positions
        days_before = rng.randint(2, MAX_LATENESS_DAYS) if is_late else rng.randint(0, 1)
        delivery = _draw_event(run, day.arrival, days_before, sort_key=float(position))
        fault = "late" if is_late else None
        if position in drift_positions:
            delivery.fields["channel"] = rng.choice(_CHANNELS)  # unknown to the contract: schema drift
            fault = "schema_drift"
        run.latest_version[delivery.event_id] = delivery.version
        day.deliver(run, delivery, fault)


def _deliver_stale_versions(run: _Run, day: _Day) -> None:
    """Older versions of events corrected on an earlier arrival date: out of order, not in the pool."""
    for stale in run.stale_by_arrival.pop(day.arrival, []):
        if _acceptable_on(stale.moment, day.arrival):
            fields = _maybe_reorder_payload(run.rng, stale.fields)
            redelivery = _Delivery(fields, stale.moment, day.arrival, run.rng.uniform(0, day.horizon))
            day.deliver(run, redelivery, "out_of_order", in_pool=False)


def _deliver_corrections(run: _Run, day: _Day, count: int) -> None:
    for number in range(count):
        # The first correction of each day but the last always leaves a stale version for the next
        # day, so out_of_order shows up whenever there are at least two arrival dates.
        must_go_stale = number == 0 and not day.is_last
        also_valid_on = (day.arrival + timedelta(days=1),) if must_go_stale else ()
        source = _pick_current(run, day.arrival, *also_valid_on)
        if source is None:
            continue
        day.deliver(run, _correct(run, source, day), "correction")
        _maybe_schedule_stale(run, source, day.arrival, must_go_stale)


def _deliver_duplicates(run: _Run, day: _Day, count: int) -> None:
    for _ in range(count):
        source = _pick_current(run, day.arrival)
        if source is not None:
            fields = _maybe_reorder_payload(run.rng, source.fields)
            redelivery = _Delivery(fields, source.moment, day.arrival, _key_after(run.rng, source, day))
            day.deliver(run, redelivery, "duplicate", in_pool=False)


def _deliver_rejected(run: _Run, day: _Day) -> None:
    for _ in range(_rejected_budget(run.rng, valid_records=len(day.keyed), days=run.days)):
        kind = _next_rejected_kind(run)
        rejected = _REJECTED_BUILDERS[kind](run, day)
        if rejected is not None:
            day.keyed.append(rejected)
            run.faults[kind] += 1


def _at_least_one(rng: random.Random, expected: float) -> int:
    """Stochastic rounding of an expected count, never below one so each kind shows up every day."""
    whole = math.floor(expected)
    return max(1, whole + (rng.random() < expected - whole))


def _rejected_budget(rng: random.Random, valid_records: int, days: int) -> int:
    target = round(valid_records * rng.uniform(*REJECTED_SHARE_TARGET))
    coverage_floor = math.ceil(len(REJECTED_FAULT_KINDS) / days)  # every kind across the run
    cap = math.floor(valid_records * REJECTED_SHARE_CAP / (1 - REJECTED_SHARE_CAP))
    return min(max(target, coverage_floor), cap)


def _next_rejected_kind(run: _Run) -> str:
    """Walk shuffled rounds of all kinds, so the first len(kinds) rejections cover every kind."""
    if not run.rejected_cycle:
        run.rejected_cycle = list(REJECTED_FAULT_KINDS)
        run.rng.shuffle(run.rejected_cycle)
    return run.rejected_cycle.pop()


# ---------------------------------------------------------------- valid records


def _draw_accounts(rng: random.Random, events_per_day: int) -> list[tuple[str, str]]:
    count = max(5, events_per_day // 20)
    width = max(4, len(str(count - 1)))
    return [(f"acct_{i:0{width}d}", _weighted(rng, CURRENCIES, _CURRENCY_CUMULATIVE)) for i in range(count)]


def _draw_event(run: _Run, arrival: date, days_before: int, sort_key: float) -> _Delivery:
    """A fresh, valid version-1 event whose UTC event date is `days_before` the arrival date."""
    rng = run.rng
    # Squaring skews traffic towards low account numbers: a few busy accounts, a long tail.
    account_id, currency = run.accounts[int(len(run.accounts) * rng.random() ** 2)]
    event_type = _weighted(rng, EVENT_TYPES, _EVENT_TYPE_CUMULATIVE)
    amount = _draw_amount(rng, event_type)
    moment = _draw_moment(rng, arrival - timedelta(days=days_before))
    fields: dict[str, Any] = {
        "event_id": _new_event_id(run),
        "source_version": 1,
        "account_id": account_id,
        "event_type": event_type,
        "event_ts": moment.text(),
        "amount_minor": amount,
        "currency": currency,
    }
    if rng.random() < PAYLOAD_PROBABILITY:
        fields["payload"] = _draw_payload(rng, event_type, amount)
    return _Delivery(fields, moment, arrival, sort_key)


def _weighted(rng: random.Random, options: Sequence[Any], cumulative: tuple[int, ...]) -> Any:
    # What random.choices does, without its per-call overhead: this runs several times per event.
    return options[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _new_event_id(run: _Run) -> str:
    while True:
        event_id = f"evt_{run.rng.getrandbits(64):016x}"
        if event_id not in run.used_event_ids:
            run.used_event_ids.add(event_id)
            return event_id


def _draw_amount(rng: random.Random, event_type: str) -> int:
    # Mostly plan prices times seats; the rest usage-based amounts.
    magnitude = rng.choice(_PLAN_PRICES_MINOR) * rng.randint(1, 5) if rng.random() < 0.6 else rng.randint(50, 250_000)
    if event_type == "charge":
        return magnitude
    if event_type in ("refund", "credit"):
        return -magnitude
    return magnitude if rng.random() < 0.5 else -magnitude  # adjustments go either way


def _draw_moment(rng: random.Random, event_date: date) -> _Moment:
    digits = _weighted(rng, _FRACTION_DIGITS, _FRACTION_CUMULATIVE)
    microseconds = {0: 0, 3: rng.randrange(1000) * 1000, 6: rng.randrange(1_000_000)}[digits]
    midnight = datetime(event_date.year, event_date.month, event_date.day, tzinfo=UTC)
    utc = midnight + timedelta(seconds=rng.randrange(86_400), microseconds=microseconds)
    return _Moment(utc, _weighted(rng, _OFFSETS, _OFFSET_CUMULATIVE), digits)


def _draw_payload(rng: random.Random, event_type: str, amount: int) -> dict[str, Any]:
    invoice = f"inv_{rng.randrange(1_000_000):06d}"
    if event_type == "charge":
        plan_index = rng.randrange(len(_PLANS))
        lines = [
            {"sku": rng.choice(_SKUS), "qty": rng.randint(1, 20), "unit_amount_minor": _PLAN_PRICES_MINOR[plan_index]}
            for _ in range(rng.randint(1, 3))
        ]
        return {"invoice": invoice, "plan": _PLANS[plan_index], "lines": lines}
    if event_type == "refund":
        return {"invoice": invoice, "reason": rng.choice(("duplicate_charge", "customer_request", "outage"))}
    return {"reason": rng.choice(("promo", "proration", "support")), "note": rng.choice(_NOTES), "ref": invoice}


def _acceptable_on(moment: _Moment, arrival: date) -> bool:
    """True when downstream accepts this event time for this arrival date (neither future nor too late)."""
    future_from = datetime(arrival.year, arrival.month, arrival.day, tzinfo=UTC) + timedelta(days=FUTURE_HORIZON_DAYS)
    return (arrival - moment.utc.date()).days <= MAX_LATENESS_DAYS and moment.utc < future_from


def _pick_current(run: _Run, arrival: date, *also_valid_on: date) -> _Delivery | None:
    """A recent delivery that is its event's latest version and still acceptable on the given dates."""
    rng = run.rng
    for _ in range(PICK_ATTEMPTS):
        pool = run.recent[-1] if rng.random() < SAME_DAY_PICK_PROBABILITY else rng.choice(run.recent)
        if not pool:
            continue
        candidate = rng.choice(pool)
        if run.latest_version[candidate.event_id] != candidate.version:
            continue
        if all(_acceptable_on(candidate.moment, day) for day in (arrival, *also_valid_on)):
            return candidate
    return None


def _key_after(rng: random.Random, source: _Delivery, day: _Day) -> float:
    """A sort key that delivers a derived record after its source when both arrive the same day."""
    return rng.uniform(source.sort_key if source.arrival == day.arrival else 0.0, day.horizon)


def _correct(run: _Run, source: _Delivery, day: _Day) -> _Delivery:
    rng = run.rng
    moment = source.moment
    if rng.random() < TIMESTAMP_SHIFT_PROBABILITY:
        for shift in rng.sample((-1, 1), 2):  # previous or next UTC date, whichever is still acceptable
            shifted = _Moment(moment.utc + timedelta(days=shift), moment.offset, moment.fraction_digits)
            if _acceptable_on(shifted, day.arrival):
                moment = shifted
                break
    version = source.version + 1
    fields = {
        **source.fields,
        "source_version": version,
        "event_ts": moment.text(),
        "amount_minor": _changed_amount(rng, int(source.fields["amount_minor"])),
    }
    run.latest_version[source.event_id] = version
    return _Delivery(fields, moment, day.arrival, _key_after(rng, source, day))


def _changed_amount(rng: random.Random, amount: int) -> int:
    """A different non-zero amount with the same sign, so the sign rule of the event type still holds."""
    magnitude = abs(amount)
    delta = rng.randint(1, max(1, magnitude // 2))
    changed = magnitude - delta if rng.random() < 0.5 and magnitude - delta >= 1 else magnitude + delta
    return changed if amount > 0 else -changed


def _maybe_schedule_stale(run: _Run, source: _Delivery, arrival: date, must: bool) -> None:
    rng = run.rng
    if must:
        later = arrival + timedelta(days=1)
    elif rng.random() < STALE_REDELIVERY_PROBABILITY:
        later = arrival + timedelta(days=rng.randint(1, 2))
    else:
        return
    run.stale_by_arrival.setdefault(later, []).append(source)


def _maybe_reorder_payload(rng: random.Random, fields: dict[str, Any]) -> dict[str, Any]:
    """Same content, possibly different payload key order: a redelivery need not be byte-identical."""
    payload = fields.get("payload")
    if not isinstance(payload, dict) or len(payload) < 2 or rng.random() >= PAYLOAD_REORDER_PROBABILITY:
        return fields
    keys = list(payload)
    rng.shuffle(keys)
    return {**fields, "payload": {key: payload[key] for key in keys}}


def _dumps(value: Any) -> bytes:
    return _dumps_text(value).encode("utf-8")


def _dumps_text(value: Any) -> str:
    return _JSON_ENCODER.encode(value)


def _offset_minutes(offset: str) -> int:
    if offset in ("", "Z"):
        return 0
    hours, minutes = offset[1:].split(":")
    return (-1 if offset[0] == "-" else 1) * (int(hours) * 60 + int(minutes))


# ---------------------------------------------------------------- rejected records
# Each builder breaks exactly one rule of an otherwise valid record, so the expected quarantine
# reason is unambiguous. Fresh event ids keep them from interfering with real events, except
# version_conflict, which by definition reuses one.


def _fresh_fields(run: _Run, arrival: date) -> dict[str, Any]:
    return _draw_event(run, arrival, days_before=run.rng.randint(0, 1), sort_key=0.0).fields


def _anywhere(run: _Run, day: _Day, line: bytes) -> tuple[float, bytes]:
    return run.rng.uniform(0, day.horizon), line


def _malformed_json(run: _Run, day: _Day) -> tuple[float, bytes]:
    text = _dumps_text(_fresh_fields(run, day.arrival))
    # Cut on characters, not bytes, so the truncated line is still valid UTF-8: only the JSON is broken.
    return _anywhere(run, day, text[: run.rng.randint(1, len(text) - 2)].encode("utf-8"))


def _invalid_utf8(run: _Run, day: _Day) -> tuple[float, bytes]:
    line = _dumps(_fresh_fields(run, day.arrival)).replace(b'"account_id":"', b'"account_id":"\xff\xfe', 1)
    return _anywhere(run, day, line)


def _not_an_object(run: _Run, day: _Day) -> tuple[float, bytes]:
    choices = (b"[1,2]", b"null", b"42", b'"charge"', _dumps([_fresh_fields(run, day.arrival)]))
    return _anywhere(run, day, run.rng.choice(choices))


def _missing_field(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    name = run.rng.choice(REQUIRED_FIELDS)
    if run.rng.random() < 0.5:
        del fields[name]
    else:
        fields[name] = None
    return _anywhere(run, day, _dumps(fields))


def _invalid_type(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    amount = int(fields["amount_minor"])
    breakers: list[Callable[[], None]] = [
        lambda: fields.update(amount_minor=str(amount)),
        lambda: fields.update(amount_minor=amount + 0.5),
        lambda: fields.update(source_version=str(fields["source_version"] + 1)),
        lambda: fields.update(event_ts=1_735_689_600),  # epoch seconds instead of RFC 3339 text
    ]
    run.rng.choice(breakers)()
    return _anywhere(run, day, _dumps(fields))


def _naive_timestamp(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    moment = _draw_moment(run.rng, day.arrival - timedelta(days=run.rng.randint(0, 1)))
    fields["event_ts"] = _Moment(moment.utc, "", moment.fraction_digits).text()
    return _anywhere(run, day, _dumps(fields))


def _invalid_value(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    breakers: list[Callable[[], None]] = [
        lambda: fields.update(event_type="chargeback"),
        lambda: fields.update(currency="XYZ"),
        lambda: fields.update(source_version=0),
        lambda: fields.update(event_id=""),
        lambda: fields.update(event_id="evt_" + "f" * MAX_EVENT_ID_LENGTH),
    ]
    run.rng.choice(breakers)()
    return _anywhere(run, day, _dumps(fields))


def _sign_mismatch(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    magnitude = abs(int(fields["amount_minor"]))
    event_type = run.rng.choice(("charge", "refund", "credit"))
    fields.update(event_type=event_type, amount_minor=-magnitude if event_type == "charge" else magnitude)
    return _anywhere(run, day, _dumps(fields))


def _future_event(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    fields["event_ts"] = _draw_moment(run.rng, day.arrival + timedelta(days=run.rng.randint(3, 30))).text()
    return _anywhere(run, day, _dumps(fields))


def _too_late(run: _Run, day: _Day) -> tuple[float, bytes]:
    fields = _fresh_fields(run, day.arrival)
    fields["event_ts"] = _draw_moment(run.rng, day.arrival - timedelta(days=run.rng.randint(10, 60))).text()
    return _anywhere(run, day, _dumps(fields))


def _version_conflict(run: _Run, day: _Day) -> tuple[float, bytes] | None:
    source = _pick_current(run, day.arrival)
    if source is None:
        return None
    fields = {**source.fields, "amount_minor": _changed_amount(run.rng, int(source.fields["amount_minor"]))}
    return _key_after(run.rng, source, day), _dumps(fields)


_REJECTED_BUILDERS: dict[str, Callable[[_Run, _Day], tuple[float, bytes] | None]] = {
    "malformed_json": _malformed_json,
    "invalid_utf8": _invalid_utf8,
    "not_an_object": _not_an_object,
    "missing_field": _missing_field,
    "invalid_type": _invalid_type,
    "naive_timestamp": _naive_timestamp,
    "invalid_value": _invalid_value,
    "sign_mismatch": _sign_mismatch,
    "future_event": _future_event,
    "too_late": _too_late,
    "version_conflict": _version_conflict,
}
