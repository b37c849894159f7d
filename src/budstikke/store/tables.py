"""The SQLAlchemy table definitions; Alembic migrations must produce exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)

from budstikke.store.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes INTEGER PRIMARY KEY an auto-increment alias of the rowid.
SequenceInteger = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("creator", String(100), nullable=False),
    # The public part of the key, shown in listings and used to find the row.
    Column("prefix", String(16), nullable=False, unique=True),
    # SHA-256 of the whole key; the key itself is never stored.
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", Text, nullable=False),  # space separated
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("shipment_id", Uuid, nullable=False, unique=True),
    Column("creator", String(100), nullable=False),
    Column("idempotency_id", String(200), nullable=False),
    Column("senders_reference", String(200), nullable=True),
    Column("order_type", String(20), nullable=False),
    Column("status", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The unique constraint settles concurrent requests with the same key.
    UniqueConstraint("creator", "idempotency_id"),
    # The erasure of regular order texts reads final orders by age. An index
    # that led with the status made SQLite read every registered order, not
    # the claimed ids, when a regular claim moved 50 orders to processing.
    Index(None, "updated_at"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("creator", String(100), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("status", String(40), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("subject", Text, nullable=True),
    Column("body", Text, nullable=True),
    Column("content_type", String(8), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # After this the message must not be handed off (created + TTL).
    Column("expires_at", UtcDateTime, nullable=False),
    # A handed-off message with no final report by this time ends *_Failed_TTL.
    Column("report_deadline_at", UtcDateTime, nullable=False),
    # Earliest time of the next hand-off attempt while the status is *_New.
    Column("due_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome_unknown_count", Integer, nullable=False, default=0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("part_count", Integer, nullable=False, default=0),
    Column("last_error", String(500), nullable=True),
    Column("error_code", String(32), nullable=True),
    # When the provider accepted the message; None while it was not handed off.
    Column("handed_off_at", UtcDateTime, nullable=True),
    # Set for a regular SMS with the Daytime policy: claimed only from 09:00 to 17:00 Oslo time.
    Column("daytime_only", Boolean, nullable=False, default=False, server_default=false()),
    Index(None, "status", "priority", "due_at"),
    Index(None, "order_id"),
    # The dashboard reads the last hour of notifications by creation time.
    Index(None, "created_at"),
)

# What a regular order (or one of its reminders, each an order of its own)
# asked for, kept until a worker turns it into a notification at its send time.
regular_orders = Table(
    "regular_orders",
    metadata,
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    # The order of the request itself; a reminder points at the order it follows.
    Column("main_order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("reminder_index", SmallInteger, nullable=False),  # 0 for the main order
    Column("channel", String(8), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("subject", Text, nullable=True),
    Column("body", Text, nullable=False),
    Column("content_type", String(8), nullable=True),
    Column("daytime_only", Boolean, nullable=False),
    Column("requested_send_time", UtcDateTime, nullable=False),
    Column("condition_endpoint", Text, nullable=True),
    # Earliest time of the next processing attempt; None once the order was processed.
    Column("process_after", UtcDateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    # Requests made to the condition endpoint, whatever their response.
    Column("condition_attempts", Integer, nullable=False, default=0),
    Column("condition_first_attempt_at", UtcDateTime, nullable=True),
    # Why the order was sent without a clear answer from its condition endpoint.
    Column("condition_note", String(500), nullable=True),
    Index(None, "process_after"),
    Index(None, "main_order_id"),
)

# One row per message id the provider gave for a part of a notification.
provider_parts = Table(
    "provider_parts",
    metadata,
    Column(
        "notification_id",
        Uuid,
        ForeignKey("notifications.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("part_index", Integer, primary_key=True),
    Column("provider_ref", String(100), nullable=False),
    Column("status", String(40), nullable=True),
    Column("error_code", String(32), nullable=True),
)

# The normalised forms of each part's message id; a receipt matches any of them.
provider_ref_keys = Table(
    "provider_ref_keys",
    metadata,
    Column("ref_key", String(100), primary_key=True),
    Column("notification_id", Uuid, primary_key=True),
    Column("part_index", Integer, primary_key=True),
)

# Delivery reports whose message id is not known yet: a receipt can arrive
# before the submit response that carries the id is recorded. A report has
# one row per lookup key, all with the same report_id.
unmatched_reports = Table(
    "unmatched_reports",
    metadata,
    Column("id", SequenceInteger, primary_key=True, autoincrement=True),
    Column("ref_key", String(100), nullable=False, index=True),
    Column("report_id", Uuid, nullable=True, index=True),
    Column("status", String(40), nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("received_at", UtcDateTime, nullable=False, index=True),
)

# The status feed: one entry per order that reached a final status.
feed_entries = Table(
    "feed_entries",
    metadata,
    Column("seq", SequenceInteger, primary_key=True, autoincrement=True),
    Column("creator", String(100), nullable=False),
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("entry", Text, nullable=False),  # the JSON entry as the feed serves it
    Index(None, "creator", "seq"),
)

# Endpoints that a creator registered for signed status webhooks.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("creator", String(100), nullable=False),
    Column("url", String(2000), nullable=False),
    # The HMAC keys in their whsec_ form; signing needs them, so they are not hashed.
    Column("secret", String(100), nullable=False),
    # The secret before the last rotation, still signed with until it expires.
    Column("previous_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("disabled_reason", String(200), nullable=True),
    # Start of the current run of failed attempts; None after a success.
    Column("failing_since", UtcDateTime, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    # No request goes to the endpoint before this time.
    Column("paused_until", UtcDateTime, nullable=True),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("creator", "url"),
)

# The one-off callback URL an order carries, and the endpoint whose URL it lies under.
order_callbacks = Table(
    "order_callbacks",
    metadata,
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("endpoint_id", Uuid, nullable=False),
    Column("url", String(2000), nullable=False),
)

# The webhook outbox: one row per event and target, written in the transaction
# of the status change. A delivered row is deleted; a failed one is kept.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # Also the event's sequenceNumber.
    Column("id", SequenceInteger, primary_key=True, autoincrement=True),
    Column("message_id", String(40), nullable=False),
    Column("creator", String(100), nullable=False),
    # No foreign key: a status change must not fail because an endpoint was
    # removed meanwhile; removal deletes the endpoint's rows instead.
    Column("endpoint_id", Uuid, nullable=False),
    Column("url", String(2000), nullable=False),
    Column("is_callback", Boolean, nullable=False),
    Column("order_id", Uuid, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("payload", Text, nullable=False),  # the JSON body without sequenceNumber
    Column("state", String(10), nullable=False),  # pending or failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("first_attempt_at", UtcDateTime, nullable=True),
    Column("failed_at", UtcDateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    # A short reason without the response body, e.g. "HTTP 500" or "timed out".
    Column("last_error", String(200), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Index(None, "state", "next_attempt_at"),
    Index(None, "order_id", "id"),
    Index(None, "endpoint_id", "state"),
    # Delivered rows are deleted, and without AUTOINCREMENT SQLite would give
    # their ids, which are sequence numbers receivers saw, to new rows.
    sqlite_autoincrement=True,
)

# Notifications whose body is still stored, by priority and the time of
# their last change: the body erasure pass reads only these, one priority
# at a time, and instant bodies are erased long before regular ones.
erasable_notifications = Index(
    "ix_notifications_erasable",
    notifications.c.priority,
    notifications.c.updated_at,
    sqlite_where=notifications.c.body.is_not(None),
    postgresql_where=notifications.c.body.is_not(None),
)

# The operator's limits for one creator; a NULL column takes the BUDSTIKKE_* default.
creator_limits = Table(
    "creator_limits",
    metadata,
    Column("creator", String(100), primary_key=True),
    Column("rate_per_s", Float, nullable=True),
    Column("burst", Integer, nullable=True),
    Column("per_recipient_10min", Integer, nullable=True),
    Column("per_recipient_day", Integer, nullable=True),
    Column("sms_countries", String(1000), nullable=True),  # "47,46", or "*" for all
    Column("sensitive_guard", Boolean, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Each creator's token bucket of new orders, shared by every process.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("creator", String(100), primary_key=True),
    Column("tokens", Float, nullable=False),
    # Unix time in seconds of the last refill: a number, so that SQL computes the refill.
    Column("refilled_at_s", Float, nullable=False),
    # Whether the last request got a token; the upsert that takes one returns it.
    Column("last_granted", Boolean, nullable=False),
)

# One row per accepted instant order, for the per-recipient limits. Rows
# older than a day are deleted by the worker's retention pass.
recipient_sends = Table(
    "recipient_sends",
    metadata,
    Column("id", SequenceInteger, primary_key=True, autoincrement=True),
    Column("creator", String(100), nullable=False),
    # The phone number in E.164, or the email address in lower case.
    Column("recipient_key", String(320), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "creator", "recipient_key", "created_at"),
    Index(None, "created_at"),
)

# One OTP verification: the digest of its current code, never the code. The
# order that carries code N has the idempotency id otp:<id>:<N> (store.otp.order_key).
otp_verifications = Table(
    "otp_verifications",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("creator", String(100), nullable=False),
    Column("idempotency_id", String(200), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("recipient", String(320), nullable=False),
    # The recipient as the per-recipient limit counts it (an email address in lower case).
    Column("recipient_key", String(320), nullable=False),
    Column("sender", String(320), nullable=True),
    Column("senders_reference", String(200), nullable=True),
    Column("language", String(2), nullable=False),
    Column("template", Text, nullable=True),
    Column("code_length", SmallInteger, nullable=False),
    # Hex HMAC-SHA256 of the current code (budstikke.domain.otp.code_digest).
    Column("code_digest", String(64), nullable=False),
    # 0 for the first code, raised by one on each resend.
    Column("code_serial", Integer, nullable=False),
    Column("status", String(24), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("last_sent_at", UtcDateTime, nullable=False),
    UniqueConstraint("creator", "idempotency_id"),
    Index(None, "creator", "recipient_key", "created_at"),
)

# One row per wrong code, for the per-recipient limit; rows older than the window are deleted.
otp_failed_checks = Table(
    "otp_failed_checks",
    metadata,
    Column("id", SequenceInteger, primary_key=True, autoincrement=True),
    Column("creator", String(100), nullable=False),
    Column("verification_id", Uuid, nullable=False),
    Column("failed_at", UtcDateTime, nullable=False),
    # For deleting a creator's rows older than the window.
    Index(None, "creator", "failed_at"),
    # For counting a recipient's rows through their verifications.
    Index(None, "verification_id", "failed_at"),
)

# One row per server key that every process must share, with an HMAC of a
# fixed label under the key: a process started with another key gets another
# fingerprint and is stopped at start. The key itself is never stored.
key_fingerprints = Table(
    "key_fingerprints",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)
