"""Peewee models of the store. The schema itself is created by :mod:`mrt_engine.store.migrations`."""

from __future__ import annotations

import json
from typing import Any

from peewee import (
    AutoField,
    CompositeKey,
    DatabaseProxy,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from mrt_engine.text import storable
from mrt_engine.timeutil import from_store, to_store

database = DatabaseProxy()


class UtcField(TextField):
    """An aware UTC datetime stored as fixed-width ISO text (sorts like time)."""

    def db_value(self, value: Any) -> Any:
        return to_store(value) if value is not None else None

    def python_value(self, value: Any) -> Any:
        return from_store(value)


class JsonField(TextField):
    """A JSON document (its text :func:`~mrt_engine.text.storable`: ``ensure_ascii=False``
    writes a lone surrogate of upstream text out raw, which UTF-8 cannot encode)."""

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        return storable(
            json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        )

    def python_value(self, value: Any) -> Any:
        return json.loads(value) if value is not None else None


class FlagField(IntegerField):
    """A yes/no stored as 0 or 1 (an INTEGER column on both backends, so statements written
    with ``= 1`` mean the same on SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> Any:
        return None if value is None else int(bool(value))

    def python_value(self, value: Any) -> Any:
        return None if value is None else bool(value)


class StoreModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class SourceState(StoreModel):
    """One cursor: where a source key's next poll resumes, and how its polls have gone."""

    source_key = TextField(primary_key=True)
    platform = TextField()
    cursor = JsonField(null=True)
    etag = TextField(null=True)
    last_modified = TextField(null=True)
    validated_url = TextField(null=True)
    baseline_done = FlagField(default=False)
    baseline_at = UtcField(null=True)  # events that happened before it are history, not news
    paused = FlagField(default=False)
    poll_requested_at = UtcField(null=True)
    last_poll_at = UtcField(null=True)
    last_success_at = UtcField(null=True)
    last_error = TextField(null=True)
    last_error_at = UtcField(null=True)
    consecutive_failures = IntegerField(default=0)
    backoff_until = UtcField(null=True)
    next_poll_at = UtcField(null=True)
    rate_limit_remaining = IntegerField(null=True)
    rate_limit_reset_at = UtcField(null=True)
    version = IntegerField(default=0)
    updated_at = UtcField()

    class Meta:
        table_name = "source_state"


class Event(StoreModel):
    """Every event ever seen, matched or not (so rule changes can be replayed)."""

    id = AutoField()
    fingerprint = TextField(unique=True)
    source = TextField()
    source_key = TextField()
    resource_type = TextField()
    resource_id = TextField()
    event_type = TextField()
    event_id = TextField()
    title = TextField()
    summary = TextField(default="")
    url = TextField(default="")
    author = TextField(default="")
    labels = JsonField(default=list)
    occurred_at = UtcField(null=True)
    observed_at = UtcField()
    raw = JsonField(null=True)
    baseline = FlagField(default=False)
    body = TextField(null=True)  # what rules matched, when longer than ``summary``

    class Meta:
        table_name = "event"


class RuleHitRow(StoreModel):
    """A rule that matched an event, with the reason."""

    id = AutoField()
    event = ForeignKeyField(Event, column_name="event_id", backref="hits")
    rule = TextField()
    action = TextField()
    priority = IntegerField(default=0)
    reason = TextField()
    suppressed = FlagField(default=False)
    origin = TextField(default="poll")
    evaluated_at = UtcField()

    class Meta:
        table_name = "rule_hit"


class Alert(StoreModel):
    """An event that must reach people; one per event."""

    id = AutoField()
    event = ForeignKeyField(Event, column_name="event_id", unique=True, backref="alerts")
    rules = JsonField(default=list)
    priority = IntegerField(default=0)
    tags = JsonField(default=list)
    origin = TextField(default="poll")
    created_at = UtcField()

    class Meta:
        table_name = "alert"


class Delivery(StoreModel):
    """The outbox: one row per (alert, channel)."""

    id = AutoField()
    alert = ForeignKeyField(Alert, column_name="alert_id", backref="deliveries")
    channel = TextField()
    # pending | retrying | sent | dead | silenced | bundled (carried by ``bundle_id``, out of
    # the queue)
    status = TextField(default="pending")
    attempts = IntegerField(default=0)
    priority = IntegerField(default=0)
    next_attempt_at = UtcField()
    lease_owner = TextField(null=True)
    lease_expires_at = UtcField(null=True)
    last_error = TextField(null=True)
    created_at = UtcField()
    updated_at = UtcField()
    sent_at = UtcField(null=True)
    silence_id = IntegerField(null=True)  # the silence that stopped it (schema: silences)
    group_key = TextField(null=True)  # schema 5: hits with one key may go out as one message
    bundle_id = IntegerField(null=True)  # the delivery whose message carries this one
    kind = TextField(default="single")  # single | group | digest | fold (what it carries)

    class Meta:
        table_name = "delivery"


class Attempt(StoreModel):
    """One try at sending one delivery."""

    id = AutoField()
    delivery = ForeignKeyField(Delivery, column_name="delivery_id", backref="attempt_rows")
    started_at = UtcField()
    finished_at = UtcField(null=True)
    duration_ms = IntegerField(null=True)
    outcome = TextField()  # in_flight | sent | failed | interrupted
    http_status = IntegerField(null=True)
    reply = TextField(null=True)
    error = TextField(null=True)
    worker = TextField(null=True)
    failure = TextField(null=True)  # temporary | permanent (a failed send; schema 7)
    delivery_status = TextField(null=True)  # what it left the delivery: sent | retrying | dead

    class Meta:
        table_name = "attempt"


class Audit(StoreModel):
    """Who did what to the tracker's state, with the before and after."""

    id = AutoField()
    at = UtcField()
    actor = TextField()
    action = TextField()
    target = TextField()
    before = JsonField(null=True)
    after = JsonField(null=True)
    detail = TextField(null=True)

    class Meta:
        table_name = "audit"


class PollMetric(StoreModel):
    """The figures of one poll of one source key (O: per-cycle metrics), or of its ``polls``
    idle polls of one flush interval (see :mod:`mrt_engine.idle_polls`)."""

    id = AutoField()
    source_key = TextField()
    started_at = UtcField()  # of the first poll
    finished_at = UtcField()  # of the last
    duration_ms = IntegerField()  # of all the polls together
    outcome = TextField()  # ok | not_modified | error
    http_requests = IntegerField(default=0)
    events_fetched = IntegerField(default=0)
    events_new = IntegerField(default=0)
    events_matched = IntegerField(default=0)
    alerts_created = IntegerField(default=0)
    error = TextField(null=True)
    polls = IntegerField(default=1)
    max_duration_ms = IntegerField(null=True)  # None: one poll (before schema 3)
    # Schema 7: answers by status class (every try), retries, the rate-limit budget left.
    http_2xx = IntegerField(default=0)
    http_304 = IntegerField(default=0)
    http_4xx = IntegerField(default=0)
    http_5xx = IntegerField(default=0)
    http_retries = IntegerField(default=0)
    rate_limit_remaining = IntegerField(null=True)

    class Meta:
        table_name = "poll_metric"


class Quarantine(StoreModel):
    """An upstream item that could not be processed; the rest of its page went on."""

    id = AutoField()
    source_key = TextField()
    item_key = TextField()  # the upstream's id of the item (an issue number, a model id)
    error = TextField()
    excerpt = TextField(default="")  # the start of the item as received, cleaned
    url = TextField(default="")  # the item's web address when it has one (trace finds it)
    first_seen_at = UtcField()
    last_seen_at = UtcField()
    times = IntegerField(default=1)

    class Meta:
        table_name = "quarantine"


class Silence(StoreModel):
    """Matchers that stop deliveries while active (:mod:`mrt_engine.silence`)."""

    id = AutoField()
    matchers = JsonField()
    starts_at = UtcField()
    ends_at = UtcField()
    author = TextField()
    comment = TextField()
    created_at = UtcField()
    created_by = TextField()
    expired_at = UtcField(null=True)
    expired_by = TextField(null=True)

    class Meta:
        table_name = "silence"


class DeliveryCount(StoreModel):
    """Outbox rows per (channel, status), kept by triggers on ``delivery`` (schema 3)."""

    channel = TextField()
    status = TextField()
    n = IntegerField(default=0)

    class Meta:
        table_name = "delivery_count"
        primary_key = CompositeKey("channel", "status")


class RuleHitCount(StoreModel):
    """Rule hits ever per rule name, kept by triggers on ``rule_hit`` (schema 3)."""

    rule = TextField(primary_key=True)
    n = IntegerField(default=0)

    class Meta:
        table_name = "rule_hit_count"


ALL_MODELS: tuple[type[StoreModel], ...] = (
    SourceState,
    Event,
    RuleHitRow,
    Alert,
    Delivery,
    Attempt,
    Audit,
    PollMetric,
    Quarantine,
    Silence,
    DeliveryCount,
    RuleHitCount,
)
