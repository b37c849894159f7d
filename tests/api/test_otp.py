"""OTP verification over the API: create, check, resend and status."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from budstikke.config import Settings
from tests.api.orders import EMAIL_PATH, LEGACY_PATH, SMS_PATH, email_order, sms_order
from tests.api.otp_support import (
    OTP_PATH,
    FrozenClock,
    check,
    code_in,
    create,
    fix_codes,
    last_code,
    otp_app,
    otp_request,
    resend,
    status,
    wrong_code,
)
from tests.api.regular import ORDERS_PATH, regular_order
from tests.conftest import RunningApp


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 12, 4, 10, 0, tzinfo=UTC))


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[RunningApp]:
    async with otp_app(settings, clock) as running:
        yield running


async def new_verification(app: RunningApp, **fields: object) -> tuple[str, str]:
    """Create a verification; return its id and the code read from the outbox."""
    fields.setdefault("idempotency_id", f"login-{len(app.outbox_lines('sms'))}")
    response = await create(app, **fields)  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    return response.json()["verificationId"], last_code(app)


# Creating a verification.


async def test_create_answers_201_with_ids_and_expiry(app: RunningApp, clock: FrozenClock) -> None:
    response = await create(app, idempotency_id="login-91", timeToLiveInSeconds=300)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"verificationId", "shipmentId", "expiresAt"}
    assert body["expiresAt"] == "2026-12-04T10:05:00.000Z"
    assert response.headers["location"] == f"{OTP_PATH}/{body['verificationId']}"


async def test_code_is_sent_as_an_instant_sms(app: RunningApp) -> None:
    response = await create(app, idempotency_id="login-1", sender="Kommune")
    shipment_id = response.json()["shipmentId"]

    sms = app.outbox_lines("sms")
    assert len(sms) == 1
    assert sms[0]["recipient"] == "+4799999999"
    assert sms[0]["sender"] == "Kommune"
    assert sms[0]["expiresAt"] == "2026-12-04T10:05:00Z"
    code = code_in(sms[0]["body"])
    assert len(code) == 6
    assert sms[0]["body"] == (
        f"Engangskoden din er {code}. Den er gyldig i 5 minutter. Ikke del koden med noen."
    )
    shipment = await app.client.get(
        f"/notifications/api/v1/future/shipment/{shipment_id}", headers=app.headers()
    )
    assert shipment.status_code == 200
    assert shipment.json()["type"] == "Instant"


async def test_code_length_language_and_template(app: RunningApp) -> None:
    await create(app, idempotency_id="a", codeLength=10, language="EN", timeToLiveInSeconds=60)
    assert app.outbox_lines("sms")[-1]["body"].endswith(
        "valid for 1 minute. Do not share it with anyone."
    )
    assert len(last_code(app)) == 10

    await create(app, idempotency_id="b", codeLength=4, template="Kode: {code}")
    body = app.outbox_lines("sms")[-1]["body"]
    assert body.startswith("Kode: ")
    assert len(body) == len("Kode: ") + 4


async def test_email_code_uses_subject_of_the_language(app: RunningApp) -> None:
    response = await create(
        app, phone=None, email="ola.nordmann@example.com", idempotency_id="e", language="nn"
    )

    assert response.status_code == 201
    email = app.outbox_lines("email")[-1]
    assert email["recipient"] == "ola.nordmann@example.com"
    assert email["subject"] == "Eingongskoden din"
    assert email["sender"] == "noreply@budstikke.example.com"
    code = code_in(email["body"])
    verification_id = response.json()["verificationId"]
    assert (await check(app, verification_id, code)).json()["status"] == "approved"


async def test_same_idempotency_id_returns_the_same_verification(app: RunningApp) -> None:
    first = await create(app, idempotency_id="login-7")
    second = await create(app, idempotency_id="login-7", phone="+4798888888")

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert "location" not in second.headers
    assert len(app.outbox_lines("sms")) == 1


async def test_same_idempotency_id_for_two_creators_makes_two(app: RunningApp) -> None:
    other = await app.new_key("other")
    mine = await create(app, idempotency_id="login-8")
    theirs = await create(app, other, idempotency_id="login-8")

    assert theirs.status_code == 201
    assert theirs.json()["verificationId"] != mine.json()["verificationId"]


@pytest.mark.parametrize(
    ("fields", "paths"),
    [
        ({"codeLength": 3}, ["codeLength"]),
        ({"codeLength": 11}, ["codeLength"]),
        ({"codeLength": "6.0"}, ["codeLength"]),
        ({"language": "sv"}, ["language"]),
        ({"template": "No placeholder"}, ["template"]),
        ({"template": "{code} and {code}"}, ["template"]),
        ({"template": "   "}, ["template"]),
        ({"template": "{code} " + "x" * 2500}, ["template"]),
        ({"sender": "MinKommune24"}, ["sender"]),
        ({"idempotency_id": ""}, ["idempotencyId"]),
        ({"phone": "+4722999999"}, ["recipientSms.phoneNumber"]),
    ],
)
async def test_invalid_create_requests(
    app: RunningApp, fields: dict[str, object], paths: list[str]
) -> None:
    fields.setdefault("idempotency_id", "bad")
    response = await create(app, **fields)  # type: ignore[arg-type]

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert sorted(response.json()["errors"]) == paths
    assert app.outbox_lines("sms") == []


async def test_exactly_one_recipient_is_required(app: RunningApp) -> None:
    both = otp_request(idempotency_id="x", email="ola.nordmann@example.com")
    both["recipientSms"] = {"phoneNumber": "+4799999999"}
    neither = otp_request(idempotency_id="y", phone=None)

    for body in (both, neither):
        response = await app.client.post(OTP_PATH, headers=app.headers(), json=body)
        assert response.status_code == 400
        assert sorted(response.json()["errors"]) == ["recipientEmail", "recipientSms"]


async def test_create_needs_a_token(app: RunningApp) -> None:
    response = await app.client.post(OTP_PATH, json=otp_request(idempotency_id="z"))
    assert response.status_code == 401


# A fractional or out-of-range TTL is rejected, never truncated.


@pytest.mark.parametrize("ttl", [0, -5, 30.5, 300.5, "300.5", 59, 901])
async def test_fractional_or_out_of_range_ttl_is_400(app: RunningApp, ttl: object) -> None:
    response = await create(app, idempotency_id="ttl", timeToLiveInSeconds=ttl)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["timeToLiveInSeconds"]
    assert "integer between 60 and 900" in errors["timeToLiveInSeconds"][0]


@pytest.mark.parametrize("ttl", ["300", 300])
async def test_ttl_300_expired_one_second_after(
    app: RunningApp, clock: FrozenClock, ttl: object
) -> None:
    response = await create(app, idempotency_id=f"ttl-{ttl!r}", timeToLiveInSeconds=ttl)
    assert response.status_code == 201
    verification_id, code = response.json()["verificationId"], last_code(app)

    clock.advance(300 + 1)
    result = await check(app, verification_id, code)

    assert result.json() == {"status": "expired", "remainingAttempts": 5}


async def test_expiry_boundary_is_exact(app: RunningApp, clock: FrozenClock) -> None:
    first, first_code = await new_verification(app, timeToLiveInSeconds=60)
    second, second_code = await new_verification(app, timeToLiveInSeconds=60)

    clock.advance(60 - 0.000001)
    assert (await check(app, first, first_code)).json()["status"] == "approved"
    clock.advance(0.000001)
    assert (await check(app, second, second_code)).json()["status"] == "expired"
    assert (await status(app, second)).json()["status"] == "expired"


# A code is approved at most once.


async def test_right_code_approves_only_once(
    app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    fix_codes(monkeypatch, "482913")
    verification_id, code = await new_verification(app)
    assert code == "482913"

    first = await check(app, verification_id, code)
    second = await check(app, verification_id, code)

    assert first.status_code == 200
    assert first.json()["status"] == "approved"
    assert second.status_code == 200
    assert second.json()["status"] != "approved"
    assert second.json() == {"status": "expired", "remainingAttempts": 4}
    assert (await status(app, verification_id)).json()["status"] == "approved"


# Five wrong attempts end a verification, and the per-recipient limit holds.


async def test_fifth_wrong_code_ends_verification(
    app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    verification_id, code = await new_verification(app, codeLength=6, timeToLiveInSeconds=300)
    wrong = wrong_code(code)

    with caplog.at_level(logging.INFO):
        answers = [(await check(app, verification_id, wrong)).json() for _ in range(5)]
        sixth = (await check(app, verification_id, code)).json()

    assert answers == [
        {"status": "pending", "remainingAttempts": 4},
        {"status": "pending", "remainingAttempts": 3},
        {"status": "pending", "remainingAttempts": 2},
        {"status": "pending", "remainingAttempts": 1},
        {"status": "max_attempts_reached", "remainingAttempts": 0},
    ]
    assert sixth == {"status": "max_attempts_reached", "remainingAttempts": 0}
    failures = [r for r in caplog.records if getattr(r, "event", None) == "otp_check_failed"]
    assert len(failures) == 5
    assert {getattr(r, "verification_id", None) for r in failures} == {verification_id}
    assert_code_not_logged(caplog, code, wrong)


async def test_eleventh_create_per_recipient_is_429(settings: Settings, clock: FrozenClock) -> None:
    # 5.5 minutes apart, the creates stay under the general limit of 5
    # messages per recipient in 10 minutes, which stays on here.
    answers = []
    async with otp_app(settings, clock, general_recipient_limits=True) as app:
        for number in range(11):
            answers.append(await create(app, idempotency_id=f"pump-{number}"))
            clock.advance(330)
        sent = len(app.outbox_lines("sms"))

    assert [a.status_code for a in answers] == [201] * 10 + [429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "BSK-00001"
    # The first create (at 10:00) leaves the hour at 11:00; the eleventh came at 10:55.
    assert refused.headers["retry-after"] == str(5 * 60)
    assert sent == 10


async def test_general_recipient_limit_applies_to_codes(
    settings: Settings, clock: FrozenClock
) -> None:
    general = settings.model_copy(update={"recipient_limit_10min": 1})
    async with otp_app(general, clock, general_recipient_limits=True) as app:
        first = await create(app, idempotency_id="general-1")
        second = await create(app, idempotency_id="general-2")
        clock.advance(600)
        retried = await create(app, idempotency_id="general-2")

    assert first.status_code == 201
    assert second.status_code == 429
    assert second.json()["code"] == "BSK-00001"
    # The refused verification was dropped, so the same key later creates one.
    assert retried.status_code == 201


async def test_recipient_limit_frees_up_after_the_hour(app: RunningApp, clock: FrozenClock) -> None:
    for number in range(10):
        assert (await create(app, idempotency_id=f"p-{number}")).status_code == 201
    assert (await create(app, idempotency_id="p-10")).status_code == 429
    # Replays are served before the limit is checked, and send nothing.
    assert (await create(app, idempotency_id="p-3")).status_code == 200
    # Other recipients and other creators have limits of their own.
    assert (await create(app, idempotency_id="q", phone="+4798888888")).status_code == 201
    other = await app.new_key("other")
    assert (await create(app, other, idempotency_id="p-10")).status_code == 201

    clock.advance(3600)
    assert (await create(app, idempotency_id="p-11")).status_code == 201


async def test_email_recipient_limit_ignores_letter_case(
    settings: Settings, clock: FrozenClock
) -> None:
    limited = settings.model_copy(update={"otp_recipient_limit_per_hour": 1})
    async with otp_app(limited, clock) as app:
        first = await create(app, phone=None, email="ola@example.com", idempotency_id="1")
        second = await create(app, phone=None, email="OLA@example.com", idempotency_id="2")

    assert first.status_code == 201
    assert second.status_code == 429


async def test_failed_checks_per_recipient_are_limited(
    settings: Settings, clock: FrozenClock
) -> None:
    limited = settings.model_copy(update={"otp_failed_check_limit_per_hour": 3})
    async with otp_app(limited, clock) as app:
        first, first_code = await new_verification(app)
        second, second_code = await new_verification(app)
        for _ in range(2):
            await check(app, first, wrong_code(first_code))
            clock.advance(10)
        await check(app, second, wrong_code(second_code))
        clock.advance(10)

        refused = await check(app, second, second_code)
        other_number, other_number_code = await new_verification(app, phone="+4798888888")
        other_number_check = await check(app, other_number, other_number_code)
        other = await app.new_key("other")
        theirs_id = (await create(app, other, idempotency_id="o")).json()["verificationId"]
        theirs = await check(app, theirs_id, last_code(app), key=other)
        state = (await status(app, second)).json()
        # The first failure (10:00:00) leaves the window at 11:00:00.
        clock.advance(3600 - 30 - 1)
        still_refused = await check(app, second, second_code)
        clock.advance(1)
        later, later_code = await new_verification(app)
        after_hour = await check(app, later, later_code)

    assert refused.status_code == 429
    assert refused.json()["code"] == "BSK-00001"
    assert refused.json()["detail"] == (
        "This recipient's verifications from this creator had 3 wrong codes in the last hour, "
        "the most allowed. Retry after 3570 s."
    )
    assert refused.headers["retry-after"] == str(3600 - 30)
    assert state["remainingAttempts"] == 4  # a refused check uses no attempt
    assert other_number_check.json()["status"] == "approved"
    assert theirs.json()["status"] == "approved"
    assert still_refused.status_code == 200  # expired by now: no attempt, so no limit applies
    assert still_refused.json()["status"] == "expired"
    assert after_hour.json() == {"status": "approved", "remainingAttempts": 4}


async def test_attack_on_two_numbers_spares_others(app: RunningApp, clock: FrozenClock) -> None:
    # An attacker's 20 verifications with 5 wrong codes each, on two numbers:
    # 100 wrong codes from one creator in one hour.
    answers: dict[str, list[int]] = {"+4791111111": [], "+4792222222": []}
    for number in range(20):
        phone = list(answers)[number % 2]
        verification_id, code = await new_verification(
            app, phone=phone, idempotency_id=f"attack-{number}"
        )
        for _ in range(5):
            answers[phone].append((await check(app, verification_id, wrong_code(code))).status_code)
        clock.advance(1)

    user, user_code = await new_verification(app, phone="+4793333333", idempotency_id="user")
    user_check = await check(app, user, user_code)

    assert user_check.json() == {"status": "approved", "remainingAttempts": 4}
    # Each attacked number gets the default 20 wrong codes, then only 429.
    for phone, statuses in answers.items():
        assert statuses == [200] * 20 + [429] * 30, phone


# Every wrong code counts once, whatever its length or padding.


async def test_wrong_code_shapes_each_count_once(
    app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    fix_codes(monkeypatch, "482913")
    verification_id, code = await new_verification(app)
    assert code == "482913"
    shapes = ["000000", "482910", "48291", "4829130", " 482913"]

    answers = [(await check(app, verification_id, shape)).json() for shape in shapes]

    assert answers == [
        {"status": "pending", "remainingAttempts": 4},
        {"status": "pending", "remainingAttempts": 3},
        {"status": "pending", "remainingAttempts": 2},
        {"status": "pending", "remainingAttempts": 1},
        {"status": "max_attempts_reached", "remainingAttempts": 0},
    ]


@pytest.mark.parametrize(
    "body",
    [{}, {"code": ""}, {"code": "   "}, {"code": 482913}, {"code": None}, {"code": "1" * 65}],
)
async def test_malformed_check_is_400_and_no_attempt(
    app: RunningApp, body: dict[str, object]
) -> None:
    verification_id, _code = await new_verification(app)

    response = await app.client.post(
        f"{OTP_PATH}/{verification_id}/check", headers=app.headers(), json=body
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["code"]
    assert (await status(app, verification_id)).json()["remainingAttempts"] == 5


# A resend makes the old code stop working at once.


async def test_old_code_fails_after_resend(
    app: RunningApp, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fix_codes(monkeypatch, "482913", "551726")
    verification_id, code_a = await new_verification(app, idempotency_id="login-42")
    clock.advance(30)
    resent = await resend(app, verification_id)
    code_b = last_code(app)

    assert resent.status_code == 200
    assert (code_a, code_b) == ("482913", "551726")
    a = await check(app, verification_id, code_a)
    b = await check(app, verification_id, code_b)

    assert a.json() == {"status": "pending", "remainingAttempts": 4}
    assert b.json() == {"status": "approved", "remainingAttempts": 3}


async def test_random_codes_differ_after_resend(app: RunningApp, clock: FrozenClock) -> None:
    verification_id, first = await new_verification(app, codeLength=10)
    clock.advance(30)
    await resend(app, verification_id)

    assert last_code(app) != first  # equal with probability 1e-10


async def test_resend_cooldown_and_limit(app: RunningApp, clock: FrozenClock) -> None:
    verification_id, _code = await new_verification(app, timeToLiveInSeconds=900)

    early = await resend(app, verification_id)
    clock.advance(29)
    still_early = await resend(app, verification_id)
    answers = []
    for _ in range(3):
        clock.advance(31)
        answers.append(await resend(app, verification_id))
    clock.advance(31)
    fourth = await resend(app, verification_id)

    assert early.status_code == 429
    assert early.json()["code"] == "BSK-00001"
    assert early.json()["detail"] == (
        "A new code can be sent 30 s after the last one. Retry after 30 s."
    )
    assert early.headers["retry-after"] == "30"
    assert still_early.headers["retry-after"] == "1"
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["resendsLeft"] for a in answers] == [2, 1, 0]
    assert fourth.status_code == 409
    assert fourth.json()["code"] == "OTP-00003"
    assert len(app.outbox_lines("sms")) == 4
    shipments = {a.json()["shipmentId"] for a in answers}
    assert len(shipments) == 3


async def test_resend_states_the_remaining_minutes(app: RunningApp, clock: FrozenClock) -> None:
    verification_id, _code = await new_verification(app, timeToLiveInSeconds=300, language="en")
    clock.advance(45)
    await resend(app, verification_id)

    sms = app.outbox_lines("sms")[-1]
    assert "valid for 4 minutes" in sms["body"]
    assert sms["expiresAt"] == "2026-12-04T10:05:00Z"
    assert (await status(app, verification_id)).json()["expiresAt"] == "2026-12-04T10:05:00.000Z"


async def test_resend_rejected_when_closed_or_expiring(app: RunningApp, clock: FrozenClock) -> None:
    approved_id, code = await new_verification(app, timeToLiveInSeconds=120)
    short_id, _ = await new_verification(app, timeToLiveInSeconds=120)
    await check(app, approved_id, code)
    clock.advance(61)

    closed = await resend(app, approved_id)
    soon = await resend(app, short_id)

    assert closed.status_code == 409
    assert closed.json()["code"] == "OTP-00002"
    assert soon.status_code == 409
    assert soon.json()["code"] == "OTP-00004"


# Expiry is plain UTC arithmetic, also across the autumn DST change in Oslo.


async def test_expiry_across_oslo_dst_change(settings: Settings) -> None:
    clock = FrozenClock(datetime(2024, 10, 27, 0, 50, tzinfo=UTC))
    async with otp_app(settings, clock) as app:
        response = await create(app, idempotency_id="dst", timeToLiveInSeconds=600)
        verification_id, code = response.json()["verificationId"], last_code(app)
        clock.now = datetime(2024, 10, 27, 1, 5, tzinfo=UTC)
        result = await check(app, verification_id, code)

    expires_at = response.json()["expiresAt"]
    assert expires_at == "2024-10-27T01:00:00.000Z"
    assert datetime.fromisoformat(expires_at) == datetime(2024, 10, 27, 1, 0, tzinfo=UTC)
    assert result.json()["status"] == "expired"


# Status, and what no caller can see.


async def test_status_shows_state_and_never_the_code(app: RunningApp, clock: FrozenClock) -> None:
    response = await create(app, idempotency_id="s")
    verification_id, code = response.json()["verificationId"], last_code(app)
    await check(app, verification_id, wrong_code(code))

    shown = await status(app, verification_id)

    assert shown.status_code == 200
    assert shown.json() == {
        "verificationId": verification_id,
        "status": "pending",
        "remainingAttempts": 4,
        "resendsLeft": 3,
        "expiresAt": "2026-12-04T10:05:00.000Z",
        "shipmentId": response.json()["shipmentId"],
    }
    assert code not in shown.text


async def test_other_creators_and_unknown_ids_get_404(app: RunningApp) -> None:
    verification_id, code = await new_verification(app)
    other = await app.new_key("other")

    answers = [
        await status(app, verification_id, other),
        await check(app, verification_id, code, other),
        await resend(app, verification_id, other),
        await status(app, "00000000-0000-0000-0000-000000000000"),
        await status(app, "not-a-uuid"),
        await check(app, "not-a-uuid", code),
    ]

    for answer in answers:
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "OTP-00001"
    assert (await check(app, verification_id, code)).json()["status"] == "approved"


async def test_code_and_key_are_stored_or_logged_nowhere(
    app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import select

    from budstikke.store.tables import otp_verifications

    with caplog.at_level(logging.DEBUG, logger="budstikke"):
        verification_id, code = await new_verification(app, codeLength=10)
        await check(app, verification_id, wrong_code(code))
        await check(app, verification_id, code)

    async with app.database.read() as connection:
        row = (await connection.execute(select(otp_verifications))).one()
    assert code not in json.dumps([str(value) for value in row])
    key = (app.settings.data_dir / "otp.key").read_text().strip()
    assert_code_not_logged(caplog, code, key)


async def test_approved_code_body_is_erased(app: RunningApp) -> None:
    from sqlalchemy import select

    from budstikke.store.tables import notifications

    verification_id, code = await new_verification(app)
    await check(app, verification_id, code)

    async with app.database.read() as connection:
        bodies = (await connection.execute(select(notifications.c.body))).scalars().all()
    assert bodies == [None]


def assert_code_not_logged(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for record in caplog.records:
        text = (
            record.getMessage() + " " + " ".join(str(value) for value in record.__dict__.values())
        )
        for secret in secrets:
            assert secret not in text, (record.getMessage(), secret)


def test_logging_setup_silences_sql_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    from budstikke.logs import configure_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    quiet = logging.getLogger("aiosqlite")
    monkeypatch.setattr(quiet, "level", quiet.level)

    configure_logging("DEBUG", "text")

    assert not quiet.isEnabledFor(logging.INFO)


async def test_openapi_lists_the_otp_routes(app: RunningApp) -> None:
    paths = (await app.client.get("/openapi.json")).json()["paths"]

    assert set(paths[OTP_PATH]) == {"post"}
    assert set(paths[OTP_PATH + "/{verification_id}"]) == {"get"}
    assert set(paths[OTP_PATH + "/{verification_id}/check"]) == {"post"}
    assert set(paths[OTP_PATH + "/{verification_id}/resend"]) == {"post"}


# When the order that carries a code cannot be placed.


async def test_failed_send_drops_the_new_verification(
    app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import func, select

    from budstikke.errors import DatabaseUnavailableError
    from budstikke.store.tables import otp_verifications

    async def fail(*_args: object) -> None:
        raise DatabaseUnavailableError("connection refused")

    instant_orders = app.app.state.services.instant_orders
    with monkeypatch.context() as patch:
        patch.setattr(instant_orders, "place_sms", fail)
        failed = await create(app, idempotency_id="login-down")
    async with app.database.read() as connection:
        stored = (
            await connection.execute(select(func.count()).select_from(otp_verifications))
        ).scalar()
    retried = await create(app, idempotency_id="login-down")

    assert failed.status_code == 503
    assert stored == 0
    assert retried.status_code == 201
    assert len(app.outbox_lines("sms")) == 1


async def test_failed_resend_keeps_the_previous_code(
    app: RunningApp, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from budstikke.errors import DatabaseUnavailableError

    async def fail(*_args: object) -> None:
        raise DatabaseUnavailableError("connection refused")

    verification_id, code = await new_verification(app)
    clock.advance(30)
    with monkeypatch.context() as patch:
        patch.setattr(app.app.state.services.instant_orders, "place_sms", fail)
        failed = await resend(app, verification_id)
    shown = (await status(app, verification_id)).json()

    assert failed.status_code == 503
    assert shown["resendsLeft"] == 3
    assert (await check(app, verification_id, code)).json()["status"] == "approved"


async def test_otp_limits_are_counted_with_the_order_limits(
    settings: Settings, clock: FrozenClock
) -> None:
    limited = settings.model_copy(update={"otp_recipient_limit_per_hour": 1})
    async with otp_app(limited, clock) as app:
        verification_id, _code = await new_verification(app, idempotency_id="count-1")
        await resend(app, verification_id)
        second = await create(app, idempotency_id="count-2")
        metrics = (await app.client.get("/metrics")).text

    assert second.status_code == 429
    assert second.json()["detail"] == (
        "This recipient got 1 verifications from this creator in the last hour, "
        "the most allowed. Retry after 3600 s."
    )
    assert 'budstikke_rate_limit_rejections_total{limit="otp_cooldown"} 1.0' in metrics
    assert 'budstikke_rate_limit_rejections_total{limit="otp_recipient"} 1.0' in metrics
    assert 'budstikke_rate_limit_rejections_total{limit="otp_failed_checks"} 0.0' in metrics


@pytest.mark.parametrize("recipient", [{}, {"phone": None, "email": "ola@example.com"}])
async def test_template_with_identity_number_names_the_template(
    app: RunningApp, recipient: dict[str, object]
) -> None:
    response = await create(
        app, idempotency_id="guarded", template="Code {code} for 01019012480.", **recipient
    )
    replay = await create(app, idempotency_id="guarded", template="Code {code}.", **recipient)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["template"]
    [message] = errors["template"]
    assert message.startswith("template contains what looks like a Norwegian national identity")
    assert "01019012480" not in response.text
    # Nothing was kept: the same idempotency id later creates a verification.
    assert replay.status_code == 201


async def test_template_digits_next_to_code_are_400(app: RunningApp) -> None:
    response = await create(app, idempotency_id="ref", template="Ref 1234567{code}")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["template"]
    assert "Put a letter or a word between the digits and {code}." in errors["template"][0]
    assert app.outbox_lines("sms") == []


async def test_client_orders_cannot_take_a_code_key(
    app: RunningApp, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fix_codes(monkeypatch, "111111", "222222")
    verification_id, _code = await new_verification(app)
    taken = f"otp:{verification_id}:1"
    legacy = {"idempotencyId": taken, "recipient": {"recipientSms": sms_order()["recipientSms"]}}
    bodies = [
        (SMS_PATH, sms_order(idempotency_id=taken)),
        (EMAIL_PATH, email_order(idempotency_id=taken)),
        (LEGACY_PATH, legacy),
        (ORDERS_PATH, regular_order(idempotency_id=taken)),
    ]
    answers = [
        await app.client.post(path, json=body, headers=app.headers()) for path, body in bodies
    ]
    clock.advance(30)
    resent = await resend(app, verification_id)

    for (path, _body), answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 400, path
        assert answer.json()["errors"]["idempotencyId"] == [
            "idempotencyId must not start with 'otp:', which is reserved for the orders that "
            f"carry OTP codes; got '{taken}'. Use another prefix."
        ], path
    assert resent.status_code == 200
    assert resent.json()["shipmentId"] is not None
    # The resend sent the new code, in a second message.
    assert len(app.outbox_lines("sms")) == 2
    assert last_code(app) == "222222"
