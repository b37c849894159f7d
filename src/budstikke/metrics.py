"""Prometheus metrics: one registry per app, recording functions and scrape-time values.

Every label has a small, fixed set of values (channels, priorities, statuses,
reasons, SMPP bind names); creators, references, ids, numbers and addresses
are never labels. Counters count what this process did, so a deployment with
several processes sums them across processes. The queue gauges are read
from the database at scrape time and are the same in every process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
)

from budstikke import __version__
from budstikke.channels.base import Provider
from budstikke.channels.provider_state import ProviderSnapshot, snapshot_provider
from budstikke.channels.smtp import SmtpHandOffError
from budstikke.domain.statuses import Channel, NotificationStatus, Priority
from budstikke.errors import DatabaseUnavailableError, HandOffError
from budstikke.store.database import Database
from budstikke.store.monitoring import QueueGroup, read_queue

# A scrape waits at most this long for the queue query, so that a slow
# database shows as budstikke_database_up 0 instead of a scrape timeout.
SCRAPE_QUERY_TIMEOUT_S = 2.0

PRIORITY_LABELS = {Priority.INSTANT: "instant", Priority.REGULAR: "regular"}
QUEUE_STATES = ("due", "scheduled", "sending")
ORDER_RESULTS = ("created", "replayed")
HAND_OFF_RESULTS = ("accepted", "retry", "failed", "lease_lost")
ENDPOINTS = ("order", "shipment", "feed", "dashboard", "other")
REJECTION_REASONS = (
    "validation",  # 400
    "auth",  # 401: no or invalid credentials
    "forbidden",  # 403: valid credentials without the scope or creator
    "too_large",  # 413
    "unsupported_media_type",  # 415
    "rate_limited",  # 429
    "unavailable",  # 503: the database did not respond
)
# The limits that rate limiting will name; any other name is counted as "other".
RATE_LIMITS = (
    *("creator", "recipient", "other"),
    *("otp_recipient", "otp_failed_checks", "otp_cooldown"),
)
# Reasons for a failed webhook call; any other reason is counted as "other".
WEBHOOK_FAILURE_REASONS = (
    "timeout",
    "connection",
    "http_status",
    "invalid_response",
    "refused",
    "other",
)

HAND_OFF_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TIME_TO_HAND_OFF_BUCKETS_S = (
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 300.0, 900.0, 3600.0),
)


def priority_label(priority: Priority) -> str:
    return PRIORITY_LABELS.get(priority, "other")


def allowed_label(value: str, allowed: tuple[str, ...]) -> str:
    """Return the value if it is one of the allowed label values, else "other"."""
    return value if value in allowed else "other"


def smtp_reply_class(code: int | None) -> str:
    """Return "4xx" or "5xx" for an SMTP reply code, "none" without a reply, else "other"."""
    if code is None:
        return "none"
    if 400 <= code < 500:
        return "4xx"
    if 500 <= code < 600:
        return "5xx"
    return "other"


class Metrics:
    """The metric families of one app, in a registry of their own.

    Create one per app (the app factory does), never at import time, so that
    several apps in one process, as in the tests, do not share counts.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._define_request_metrics()
        self._define_dispatch_metrics()
        self._define_planned_metrics()
        self._define_scrape_time_metrics()
        self._set_initial_series()

    def _define_request_metrics(self) -> None:
        registry = self.registry
        self.orders = Counter(
            "budstikke_orders",
            "Instant orders accepted by the API: created (stored, then handed off) or "
            "replayed (an idempotency id seen before; nothing sent).",
            ["channel", "result"],
            registry=registry,
        )
        self.rejections = Counter(
            "budstikke_requests_rejected",
            "API requests answered with a client or availability error, by endpoint and reason.",
            ["endpoint", "reason"],
            registry=registry,
        )

    def _define_dispatch_metrics(self) -> None:
        registry = self.registry
        self.hand_offs = Counter(
            "budstikke_hand_offs",
            "Hand-off attempts by result: accepted by the provider, failed with a retry "
            "scheduled, failed for good, or accepted after another worker took the lease.",
            ["channel", "priority", "result"],
            registry=registry,
        )
        self.hand_off_duration = Histogram(
            "budstikke_hand_off_duration_seconds",
            "Time one hand-off attempt waited for the provider, accepted or not.",
            ["channel", "priority"],
            buckets=HAND_OFF_BUCKETS_S,
            registry=registry,
        )
        self.time_to_hand_off = Histogram(
            "budstikke_time_to_hand_off_seconds",
            "Time from storing the order to the provider accepting its message, retries included.",
            ["channel", "priority"],
            buckets=TIME_TO_HAND_OFF_BUCKETS_S,
            registry=registry,
        )
        self.delivery_outcomes = Counter(
            "budstikke_delivery_outcomes",
            "Final statuses set by this process at hand-off (file outbox) or when giving up. "
            "Outcomes from delivery reports are in budstikke_delivery_reports_total, TTL "
            "expiries in budstikke_notifications_expired_total.",
            ["channel", "status"],
            registry=registry,
        )
        self.delivery_reports = Counter(
            "budstikke_delivery_reports",
            "Delivery reports received, one per message part; status is the part's final "
            "status or not_final; matched is false for reports kept until their message id "
            "is recorded.",
            ["channel", "status", "matched"],
            registry=registry,
        )
        self.expired = Counter(
            "budstikke_notifications_expired",
            "Notifications the expiry sweep ended as *_Failed_TTL: not handed off within "
            "their TTL, or no final report within TTL + 300 s.",
            registry=registry,
        )
        self.smtp_errors = Counter(
            "budstikke_smtp_errors",
            "Failed SMTP hand-offs by session phase and reply class (4xx, 5xx, or none when "
            "the server did not answer).",
            ["phase", "reply"],
            registry=registry,
        )

    def _define_planned_metrics(self) -> None:
        # Recorded by the instant and regular order services (rate limits) and
        # by the webhook delivery loop.
        registry = self.registry
        self.rate_limit_rejections = Counter(
            "budstikke_rate_limit_rejections",
            "Orders rejected with 429 because a rate limit was exhausted, by limit.",
            ["limit"],
            registry=registry,
        )
        self.webhook_failures = Counter(
            "budstikke_webhook_failures",
            "Failed webhook calls by reason.",
            ["reason"],
            registry=registry,
        )

    def _define_scrape_time_metrics(self) -> None:
        registry = self.registry
        self.queue_depth = Gauge(
            "budstikke_queue_depth",
            "Notifications not handed off yet, read from the database at scrape time; state is "
            "due, scheduled (waiting for a retry time) or sending (claimed by a worker).",
            ["priority", "channel", "state"],
            registry=registry,
        )
        self.queue_oldest_due_age = Gauge(
            "budstikke_queue_oldest_due_age_seconds",
            "How long the oldest due, unclaimed notification has been due; 0 when none is.",
            ["priority"],
            registry=registry,
        )
        self.database_up = Gauge(
            "budstikke_database_up",
            "1 when the scrape-time queue query succeeded, else 0 (the queue gauges then keep "
            "their last values).",
            registry=registry,
        )
        self.provider_ready = Gauge(
            "budstikke_provider_ready",
            "1 when the channel's provider in this process can take messages, else 0.",
            ["channel", "kind"],
            registry=registry,
        )
        self.smpp_binds = Gauge(
            "budstikke_smpp_binds",
            "SMPP binds of this process by state (bound or unbound).",
            ["state"],
            registry=registry,
        )
        self.smpp_window_size = Gauge(
            "budstikke_smpp_window_size",
            "Requests one SMPP session may have awaiting a response.",
            ["session"],
            registry=registry,
        )
        self.smpp_window_in_use = Gauge(
            "budstikke_smpp_window_in_use",
            "Requests an SMPP session sent and has no response for yet.",
            ["session"],
            registry=registry,
        )
        self.smpp_window_waiting = Gauge(
            "budstikke_smpp_window_waiting",
            "submit_sm requests waiting for a free window slot of an SMPP session.",
            ["session"],
            registry=registry,
        )
        build_info = Gauge(
            "budstikke_build_info",
            "Always 1; the version label is budstikke's.",
            ["version"],
            registry=registry,
        )
        build_info.labels(__version__).set(1)

    def _set_initial_series(self) -> None:
        # Series that exist from the start make rate() and absent() work before
        # the first event of each kind.
        for channel in Channel:
            for result in ORDER_RESULTS:
                self.orders.labels(channel.value, result)
            for priority in PRIORITY_LABELS.values():
                for hand_off_result in HAND_OFF_RESULTS:
                    self.hand_offs.labels(channel.value, priority, hand_off_result)
        for endpoint in ENDPOINTS:
            for reason in REJECTION_REASONS:
                self.rejections.labels(endpoint, reason)
        for limit in RATE_LIMITS:
            self.rate_limit_rejections.labels(limit)
        for webhook_reason in WEBHOOK_FAILURE_REASONS:
            self.webhook_failures.labels(webhook_reason)

    # Recording, called where the events happen.

    def record_order(self, channel: Channel, *, created: bool) -> None:
        self.orders.labels(channel.value, "created" if created else "replayed").inc()

    def record_rejection(self, endpoint: str, reason: str) -> None:
        self.rejections.labels(
            allowed_label(endpoint, ENDPOINTS), allowed_label(reason, REJECTION_REASONS)
        ).inc()

    def record_hand_off_accepted(
        self,
        channel: Channel,
        priority: Priority,
        *,
        duration_s: float,
        time_to_hand_off_s: float,
        status: NotificationStatus,
    ) -> None:
        labels = (channel.value, priority_label(priority))
        self.hand_offs.labels(*labels, "accepted").inc()
        self.hand_off_duration.labels(*labels).observe(duration_s)
        self.time_to_hand_off.labels(*labels).observe(max(time_to_hand_off_s, 0.0))
        if status.is_final:
            self.delivery_outcomes.labels(channel.value, status.value).inc()

    def record_hand_off_failed(
        self,
        channel: Channel,
        priority: Priority,
        error: HandOffError,
        *,
        duration_s: float,
        final_status: NotificationStatus | None,
    ) -> None:
        """Count a failed attempt; `final_status` is set when the dispatcher gave up."""
        labels = (channel.value, priority_label(priority))
        self.hand_offs.labels(*labels, "retry" if final_status is None else "failed").inc()
        self.hand_off_duration.labels(*labels).observe(duration_s)
        if final_status is not None:
            self.delivery_outcomes.labels(channel.value, final_status.value).inc()
        if isinstance(error, SmtpHandOffError):
            self.smtp_errors.labels(error.phase.value, smtp_reply_class(error.code)).inc()

    def record_lease_lost(self, channel: Channel, priority: Priority) -> None:
        self.hand_offs.labels(channel.value, priority_label(priority), "lease_lost").inc()

    def record_delivery_report(
        self, channel: Channel, status: NotificationStatus | None, *, matched: bool
    ) -> None:
        status_label = "not_final" if status is None else status.value
        self.delivery_reports.labels(channel.value, status_label, str(matched).lower()).inc()

    def record_expired(self, count: int) -> None:
        if count > 0:
            self.expired.inc(count)

    def record_rate_limit_rejection(self, limit: str) -> None:
        self.rate_limit_rejections.labels(allowed_label(limit, RATE_LIMITS)).inc()

    def record_webhook_failure(self, reason: str) -> None:
        self.webhook_failures.labels(allowed_label(reason, WEBHOOK_FAILURE_REASONS)).inc()

    # Scrape time.

    async def refresh(
        self, database: Database, providers: Mapping[Channel, Provider], now: datetime
    ) -> None:
        """Read the queue from the database and the providers' state into the gauges."""
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT_S):
                groups = await read_queue(database, now)
        except (DatabaseUnavailableError, TimeoutError):
            self.database_up.set(0)
        else:
            self.database_up.set(1)
            self.set_queue(groups, now)
        self.set_providers({channel: snapshot_provider(p) for channel, p in providers.items()})

    def set_queue(self, groups: list[QueueGroup], now: datetime) -> None:
        counts = {
            (priority_label(group.priority), group.channel.value, group.state): group.count
            for group in groups
        }
        for priority in PRIORITY_LABELS.values():
            for channel in Channel:
                for state in QUEUE_STATES:
                    count = counts.get((priority, channel.value, state), 0)
                    self.queue_depth.labels(priority, channel.value, state).set(count)
        for priority_value, priority in PRIORITY_LABELS.items():
            due_times = [
                group.oldest_due_at
                for group in groups
                if group.priority == priority_value
                and group.state == "due"
                and group.oldest_due_at is not None
            ]
            age_s = (now - min(due_times)).total_seconds() if due_times else 0.0
            self.queue_oldest_due_age.labels(priority).set(max(age_s, 0.0))

    def set_providers(self, snapshots: Mapping[Channel, ProviderSnapshot]) -> None:
        self.provider_ready.clear()
        for channel, snapshot in snapshots.items():
            self.provider_ready.labels(channel.value, snapshot.kind).set(int(snapshot.ready))
        for gauge in (self.smpp_window_size, self.smpp_window_in_use, self.smpp_window_waiting):
            gauge.clear()
        smpp = [snapshot for snapshot in snapshots.values() if snapshot.kind == "smpp"]
        if not smpp:
            self.smpp_binds.clear()
            return
        bound = sum(1 for s in smpp for session in s.sessions if session.bound)
        configured = sum(max(s.configured_sessions, len(s.sessions)) for s in smpp)
        self.smpp_binds.labels("bound").set(bound)
        self.smpp_binds.labels("unbound").set(configured - bound)
        for snapshot in smpp:
            for session in snapshot.sessions:
                self.smpp_window_size.labels(session.name).set(session.window_size)
                self.smpp_window_in_use.labels(session.name).set(session.in_flight)
                self.smpp_window_waiting.labels(session.name).set(session.waiting)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return every metric and its content type, in the format the Accept header asks for.

        Without an Accept header that names OpenMetrics or a newer text
        format, the answer is the Prometheus text format 0.0.4.
        """
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(self.registry), content_type
