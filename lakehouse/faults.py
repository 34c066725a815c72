"""Named crash points for the crash-safety tests: a real SIGKILL between two commits.

Enabled only by the test-only environment variable LAKEHOUSE_TEST_CRASH_AT=<point>; unset in
production, where each call is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "LAKEHOUSE_TEST_CRASH_AT"
CRASH_POINTS = (
    "after_bronze_commit",
    "after_quarantine_commit",
    "after_ledger_commit",
    "after_silver_commit",
    "after_batch_record",
    "after_restatement_record",
    "after_gold_commit",
)


def crash_point(name: str) -> None:
    """Die here, without cleanup, if the test asked for it."""
    assert name in CRASH_POINTS, name
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
