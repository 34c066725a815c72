"""An operator launches a backfill from the real Dagster UI in headless Chromium, and watches it complete.

This session runs without caps (10 runs at once, one date per run, no row cap): it is also the control
showing that the in-flight measurement of test_backfill_caps.py does see runs overlap when nothing stops them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.dagster_ui import BACKFILL_TAG, instance, peak_in_flight, run_spans, running_ui, wait_until
from tests.e2e.harness import lakehouse, ok
from tests.support import assert_same_content, snapshot

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FIRST, LAST, DAYS = "2025-01-01", "2025-01-04", 4
UNCAPPED = {
    "LAKEHOUSE_BACKFILL_MAX_RUNS": "10",
    "LAKEHOUSE_BACKFILL_PARTITIONS_PER_RUN": "1",
    "LAKEHOUSE_BACKFILL_ROWS_PER_SECOND": "0",
}
UI_TIMEOUT_MS = 120_000  # a 2-core machine running the webserver, daemon and runs answers slowly


def chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium); the UI test drives it headless")


def test_a_backfill_launched_from_the_ui_materialize_dialog_completes_and_keeps_the_tables(tmp_path: Path) -> None:
    browser_path = chromium()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "root"
    ok(
        lakehouse(
            "generate", "--root", str(root), "--start", FIRST, "--days", str(DAYS), "--events-per-day", "25", "--seed", "31"
        )
    )
    ok(lakehouse("run", "--root", str(root)))
    before = snapshot(root)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with running_ui(root, tmp_path / "ui.log", **UNCAPPED) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page.goto(f"{url}/asset-groups")
            page.get_by_text("billing_events_quarantine").first.wait_for()
            page.screenshot(path=shots / "1-asset-graph.png")

            page.goto(f"{url}/assets/silver/billing_events?view=partitions")
            materialize = page.get_by_role("button", name="Materialize…")
            materialize.wait_for()
            skip = page.get_by_role("button", name="Skip")  # Dagster's one-time community prompt, when it shows
            page.wait_for_timeout(2000)
            if skip.is_visible():
                skip.click()
            page.screenshot(path=shots / "2-silver-partitions.png")

            materialize.click()
            page.get_by_role("button", name="Confirm").click()  # silver is a multi-asset with its quarantine
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("button", name="Show all partitions").click()
            selection = dialog.locator("input[type=text]").first
            selection.fill(f"[{FIRST}...{LAST}]")
            selection.press("Enter")
            dialog.get_by_text(f"{DAYS} partitions").wait_for()
            page.screenshot(path=shots / "3-materialize-dialog.png")
            dialog.get_by_role("button", name="Launch backfill").click()
            created = page.get_by_text(re.compile(r"Created backfill \w+"))
            created.wait_for()
            match = re.search(r"Created backfill (\w+)", created.inner_text())
            assert match
            backfill_id = match.group(1)

            def backfill_row() -> str:
                page.goto(f"{url}/runs?view=backfills")
                # The runs feed is a virtualized list of divs, not a table: its rows are the only role-less handle.
                row = page.locator("[class*='VirtualizedTable_row']").filter(has_text=backfill_id)
                row.wait_for()
                return row.inner_text()

            wait_until(
                lambda: re.search(r"Success|Fail|Cancel", backfill_row()), 600, f"backfill {backfill_id} in the UI", poll=5
            )
            page.screenshot(path=shots / "4-backfills.png")
            assert "Success" in backfill_row(), backfill_row()
        except Exception:
            page.screenshot(path=shots / "failure.png")
            raise
        finally:
            browser.close()

    runs = run_spans(instance(root), {BACKFILL_TAG: backfill_id})
    assert len(runs) == DAYS  # one date per run, as configured
    peak = peak_in_flight(runs)
    assert peak >= 2, "uncapped, the backfill's runs overlap, and the measurement sees it"
    print(f"\nuncapped control: {len(runs)} backfill runs, peak {peak} in flight")
    assert_same_content(snapshot(root), before)  # a backfill of unchanged files changes no content
    if os.environ.get("LAKEHOUSE_DOCS_SCREENSHOT"):  # refresh docs/operations.md's screenshot from a real run
        shutil.copy(shots / "3-materialize-dialog.png", os.environ["LAKEHOUSE_DOCS_SCREENSHOT"])
