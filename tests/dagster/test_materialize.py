"""The feed's assets as Dagster materializes them in process: twice each, then the tables read back with DeltaTable."""

from pathlib import Path

import dagster as dg
import polars as pl
from deltalake import DeltaTable

from assets.billing_feed import BILLING_EVENTS
from assets.definitions import feed_definitions
from lakehouse.app.resources import LakehouseResource
from lakehouse.delta.storage import table_uri
from tests.support import event, land, settings_for

D1 = "2025-01-10"
TABLES = ("bronze/billing_events", "silver/billing_events", "silver/billing_events_quarantine", "gold/daily_account_revenue")


def versions(root: Path) -> dict[str, int]:
    return {name: DeltaTable(table_uri(root, *name.split("/"))).version() for name in TABLES}


def quarantined_hash(root: Path) -> str:
    """The conflict loser's content hash, recomputed from its quarantined raw line by the engine's own staging."""
    from lakehouse.staging.records import stage_records

    loser = pl.from_arrow(DeltaTable(table_uri(root, "silver", "billing_events_quarantine")).to_pyarrow_table())
    assert isinstance(loser, pl.DataFrame)
    row = loser.filter(pl.col("_reason") == "version_conflict").select("_raw", "_source_file", "_source_line", "_arrival_date")
    staged = stage_records(row.with_columns(_batch_id=pl.lit("x")), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    return str(staged.item(0, "_content_hash"))


def test_materializing_each_layer_twice_writes_once_and_reads_back_exactly(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    defs = feed_definitions(BILLING_EVENTS, settings)
    bronze, silver, gold = (
        defs.get_assets_def(key) for key in (BILLING_EVENTS.bronze_key, BILLING_EVENTS.silver_key, BILLING_EVENTS.gold_key)
    )
    resources = {"lakehouse": LakehouseResource.from_settings(settings)}
    good = [event(f"e{n:02d}", amount=n + 1) for n in range(40)]  # 2 rejects in 42 stay under the 5% gate
    land(tmp_path, D1, "a.jsonl", [*good, event("e01", kind="refund", amount=-40), b"not json"])
    instance = dg.DagsterInstance.ephemeral()

    def materialize_all() -> None:
        for assets, selection in (([bronze, silver], None), ([silver, gold], [BILLING_EVENTS.gold_key])):
            result = dg.materialize(
                assets, resources=resources, partition_key=D1, instance=instance, selection=selection, raise_on_error=False
            )
            assert result.success, [e.message for e in result.all_events if e.is_failure]

    materialize_all()
    first = versions(tmp_path)
    materialize_all()  # a replay of the same files: nothing to commit anywhere
    assert versions(tmp_path) == first

    silver_rows = pl.from_arrow(DeltaTable(table_uri(tmp_path, "silver", "billing_events")).to_pyarrow_table())
    assert isinstance(silver_rows, pl.DataFrame)
    assert silver_rows.height == 40 and silver_rows.get_column("event_id").n_unique() == 40
    # The conflict on e01 is settled by content hash, whichever came first; the loser is quarantined.
    kept = silver_rows.filter(pl.col("event_id") == "e01").item(0, "_content_hash")
    assert kept == min(kept, quarantined_hash(tmp_path))
    quarantined = pl.from_arrow(DeltaTable(table_uri(tmp_path, "silver", "billing_events_quarantine")).to_pyarrow_table())
    assert isinstance(quarantined, pl.DataFrame)
    assert sorted(quarantined.get_column("_reason").to_list()) == ["malformed_record", "version_conflict"]
    gold_rows = pl.from_arrow(DeltaTable(table_uri(tmp_path, "gold", "daily_account_revenue")).to_pyarrow_table())
    assert isinstance(gold_rows, pl.DataFrame)
    assert gold_rows.select("event_count").item() == 40
    assert gold_rows.select("net_minor").item() == silver_rows.get_column("amount_minor").sum()
