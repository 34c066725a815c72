"""Each setting is declared once: read from its variable, checked by its rule, carried whole as text."""

import re
from dataclasses import fields
from datetime import date
from pathlib import Path

import pytest

from lakehouse.settings import SettingError, Settings, kind_of
from tests.support import NON_DEFAULT_TEXTS

ENV = {f.name: f.metadata["env"] for f in fields(Settings)}


# (variable, text, rule the message states): one per class of mistake, and every kind of setting.
BAD = [
    ("LAKEHOUSE_MAX_REJECTED_FRACTION", "abc", "a number within [0, 1]"),
    ("LAKEHOUSE_MAX_REJECTED_FRACTION", "1.5", "a number within [0, 1]"),
    ("LAKEHOUSE_MAX_REJECTED_FRACTION", "nan", "a number within [0, 1]"),
    ("LAKEHOUSE_ALLOWED_LATENESS_DAYS", "-1", "a whole number >= 0"),
    ("LAKEHOUSE_BACKFILL_MAX_RUNS", "1.5", "a whole number >= 1"),
    ("LAKEHOUSE_REGULAR_STEP_CONCURRENCY", "0", "a whole number >= 1"),
    ("LAKEHOUSE_LOCK_TIMEOUT_SECONDS", "-5", "a number >= 0"),
    ("LAKEHOUSE_RETENTION_HOURS", "a week", "a number >= 0"),
    ("LAKEHOUSE_SCHEMA_COMPATIBILITY", "sideways", "one of backward, forward, full, none"),
    ("LAKEHOUSE_PARTITIONS_START", "2026-02-30", "a real date YYYY-MM-DD"),
    ("LAKEHOUSE_EXECUTOR", "dask", "one of local, celery"),
    ("LAKEHOUSE_CELERY_BROKER", "localhost:6379", "a Celery broker URL (redis://, rediss://, amqp:// or pyamqp://)"),
    ("LAKEHOUSE_CELERY_QUEUE", "a queue", "a queue name (letters, digits, - and _)"),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in filter(None, ENV.values()):
        monkeypatch.delenv(env, raising=False)


def test_every_field_is_declared_with_a_rule_and_all_but_the_cli_stretch_with_a_variable() -> None:
    assert set(NON_DEFAULT_TEXTS) == set(ENV)
    assert [name for name, env in ENV.items() if env is None] == ["partitions_end"]  # set by `lakehouse run` only
    assert all(env == f"LAKEHOUSE_{name.upper()}" for name, env in ENV.items() if env)


def test_every_field_round_trips_through_its_text_defaults_and_non_defaults_alike() -> None:
    assert Settings.from_texts(Settings().texts()) == Settings()
    changed = Settings.from_texts(NON_DEFAULT_TEXTS)
    assert all(getattr(changed, f.name) != f.default for f in fields(Settings))
    assert Settings.from_texts(changed.texts()) == changed


def test_each_variable_reaches_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in NON_DEFAULT_TEXTS.items():
        if ENV[name]:
            monkeypatch.setenv(ENV[name], text)
    expected = Settings.from_texts({k: v for k, v in NON_DEFAULT_TEXTS.items() if ENV[k]})
    assert Settings.from_env() == expected and expected.partitions_start == date(2025, 1, 3)


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in filter(None, ENV.values()):
        monkeypatch.setenv(env, "")
    assert Settings.from_env() == Settings()


@pytest.mark.parametrize(("env", "text", "rule"), BAD, ids=[f"{env}={text}" for env, text, _ in BAD])
def test_a_bad_value_is_one_line_naming_the_variable_the_rule_and_the_value(
    monkeypatch: pytest.MonkeyPatch, env: str, text: str, rule: str
) -> None:
    monkeypatch.setenv(env, text)
    with pytest.raises(SettingError) as raised:
        Settings.from_env()
    assert str(raised.value) == f"{env} must be {rule}, got {text!r}"


def test_a_root_that_is_a_file_is_refused_by_the_name_it_came_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("LAKEHOUSE_ROOT", str(afile))
    with pytest.raises(SettingError, match="^LAKEHOUSE_ROOT must be a folder or an object-store URI, not an existing file"):
        Settings.from_env()
    with pytest.raises(SettingError, match="^--root must be a folder"):
        Settings.from_env(root=str(afile))
    assert Settings.from_env(root=str(tmp_path)).root == str(tmp_path)  # the option wins over a bad variable
    assert Settings.from_env(root="s3://bucket/prefix").root == "s3://bucket/prefix"


def test_a_settings_object_built_in_code_is_checked_by_the_same_rules() -> None:
    with pytest.raises(SettingError, match=r"^LAKEHOUSE_MAX_REJECTED_FRACTION must be a number within \[0, 1\], got '2.0'$"):
        Settings(max_rejected_fraction=2.0).validate()
    with pytest.raises(SettingError, match="^unknown settings: colour$"):
        Settings.from_texts({"colour": "blue"})


def test_the_operations_doc_states_each_variable_once_with_its_default_and_rule() -> None:
    readme = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for name, env in ENV.items():
        if env is None:
            continue
        rows = [line for line in readme.splitlines() if line.startswith(f"| `{env}` |")]
        assert len(rows) == 1, f"{env}: {len(rows)} rows in docs/operations.md's settings table"
        assert f"| {kind_of(name).rule} |" in rows[0], rows[0]
        shown = re.search(r"`([^`]*)`", rows[0].split("|")[2])  # the default column's first code span
        if getattr(Settings(), name) is None:  # unset by default: the README says what applies instead
            assert shown is None or "feed" in rows[0], rows[0]
        else:
            assert shown is not None, rows[0]
            parsed = Settings.from_texts({name: shown.group(1).removeprefix("./")})
            assert getattr(parsed, name) == getattr(Settings(), name), rows[0]
