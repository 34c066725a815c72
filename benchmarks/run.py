"""`python -m benchmarks [--size full|medium|smoke]`: prepare data, run every measurement several times
in fresh processes, print and save a table of medians, spread, rows/s, peak memory and ratios
against baselines measured in the same invocation, then the targets with their verdicts."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks import data, prepare
from benchmarks.sizes import SIZES, Size

HERE = Path(__file__).resolve().parent
GIB = 2**30


@dataclass(frozen=True)
class Plan:
    id: str
    measure: str
    params: dict[str, Any]
    kind: str  # "baseline" or "scenario N"
    baseline: str | None = None  # the row this one's ratio is against
    repeats: int | None = None  # fewer repeats for the costliest rows


def plan(size: Size, seed: int) -> list[Plan]:
    small, large = size.histories
    few, many = size.batches
    landing = {"landing": "landing-e2e", "events": size.e2e_events}
    small_date = {"landing": "landing-small", "events": size.small_date_events}
    rows = [
        Plan("write_parquet", "write_parquet", {"events": size.e2e_events, "seed": seed}, "baseline"),
        Plan("floor", "floor", landing, "baseline"),
        Plan(f"merge_pruned_{small}", "merge_pruned", {"history": small}, "baseline"),
        Plan(f"merge_pruned_{large}", "merge_pruned", {"history": large}, "baseline"),
        Plan(f"merge_unpruned_{small}", "merge_unpruned", {"history": small}, "baseline", f"merge_pruned_{small}"),
        Plan(f"polars_rewrite_{small}", "polars_rewrite", {"history": small}, "baseline", f"merge_pruned_{small}"),
        Plan(f"polars_rewrite_{large}", "polars_rewrite", {"history": large}, "baseline", f"merge_pruned_{large}"),
        Plan("dagster_trivial", "dagster_trivial", {"runs": size.trivial_runs}, "baseline"),
        Plan("peer", "peer", landing, "baseline", "floor"),
        Plan("peer_mixed", "peer", {**landing, "landing": "landing-e2e-mixed"}, "baseline", "peer"),
        Plan("e2e", "e2e", landing, "scenario 1", "floor"),
        *[
            Plan(f"e2e_{layout}", "e2e", {**landing, "landing": f"landing-e2e-{layout}"}, "scenario 1", "e2e")
            for layout in data.LAYOUTS[1:]
        ],
        *[
            Plan(
                f"stage_{layout}",
                "stage",
                {**landing, "landing": "landing-e2e" + ("" if layout == "compact" else f"-{layout}")},
                "scenario 6",
                None if layout == "compact" else "stage_compact",
            )
            for layout in data.LAYOUTS
        ],
        Plan(f"apply_{small}", "apply", {"history": small}, "scenario 2", f"merge_pruned_{small}"),
        Plan(f"apply_{large}", "apply", {"history": large}, "scenario 2", f"merge_pruned_{large}"),
        Plan("day", "e2e", {"landing": "landing-day-mixed", "events": size.day_events}, "scenario 3", "e2e_mixed", repeats=1),
        Plan(
            "backfill_engine",
            "backfill_engine",
            {"landing": "landing-backfill", "days": size.backfill_days, "events": size.backfill_events},
            "scenario 4",
        ),
        Plan(
            "backfill_dagster",
            "backfill_dagster",
            {"landing": "landing-backfill", "days": size.backfill_days, "events": size.backfill_events},
            "scenario 4",
            "backfill_engine",
        ),
        Plan("floor_small", "floor", {**small_date, "only_arrival": data.ARRIVAL.isoformat()}, "baseline"),
        Plan("small_date", "small_date", small_date, "scenario 7", "floor_small"),
        Plan("small_date_cli", "small_date_cli", small_date, "scenario 7", "small_date"),
        Plan(f"status_{few}", "status", {"batches": few}, "scenario 5"),
        Plan(f"status_{many}", "status", {"batches": many}, "scenario 5", f"status_{few}"),
        Plan(f"table_load_{few}", "table_load", {"batches": few}, "scenario 5"),
        Plan(f"table_load_{many}", "table_load", {"batches": many}, "scenario 5", f"table_load_{few}"),
        Plan(
            f"next_batch_{few}",
            "next_batch",
            {"batches": few, "arrival": "2025-06-01", "events": size.small_batch_events},
            "scenario 5",
        ),
        Plan(
            f"next_batch_{many}",
            "next_batch",
            {"batches": many, "arrival": "2025-06-01", "events": size.small_batch_events},
            "scenario 5",
            f"next_batch_{few}",
        ),
    ]
    return rows


def _needs(item: Plan) -> set[str]:
    """The prepared inputs a measurement reads: its landing folder, the histories, the many-batch roots."""
    return {item.params.get("landing", "")} | {name for name in ("history", "batches") if name in item.params}


def run_once(item: Plan, work: Path, scratch: Path) -> dict[str, Any]:
    shutil.rmtree(scratch, ignore_errors=True)
    command = [sys.executable, "-m", "benchmarks.worker", item.measure, str(work), str(scratch), json.dumps(item.params)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, check=False)
    shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{item.id} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(item: Plan, samples: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [s["seconds"] for s in samples]
    median = statistics.median(seconds)
    return {
        "id": item.id,
        "kind": item.kind,
        "baseline": item.baseline,
        "repeats": len(samples),
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "rows": samples[0]["rows"],
        "rows_per_s": samples[0]["rows"] / median if median > 0 else None,
        "peak_rss_mib": max(s["peak_rss_bytes"] for s in samples) / 2**20,
        "extra": samples[-1]["extra"],
        "samples_s": seconds,
    }


def targets(rows: dict[str, dict[str, Any]], size: Size) -> list[dict[str, Any]]:
    """Every target whose rows were measured (all of them in a whole run; `--only` judges what it ran)."""
    small, large = size.histories
    few, many = size.batches
    rows = {**rows, "e2e_compact": rows["e2e"]} if "e2e" in rows else dict(rows)
    layouts = tuple(f"e2e_{layout}" for layout in data.LAYOUTS)

    def seconds(name: str) -> float:
        return float(rows[name]["median_s"])

    def peak(name: str) -> float:
        return float(rows[name]["peak_rss_mib"])

    def ratio(a: str, b: str) -> tuple[tuple[str, ...], Callable[[], float]]:
        return (a, b), lambda: seconds(a) / seconds(b)

    def best_e2e() -> float:
        return min(seconds(name) for name in layouts)

    checks: list[tuple[str, tuple[tuple[str, ...], Callable[[], float]], float]] = [
        ("apply step <= 1.5x bare pruned MERGE (small history)", ratio(f"apply_{small}", f"merge_pruned_{small}"), 1.5),
        ("apply step <= 1.5x bare pruned MERGE (large history)", ratio(f"apply_{large}", f"merge_pruned_{large}"), 1.5),
        ("apply step, large history <= 1.3x small history", ratio(f"apply_{large}", f"apply_{small}"), 1.3),
        ("end to end <= 4x the floor (read JSONL + one Delta append)", ratio("e2e", "floor"), 4.0),
        ("end to end, mixed layout <= 4x the floor", ratio("e2e_mixed", "floor"), 4.0),
        *[
            (
                f"end to end, {layout} layout <= 1.5x the best layout's",
                (layouts, lambda layout=layout: seconds(f"e2e_{layout}") / best_e2e()),
                1.5,
            )
            for layout in data.LAYOUTS
        ],
        ("the big day's peak memory, mixed layout <= 2 GiB (ratio to 2 GiB)", (("day",), lambda: peak("day") / 2048), 1.0),
        (
            "next batch's peak memory does not grow with batches (many/few)",
            ((f"next_batch_{many}", f"next_batch_{few}"), lambda: peak(f"next_batch_{many}") / peak(f"next_batch_{few}")),
            1.2,
        ),
        (
            "backfill overhead per partition <= 2x a trivial Dagster run",
            (
                ("backfill_dagster", "backfill_engine", "dagster_trivial"),
                lambda: (seconds("backfill_dagster") - seconds("backfill_engine")) / seconds("dagster_trivial"),
            ),
            2.0,
        ),
        (
            f"a {size.small_date_events:,}-record date through Dagster: seconds beyond the floor for its data <= 1.5",
            (("small_date", "floor_small"), lambda: seconds("small_date") - seconds("floor_small")),
            1.5,
        ),
        ("table load after many batches <= 2x after few", ratio(f"table_load_{many}", f"table_load_{few}"), 2.0),
        ("status after many batches <= 2x after few", ratio(f"status_{many}", f"status_{few}"), 2.0),
    ]
    judged = [(name, compute(), limit) for name, (needs, compute), limit in checks if all(n in rows for n in needs)]
    # The verdict and the recorded figure are the same number: a rounded figure could read 2.0 beside "not met".
    return [{"target": name, "measured": value, "limit": limit, "met": value <= limit} for name, value, limit in judged]


def against_peer(rows: dict[str, dict[str, Any]]) -> list[tuple[str, float]]:
    """The pipeline's end-to-end time over the hand-built peer's on the same landing (benchmarks/peer.py)."""
    pairs = [("e2e", "peer"), ("e2e_mixed", "peer_mixed")]
    return [(f"{a} / {b}", rows[a]["median_s"] / rows[b]["median_s"]) for a, b in pairs if a in rows and b in rows]


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        **{package: version(package) for package in ("polars", "deltalake", "dagster", "pandera", "pyarrow")},
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark run {result['started']} (size {result['size']}, seed {result['seed']})",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()),
        "",
        "| id | kind | repeats | median s | min-max s | rows | rows/s | peak MiB | ratio | vs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = {row["id"]: row for row in result["rows"]}
    for row in result["rows"]:
        base = rows.get(row["baseline"]) if row["baseline"] else None
        ratio = f"{row['median_s'] / base['median_s']:.2f}x" if base else ""
        rate = f"{row['rows_per_s']:,.0f}" if row["rows_per_s"] else ""
        lines.append(
            f"| {row['id']} | {row['kind']} | {row['repeats']} | {row['median_s']:.3f} | {row['min_s']:.3f}-{row['max_s']:.3f} "
            f"| {row['rows']:,} | {rate} | {row['peak_rss_mib']:,.0f} | {ratio} | {row['baseline'] or ''} |"
        )
    lines += ["", "| target | measured | limit | met |", "|---|---:|---:|---|"]
    lines += [
        f"| {t['target']} | {t['measured']:.2f} | {t['limit']} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]
    ]
    lines += ["", "Against the hand-built peer (no guarantees beyond its checks; see benchmarks/peer.py):", ""]
    lines += [f"- {name}: {value:.2f}x" for name, value in result["against_peer"]]
    lines += ["", "Extra facts per row (last repeat):", ""]
    lines += [f"- {row['id']}: {json.dumps(row['extra'], sort_keys=True)}" for row in result["rows"] if row["extra"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, help="runs per measurement (default: the size's)")
    parser.add_argument("--work", type=Path, help="where data is prepared (default benchmarks/.work/<size>-<seed>-<layout>)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the .json and .md results go")
    parser.add_argument(
        "--only", nargs="*", help="run only these measurement ids (then only the targets they measure are judged)"
    )
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    work = (args.work or HERE / ".work" / f"{size.name}-{args.seed}-{data.LAYOUT}").resolve()
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")  # names the result files; no data depends on it

    selected = [item for item in plan(size, args.seed) if not args.only or item.id in args.only]
    clock = time.perf_counter()
    print(f"preparing data in {work} ...", flush=True)
    prepare.everything(work, size, args.seed, set().union(*(_needs(item) for item in selected)))
    print(f"prepared in {time.perf_counter() - clock:.0f} s", flush=True)

    rows = []
    for item in selected:
        repeats = args.repeats or item.repeats or size.repeats
        samples = []
        for attempt in range(repeats):
            samples.append(run_once(item, work, work / "scratch"))
            print(
                f"  {item.id} #{attempt + 1}: {samples[-1]['seconds']:.3f} s, {samples[-1]['peak_rss_bytes'] / 2**20:,.0f} MiB",
                flush=True,
            )
        rows.append(summarise(item, samples))
    by_id = {row["id"]: row for row in rows}
    result = {
        "started": started,
        "size": size.name,
        "seed": args.seed,
        "machine": machine(),
        "rows": rows,
        "targets": targets(by_id, size),
        "against_peer": against_peer(by_id),
        "total_s": time.perf_counter() - clock,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{started}-{size.name}.json").write_text(json.dumps(result, indent=2, default=str))
    text = render(result)
    (args.out / f"{started}-{size.name}.md").write_text(text)
    print(text)
    print(f"saved {args.out / f'{started}-{size.name}'}.json/.md; total {result['total_s']:.0f} s")
    return 0
