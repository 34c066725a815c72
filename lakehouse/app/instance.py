"""The Dagster instance's configuration: SQLite under DAGSTER_HOME, or PostgreSQL for more than one machine."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from string import Template

import dagster as dg

from lakehouse.settings import SettingError, Settings

PG_REQUIRED = ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB")
PG_OPTIONAL = {"DAGSTER_PG_PORT": "port", "DAGSTER_PG_PASSWORD": "password"}


def render_instance_config(settings: Settings, marker_template: str, home: Path) -> str:
    """The instance's dagster.yaml: the shipped run queue, pools and run monitoring with the settings' caps, plus
    PostgreSQL storage when `settings.instance` is `postgres` (connection fields as `env:` references only),
    else SQLite storage under `home` (Dagster's default files) with the pooled event log."""
    rendered = Template(marker_template).substitute(
        backfill_max_runs=settings.backfill_max_runs,
        max_concurrent_runs=settings.backfill_max_runs + settings.regular_max_runs,
    )
    if not settings.uses_postgres_instance:
        sqlite = files("lakehouse").joinpath("dagster_sqlite.yaml").read_text()
        return rendered + Template(sqlite).substitute(base_dir=json.dumps(str(home.absolute())))  # JSON: a YAML string
    missing = [name for name in PG_REQUIRED if not os.environ.get(name)]
    if missing:
        raise SettingError(f"LAKEHOUSE_INSTANCE=postgres needs {', '.join(missing)} set (the instance's database)")
    # An unset optional variable is left out rather than referenced: Dagster refuses an `env:` that is unset.
    optional = "\n".join(f"      {field}: {{env: {name}}}" for name, field in PG_OPTIONAL.items() if os.environ.get(name))
    storage = Template(files("lakehouse").joinpath("dagster_postgres.yaml").read_text()).substitute(optional_fields=optional)
    return rendered + storage


def set_pool_limits(instance: dg.DagsterInstance, pools: Iterable[str], limit: int = 1) -> None:
    """Give each pool its limit before any step claims a slot of it. A pool created on first use by two processes
    at once fails one of them with InFailedSqlTransaction on PostgreSQL (dagster issue 33552)."""
    storage = instance.event_log_storage
    for pool in sorted(set(pools)):
        if storage.get_concurrency_info(pool).slot_count != limit:
            storage.set_concurrency_slots(pool, limit)


def writer_pools(defs: dg.Definitions) -> set[str]:
    """Every pool an asset of `defs` runs its steps in."""
    return {pool for a in defs.resolve_asset_graph().assets_defs if a.is_executable for pool in a.node_def.pools}
