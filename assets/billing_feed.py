"""The billing events feed as the engine sees it."""

from checks.billing_contract import CONTENT_FIELDS, CONTRACT_VERSION, FIELDS, REASONS, REQUIRED_FIELDS, billing_event_contract
from lakehouse.drift import Compatibility
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
    required=REQUIRED_FIELDS,
    contract_version=CONTRACT_VERSION,
    # The upstream may add fields (kept in bronze, reported); losing, renaming or retyping one we read stops the batch.
    compatibility=Compatibility.BACKWARD,
    drift_share=0.5,
)
