"""A full run of `budstikke serve` writes no phone number, email address, body or key to its log.

The run talks to the test SMSC over SMPP and to an SMTP server, both on
loopback. It goes through the paths that log most: hand-offs, delivery
receipts, a rejected recipient, validation errors, the content guard, a
rate limit, a replay and a regular order. Its DEBUG log is then searched.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx

from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.api.regular import ORDERS_PATH, regular_order, sms_recipient
from tests.channels.smtp_server import StartServer
from tests.conftest import API
from tests.serve_process import ServeProcess, dev_smsc_process, serve_process

PHONES = ["+4799999999", "+4741234567", "+4790123456", "+4798765432"]
SWEDISH_PHONE = "+46701234567"
ADDRESSES = ["ola.nordmann@example.com", "kari.hansen@example.org"]
BOUNCING_ADDRESS = "nobody.here@example.net"
CARD = "4111 1111 1111 1111"
# Texts that occur only in message bodies and subjects.
BODIES = [f"Your code is {code}." for code in ("482913", "551177", "902211", "734100")]
SUBJECT = "Login code for Kari"
EMAIL_BODY = "Hei Kari, koden din er 318822."
REGULAR_BODY = "Reminder: appointment with Dr. Berg at 14:00."


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body)


async def wait_until_handed_off(client: httpx.AsyncClient, shipment_ids: list[str]) -> None:
    """Wait until the provider took or refused each message: SMTP gives no delivery report."""
    pending = ("SMS_New", "SMS_Sending", "Email_New", "Email_Sending")
    statuses: list[str] = []
    for _ in range(300):
        statuses = [
            (await client.get(f"{API}/shipment/{shipment_id}")).json()["recipients"][0]["status"]
            for shipment_id in shipment_ids
        ]
        if not any(status in pending for status in statuses):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"shipments not handed off: {statuses}")


async def exercise(server: ServeProcess, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=15) as client:
        shipments = []
        for phone, body in zip(PHONES, BODIES, strict=True):
            response = await post(client, SMS_PATH, sms_order(phone=phone, body=body))
            assert response.status_code == 201, response.text
            shipments.append(response.json()["notification"]["shipmentId"])
        for address in ADDRESSES:
            order = email_order(address=address, subject=SUBJECT, body=EMAIL_BODY)
            response = await post(client, EMAIL_PATH, order)
            assert response.status_code == 201, response.text
            shipments.append(response.json()["notification"]["shipmentId"])
        regular = await post(
            client, ORDERS_PATH, regular_order(sms_recipient(phone=PHONES[1], body=REGULAR_BODY))
        )
        assert regular.status_code == 201, regular.text
        shipments.append(regular.json()["notification"]["shipmentId"])
        await wait_until_handed_off(client, shipments)

        replay = sms_order(phone=PHONES[0], body=BODIES[0], idempotency_id="replayed")
        for _ in range(2):
            await post(client, SMS_PATH, replay)
        rejected = [
            await post(client, SMS_PATH, sms_order(phone=SWEDISH_PHONE, body=BODIES[0])),
            await post(client, SMS_PATH, sms_order(phone="+47 9999", body=BODIES[0])),
            await post(client, SMS_PATH, sms_order(phone=PHONES[2], body=f"Card {CARD}")),
            await post(client, EMAIL_PATH, email_order(address="not-an-address", body=EMAIL_BODY)),
        ]
        assert [response.status_code for response in rejected] == [400, 400, 400, 400]
        statuses = [
            (await post(client, SMS_PATH, sms_order(phone=PHONES[3], body=BODIES[3]))).status_code
            for _ in range(5)
        ]
        assert statuses[-1] == 429


async def test_full_run_logs_no_personal_data(tmp_path: Path, start_server: StartServer) -> None:
    smtp = await start_server()
    with dev_smsc_process(tmp_path, receipt_delay_s=0.2) as smsc_port:
        smsc_url = f"smpp://budstikke:secret@127.0.0.1:{smsc_port}"
        with serve_process(
            tmp_path / "data",
            BUDSTIKKE_SMS_URL=smsc_url,
            BUDSTIKKE_EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}?tls=none",
            BUDSTIKKE_LOG_LEVEL="DEBUG",
        ) as server:
            api_key = await asyncio.to_thread(server.create_api_key)
            await exercise(server, api_key)
            smtp.handler.rcpt_reply = f"550 5.1.1 <{BOUNCING_ADDRESS}>: Recipient address rejected"
            headers = {"Authorization": f"Bearer {api_key}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
                bounced = await post(client, EMAIL_PATH, email_order(address=BOUNCING_ADDRESS))
                shipment_id = bounced.json()["notification"]["shipmentId"]
                await wait_until_handed_off(client, [shipment_id])
                shown = (await client.get(f"{API}/shipment/{shipment_id}")).json()
        # The server has stopped, so its shutdown lines are in the log too.
        log = server.log_text()

    assert shown["recipients"][0]["status"] == "Email_Failed_Bounced"
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(lines) > 30, log[:2000]
    events = {line.get("event") for line in lines}
    assert {"hand_off_accepted", "order_rate_limited", "hand_off_failed"} <= events, events
    # The recipients are in the log, masked, so the search below looks at the right lines.
    assert "+47******99" in log
    assert "o***@e***.com" in log

    secret_texts = [
        *PHONES,
        *(phone.removeprefix("+") for phone in PHONES),
        *(phone[3:] for phone in PHONES),
        SWEDISH_PHONE,
        SWEDISH_PHONE[3:],
        *ADDRESSES,
        BOUNCING_ADDRESS,
        *(address.split("@")[0] for address in [*ADDRESSES, BOUNCING_ADDRESS]),
        *BODIES,
        *(body.split()[-1].rstrip(".") for body in BODIES),
        SUBJECT,
        EMAIL_BODY,
        REGULAR_BODY,
        CARD,
        CARD.replace(" ", ""),
        api_key,
        api_key.split("_", 2)[2],
    ]
    for text in secret_texts:
        found = [line for line in log.splitlines() if text in line]
        assert not found, f"{text!r} is in the log: {found[0][:500]}"
    unmasked_addresses = [
        match
        for match in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", log)
        # The configured From address is the operator's, and a Message-ID
        # (digits and dots before the @) names no person.
        if "***" not in match
        and match != "noreply@example.com"
        and not re.fullmatch(r"[\d.]+@.*", match)
    ]
    assert not unmasked_addresses, unmasked_addresses[:5]
    assert not re.findall(r"\+47\d{8}", log)
