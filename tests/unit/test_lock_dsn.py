"""Where an object-store root's writer lock lives: the configured DSN first, else the Dagster instance's PostgreSQL."""

from pathlib import Path

import pytest

from lakehouse.delta.locking import lock_dsn

INSTANCE = """
storage:
  postgres:
    postgres_db:
      username: {user}
      password:
        env: TEST_PG_PASSWORD
      hostname: db.internal
      db_name: dagster
      port: 5433
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("LAKEHOUSE_LOCK_DSN", "DAGSTER_PG_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def test_an_operators_own_postgres_instance_config_locates_the_lock(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "dagster.yaml").write_text(INSTANCE.format(user="ops"))
    monkeypatch.setenv("TEST_PG_PASSWORD", "s3cret")
    assert lock_dsn() == "postgresql://ops:s3cret@db.internal:5433/dagster"


def test_a_postgres_url_instance_is_used_as_it_is(clean_env: Path) -> None:
    (clean_env / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url: postgresql://u@h:5432/d\n")
    assert lock_dsn() == "postgresql://u@h:5432/d"


def test_a_sqlite_instance_or_none_gives_no_lock_and_an_explicit_dsn_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lock_dsn() is None
    (clean_env / "dagster.yaml").write_text("storage:\n  sqlite:\n    base_dir: x\n")
    assert lock_dsn() is None
    (clean_env / "dagster.yaml").write_text(INSTANCE.format(user="ops"))
    monkeypatch.setenv("LAKEHOUSE_LOCK_DSN", "host=other")
    assert lock_dsn() == "host=other"
