"""The billing events feed as the engine sees it."""

from checks.billing_contract import CONTENT_FIELDS, FIELDS, REASONS, billing_event_contract
from lakehouse.feed import FeedSpec

BILLING_EVENTS = FeedSpec(
    dataset="billing_events",
    key="event_id",
    version="source_version",
    event_time="event_ts",
    fields=FIELDS,
    content_fields=CONTENT_FIELDS,
    reasons=REASONS,
    contract=billing_event_contract,
)
