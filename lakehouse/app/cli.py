"""`lakehouse`: generate, run, demo, status, ui, backfill and maintain."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import NoReturn

from lakehouse.settings import DAY, DEFAULT_ROOT, SettingError, Settings, kind_of, option_type

DEMO_MARKER = ".lakehouse-demo"
DAY_ARG = option_type(DAY)  # an impossible date (2026-02-30) is an argument error, not a traceback


class OneLineParser(argparse.ArgumentParser):
    """An operator's mistake in the arguments gets one line naming the argument (not the usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(root=getattr(args, "root", None))
    os.environ["LAKEHOUSE_ROOT"] = settings.root  # sensors and code locations started from here agree with the CLI
    return settings


def cmd_generate(args: argparse.Namespace) -> int:
    from lakehouse.definitions import sample_generator

    generate_landing = sample_generator()

    root = Path(_settings(args).root)
    try:
        summary = generate_landing(root, args.start, args.days, args.events_per_day, args.seed)
    except (FileExistsError, ValueError) as error:
        print(f"lakehouse generate: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {len(summary.files)} files, {summary.lines:,} records for {len(summary.arrival_dates)} arrival dates under {summary.root}"
    )
    print("faults: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.faults.items())))
    return 0


def _incidents_line(incidents: list[dict[str, object]]) -> str:
    """Where an on-call looks next: each open incident of a date by id and failure mode."""
    return "; ".join(f"incident {i['incident_id']} ({i['failure_mode']})" for i in incidents)


def _run(
    settings: Settings,
    dates: list[date],
    max_rejected_fraction: float | None,
    accept_damaged_files: bool = False,
    accept_volume_anomaly: bool = False,
) -> int:
    import polars as pl

    from lakehouse.app.runner import pending_arrival_dates, run_arrival_dates
    from lakehouse.batches.arrivals import MISSING_DELIVERY
    from lakehouse.batches.ops import OpsTables
    from lakehouse.definitions import feeds

    to_run = {feed.dataset: (feed, dates or pending_arrival_dates(settings, feed.dataset)) for feed in feeds()}
    if not any(feed_dates for _, feed_dates in to_run.values()):
        print("nothing to run: every landed arrival date is already published with its current files")
        return 0
    failed = 0
    for feed, feed_dates in to_run.values():
        if not feed_dates:
            continue
        # The Dagster partitions must contain every date run here, whatever the calendar says today.
        stretched = replace(
            settings, partitions_start=min(settings.partitions_start, *feed_dates), partitions_end=max(feed_dates)
        )
        named = f"{feed.dataset}  " if len(to_run) > 1 else ""
        outcomes = run_arrival_dates(
            stretched, feed_dates, max_rejected_fraction, None, accept_damaged_files, feed, accept_volume_anomaly
        )
        incidents = OpsTables(settings.root).open_incidents(feed.dataset)
        for outcome in outcomes:
            of_date = incidents.filter(pl.col("arrival_date") == outcome.arrival_date).to_dicts()
            print(
                f"{named}{outcome.arrival_date}  {'ok    ' if outcome.ok else 'FAILED'}  run {outcome.ingest_run_id[:8]}  "
                f"{outcome.message}" + (f"  [{_incidents_line(of_date)}]" if of_date else "")
            )
            failed += not outcome.ok
        missing = incidents.filter(pl.col("failure_mode") == MISSING_DELIVERY).to_dicts()
        if missing:  # no run names a date that never arrived: say it once per feed
            silent = ", ".join(f"{i['arrival_date']} (incident {i['incident_id']})" for i in missing)
            print(f"{named}no delivery for arrival date(s) {silent}; see `lakehouse status`")
    if failed:
        print(f"{failed} arrival date(s) failed; see `lakehouse status` and the runs in the Dagster UI", file=sys.stderr)
    return 1 if failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    return _run(
        _settings(args),
        args.arrival_date or [],
        args.max_rejected_fraction,
        args.accept_damaged_files,
        args.accept_volume_anomaly,
    )


def cmd_status(args: argparse.Namespace) -> int:
    from lakehouse.app.status import collect_status, render_status

    settings = _settings(args)
    from lakehouse.definitions import feeds

    statuses = [collect_status(settings.root, feed, settings.retention_hours) for feed in feeds()]
    if args.json:  # one feed: its status object; several: one object per feed, keyed by dataset
        shown = statuses[0] if len(statuses) == 1 else {status["feed"]: status for status in statuses}
        print(json.dumps(shown, indent=2, default=str))
    else:
        print("\n\n".join(render_status(status) for status in statuses))
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from lakehouse.definitions import feeds
    from lakehouse.delta.locking import WriterBusyError
    from lakehouse.delta.maintenance import maintain

    settings = _settings(args)
    hours = settings.retention_hours if args.retention_hours is None else args.retention_hours
    try:
        writers = [name for feed in feeds() for name in (feed.dataset, f"gold_{feed.gold.table}")]
        found = maintain(settings.root, hours, writers, settings.lock_timeout_seconds, args.dry_run)
    except (WriterBusyError, ValueError) as error:
        print(f"lakehouse maintain: {error}", file=sys.stderr)
        return 2
    verb = "would remove" if args.dry_run else "removed"
    for table in found:
        print(
            f"{table.table:<40} {verb} {len(table.reclaimable)} files ({table.reclaimable_bytes:,} bytes), "
            f"{len(table.orphans)} orphans found"
        )
    total = sum(len(t.reclaimable) for t in found)
    print(f"{verb} {total} files older than {hours:g} h that no version within that window needs")
    return 0


def _fresh_demo_root(root: str) -> str | None:
    """Make `root` a fresh demo root; None when it is ready, else why not. A local folder is re-created only if a
    previous demo made it; an object-store root must have no landing files yet (its bucket is the operator's)."""
    from lakehouse.delta.storage import filesystem, is_remote

    if is_remote(root):
        import pyarrow.fs as pafs

        fs, path = filesystem(root)
        if fs.get_file_info(pafs.FileSelector(f"{path}/landing", allow_not_found=True, recursive=False)):
            return f"{root} already has landing files; choose a fresh --root"
        return None
    folder = Path(root)
    if folder.exists() and any(folder.iterdir()):
        if not (folder / DEMO_MARKER).exists():
            return f"{folder} exists and is not a demo root; choose another --root"
        shutil.rmtree(folder)  # only ever a folder this command made
    folder.mkdir(parents=True)
    (folder / DEMO_MARKER).write_text("made by `lakehouse demo`; it deletes and re-creates this folder\n")
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from lakehouse.app.status import collect_status, render_status
    from lakehouse.definitions import feeds, sample_generator
    from lakehouse.delta.storage import filesystem, is_remote

    generate_landing = sample_generator()

    root = str(args.root or os.environ.get("LAKEHOUSE_ROOT") or "demo-lakehouse")
    settings = Settings.from_env(root=root)  # every setting checked before anything is written
    problem = _fresh_demo_root(root)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    os.environ["LAKEHOUSE_ROOT"] = root
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lakehouse-demo-") as staging:
        # An object-store root gets the landing files as a producer would deliver them: written locally, then uploaded.
        local = Path(staging) if is_remote(root) else Path(root)
        summary = generate_landing(local, args.start, args.days, args.events_per_day, args.seed)
        if is_remote(root):
            import pyarrow.fs as pafs

            fs, path = filesystem(root)
            pafs.copy_files(str(local / "landing"), f"{path}/landing", destination_filesystem=fs)
    print(
        f"generated {summary.lines:,} records in {len(summary.files)} files for {len(summary.arrival_dates)} arrival dates "
        f"(faults: {', '.join(f'{k}={v}' for k, v in sorted(summary.faults.items()))})\n"
    )
    code = _run(settings, summary.arrival_dates, None)
    elapsed = time.perf_counter() - started
    print("\n" + "\n\n".join(render_status(collect_status(root, feed, settings.retention_hours)) for feed in feeds()))
    print(f"\n{summary.lines:,} records end to end in {elapsed:.1f}s ({summary.lines / elapsed:,.0f} records/s).")
    print(f"Explore it: `lakehouse status --root {root}`, or the Dagster UI on this root: `LAKEHOUSE_ROOT={root} make ui`")
    return code


def cmd_ui(args: argparse.Namespace) -> int:
    from lakehouse.app.ui import serve

    return serve(_settings(args), args.host, args.port)


def cmd_worker(args: argparse.Namespace) -> int:
    from lakehouse.app.workers import exec_worker

    settings = _settings(args)  # checked here: a bad setting is one line, not a worker that dies loading its app
    if not settings.uses_postgres_instance:
        print(
            "lakehouse worker: workers need the PostgreSQL instance (LAKEHOUSE_INSTANCE=postgres, DAGSTER_PG_*)", file=sys.stderr
        )
        return 2
    exec_worker(settings, args.name, args.concurrency, args.loglevel)
    return 0  # not reached: the worker replaced this process


def cmd_backfill(args: argparse.Namespace) -> int:
    from lakehouse.app.backfill import BackfillClient, BackfillError, date_range, ingest_assets
    from lakehouse.definitions import feeds

    settings = _settings(args)
    client = BackfillClient(args.url)
    if args.cancel:
        try:
            client.cancel(args.cancel)
        except BackfillError as error:
            print(f"lakehouse backfill: {error}", file=sys.stderr)
            return 1
        print(f"cancelling backfill {args.cancel}: queued runs are dropped, running ones terminated")
        return 0
    if getattr(args, "from") is None or args.to is None:
        print("lakehouse backfill: --from and --to are required (or --cancel ID)", file=sys.stderr)
        return 2
    try:
        partitions = date_range(getattr(args, "from"), args.to)
        assets = args.assets or [key for feed in feeds() for key in ingest_assets(feed)]
        # The caps this backfill runs under, as run tags (the run queue and the assets read the settings themselves).
        tags = {
            "lakehouse/trigger": "backfill",
            "lakehouse/backfill_max_runs": str(settings.backfill_max_runs),
            "lakehouse/backfill_partitions_per_run": str(settings.backfill_partitions_per_run),
            "lakehouse/backfill_rows_per_second": str(settings.backfill_rows_per_second or "none"),
        }
        backfill_id = client.launch(assets, partitions, tags, f"lakehouse backfill {partitions[0]}..{partitions[-1]}")
        print(
            f"launched backfill {backfill_id}: {', '.join(assets)} for {len(partitions)} arrival dates; see {args.url}/overview/backfills/{backfill_id}"
        )
        if not args.wait:
            return 0
        state = client.wait(backfill_id, args.timeout, report=lambda s: print(s.line(), flush=True))
    except (BackfillError, ValueError, TimeoutError) as error:
        print(f"lakehouse backfill: {error}", file=sys.stderr)
        return 1
    if not state.succeeded:
        print(f"backfill {backfill_id} ended {state.status}{': ' + state.error if state.error else ''}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lakehouse", description="A production-safe Dagster + Delta Lake lakehouse for billing events.")
    commands = parser.add_subparsers(dest="command", required=True)
    root_help = f"storage root (default: $LAKEHOUSE_ROOT or ./{DEFAULT_ROOT})"

    generate = commands.add_parser("generate", help="write realistic landing files, faults included, reproducible by seed")
    generate.add_argument("--root", help=root_help)
    generate.add_argument("--start", type=DAY_ARG, required=True, help="first arrival date, YYYY-MM-DD")
    generate.add_argument("--days", type=int, required=True)
    generate.add_argument("--events-per-day", type=int, required=True)
    generate.add_argument("--seed", type=int, required=True)
    generate.set_defaults(func=cmd_generate)

    run = commands.add_parser("run", help="run the pipeline for arrival dates (default: every landed date not yet published)")
    run.add_argument("--root", help=root_help)
    run.add_argument("--arrival-date", type=DAY_ARG, action="append", help="YYYY-MM-DD; repeat for several")
    run.add_argument(
        "--max-rejected-fraction",
        type=option_type(kind_of("max_rejected_fraction")),
        help="accept a gated batch explicitly with a raised threshold",
    )
    run.add_argument(
        "--accept-damaged-files", action="store_true", help="publish what could be read of a corrupt or truncated .gz file"
    )
    run.add_argument(
        "--accept-volume-anomaly",
        action="store_true",
        help="publish a record count outside the feed's recent range (a real holiday or promotion) and resolve its incident",
    )
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="generate sample data into a fresh root and run everything")
    demo.add_argument(
        "--root", help="a fresh folder (default: $LAKEHOUSE_ROOT or ./demo-lakehouse; re-created if a previous demo made it)"
    )
    demo.add_argument("--start", type=DAY_ARG, default=date(2025, 1, 1))
    demo.add_argument("--days", type=int, default=5)
    demo.add_argument("--events-per-day", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    status = commands.add_parser("status", help="tables, versions, last batches, gate results and quarantine reasons")
    status.add_argument("--root", help=root_help)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    ui = commands.add_parser("ui", help="the Dagster webserver and daemon on this root's instance (Ctrl-C stops both)")
    ui.add_argument("--root", help=root_help)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    worker = commands.add_parser(
        "worker",
        help="a Celery worker that executes steps of runs with LAKEHOUSE_EXECUTOR=celery (same code, settings, instance)",
    )
    worker.add_argument("--root", help=root_help)
    worker.add_argument("--name", default="lakehouse", help="worker name (unique per host): NAME@hostname")
    worker.add_argument("--concurrency", type=int, default=1, help="steps this worker executes at once, one process each")
    worker.add_argument("--loglevel", default="WARNING", help="Celery's log level (INFO shows every task)")
    worker.set_defaults(func=cmd_worker)

    backfill = commands.add_parser("backfill", help="launch a Dagster backfill of arrival dates through the running UI")
    backfill.add_argument("--root", help=root_help)
    backfill.add_argument("--from", type=DAY_ARG, help="first arrival date, YYYY-MM-DD")
    backfill.add_argument("--to", type=DAY_ARG, help="last arrival date, inclusive")
    backfill.add_argument("--cancel", metavar="ID", help="cancel the backfill ID instead of launching one")
    backfill.add_argument(
        "--assets", nargs="+", help="asset keys like silver/billing_events (default: bronze, silver and quarantine)"
    )
    backfill.add_argument("--url", default="http://127.0.0.1:3000", help="the webserver `lakehouse ui` started")
    backfill.add_argument("--wait", action="store_true", help="print progress until it ends; exit non-zero unless it succeeded")
    backfill.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most")
    backfill.set_defaults(func=cmd_backfill)

    maintain = commands.add_parser(
        "maintain", help="remove orphan and expired data files outside the time-travel window, holding the writer locks"
    )
    maintain.add_argument("--root", help=root_help)
    maintain.add_argument("--dry-run", action="store_true", help="list what would be removed; delete nothing")
    maintain.add_argument(
        "--retention-hours",
        type=option_type(kind_of("retention_hours")),
        help=f"keep files younger than this (default: $LAKEHOUSE_RETENTION_HOURS or {Settings.retention_hours:g})",
    )
    maintain.set_defaults(func=cmd_maintain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingError as error:  # raised before any command writes: each reads its settings first
        print(f"lakehouse: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
