"""Property tests: the engine against an independent reference model of the billing-events contract.

The model below is written from the contract text only (latest version wins, smallest content hash wins a
version conflict, lineage names the earliest delivery of the kept content, gold is a pure aggregate of silver).
Hypothesis generates small universes of valid deliveries so that the only quarantine reason is version_conflict.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lakehouse.batches.batch import SilverReport
from tests.support import assert_same_content, gold, land, quarantine, run_batch, silver, snapshot

EXAMPLES = int(os.environ.get("LAKEHOUSE_PROPERTY_EXAMPLES", "25"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Arrival dates within one week; every event instant below is valid for all of them: not too late
# (event_date >= 2025-01-07 = 2025-01-14 - 7 days) and not in the future (< 2025-01-12 00:00Z = 2025-01-10 + 2 days).
ARRIVALS = ["2025-01-10", "2025-01-11", "2025-01-12", "2025-01-13", "2025-01-14"]
EARLIEST_VALID = datetime(2025, 1, 7, tzinfo=UTC)
FUTURE_CUTOFF = datetime(2025, 1, 12, tzinfo=UTC)
# UTC midnights that variants straddle, so a conflict or a new version can move an event to another event_date.
BOUNDARIES = [datetime(2025, 1, day, tzinfo=UTC) for day in (8, 9, 10, 11)]
NUDGES = [timedelta(microseconds=1), timedelta(minutes=30), timedelta(hours=11, seconds=7)]
# Renderings of one instant: same content whatever the offset; local dates differ from UTC dates on purpose.
OFFSETS: list[timezone | None] = [
    None,
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-3)),
    timezone(timedelta(hours=14)),
]
EVENT_IDS = ["ev-1", "ev-2", "ev-3", "ev-4", "év-5", "ev-6"]  # one non-ASCII id: the hash uses ensure_ascii=False
SIGN = {"charge": (1,), "refund": (-1,), "credit": (-1,), "adjustment": (1, -1)}
assert all(EARLIEST_VALID <= b + s * n < FUTURE_CUTOFF for b in BOUNDARIES for n in NUDGES for s in (1, -1)), "keep records valid"


# --------------------------------------------------------------------------------------------------------------------
# Generated universe
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """The business fields of one delivery; event_ts is an instant, payload a JSON object or absent."""

    account_id: str
    event_type: str
    instant: datetime
    amount_minor: int
    currency: str
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class Line:
    """One landed line: which (event_id, version, content) it carries and how it is spelled."""

    event_id: str
    version: int
    content: Content
    offset: timezone | None  # None = "Z"
    key_order_seed: int  # payload keys are written in a seeded random order

    def record(self) -> dict[str, object]:
        c = self.content
        local = c.instant.astimezone(self.offset or UTC)
        ts = local.isoformat().replace("+00:00", "Z") if self.offset is None else local.isoformat()
        record: dict[str, object] = {
            "event_id": self.event_id,
            "source_version": self.version,
            "account_id": c.account_id,
            "event_type": c.event_type,
            "event_ts": ts,
            "amount_minor": c.amount_minor,
            "currency": c.currency,
        }
        if c.payload is not None:
            record["payload"] = _shuffled(c.payload, random.Random(self.key_order_seed))
        return record


def _shuffled(value: object, rng: random.Random) -> object:
    """Same JSON value, different object key order (must be the SAME content)."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "café", "日本", 'q"t']))
payloads = st.dictionaries(
    st.sampled_from(["a", "b", "c", "note", "ñ"]),
    st.one_of(
        json_leaf, st.lists(json_leaf, max_size=2), st.dictionaries(st.sampled_from(["x", "y", "z"]), json_leaf, max_size=3)
    ),
    max_size=4,
)


@st.composite
def base_contents(draw: st.DrawFn) -> Content:
    kind = draw(st.sampled_from(sorted(SIGN)))
    boundary = draw(st.sampled_from(BOUNDARIES))
    nudge = draw(st.sampled_from(NUDGES))
    return Content(
        account_id=draw(st.sampled_from(["acct_1", "acct_2"])),
        event_type=kind,
        instant=boundary + nudge,
        amount_minor=draw(st.sampled_from(SIGN[kind])) * draw(st.integers(1, 500)),
        currency=draw(st.sampled_from(["USD", "EUR", "JPY"])),
        payload=draw(st.none() | payloads),
    )


@st.composite
def variants_of(draw: st.DrawFn, base: Content) -> Content:
    """A competing content for one (event_id, version): new amount, maybe across midnight, maybe another payload."""
    sign = 1 if base.amount_minor > 0 else -1
    amount = sign * draw(st.integers(1, 500))
    instant = base.instant
    if draw(st.booleans()):
        midnight = instant.replace(hour=0, minute=0, second=0, microsecond=0)
        instant = midnight - (instant - midnight)  # mirror across the UTC date boundary
    payload = draw(st.none() | payloads) if draw(st.booleans()) else base.payload
    return Content(base.account_id, base.event_type, instant, amount, base.currency, payload)


@st.composite
def landings(draw: st.DrawFn) -> dict[str, dict[str, list[Line]]]:
    """{arrival_date: {file_name: [lines]}}: 1-4 arrival dates, 1-2 non-empty files each, duplicates likely."""
    pool: list[tuple[str, int, Content]] = []
    for event_id in draw(st.lists(st.sampled_from(EVENT_IDS), min_size=1, max_size=6, unique=True)):
        for version in draw(st.sets(st.integers(1, 3), min_size=1)):
            base = draw(base_contents())
            for content in [base, *[draw(variants_of(base)) for _ in range(draw(st.integers(1, 2)))]]:
                pool.append((event_id, version, content))
    line = st.builds(
        lambda pick, offset, seed: Line(pick[0], pick[1], pick[2], offset, seed),
        st.sampled_from(pool),
        st.sampled_from(OFFSETS),
        st.integers(0, 2**16),
    )
    files: dict[str, dict[str, list[Line]]] = {}
    for arrival in sorted(draw(st.sets(st.sampled_from(ARRIVALS), min_size=1, max_size=4))):
        names = ["a.jsonl", "b.jsonl"][: draw(st.integers(1, 2))]
        files[arrival] = {}
        for name in names:
            lines = draw(st.lists(line, min_size=1, max_size=6))
            if draw(st.booleans()):  # verbatim re-delivery of a line, the commonest real-world duplicate
                lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
            files[arrival][name] = lines
    return files


def land_all(root: Path, files: dict[str, dict[str, list[Line]]]) -> None:
    for arrival, by_name in files.items():
        for name, lines in by_name.items():
            land(root, arrival, name, [line.record() for line in lines])


# --------------------------------------------------------------------------------------------------------------------
# Reference model (from the contract text)
# --------------------------------------------------------------------------------------------------------------------


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _epoch_us(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def content_hash(event_id: str, version: int, c: Content) -> str:
    payload = None if c.payload is None else _canonical(c.payload)
    fields = [event_id, version, c.account_id, c.event_type, _epoch_us(c.instant), c.amount_minor, c.currency, payload]
    return hashlib.sha256(_canonical(fields).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Delivery:
    arrival: str
    file: str  # "<arrival>/<name>"
    line: int  # 1-based
    event_id: str
    version: int
    content: Content
    hash: str

    @property
    def position(self) -> tuple[str, str, int]:
        return (self.arrival, self.file, self.line)


def deliveries(files: dict[str, dict[str, list[Line]]]) -> list[Delivery]:
    return [
        Delivery(
            arrival,
            f"{arrival}/{name}",
            n,
            ln.event_id,
            ln.version,
            ln.content,
            content_hash(ln.event_id, ln.version, ln.content),
        )
        for arrival in sorted(files)
        for name in sorted(files[arrival])
        for n, ln in enumerate(files[arrival][name], start=1)
    ]


@dataclass
class Model:
    silver: list[tuple[Any, ...]]
    conflicts: list[tuple[Any, ...]]
    gold: list[tuple[Any, ...]]


def reference_model(delivered: list[Delivery]) -> Model:
    by_key: dict[tuple[str, int], list[Delivery]] = defaultdict(list)
    for d in delivered:
        by_key[(d.event_id, d.version)].append(d)
    # Rule 4: per (event_id, version) the smallest content hash wins; every other delivery is a version_conflict.
    winner = {key: min(d.hash for d in ds) for key, ds in by_key.items()}
    conflicts = sorted(
        (d.arrival, d.file, d.line, d.event_id, d.version) for d in delivered if d.hash != winner[(d.event_id, d.version)]
    )
    silver_rows = []
    for event_id in {d.event_id for d in delivered}:
        top = max(v for (e, v) in by_key if e == event_id)  # rule 2: highest version
        kept = min(
            (d for d in by_key[(event_id, top)] if d.hash == winner[(event_id, top)]), key=lambda d: d.position
        )  # rule 5: earliest delivery of the kept content
        c = kept.content
        silver_rows.append(
            (
                event_id,
                top,
                c.account_id,
                c.event_type,
                c.instant,
                c.amount_minor,
                c.currency,
                None if c.payload is None else _canonical(c.payload),
                c.instant.astimezone(UTC).date(),
                kept.hash,
                date.fromisoformat(kept.arrival),
                kept.file,
                kept.line,
            )
        )
    totals: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in silver_rows:
        kind, amount = row[3], row[5]
        t = totals[(row[8], row[2], row[6])]  # (event_date, account_id, currency)
        t[0] += amount if kind == "charge" else 0
        t[1] += amount if kind in ("refund", "credit") else 0
        t[2] += amount if kind == "adjustment" else 0
        t[3] += amount
        t[4] += 1
    gold_rows = sorted((*group, *sums) for group, sums in totals.items())
    return Model(sorted(silver_rows, key=lambda row: str(row[0])), conflicts, gold_rows)


# --------------------------------------------------------------------------------------------------------------------
# Engine observations
# --------------------------------------------------------------------------------------------------------------------

SILVER_COLUMNS = [
    "event_id",
    "source_version",
    "account_id",
    "event_type",
    "event_ts",
    "amount_minor",
    "currency",
    "payload",
    "event_date",
    "_content_hash",
    "_arrival_date",
    "_source_file",
    "_source_line",
]
GOLD_COLUMNS = [
    "event_date",
    "account_id",
    "currency",
    "charges_minor",
    "refunds_minor",
    "adjustments_minor",
    "net_minor",
    "event_count",
]


def observed(root: Path) -> Model:
    q = quarantine(root)
    assert set(q.get_column("_reason").to_list()) <= {"version_conflict"}, "all generated records are valid"
    conflicts = sorted(
        (a.isoformat(), f, n, e, v)
        for a, f, n, e, v in q.select("_arrival_date", "_source_file", "_source_line", "event_id", "source_version").iter_rows()
    )
    g = gold(root)
    gold_rows = sorted(g.select(GOLD_COLUMNS).iter_rows()) if g.width else []
    return Model(sorted(silver(root).select(SILVER_COLUMNS).iter_rows(), key=lambda row: str(row[0])), conflicts, gold_rows)


def line_count(files: dict[str, dict[str, list[Line]]], arrival: str) -> int:
    return sum(len(lines) for lines in files[arrival].values())


def run_checked(
    root: Path, files: dict[str, dict[str, list[Line]]], arrival: str, max_rejected_fraction: float | None = None
) -> SilverReport:
    """Run one batch and assert rule 8 (conservation) on its report, whatever else the test checks."""
    if max_rejected_fraction is None:  # the configured default gate
        report = run_batch(root, arrival)
    else:
        report = run_batch(root, arrival, max_rejected_fraction=max_rejected_fraction)
    c = report.counts
    assert report.records_in == c["records_in"] == line_count(files, arrival), (arrival, report.records_in, c)
    assert c["records_in"] == c["inserted"] + c["updated"] + c["duplicates"] + c["stale"] + c["quarantined"], (arrival, c)
    assert all(n >= 0 for n in c.values()), (arrival, c)
    return report


# --------------------------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------------------------


@PROPERTY
@given(files=landings())
def test_silver_quarantine_and_gold_match_the_reference_model(files: dict[str, dict[str, list[Line]]]) -> None:
    """Rules 1-5 and 7: latest version wins, smallest hash wins a conflict, lineage is the earliest kept delivery."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        land_all(root, files)
        for arrival in sorted(files):
            assert run_checked(root, files, arrival, max_rejected_fraction=1.0).published
        expected, actual = reference_model(deliveries(files)), observed(root)
        event(f"conflicting deliveries: {min(len(expected.conflicts), 3)}{'+' if len(expected.conflicts) >= 3 else ''}")
        assert actual.silver == expected.silver
        assert actual.conflicts == expected.conflicts
        assert actual.gold == expected.gold


@PROPERTY
@given(files=landings())
def test_a_date_resolved_in_many_key_slices_spilled_to_disk_matches_the_reference_model(
    files: dict[str, dict[str, list[Line]]],
) -> None:
    """Bounded memory changes nothing: with two deliveries per group of key slices and every spilled frame on
    disk, silver, quarantine and gold are the model's, and replaying each date commits nothing to silver."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch("lakehouse.batches.batch.GROUP_ROWS", 2),
        mock.patch("lakehouse.batches.spill.MEMORY_BYTES", 0),
    ):
        root = Path(tmp)
        land_all(root, files)
        for arrival in sorted(files):
            assert run_checked(root, files, arrival, max_rejected_fraction=1.0).published
        expected, actual = reference_model(deliveries(files)), observed(root)
        assert (actual.silver, actual.conflicts, actual.gold) == (expected.silver, expected.conflicts, expected.gold)
        for arrival in sorted(files):
            replay = run_checked(root, files, arrival, max_rejected_fraction=1.0)
            assert replay.silver_rows_written == replay.silver_rows_deleted == 0, (arrival, replay)


@PROPERTY
@given(files=landings(), data=st.data())
def test_content_is_independent_of_processing_order_and_reruns(
    files: dict[str, dict[str, list[Line]]], data: st.DataObject
) -> None:
    """Rule 6: any order of arrival dates, plus replays of some of them, gives the same lake as processing them in order."""
    order = data.draw(st.permutations(sorted(files)), label="order")
    reruns = data.draw(st.lists(st.sampled_from(sorted(files)), max_size=3), label="reruns")
    with tempfile.TemporaryDirectory() as in_order, tempfile.TemporaryDirectory() as shuffled:
        for root, sequence in ((Path(in_order), sorted(files)), (Path(shuffled), [*order, *reruns])):
            land_all(root, files)
            for arrival in sequence:
                assert run_checked(root, files, arrival, max_rejected_fraction=1.0).published
        # Every deterministic column (quarantine's _kept_* and _detail, batch ids, gold) must match, not just the model's.
        assert_same_content(snapshot(Path(in_order)), snapshot(Path(shuffled)))
        expected, actual = reference_model(deliveries(files)), observed(Path(shuffled))
        assert (actual.silver, actual.conflicts, actual.gold) == (expected.silver, expected.conflicts, expected.gold)


@PROPERTY
@given(files=landings())
def test_gated_batches_leave_silver_and_gold_untouched(files: dict[str, dict[str, list[Line]]]) -> None:
    """Quality gate at its default (0.05): a batch above it publishes nothing; opening the gate later converges to the model."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        land_all(root, files)
        gated = []
        for arrival in sorted(files):
            before = {"silver": silver(root), "gold": gold(root)}
            report = run_checked(root, files, arrival)
            assert report.published == (report.counts["quarantined"] / report.records_in <= 0.05), report.counts
            if not report.published:
                gated.append(arrival)
                assert_same_content(before, {"silver": silver(root), "gold": gold(root)})
        event(f"gated batches: {len(gated)}")
        # A gated batch must leave no residue: publishing it later yields the same lake as never having gated it.
        for arrival in gated:
            assert run_checked(root, files, arrival, max_rejected_fraction=1.0).published
        expected, actual = reference_model(deliveries(files)), observed(root)
        assert (actual.silver, actual.conflicts, actual.gold) == (expected.silver, expected.conflicts, expected.gold)
