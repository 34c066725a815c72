"""Log lines an on-call can follow: every line of a batch's work names its feed, arrival date, batch id and run id.

The ids lead both ways: from a line to the batch's record (`lakehouse status`, ops.batches) and the run
(Dagster UI), and from an incident (which names the batch) to every line of its run. They are in the text,
so any handler shows them, and in the record's `extra`, so a structured handler can index them.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import date
from typing import Any

ENGINE_LOGGER = "lakehouse"


class BatchLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose every line is prefixed with `[<dataset> <arrival date> batch <id> run <id>]`."""

    def __init__(
        self, logger: logging.Logger, dataset: str, run_id: str, batch_id: str | None = None, arrival_date: date | None = None
    ) -> None:
        super().__init__(
            logger,
            {
                "dataset": dataset,
                "run_id": run_id,
                "batch_id": batch_id,
                "arrival_date": arrival_date and arrival_date.isoformat(),
            },
        )

    def for_batch(self, batch_id: str, arrival_date: date | None = None) -> BatchLog:
        """The same log for another batch of the run (a backfill run carries several arrival dates)."""
        extra = dict(self.extra or {})
        return BatchLog(self.logger, str(extra["dataset"]), str(extra["run_id"]), batch_id, arrival_date)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        where = " ".join(str(extra[k]) for k in ("dataset", "arrival_date") if extra.get(k))
        batch = f" batch {str(extra['batch_id'])[:12]}" if extra.get("batch_id") else ""
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{where}{batch} run {str(extra['run_id'])[:8]}] {msg}", kwargs


def batch_log(
    logger: logging.Logger | None, dataset: str, run_id: str, batch_id: str | None = None, arrival_date: date | None = None
) -> BatchLog:
    """A batch's log over `logger` (a Dagster step's `context.log`), else over the engine's own logger."""
    return BatchLog(logger or logging.getLogger(ENGINE_LOGGER), dataset, run_id, batch_id, arrival_date)
