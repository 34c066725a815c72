"""Every setting reaches the asset bodies through the real definitions and their resource, not only the engine."""

from dataclasses import fields, replace
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import assets.bronze
import assets.gold
import assets.silver
from lakehouse.app.runner import run_arrival_dates
from lakehouse.definitions import build_definitions, defs
from lakehouse.settings import SettingError, Settings
from tests.support import NON_DEFAULT_TEXTS, event, land, silver

D1 = "2025-01-10"


def non_default(root: Path) -> Settings:
    return Settings.from_texts({**NON_DEFAULT_TEXTS, "root": str(root)})


def test_every_setting_survives_the_round_trip_through_the_resource(tmp_path: Path) -> None:
    settings = non_default(tmp_path)
    resource = build_definitions(settings).resources["lakehouse"]
    carried = resource.settings()
    assert {f.name: getattr(carried, f.name) for f in fields(Settings)} == {
        f.name: getattr(settings, f.name) for f in fields(Settings)
    }


def test_each_asset_body_runs_with_every_setting_the_definitions_were_built_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Settings] = {}

    def spy(module: Any, name: str) -> None:
        real = getattr(module, name)

        def wrapper(settings: Settings, *args: Any, **kwargs: Any) -> Any:
            seen[name] = settings
            return real(settings, *args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    spy(assets.bronze, "land_bronze")
    spy(assets.silver, "publish_silver")
    spy(assets.gold, "refresh_gold")
    # Steps in process here: LAKEHOUSE_EXECUTOR=celery needs workers and PostgreSQL (tests/scaleout/test_celery.py).
    settings = replace(non_default(tmp_path), executor="local")
    land(tmp_path, D1, "a.jsonl", [event("e1"), event("e2", kind="refund", amount=-40)])
    [outcome] = run_arrival_dates(settings, [date.fromisoformat(D1)], instance=dg.DagsterInstance.ephemeral())
    assert outcome.ok, outcome.message
    assert seen == {"land_bronze": settings, "publish_silver": settings, "refresh_gold": settings}


def drifting_batch(root: Path) -> None:
    """Every record carries a field the contract does not know: an addition `backward` allows and `forward` refuses."""
    land(root, D1, "a.jsonl", [event(f"e{i}", channel="web") for i in range(5)])


def test_forward_compatibility_from_the_environment_gates_a_batch_that_adds_a_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_SCHEMA_COMPATIBILITY", "forward")
    drifting_batch(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    [outcome] = run_arrival_dates(Settings.from_env(root=str(tmp_path)), [date.fromisoformat(D1)], instance=instance)
    assert not outcome.ok and "schema_drift_is_compatible" in outcome.message
    assert silver(tmp_path).height == 0
    checks = instance.get_records_for_run(outcome.ingest_run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    drift = next(
        r.event_log_entry.dagster_event.event_specific_data
        for r in checks
        if r.event_log_entry.dagster_event.event_specific_data.check_name == "schema_drift_is_compatible"
    )
    assert not drift.passed


def test_the_feeds_backward_default_publishes_the_same_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEHOUSE_SCHEMA_COMPATIBILITY", raising=False)
    drifting_batch(tmp_path)
    [outcome] = run_arrival_dates(
        Settings.from_env(root=str(tmp_path)), [date.fromisoformat(D1)], instance=dg.DagsterInstance.ephemeral()
    )
    assert outcome.ok, outcome.message
    assert silver(tmp_path).height == 5


def test_loading_the_code_location_with_a_bad_value_fails_with_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_ALLOWED_LATENESS_DAYS", "-1")
    with pytest.raises(SettingError) as raised:
        defs()
    assert str(raised.value) == "LAKEHOUSE_ALLOWED_LATENESS_DAYS must be a whole number >= 0, got '-1'"
