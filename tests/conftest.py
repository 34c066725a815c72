import warnings
from pathlib import Path

import dagster as dg
import pytest

# Beta features used deliberately (see lakehouse/definitions.py) must not clutter test output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# Each tier is a folder, and its marker is the folder's name: `-m "not e2e"` selects exactly by folder.
TIER_MARKERS = {
    "unit": "unit",
    "engine": "engine",
    "property": "property",
    "dagster": "dagster",
    "e2e": "e2e",
    "benchmarks": "bench",
    "scaleout": "scaleout",
}
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(item.path).relative_to(TESTS).parts[0]
        item.add_marker(TIER_MARKERS[tier])
