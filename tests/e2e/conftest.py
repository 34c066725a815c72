from pathlib import Path

import pytest

from tests.e2e.harness import fresh_root, lakehouse, ok

FIRST_ARRIVAL = "2025-01-01"


@pytest.fixture(scope="session")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once: 3 arrival dates with late data, corrections and malformed records."""
    root = tmp_path_factory.mktemp("landed")
    ok(
        lakehouse(
            "generate", "--root", str(root), "--start", FIRST_ARRIVAL, "--days", "3", "--events-per-day", "150", "--seed", "11"
        )
    )
    return root


@pytest.fixture(scope="session")
def reference(landed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every arrival date run once, uninterrupted: what every recovery must reproduce."""
    root = fresh_root(landed, tmp_path_factory.mktemp("reference") / "root")
    ok(lakehouse("run", "--root", str(root)))
    return root
