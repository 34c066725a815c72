"""Every timed measurement, baselines and scenarios alike. Each runs in its own child process
(benchmarks.worker): setup is untimed, the timed section excludes interpreter and import start-up,
and the child's peak RSS (VmHWM) is its alone.

A measure returns (seconds, rows, extra facts). The data it reads was prepared by benchmarks.prepare.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks import data
from lakehouse.delta.storage import merge_into, open_table, scan_table, write_table

Result = tuple[float, int, dict[str, Any]]
MEASURES: dict[str, Callable[[Path, Path, dict[str, Any]], Result]] = {}


def measure(
    name: str,
) -> Callable[[Callable[[Path, Path, dict[str, Any]], Result]], Callable[[Path, Path, dict[str, Any]], Result]]:
    def register(function: Callable[[Path, Path, dict[str, Any]], Result]) -> Callable[[Path, Path, dict[str, Any]], Result]:
        MEASURES[name] = function
        return function

    return register


def link_copy(source: Path, target: Path) -> None:
    """A private copy of prepared tables in no time: Delta never rewrites a file, so hard links are safe."""
    shutil.copytree(source, target, copy_function=os.link)


def _settings(root: Path) -> Any:
    from lakehouse.settings import Settings

    return Settings(root=str(root), lock_timeout_seconds=60.0)


# --- baselines ---------------------------------------------------------------------------------


@measure("write_parquet")
def write_parquet(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Polars writes the typed events to one zstd Parquet file: the floor of any columnar write."""
    frame = data.arrival_batch(params["events"], params["seed"])
    start = time.perf_counter()
    frame.write_parquet(scratch / "events.parquet", compression="zstd")
    return time.perf_counter() - start, frame.height, {}


def _merge(work: Path, scratch: Path, params: dict[str, Any], pruned: bool) -> Result:
    link_copy(work / f"history-{params['history']}" / "tables" / "silver", scratch / "silver")
    uri = str(scratch / "silver" / "billing_events")
    batch = pl.read_parquet(work / "apply-batch.parquet").to_arrow()
    dates = sorted({d.isoformat() for d in pl.from_arrow(batch).get_column("event_date").to_list()})  # type: ignore[union-attr]
    on = "t.event_id = s.event_id AND " + (
        "t.event_date IN (" + ", ".join(f"'{d}'" for d in dates) + ")" if pruned else "t.event_date = s.event_date"
    )
    start = time.perf_counter()
    metrics = (
        merge_into(uri, batch, on, data.BENCH_COMMIT, "benchmark: merge")
        .when_matched_update_all(predicate="s.source_version > t.source_version")
        .when_not_matched_insert_all()
        .execute()
    )
    seconds = time.perf_counter() - start
    return (
        seconds,
        batch.num_rows,
        {"inserted": metrics["num_target_rows_inserted"], "updated": metrics["num_target_rows_updated"]},
    )


@measure("merge_pruned")
def merge_pruned(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """delta-rs MERGE of the batch with `event_date IN (<literals>)`: only the touched partitions are read."""
    return _merge(work, scratch, params, pruned=True)


@measure("merge_unpruned")
def merge_unpruned(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """The same MERGE joining on `t.event_date = s.event_date`: delta-rs scans the whole table."""
    return _merge(work, scratch, params, pruned=False)


@measure("polars_rewrite")
def polars_rewrite(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Read the touched partitions with Polars, keep the newest version per key, overwrite those partitions."""
    link_copy(work / f"history-{params['history']}" / "tables" / "silver", scratch / "silver")
    uri = str(scratch / "silver" / "billing_events")
    batch = pl.read_parquet(work / "apply-batch.parquet")
    start = time.perf_counter()
    dates = batch.get_column("event_date").unique()
    current = scan_table(uri).filter(pl.col("event_date").is_in(dates.implode())).collect()
    merged = (
        pl.concat([current, batch])
        .sort("source_version", descending=True)
        .unique("event_id", keep="first")
        .sort("event_date", "event_id")
    )
    predicate = "event_date IN (" + ", ".join(f"'{d.isoformat()}'" for d in dates.to_list()) + ")"
    write_table(uri, merged.to_arrow(), data.BENCH_COMMIT, "benchmark: rewrite", mode="overwrite", predicate=predicate)
    return time.perf_counter() - start, batch.height, {"rows_rewritten": merged.height}


@measure("floor")
def floor(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Polars reads the same JSONL files and appends them once to a Delta table: the least any pipeline does.
    `only_arrival` keeps one arrival date's files (the floor for that date's data)."""
    files = sorted((work / params["landing"] / "landing" / "billing_events" / params.get("only_arrival", "")).rglob("*.jsonl"))
    start = time.perf_counter()
    frame = pl.scan_ndjson(files).collect()
    write_table(str(scratch / "floor"), frame.to_arrow(), data.BENCH_COMMIT, "benchmark: floor")
    return time.perf_counter() - start, frame.height, {}


@measure("dagster_trivial")
def dagster_trivial(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Dagster's own cost of one in-process run of a do-nothing asset, on the same kind of SQLite instance."""
    import dagster as dg

    from lakehouse.app.runner import instance_for

    @dg.asset
    def trivial() -> int:
        return 1

    instance = instance_for(_settings(scratch))
    dg.materialize([trivial], instance=instance)  # the instance's first run creates its tables: not Dagster's per-run cost
    runs = params["runs"]
    start = time.perf_counter()
    for _ in range(runs):
        assert dg.materialize([trivial], instance=instance).success
    return (time.perf_counter() - start) / runs, 1, {"runs": runs}


# --- scenarios ---------------------------------------------------------------------------------


def _run_dates(root: Path, dates: list[date]) -> float:
    from lakehouse.app.runner import instance_for, run_arrival_dates

    settings = _settings(root)
    instance = instance_for(settings)
    start = time.perf_counter()
    outcomes = run_arrival_dates(settings, dates, instance=instance)
    seconds = time.perf_counter() - start
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"runs failed: {[(o.arrival_date, o.message) for o in failed]}")
    return seconds


@measure("e2e")
def end_to_end(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """One arrival batch through the real Dagster definitions: bronze, silver + quarantine behind the
    gates, gold, and every asset check, as `lakehouse run` does (its process start-up excluded)."""
    root = scratch / "root"
    link_copy(work / params["landing"] / "landing", root / "landing")
    seconds = _run_dates(root, [data.ARRIVAL])
    silver = scan_table(str(root / "tables" / "silver" / "billing_events")).select(pl.len()).collect().item()
    return seconds, params["events"], {"silver_rows": silver}


def _root_in_use(work: Path, scratch: Path, params: dict[str, Any]) -> tuple[Path, list[str]]:
    """A root whose Dagster instance has already run the date before, as on any day after the first: that date
    runs untimed through `lakehouse run` in a process of its own, so the timed run starts no warmer than a
    fresh `lakehouse run` process would. Returns the root and the timed date's `lakehouse run` arguments."""
    import subprocess
    import sys

    root = scratch / "root"
    link_copy(work / params["landing"] / "landing", root / "landing")
    before = (data.ARRIVAL - timedelta(days=1)).isoformat()
    command = [sys.executable, "-m", "lakehouse.app.cli", "run", "--root", str(root)]
    done = subprocess.run([*command, "--arrival-date", before], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the untimed date before failed:\n{done.stdout}{done.stderr[-2000:]}")
    return root, [*command, "--arrival-date", data.ARRIVAL.isoformat()]


def _import_run_modules() -> None:
    """Import what a `lakehouse run` process imports by the end of its first date, doing nothing with it: most of it
    is imported on first use, not by `import lakehouse.app.runner` (opening the instance brings Dagster's SQLite
    storage, with SQLAlchemy, alembic and Dagster's daemon modules: about 0.5 s, a third of a small date's time;
    building the definitions brings the feed's modules). Import start-up, paid once by a process however many dates
    it runs, and `small_date_cli` still counts it."""
    import dagster._core.execution.execute_in_process  # noqa: F401

    import assets.definitions  # noqa: F401
    import lakehouse.app.sqlite_storage  # noqa: F401
    import lakehouse.batches.batch  # noqa: F401
    import lakehouse.batches.restatement  # noqa: F401


@measure("small_date")
def small_date(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """One small arrival date through Dagster as `lakehouse run` does it (opening the root's instance, the
    ingest run, the gold refresh run, every check), on a root in use; interpreter and import start-up excluded."""
    from lakehouse.app.runner import run_arrival_dates

    root, _ = _root_in_use(work, scratch, params)
    _import_run_modules()
    start = time.perf_counter()
    outcomes = run_arrival_dates(_settings(root), [data.ARRIVAL])
    seconds = time.perf_counter() - start
    if not all(o.ok for o in outcomes):
        raise RuntimeError(f"runs failed: {[(o.arrival_date, o.message) for o in outcomes]}")
    runs = len(list((root / "dagster_home" / "history" / "runs").glob("*-*-*-*-*.db")))
    return seconds, params["events"], {"dagster_runs_on_root": runs}


@measure("small_date_cli")
def small_date_cli(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """The same date as the whole `lakehouse run --arrival-date` command: its process start-up and imports included."""
    import subprocess

    _, command = _root_in_use(work, scratch, params)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"lakehouse run failed:\n{done.stdout}{done.stderr[-2000:]}")
    return seconds, params["events"], {}


@measure("stage")
def stage(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Staging alone: the arrival date's landing files read, then every line typed with its per-field states."""
    from assets.billing_feed import BILLING_EVENTS
    from lakehouse.staging.landing import read_batch
    from lakehouse.staging.records import stage_records

    rows = read_batch(work / params["landing"], BILLING_EVENTS.dataset, data.ARRIVAL).rows
    start = time.perf_counter()
    staged = stage_records(rows, BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    seconds = time.perf_counter() - start
    return seconds, staged.height, {"malformed": staged.filter(pl.col("_parse_error").is_not_null()).height}


@measure("apply")
def apply_step(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Silver's apply step for validated deliveries: ledger lookup, resolution, current rows, one commit."""
    from assets.billing_feed import BILLING_EVENTS
    from lakehouse.batches.ledger import ledger_matches, ledger_rows
    from lakehouse.batches.resolution import resolve
    from lakehouse.batches.silver_changes import KEY_HASH_SEED, plan_silver
    from lakehouse.delta.storage import CommitInfo
    from lakehouse.staging.fingerprint import key_fingerprints

    link_copy(work / f"history-{params['history']}" / "tables", scratch / "tables")
    silver, ledger_uri = (
        str(scratch / "tables" / "silver" / "billing_events"),
        str(scratch / "tables" / "ops" / "billing_events_ledger"),
    )
    deliveries = pl.read_parquet(work / "apply-batch.parquet")
    commit = CommitInfo(dataset="billing_events", batch_id="bench-apply", run_id="bench", code_version="bench")
    feed = BILLING_EVENTS
    start = time.perf_counter()
    matches = ledger_matches(ledger_uri, key_fingerprints(deliveries.get_column(feed.key)).unique())
    ledger = ledger_rows(ledger_uri, feed, deliveries, matches)
    ledger = ledger.filter(pl.col("_arrival_date") != data.ARRIVAL)  # as publish_silver: other arrival dates only
    lookup = time.perf_counter() - start
    resolution = resolve(deliveries, ledger, feed.key, feed.version)
    candidate_dates = set(ledger.get_column(feed.partition).to_list() + deliveries.get_column(feed.partition).to_list())
    key_hashes = resolution.kept.get_column(feed.key).hash(seed=KEY_HASH_SEED)
    plan = plan_silver(silver, feed, key_hashes, candidate_dates, 1)
    plan.add([0], resolution.kept)  # the whole batch as one group of key slices
    stats = plan.commit(commit, "benchmark: apply", lambda: [([0], resolution.kept)])
    seconds = time.perf_counter() - start
    return seconds, deliveries.height, {"ledger_lookup_s": round(lookup, 3), "upserted": stats.upserted, **resolution.counts()}


def _engine_dates(root: Path, dates: list[date]) -> None:
    """What a run does for each date, without Dagster: bronze, silver, gold and the checks' data work."""
    from assets.billing_feed import BILLING_EVENTS
    from checks.gold_checks import gold_matches_silver_aggregate
    from checks.silver_checks import silver_has_one_row_per_key, silver_rows_match_contract
    from lakehouse.batches.pipeline import run_date
    from lakehouse.delta.storage import table_uri

    settings = _settings(root)
    silver_uri = table_uri(root, "silver", BILLING_EVENTS.dataset)
    for arrival in dates:
        report, refreshed = run_date(settings, BILLING_EVENTS, arrival, "bench", "bench")
        silver_has_one_row_per_key(silver_uri, BILLING_EVENTS)
        silver_rows_match_contract(silver_uri, report.touched_event_dates, BILLING_EVENTS)
        if refreshed is not None:  # a gated date refreshes nothing, in a run as here
            gold_matches_silver_aggregate(
                str(root), BILLING_EVENTS, report.touched_event_dates, refreshed.source_version, refreshed.table_version
            )


def _backfill_runs(root: Path, dates: list[date]) -> tuple[float, int]:
    """The runs a Dagster backfill of `dates` launches, executed in process on the same instance: one ingest
    run per `backfill_partitions_per_run` dates (BackfillPolicy.multi_run, range tags), then, as the gold
    refresh sensor requests, one gold run per published batch. Returns (seconds, runs)."""
    import json

    from assets.billing_feed import BILLING_EVENTS
    from lakehouse.app.resources import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG
    from lakehouse.app.runner import instance_for
    from lakehouse.app.triggers import gold_refresh_request
    from lakehouse.batches.ops import OpsTables
    from lakehouse.definitions import build_definitions

    settings = _settings(root)
    instance = instance_for(settings)
    definitions = build_definitions(settings)
    ingest, refresh = definitions.resolve_job_def(BILLING_EVENTS.ingest_job), definitions.resolve_job_def(BILLING_EVENTS.gold_job)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    per_run, runs = settings.backfill_partitions_per_run, 0
    start = time.perf_counter()
    for first in range(0, len(dates), per_run):
        chunk = dates[first : first + per_run]
        tags = {BACKFILL_TAG: "bench", RANGE_START_TAG: chunk[0].isoformat(), RANGE_END_TAG: chunk[-1].isoformat()}
        assert ingest.execute_in_process(instance=instance, tags=tags, run_config=quiet).success
        runs += 1
        published = OpsTables(settings.root).batch_rows(BILLING_EVENTS.dataset).filter(pl.col("status") == "published")
        for row in published.sort("arrival_date").iter_rows(named=True):
            touched = [date.fromisoformat(d) for d in json.loads(row["touched_event_dates"] or "[]")]
            request = gold_refresh_request(row["batch_id"], row["arrival_date"], touched, settings.event_partitions_start)
            assert refresh.execute_in_process(
                instance=instance, tags={**request.tags, BACKFILL_TAG: "bench"}, run_config=quiet
            ).success
            runs += 1
    return time.perf_counter() - start, runs


@measure("backfill_dagster")
def backfill_dagster(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """A backfill of a range of arrival dates through the Dagster instance, as the daemon and sensors run it."""
    root = scratch / "root"
    link_copy(work / params["landing"] / "landing", root / "landing")
    dates = [data.ARRIVAL - timedelta(days=k) for k in range(params["days"] - 1, -1, -1)]
    seconds, runs = _backfill_runs(root, dates)
    return seconds / len(dates), params["events"], {"partitions": len(dates), "runs": runs}


@measure("backfill_engine")
def backfill_engine(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """The same dates through the engine alone: what the Dagster backfill costs above it is orchestration."""
    root = scratch / "root"
    link_copy(work / params["landing"] / "landing", root / "landing")
    dates = [data.ARRIVAL - timedelta(days=k) for k in range(params["days"] - 1, -1, -1)]
    start = time.perf_counter()
    _engine_dates(root, dates)
    return (time.perf_counter() - start) / len(dates), params["events"], {"partitions": len(dates)}


@measure("status")
def status(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """`lakehouse status` (what it computes, without the process start-up) after N batches."""
    from assets.billing_feed import BILLING_EVENTS
    from lakehouse.app.status import collect_status, render_status

    root = work / f"batches-{params['batches']}"
    start = time.perf_counter()
    text = render_status(collect_status(str(root), BILLING_EVENTS))
    return time.perf_counter() - start, params["batches"], {"lines": len(text.splitlines())}


@measure("table_load")
def table_load(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """Open every table (log replay to the latest snapshot) and count its files, after N batches."""
    root = work / f"batches-{params['batches']}"
    tables = sorted(p.parent for p in (root / "tables").glob("*/*/_delta_log"))
    start = time.perf_counter()
    files = sum(len(open_table(str(t)).file_uris()) for t in tables)
    seconds = time.perf_counter() - start
    logs = sum(len(list((t / "_delta_log").glob("*.json"))) for t in tables)
    return seconds, len(tables), {"data_files": files, "log_json_files": logs}


@measure("next_batch")
def next_batch(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """One more small batch through the engine after N batches: its cost and memory must not grow with N."""
    root = scratch / "root"
    link_copy(work / f"batches-{params['batches']}", root)
    arrival = date.fromisoformat(params["arrival"])
    link_copy(
        work / "next-batch" / "landing" / "billing_events" / arrival.isoformat(),
        root / "landing" / "billing_events" / arrival.isoformat(),
    )
    start = time.perf_counter()
    _engine_dates(root, [arrival])
    return time.perf_counter() - start, params["events"], {}
