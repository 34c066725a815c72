"""Every tunable of the pipeline, each declared once: its environment variable, default, parser and rule."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from lakehouse.staging.drift import Compatibility

T = TypeVar("T")
DEFAULT_ROOT = ".lakehouse"
SCHEMA_COMPATIBILITIES = tuple(c.value for c in Compatibility)
_KIND = "lakehouse.setting"  # the dataclass-field metadata key that holds a field's Kind


class SettingError(ValueError):
    """A setting with a bad value; the message is one line naming the variable (or option) and the value."""


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How one setting is read from text, written back to text, and what values it accepts."""

    parse: Callable[[str], T]
    accepts: Callable[[T], bool]
    rule: str  # completes "<name> must be ..."
    text: Callable[[T], str] = str


def _whole(minimum: int) -> Kind[int]:
    return Kind(int, lambda v: v >= minimum, f"a whole number >= {minimum}")


def _number(low: float, high: float | None = None) -> Kind[float]:
    if high is None:
        return Kind(float, lambda v: v >= low, f"a number >= {low:g}")
    return Kind(float, lambda v: low <= v <= high, f"a number within [{low:g}, {high:g}]")


def _optional(kind: Kind[T]) -> Kind[T | None]:
    """An empty text means unset (None): the feed's own policy, or no stretch of the partitions."""
    return Kind(
        lambda raw: kind.parse(raw) if raw else None,
        lambda v: v is None or kind.accepts(v),
        kind.rule,
        lambda v: "" if v is None else kind.text(v),
    )


def _is_folder_or_uri(root: str) -> bool:
    return "://" in root or not (Path(root).exists() and not Path(root).is_dir())


ROOT = Kind(str, _is_folder_or_uri, "a folder or an object-store URI, not an existing file")
DAY = Kind(date.fromisoformat, lambda v: True, "a real date YYYY-MM-DD", date.isoformat)
INSTANCES = ("auto", "sqlite", "postgres")
INSTANCE = Kind(str, lambda v: v in INSTANCES, f"one of {', '.join(INSTANCES)}")
# A libpq connection string (URI or key=value words); its password belongs in PGPASSWORD or ~/.pgpass, not here.
DSN = _optional(
    Kind(
        str,
        lambda v: v.startswith(("postgresql://", "postgres://")) or "=" in v,
        "a PostgreSQL DSN (postgresql://... or host=... words)",
    )
)
EXECUTORS = ("local", "celery")
EXECUTOR = Kind(str, lambda v: v in EXECUTORS, f"one of {', '.join(EXECUTORS)}")
BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "pyamqp://")
# A Celery broker URL: Redis (its results go to the same database) or RabbitMQ (results over rpc://).
BROKER = Kind(str, lambda v: v.startswith(BROKER_SCHEMES), "a Celery broker URL (redis://, rediss://, amqp:// or pyamqp://)")
QUEUE = Kind(str, lambda v: bool(v) and v.replace("_", "").replace("-", "").isalnum(), "a queue name (letters, digits, - and _)")
POLICY = _optional(Kind(str, lambda v: v in SCHEMA_COMPATIBILITIES, f"one of {', '.join(SCHEMA_COMPATIBILITIES)}"))


def setting(default: T, env: str | None, kind: Kind[Any]) -> T:
    """A Settings field; `env` None means no environment variable (the CLI sets it)."""
    return field(default=default, metadata={_KIND: kind, "env": env})


@dataclass(frozen=True)
class Settings:
    """Pipeline settings. Data-affecting ones (lateness) must stay stable for replays to be exact.

    Attributes:
        root: storage root: a local path, or an object-store URI `s3://bucket/prefix` (whose writer
            locks need lock_dsn; see docs/operations.md, "Running off one machine").
        allowed_lateness_days: a record whose arrival_date - event_date exceeds this is `too_late`.
        max_rejected_fraction: the publish gate; a batch whose quarantined/records is strictly
            above it is not published.
        partitions_start: first arrival/event date of the Dagster partitions.
        partitions_end: an arrival date the partitions must reach although the calendar has not
            (the CLI sets it to the last date it runs); partitions otherwise end today.
        lock_timeout_seconds: how long a second writer waits for the first before giving up.
        schema_compatibility: overrides the feed's schema drift policy (backward, forward, full, none).
        backfill_max_runs: backfill runs in flight at once (the run queue's `dagster/backfill` tag limit).
        regular_max_runs: room the run queue keeps for every other run, whatever backfills are running.
        backfill_partitions_per_run: arrival dates one backfill run of bronze/silver processes (BackfillPolicy).
        backfill_rows_per_second: records per second that all backfill runs together may write
            (bronze rows plus silver records; 0 = no cap). Regular runs are never throttled.
        backfill_step_concurrency: steps one backfill run may execute at once, each in its own process.
        regular_step_concurrency: the same for every other run launched by the daemon.
        retention_hours: the time-travel window: `lakehouse maintain` keeps every file a version
            younger than this needs, and any unreferenced file younger than this.
        lock_dsn: the PostgreSQL whose advisory locks are an object-store root's writer locks (and whose table
            holds its backfill budget); unset, the DAGSTER_PG_* variables of a PostgreSQL instance are used, and
            without either an object-store root refuses to write. A local root keeps its kernel file locks.
        instance: the Dagster instance `lakehouse run` and `ui` install: `sqlite` under DAGSTER_HOME, or
            `postgres` (runs, events and pools in PostgreSQL, reached through DAGSTER_PG_* variables);
            `auto` is postgres when DAGSTER_PG_HOST is set, else sqlite.
        executor: where a run's steps execute: `local` (processes of the machine running the run, see
            RunKindExecutor) or `celery` (tasks on Celery workers, `lakehouse worker`, which need the
            PostgreSQL instance, the same code and the same LAKEHOUSE_* settings; see docs/deployment.md).
        celery_broker: the broker the Celery executor and its workers share (Redis or RabbitMQ).
        celery_queue: the broker queue this deployment's steps go to (and, on Redis, the prefix of every key
            it writes): two deployments sharing a broker keep apart by it.
    """

    root: str = setting(DEFAULT_ROOT, "LAKEHOUSE_ROOT", ROOT)
    allowed_lateness_days: int = setting(7, "LAKEHOUSE_ALLOWED_LATENESS_DAYS", _whole(0))
    max_rejected_fraction: float = setting(0.05, "LAKEHOUSE_MAX_REJECTED_FRACTION", _number(0, 1))
    partitions_start: date = setting(date(2025, 1, 1), "LAKEHOUSE_PARTITIONS_START", DAY)
    partitions_end: date | None = setting(None, None, _optional(DAY))
    lock_timeout_seconds: float = setting(600.0, "LAKEHOUSE_LOCK_TIMEOUT_SECONDS", _number(0))
    schema_compatibility: str | None = setting(None, "LAKEHOUSE_SCHEMA_COMPATIBILITY", POLICY)  # None: the feed's own
    backfill_max_runs: int = setting(2, "LAKEHOUSE_BACKFILL_MAX_RUNS", _whole(1))
    regular_max_runs: int = setting(2, "LAKEHOUSE_REGULAR_MAX_RUNS", _whole(1))
    backfill_partitions_per_run: int = setting(5, "LAKEHOUSE_BACKFILL_PARTITIONS_PER_RUN", _whole(1))
    backfill_rows_per_second: float = setting(0.0, "LAKEHOUSE_BACKFILL_ROWS_PER_SECOND", _number(0))
    backfill_step_concurrency: int = setting(1, "LAKEHOUSE_BACKFILL_STEP_CONCURRENCY", _whole(1))
    regular_step_concurrency: int = setting(2, "LAKEHOUSE_REGULAR_STEP_CONCURRENCY", _whole(1))
    retention_hours: float = setting(168.0, "LAKEHOUSE_RETENTION_HOURS", _number(0))
    lock_dsn: str | None = setting(None, "LAKEHOUSE_LOCK_DSN", DSN)
    instance: str = setting("auto", "LAKEHOUSE_INSTANCE", INSTANCE)
    executor: str = setting("local", "LAKEHOUSE_EXECUTOR", EXECUTOR)
    celery_broker: str = setting("redis://127.0.0.1:6379/0", "LAKEHOUSE_CELERY_BROKER", BROKER)
    celery_queue: str = setting("lakehouse", "LAKEHOUSE_CELERY_QUEUE", QUEUE)

    @property
    def uses_postgres_instance(self) -> bool:
        return self.instance == "postgres" or (self.instance == "auto" and bool(os.environ.get("DAGSTER_PG_HOST")))

    @property
    def event_partitions_start(self) -> date:
        """The earliest event date an arrival on `partitions_start` can accept (one lateness window back)."""
        return self.partitions_start - timedelta(days=self.allowed_lateness_days)

    def compatibility_for(self, feed_default: Compatibility) -> Compatibility:
        """The schema drift policy in force: the setting when given, else the feed's own."""
        return feed_default if self.schema_compatibility is None else Compatibility(self.schema_compatibility)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the LAKEHOUSE_* variables (an empty one counts as unset), then non-None `overrides`
        (CLI options, named `--<field>` in errors); raises SettingError on the first bad value."""
        texts = {f.name: os.environ.get(f.metadata["env"], "") for f in fields(cls) if f.metadata["env"]}
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = cls(**{**_parse({name: text for name, text in texts.items() if text and name not in given}), **given})
        settings.validate(named={k: f"--{k.replace('_', '-')}" for k in given})
        return settings

    @classmethod
    def from_texts(cls, texts: Mapping[str, str]) -> Settings:
        """Settings from field name -> text (absent fields keep their default), validated; the inverse of `texts`."""
        settings = cls(**_parse(texts))
        settings.validate()
        return settings

    def texts(self) -> dict[str, str]:
        """Every field as text, in the form `from_texts` (and its environment variable) reads."""
        return {f.name: f.metadata[_KIND].text(getattr(self, f.name)) for f in fields(self)}

    def validate(self, named: Mapping[str, str] | None = None) -> None:
        """Raise SettingError for the first field outside its rule; `named` gives a field's name in the
        message when it did not come from its environment variable (a CLI option)."""
        for f in fields(self):
            kind, value = f.metadata[_KIND], getattr(self, f.name)
            if not kind.accepts(value):
                raise SettingError(_problem(f, kind.text(value), (named or {}).get(f.name)))


def _parse(texts: Mapping[str, str]) -> dict[str, Any]:
    """Each field's text through its own parser and rule; an unknown name or a bad text is a SettingError naming it."""
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(texts) - set(known))
    if unknown:
        raise SettingError(f"unknown settings: {', '.join(unknown)}")
    values = {}
    for name, text in texts.items():
        kind = known[name].metadata[_KIND]
        try:
            values[name] = kind.parse(text)
        except ValueError:
            raise SettingError(_problem(known[name], text)) from None
        if not kind.accepts(values[name]):  # checked here too, so the message quotes the text as it was given
            raise SettingError(_problem(known[name], text))
    return values


def _problem(f: Any, text: str, name: str | None = None) -> str:
    return f"{name or f.metadata['env'] or f.name} must be {f.metadata[_KIND].rule}, got {text!r}"


def kind_of(name: str) -> Kind[Any]:
    """The declaration of setting `name` (a CLI option overriding it reuses its parser and rule)."""
    return next(f.metadata[_KIND] for f in fields(Settings) if f.name == name)


def option_type(kind: Kind[Any]) -> Callable[[str], Any]:
    """An argparse `type` that parses with `kind` and says its rule in one line when the text breaks it."""
    import argparse

    def parse(text: str) -> Any:
        try:
            value = kind.parse(text)
            if kind.accepts(value):
                return value
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"must be {kind.rule}, got {text!r}")

    return parse
