"""/metrics: counts of real requests and hand-offs, queue gauges and low-cardinality labels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from budstikke.api.app import create_app
from budstikke.channels.base import Provider
from budstikke.channels.outbox import FileOutbox
from budstikke.channels.provider_state import ProviderSnapshot, SessionSnapshot
from budstikke.channels.smtp import SmtpProvider
from budstikke.config import Settings
from budstikke.domain.statuses import Channel
from budstikke.metrics import Metrics
from budstikke.store.api_keys import create_api_key
from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.conftest import CREATE_SCOPE, RunningApp
from tests.serve_process import free_port


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """Return one sample's value; a missing sample fails with the names that exist."""
    found = samples(text)
    key = (name, frozenset(labels.items()))
    assert key in found, f"{name}{labels} not in {sorted({n for n, _ in found})}"
    return found[key]


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


@asynccontextmanager
async def app_client(
    settings: Settings, **options: object
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    app = create_app(settings, **options)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        _record, key = await create_api_key(
            app.state.services.database,
            creator="ttd",
            scopes=(CREATE_SCOPE,),
            now=datetime.now(UTC),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://budstikke.test"
        ) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, key


async def test_orders_and_hand_offs_counted(running_app: RunningApp) -> None:
    headers = running_app.headers()
    for _ in range(3):
        await running_app.client.post(SMS_PATH, headers=headers, json=sms_order())
    replayed = sms_order(idempotency_id="same")
    await running_app.client.post(SMS_PATH, headers=headers, json=replayed)
    await running_app.client.post(SMS_PATH, headers=headers, json=replayed)
    await running_app.client.post(EMAIL_PATH, headers=headers, json=email_order())

    text = await scrape(running_app.client)

    assert value(text, "budstikke_orders_total", channel="sms", result="created") == 4
    assert value(text, "budstikke_orders_total", channel="sms", result="replayed") == 1
    assert value(text, "budstikke_orders_total", channel="email", result="created") == 1
    accepted = {"channel": "sms", "priority": "instant", "result": "accepted"}
    assert value(text, "budstikke_hand_offs_total", **accepted) == 4
    assert (
        value(text, "budstikke_hand_off_duration_seconds_count", channel="sms", priority="instant")
        == 4
    )
    assert (
        value(text, "budstikke_time_to_hand_off_seconds_count", channel="email", priority="instant")
        == 1
    )
    outcome = {"channel": "sms", "status": "SMS_Delivered"}
    assert value(text, "budstikke_delivery_outcomes_total", **outcome) == 4


async def test_rejections_counted_by_reason(running_app: RunningApp) -> None:
    client = running_app.client
    no_scope = await running_app.new_key("ttd", scopes=("other:scope",))
    await client.post(SMS_PATH, json=sms_order())
    await client.post(SMS_PATH, headers=running_app.headers(no_scope), json=sms_order())
    await client.post(SMS_PATH, headers=running_app.headers(), json=sms_order(phone="12345"))
    await client.get(
        "/notifications/api/v1/future/shipment/feed?seq=-1", headers=running_app.headers()
    )
    too_large = "x" * (running_app.settings.max_request_bytes + 1)
    await client.post(
        SMS_PATH,
        headers={**running_app.headers(), "Content-Type": "application/json"},
        content=too_large,
    )

    text = await scrape(client)

    assert value(text, "budstikke_requests_rejected_total", endpoint="order", reason="auth") == 1
    assert (
        value(text, "budstikke_requests_rejected_total", endpoint="order", reason="forbidden") == 1
    )
    assert (
        value(text, "budstikke_requests_rejected_total", endpoint="order", reason="validation") == 1
    )
    assert (
        value(text, "budstikke_requests_rejected_total", endpoint="feed", reason="validation") == 1
    )
    assert (
        value(text, "budstikke_requests_rejected_total", endpoint="order", reason="too_large") == 1
    )
    assert value(text, "budstikke_orders_total", channel="sms", result="created") == 0


async def test_labels_carry_no_creators_or_recipients(running_app: RunningApp) -> None:
    other = await running_app.new_key("secret-creator")
    order = sms_order(phone="+4798765432", idempotency_id="reference-42")
    order["sendersReference"] = "case-4711"
    await running_app.client.post(SMS_PATH, headers=running_app.headers(other), json=order)
    await running_app.client.post(
        EMAIL_PATH,
        headers=running_app.headers(),
        json=email_order(address="kari.nordmann@example.com"),
    )

    text = await scrape(running_app.client)

    for private in (
        "secret-creator",
        "ttd",
        "98765432",
        "kari.nordmann",
        "case-4711",
        "reference-42",
    ):
        assert private not in text
    label_names = {
        label
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for label in sample.labels
    }
    assert label_names <= {
        "channel",
        "result",
        "endpoint",
        "reason",
        "priority",
        "status",
        "matched",
        "phase",
        "reply",
        "limit",
        "state",
        "kind",
        "session",
        "version",
        "le",
    }


async def test_queue_depth_and_oldest_due_age(settings: Settings) -> None:
    # No providers and no workers: the order stays queued, as in an API-only process.
    a_minute_ago = datetime.now(UTC) - timedelta(seconds=60)
    async with app_client(
        settings, providers={}, run_workers=False, clock=lambda: a_minute_ago
    ) as (client, _key):
        await client.post(SMS_PATH, json=sms_order())
        await client.post(SMS_PATH, json=sms_order())
        await client.post(EMAIL_PATH, json=email_order())
        text = await scrape(client)

    assert value(text, "budstikke_queue_depth", priority="instant", channel="sms", state="due") == 2
    assert (
        value(text, "budstikke_queue_depth", priority="instant", channel="email", state="due") == 1
    )
    assert value(text, "budstikke_queue_depth", priority="regular", channel="sms", state="due") == 0
    age = value(text, "budstikke_queue_oldest_due_age_seconds", priority="instant")
    assert 59 <= age < 120
    assert value(text, "budstikke_queue_oldest_due_age_seconds", priority="regular") == 0
    assert value(text, "budstikke_database_up") == 1


async def test_smtp_errors_and_retries_counted(settings: Settings) -> None:
    providers: Mapping[Channel, Provider] = {
        Channel.SMS: FileOutbox(Channel.SMS, settings.data_dir / "outbox" / "sms.jsonl"),
        Channel.EMAIL: SmtpProvider.from_url(f"smtp://127.0.0.1:{free_port()}?tls=none"),
    }
    async with app_client(settings, providers=providers) as (client, _key):
        response = await client.post(EMAIL_PATH, json=email_order())
        text = await scrape(client)

    assert response.status_code == 201
    retry = {"channel": "email", "priority": "instant", "result": "retry"}
    assert value(text, "budstikke_hand_offs_total", **retry) == 1
    assert value(text, "budstikke_smtp_errors_total", phase="connect", reply="none") == 1
    assert value(text, "budstikke_provider_ready", channel="email", kind="smtp") == 0
    assert value(text, "budstikke_provider_ready", channel="sms", kind="file") == 1


async def test_two_apps_keep_separate_counts(settings: Settings) -> None:
    async with app_client(settings) as (first, _key):
        await first.post(SMS_PATH, json=sms_order())
        first_text = await scrape(first)
    # Processes that share a database share its OTP key as well.
    shared_key = (settings.data_dir / "otp.key").read_text().strip()
    second_settings = settings.model_copy(
        update={"data_dir": settings.data_dir / "second", "otp_key": shared_key}
    )
    async with app_client(second_settings) as (second, _key):
        second_text = await scrape(second)

    assert value(first_text, "budstikke_orders_total", channel="sms", result="created") == 1
    assert value(second_text, "budstikke_orders_total", channel="sms", result="created") == 0


async def test_openmetrics_when_asked(running_app: RunningApp) -> None:
    response = await running_app.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


class SmppLike:
    """A provider that reports its own state through metrics_snapshot()."""

    channel = Channel.SMS

    def __init__(self, snapshot: ProviderSnapshot) -> None:
        self.snapshot = snapshot

    def is_ready(self) -> tuple[bool, str]:
        return self.snapshot.ready, self.snapshot.detail

    def metrics_snapshot(self) -> ProviderSnapshot:
        return self.snapshot


def test_smpp_sessions_from_metrics_snapshot() -> None:
    metrics = Metrics()
    snapshot = ProviderSnapshot(
        kind="smpp",
        ready=True,
        detail="1 of 2 SMPP binds are bound",
        configured_sessions=2,
        sessions=(SessionSnapshot("smpp bind 1", True, 10, 3, 1),),
    )

    metrics.set_providers({Channel.SMS: SmppLike(snapshot).metrics_snapshot()})
    text = metrics.render()[0].decode()

    assert value(text, "budstikke_smpp_binds", state="bound") == 1
    assert value(text, "budstikke_smpp_binds", state="unbound") == 1
    assert value(text, "budstikke_smpp_window_in_use", session="smpp bind 1") == 3
    assert value(text, "budstikke_smpp_window_size", session="smpp bind 1") == 10
    assert value(text, "budstikke_smpp_window_waiting", session="smpp bind 1") == 1
    assert value(text, "budstikke_provider_ready", channel="sms", kind="smpp") == 1


def test_planned_families_keep_labels_low() -> None:
    metrics = Metrics()

    metrics.record_rate_limit_rejection("creator")
    metrics.record_rate_limit_rejection("+4799999999")
    metrics.record_webhook_failure("timeout")
    metrics.record_webhook_failure("https://example.com/hook?id=1")
    text = metrics.render()[0].decode()

    assert value(text, "budstikke_rate_limit_rejections_total", limit="creator") == 1
    assert value(text, "budstikke_rate_limit_rejections_total", limit="other") == 1
    assert value(text, "budstikke_webhook_failures_total", reason="timeout") == 1
    assert value(text, "budstikke_webhook_failures_total", reason="other") == 1
    assert "4799999999" not in text
    assert "example.com" not in text


@pytest.mark.parametrize(
    ("code", "expected"), [(None, "none"), (421, "4xx"), (550, "5xx"), (250, "other")]
)
def test_smtp_reply_class(code: int | None, expected: str) -> None:
    from budstikke.metrics import smtp_reply_class

    assert smtp_reply_class(code) == expected
