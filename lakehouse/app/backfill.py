"""Launch and watch a real Dagster asset backfill through the webserver's GraphQL API, as the UI does.

DagsterGraphQLClient has no backfill method; the mutation and query below are the ones the UI sends.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from lakehouse.feed import FeedSpec

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on InvalidSubsetError { message }
  }
}"""

STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions
      assetBackfillData { assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
        assetKey { path } numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed } } }
      error { message }
    }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message }
  }
}"""

CANCEL = """
mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) { __typename ... on PythonError { message } ... on UnauthorizedError { message } }
}"""

DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}


def ingest_assets(feed: FeedSpec) -> list[str]:
    """What a backfill launches by default: a feed's bronze, silver and quarantine (gold follows by its sensor)."""
    return [key.to_user_string() for key in (feed.bronze_key, feed.silver_key, feed.quarantine_key)]


class BackfillError(RuntimeError):
    """The webserver refused the backfill, or could not be reached."""


@dataclass(frozen=True)
class AssetProgress:
    asset: str
    targeted: int
    in_progress: int
    materialized: int
    failed: int


@dataclass(frozen=True)
class BackfillState:
    backfill_id: str
    status: str
    assets: list[AssetProgress]
    error: str | None

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED and not any(a.failed for a in self.assets)

    def line(self) -> str:
        parts = [f"{a.asset} {a.materialized}/{a.targeted} done, {a.in_progress} running, {a.failed} failed" for a in self.assets]
        return f"backfill {self.backfill_id} {self.status}: " + "; ".join(parts)


def date_range(first: date, last: date) -> list[str]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


class BackfillClient:
    """A minimal GraphQL client for one webserver, e.g. http://127.0.0.1:3000."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.endpoint = url.rstrip("/") + "/graphql"
        self.timeout = timeout

    def _post(self, query: str, variables: dict[str, object]) -> dict[str, object]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.endpoint, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError) as error:
            raise BackfillError(f"cannot reach the Dagster webserver at {self.endpoint}: {error}") from error
        if payload.get("errors"):
            raise BackfillError(f"GraphQL error: {payload['errors'][0].get('message')}")
        return payload["data"]  # type: ignore[no-any-return]

    def launch(self, assets: list[str], partitions: list[str], tags: dict[str, str], title: str) -> str:
        """An asset backfill of `partitions` for `assets` (slash-separated keys); returns its id."""
        params = {
            "assetSelection": [{"path": asset.split("/")} for asset in assets],
            "partitionNames": partitions,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "title": title,
        }
        result = self._post(LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert isinstance(result, dict)
        if result["__typename"] != "LaunchBackfillSuccess":
            raise BackfillError(f"backfill refused ({result['__typename']}): {result.get('message', '')}")
        return str(result["backfillId"])

    def state(self, backfill_id: str) -> BackfillState:
        result = self._post(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert isinstance(result, dict)
        if result["__typename"] != "PartitionBackfill":
            raise BackfillError(f"backfill {backfill_id}: {result['__typename']}: {result.get('message', '')}")
        statuses = (result.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
        assets = [
            AssetProgress(
                "/".join(s["assetKey"]["path"]),
                s["numPartitionsTargeted"],
                s["numPartitionsInProgress"],
                s["numPartitionsMaterialized"],
                s["numPartitionsFailed"],
            )
            for s in statuses
            if "assetKey" in s
        ]
        return BackfillState(backfill_id, result["status"], assets, (result.get("error") or {}).get("message"))

    def cancel(self, backfill_id: str) -> None:
        result = self._post(CANCEL, {"id": backfill_id})["cancelPartitionBackfill"]
        assert isinstance(result, dict)
        if result["__typename"] != "CancelBackfillSuccess":
            raise BackfillError(f"cancel refused ({result['__typename']}): {result.get('message', '')}")

    def wait(
        self, backfill_id: str, timeout: float, poll_seconds: float = 2.0, report: Callable[[BackfillState], None] = print
    ) -> BackfillState:
        """Poll until the backfill is done, reporting each change of progress; raises TimeoutError past `timeout`."""
        deadline, last = time.monotonic() + timeout, ""
        while True:
            state = self.state(backfill_id)
            if state.line() != last:
                report(state)
                last = state.line()
            if state.done:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} still {state.status} after {timeout:.0f}s")
            time.sleep(poll_seconds)
