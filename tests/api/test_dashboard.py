"""The operator dashboard: access by operator key, masked recipients, charts, and a real browser."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from budstikke.api.app import create_app
from budstikke.api.dashboard import SESSION_COOKIE, session_is_valid, session_token
from budstikke.api.dashboard_data import load_dashboard, mask_text, timeline
from budstikke.api.login_throttle import LoginThrottle
from budstikke.channels.base import Provider
from budstikke.channels.outbox import FileOutbox
from budstikke.channels.smtp import SmtpProvider
from budstikke.config import Settings
from budstikke.domain.statuses import Channel, NotificationStatus, OrderStatus, Priority
from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database
from budstikke.store.monitoring import RecentNotification
from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.conftest import CREATE_SCOPE
from tests.serve_process import OPERATOR_KEY, dev_smsc_process, free_port, serve_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class DashboardApp:
    app: FastAPI
    client: httpx.AsyncClient
    api_key: str

    def operator(self, key: str = OPERATOR_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def place(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        response = await self.client.post(path, headers=headers, json=body)
        assert response.status_code == 201, response.text
        return response


@asynccontextmanager
async def running_dashboard(
    settings: Settings, providers: Mapping[Channel, Provider] | None = None
) -> AsyncIterator[DashboardApp]:
    app = create_app(settings, providers=providers)
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
            yield DashboardApp(app, client, key)


@pytest.fixture
async def dashboard(settings: Settings) -> AsyncIterator[DashboardApp]:
    async with running_dashboard(settings.model_copy(update={"operator_key": OPERATOR_KEY})) as app:
        yield app


async def test_dashboard_off_without_operator_key(settings: Settings) -> None:
    async with running_dashboard(settings) as app:
        response = await app.client.get("/dashboard", headers=app.operator())
        login = await app.client.post("/dashboard/login", data={"key": OPERATOR_KEY})

    assert response.status_code == 403
    assert "BUDSTIKKE_OPERATOR_KEY is not set" in response.text
    assert login.status_code == 403


async def test_dashboard_without_credentials_shows_login(dashboard: DashboardApp) -> None:
    response = await dashboard.client.get("/dashboard")

    assert response.status_code == 401
    assert '<form method="post" action="/dashboard/login">' in response.text
    assert 'data-chart="throughput"' not in response.text


async def test_bearer_operator_key_opens_dashboard(dashboard: DashboardApp) -> None:
    response = await dashboard.client.get("/dashboard", headers=dashboard.operator())

    assert response.status_code == 200
    assert 'data-chart="throughput"' in response.text
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


async def test_wrong_bearer_key_shows_login(dashboard: DashboardApp) -> None:
    response = await dashboard.client.get(
        "/dashboard", headers=dashboard.operator("x" * len(OPERATOR_KEY))
    )

    assert response.status_code == 401
    assert 'data-chart="throughput"' not in response.text


async def test_login_sets_strict_http_only_cookie(dashboard: DashboardApp) -> None:
    response = await dashboard.client.post("/dashboard/login", data={"key": OPERATOR_KEY})

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie
    assert OPERATOR_KEY not in cookie
    token = response.cookies[SESSION_COOKIE]
    page = await dashboard.client.get("/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
    assert page.status_code == 200
    assert 'data-chart="latency"' in page.text


async def test_wrong_login_key_is_rejected_and_logged(
    dashboard: DashboardApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="budstikke.api.dashboard"):
        response = await dashboard.client.post("/dashboard/login", data={"key": "guess"})

    assert response.status_code == 401
    assert "The operator key is not correct." in response.text
    assert "set-cookie" not in response.headers
    events = [getattr(record, "event", None) for record in caplog.records]
    assert "dashboard_login_failed" in events
    assert all("guess" not in record.getMessage() for record in caplog.records)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


async def test_wrong_login_keys_are_throttled(
    dashboard: DashboardApp, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, window_s=60.0, clock=clock)
    dashboard.app.state.services.login_throttle = throttle

    with caplog.at_level(logging.WARNING, logger="budstikke.api.dashboard"):
        wrong = [
            await dashboard.client.post("/dashboard/login", data={"key": f"guess-{attempt}"})
            for attempt in range(3)
        ]
        clock.now_s += 10.0
        throttled = await dashboard.client.post("/dashboard/login", data={"key": OPERATOR_KEY})

    assert [response.status_code for response in wrong] == [401, 401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "50"
    assert "Too many wrong operator keys from this address. Wait 50 s" in throttled.text
    assert "set-cookie" not in throttled.headers
    events = [getattr(record, "event", None) for record in caplog.records]
    assert "dashboard_login_throttled" in events
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert OPERATOR_KEY not in logged
    assert "guess-" not in logged

    clock.now_s += 50.0
    after_wait = await dashboard.client.post("/dashboard/login", data={"key": OPERATOR_KEY})

    assert after_wait.status_code == 303
    assert SESSION_COOKIE in after_wait.cookies


async def test_concurrent_wrong_logins_are_throttled(dashboard: DashboardApp) -> None:
    dashboard.app.state.services.login_throttle = LoginThrottle(
        max_failures=3, window_s=60.0, clock=FakeClock()
    )
    # Every request's headers arrive before any body, as from many connections at once.
    bodies_sent = asyncio.Event()
    statuses: list[int] = []

    async def post_wrong_key(attempt: int) -> None:
        body = f"key=guess-{attempt}".encode()

        async def receive() -> dict[str, Any]:
            await bodies_sent.wait()
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/dashboard/login",
            "raw_path": b"/dashboard/login",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"budstikke.test"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("192.0.2.9", 40000),
            "server": ("budstikke.test", 80),
        }
        await dashboard.app(scope, receive, send)

    requests = [asyncio.create_task(post_wrong_key(attempt)) for attempt in range(10)]
    await asyncio.sleep(0.1)
    bodies_sent.set()
    await asyncio.gather(*requests)

    assert sorted(statuses) == [401] * 3 + [429] * 7


async def test_wrong_bearer_keys_are_throttled(dashboard: DashboardApp) -> None:
    clock = FakeClock()
    dashboard.app.state.services.login_throttle = LoginThrottle(
        max_failures=2, window_s=60.0, clock=clock
    )

    wrong = [
        await dashboard.client.get("/dashboard", headers={"Authorization": f"Bearer guess-{n}"})
        for n in range(2)
    ]
    right = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    throttled = await dashboard.client.get("/dashboard", headers=right)
    form = await dashboard.client.post("/dashboard/login", data={"key": OPERATOR_KEY})
    clock.now_s += 60.0
    after_wait = await dashboard.client.get("/dashboard", headers=right)

    assert [response.status_code for response in wrong] == [401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "60"
    assert form.status_code == 429
    assert after_wait.status_code == 200


async def test_login_throttle_is_per_client_address(dashboard: DashboardApp) -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60.0, clock=FakeClock())
    dashboard.app.state.services.login_throttle = throttle
    for attempt in range(2):
        await dashboard.client.post("/dashboard/login", data={"key": f"guess-{attempt}"})
    other_transport = httpx.ASGITransport(app=dashboard.app, client=("192.0.2.7", 40000))
    async with httpx.AsyncClient(
        transport=other_transport, base_url="http://budstikke.test"
    ) as other_client:
        other = await other_client.post("/dashboard/login", data={"key": OPERATOR_KEY})

    throttled = await dashboard.client.post("/dashboard/login", data={"key": OPERATOR_KEY})

    assert other.status_code == 303
    assert throttled.status_code == 429


async def test_forged_cookie_shows_login(dashboard: DashboardApp) -> None:
    expires_at = int(time.time()) + 3600
    forged = session_token("another-operator-key-000", expires_at)

    response = await dashboard.client.get(
        "/dashboard", headers={"Cookie": f"{SESSION_COOKIE}={forged}"}
    )

    assert response.status_code == 401


async def test_logout_clears_cookie(dashboard: DashboardApp) -> None:
    response = await dashboard.client.post("/dashboard/logout")

    assert response.status_code == 303
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


def test_session_token_expires() -> None:
    now = time.time()
    token = session_token(OPERATOR_KEY, int(now) + 60)

    assert session_is_valid(OPERATOR_KEY, token, now)
    assert not session_is_valid(OPERATOR_KEY, token, now + 61)
    assert not session_is_valid("a-different-operator-key", token, now)
    assert not session_is_valid(OPERATOR_KEY, token[:-1] + "0", now) or token.endswith("0")
    assert not session_is_valid(OPERATOR_KEY, "not-a-token", now)


async def test_dashboard_masks_recipients(dashboard: DashboardApp) -> None:
    await dashboard.place(SMS_PATH, sms_order(phone="+4799999999"))
    await dashboard.place(EMAIL_PATH, email_order(address="ola.nordmann@example.com"))

    response = await dashboard.client.get("/dashboard", headers=dashboard.operator())

    assert response.status_code == 200
    assert "+47******99" in response.text
    assert "o***@e***.com" in response.text
    assert "99999999" not in response.text
    assert "ola.nordmann" not in response.text


async def test_dashboard_charts_show_this_minute(dashboard: DashboardApp) -> None:
    for _ in range(3):
        await dashboard.place(SMS_PATH, sms_order())

    page = (await dashboard.client.get("/dashboard", headers=dashboard.operator())).text

    assert page.count('data-series="handed_off"><title>') == 60
    minute = datetime.now(UTC).strftime("%H:%M")
    previous = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
    assert f"handed off {minute}: 3</title>" in page or f"handed off {previous}: 3</title>" in page
    assert 'data-series="p50"><title>median' in page
    assert "<b>3</b><span>stored</span>" in page


async def test_dashboard_shows_masked_retry_error(settings: Settings) -> None:
    closed_port = free_port()
    providers = {
        Channel.SMS: FileOutbox(Channel.SMS, settings.data_dir / "outbox" / "sms.jsonl"),
        Channel.EMAIL: SmtpProvider.from_url(f"smtp://127.0.0.1:{closed_port}?tls=none"),
    }
    with_key = settings.model_copy(update={"operator_key": OPERATOR_KEY})
    async with running_dashboard(with_key, providers) as app:
        await app.place(EMAIL_PATH, email_order(address="kari.nordmann@example.com"))
        page = (await app.client.get("/dashboard", headers=app.operator())).text

    assert "k***@e***.com" in page
    assert "kari.nordmann" not in page
    assert 'class="error"' in page
    assert "Email_New" in page
    assert 'data-provider="email"' in page
    assert "not ready" in page


def recent(
    status: NotificationStatus,
    *,
    handed_off_after_s: float | None,
    updated_after_s: float,
    channel: Channel = Channel.SMS,
) -> RecentNotification:
    created = datetime(2026, 12, 4, 10, 15, 2, 118000, tzinfo=UTC)
    handed_off = None
    if handed_off_after_s is not None:
        handed_off = created + timedelta(seconds=handed_off_after_s)
    return RecentNotification(
        id=uuid4(),
        shipment_id=uuid4(),
        creator="ttd",
        channel=channel,
        priority=Priority.INSTANT,
        recipient="+4799999999",
        status=status,
        order_status=OrderStatus.PROCESSED,
        attempts=1,
        outcome_unknown_count=0,
        created_at=created,
        handed_off_at=handed_off,
        updated_at=created + timedelta(seconds=updated_after_s),
        last_error=None,
    )


def test_timeline_outbox_delivers_at_hand_off() -> None:
    steps = timeline(
        recent(NotificationStatus.SMS_DELIVERED, handed_off_after_s=0.004, updated_after_s=0.004)
    )

    assert [step.status for step in steps] == ["SMS_New", "SMS_Delivered"]
    assert steps[0].at == "10:15:02.118"
    assert steps[1].after == "+4 ms"


def test_timeline_smpp_accepted_then_delivered() -> None:
    steps = timeline(
        recent(NotificationStatus.SMS_DELIVERED, handed_off_after_s=0.2, updated_after_s=3.5)
    )

    assert [step.status for step in steps] == ["SMS_New", "SMS_Accepted", "SMS_Delivered"]
    assert [step.after for step in steps] == ["", "+200 ms", "+3.5 s"]


def test_timeline_failed_without_hand_off() -> None:
    steps = timeline(
        recent(NotificationStatus.SMS_FAILED_TTL, handed_off_after_s=None, updated_after_s=300)
    )

    assert [step.status for step in steps] == ["SMS_New", "SMS_Failed_TTL"]
    assert steps[1].after == "+5.0 min"


def test_timeline_waiting_shows_one_step() -> None:
    steps = timeline(recent(NotificationStatus.SMS_NEW, handed_off_after_s=None, updated_after_s=0))

    assert [step.status for step in steps] == ["SMS_New"]


def test_mask_text_hides_numbers_and_addresses() -> None:
    text = "SMSC refused +4799999999 (also 004791234567) and ola@example.com after 3 tries"

    masked = mask_text(text, Channel.SMS, "+4799999999")

    assert masked == ("SMSC refused +47******99 (also +47******67) and o***@e***.com after 3 tries")


async def test_unreachable_database_gives_empty_view() -> None:
    database = Database(f"postgresql+asyncpg://budstikke@127.0.0.1:{free_port()}/none")
    try:
        view = await load_dashboard(database, {}, datetime.now(UTC))
    finally:
        await database.dispose()

    assert view.database_ok is False
    assert view.database_detail
    assert view.shipments == []
    assert view.throughput_chart == ""


@contextmanager
def chromium() -> Iterator[Any]:
    """Start Debian's headless Chromium through chromedriver; no browser is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="budstikke-chromium-") as profile:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1400,1700",
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def send_orders(url: str, api_key: str) -> list[str]:
    """Place SMS and email orders over HTTP and return their shipment ids."""
    headers = {"Authorization": f"Bearer {api_key}"}
    shipment_ids = []
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for index in range(12):
            order = sms_order(phone=f"+47999999{index:02d}", body=f"Your code is {index:06d}.")
            response = client.post(SMS_PATH, json=order)
            assert response.status_code == 201, response.text
            shipment_ids.append(response.json()["notification"]["shipmentId"])
        for index in range(4):
            order = email_order(address=f"person{index}@example.com")
            response = client.post(EMAIL_PATH, json=order)
            assert response.status_code == 201, response.text
            shipment_ids.append(response.json()["notification"]["shipmentId"])
        assert client.post(SMS_PATH, json=sms_order(phone="12345")).status_code == 400
    return shipment_ids


def wait_until_final(url: str, api_key: str, shipment_ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for shipment_id in shipment_ids:
            while True:
                body = client.get(f"/notifications/api/v1/future/shipment/{shipment_id}").json()
                if body["status"] == "Order_Completed":
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.1)


def wait_until_ready(url: str) -> None:
    deadline = time.monotonic() + 20
    while (body := httpx.get(f"{url}/health/ready", timeout=2).json())["status"] != "ready":
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's packages: apt-get install chromium chromium-driver",
)
def test_dashboard_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import presence_of_element_located
    from selenium.webdriver.support.wait import WebDriverWait

    # Selenium Manager must never fetch a driver or browser; both come from Debian.
    monkeypatch.setenv("SE_OFFLINE", "true")
    with (
        dev_smsc_process(tmp_path, receipt_delay_s=0.3) as smsc_port,
        serve_process(
            tmp_path / "data", BUDSTIKKE_SMS_URL=f"smpp://budstikke:secret@127.0.0.1:{smsc_port}"
        ) as server,
    ):
        api_key = server.create_api_key()
        wait_until_ready(server.url)
        shipment_ids = send_orders(server.url, api_key)
        wait_until_final(server.url, api_key, shipment_ids)

        with chromium() as driver:
            driver.get(f"{server.url}/dashboard")
            driver.find_element(By.ID, "key").send_keys(OPERATOR_KEY)
            driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            # The click can return before the redirect after login has loaded the dashboard.
            throughput = WebDriverWait(driver, 20).until(
                presence_of_element_located((By.CSS_SELECTOR, 'svg[data-chart="throughput"]'))
            )
            handed_off = throughput.find_elements(
                By.CSS_SELECTOR, 'circle[data-series="handed_off"]'
            )
            heights = {float(point.get_attribute("cy")) for point in handed_off}
            latency_points = driver.find_elements(
                By.CSS_SELECTOR, 'svg[data-chart="latency"] circle[data-series="p95"]'
            )
            lines = throughput.find_elements(By.CSS_SELECTOR, 'polyline[data-series="handed_off"]')
            rows = driver.find_elements(By.CSS_SELECTOR, "#shipments tr[data-shipment]")
            sms_health = driver.find_element(By.CSS_SELECTOR, 'tr[data-provider="sms"]').text
            page_text = driver.find_element(By.TAG_NAME, "body").text
            chart_width = throughput.rect["width"]
            ARTIFACTS.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
            title = driver.title

    assert title == "budstikke dashboard"
    assert chart_width > 300
    assert len(handed_off) == 60
    assert len(heights) > 1, "every throughput point sits on the zero line"
    assert lines
    assert latency_points
    assert len(rows) == 16
    assert "smpp" in sms_health
    assert "ready" in sms_health
    assert "smpp bind 1" in sms_health
    assert "SMS_Accepted" in page_text
    assert "SMS_Delivered" in page_text
    assert "+47******00" in page_text
    assert "99999900" not in page_text
    assert "person0@" not in page_text
