"""Generated requests against `budstikke serve`: Schemathesis from /openapi.json, and
Hypothesis bodies of any JSON shape. No request may get a 500.

Every test here talks over HTTP to one `budstikke serve` process per module,
with SQLite and the file outboxes in a temporary folder.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from budstikke.api.app import create_app
from budstikke.config import Settings
from tests.api.servers import (
    ServeProcess,
    cli_environment,
    create_api_key_with_cli,
    serve_process,
)

API = "/notifications/api/v1/future"
ORDER_STATUSES = {200, 201, 400}
# Generated examples per operation or per test. With deadline=None, a slow
# response under load does not fail a test.
MAX_EXAMPLES = 30
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Server:
    def __init__(self, process: ServeProcess, api_key: str) -> None:
        self.process = process
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    # Every generated order goes to the same recipient and creator, so the
    # rate limits are off here; their own tests cover the 429 answers.
    environment = cli_environment(
        folder / "data", rate_limit_per_s="0", recipient_limit_10min="0", recipient_limit_day="0"
    )
    key = create_api_key_with_cli(environment)
    with serve_process(environment, folder) as process:
        yield Server(process, key)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.process.base_url, headers=server.headers) as http:
        yield http


# --- Schemathesis -------------------------------------------------------------------------


def json_body(_ctx: Any, response: Any, _case: Any) -> bool | None:
    """Check that the body parses as JSON (the content type is checked by Schemathesis)."""
    json.loads(response.content)
    return None


# The document that the app serves at /openapi.json, as test_served_openapi_document
# checks. It is built from the app object at import because Schemathesis 4.32.5
# cannot load a schema from a fixture under pytest 9.2. Its lazy loader
# (schemathesis.pytest.from_fixture) reads Node._nodeid, a private attribute
# that pytest 9.2 no longer has.
OPENAPI_DOCUMENT = create_app(Settings(data_dir=Path("unused"))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI_DOCUMENT).include(
    path_regex=r"/orders/instant(/sms|/email)?$|/shipment/"
)


def test_served_openapi_document(client: httpx.Client) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json() == OPENAPI_DOCUMENT


@schema.parametrize()
@FUZZ_SETTINGS
def test_openapi_operation(case: Any, server: Server) -> None:
    case.call_and_validate(
        base_url=server.process.base_url,
        headers=server.headers,
        checks=[
            not_a_server_error,
            content_type_conformance,
            json_body,
            response_schema_conformance,
            status_code_conformance,
        ],
        timeout=10,
    )


# --- Hypothesis: any JSON, and valid orders with one field broken ----------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

VALID_ORDERS: dict[str, dict[str, Any]] = {
    "sms": {
        "idempotencyId": "fuzz-sms",
        "sendersReference": "case-1",
        "recipientSms": {
            "phoneNumber": "+4799999999",
            "timeToLiveInSeconds": 300,
            "smsSettings": {"sender": "Kommune", "body": "Your code is 482913."},
        },
    },
    "email": {
        "idempotencyId": "fuzz-email",
        "sendersReference": "case-2",
        "recipientEmail": {
            "emailAddress": "ola.nordmann@example.com",
            "timeToLiveInSeconds": 300,
            "emailSettings": {
                "senderEmailAddress": "noreply@example.com",
                "subject": "Your one-time code",
                "body": "Your code is 482913.",
                "contentType": "Plain",
            },
        },
    },
}
VALID_ORDERS["legacy"] = {
    "idempotencyId": "fuzz-legacy",
    "sendersReference": "case-3",
    "recipient": {"recipientSms": copy.deepcopy(VALID_ORDERS["sms"]["recipientSms"])},
}
PATHS = {
    "sms": f"{API}/orders/instant/sms",
    "email": f"{API}/orders/instant/email",
    "legacy": f"{API}/orders/instant",
}
# One value of every JSON type, plus edge values of the ones a field may expect.
WRONG_VALUES: list[Any] = [None, True, 0, -1, 2**63, 1.5, "", " ", "x", [], [1], {}, {"a": 1}]


def node_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Return the path of every property in a JSON object, nested ones included."""
    if not isinstance(value, dict):
        return []
    paths = []
    for key, item in value.items():
        paths.append((*prefix, key))
        paths.extend(node_paths(item, (*prefix, key)))
    return paths


def replaced(order: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(order)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return changed


def without(order: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(order)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return changed


def post_json(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    # httpx sends no body for json=None, but null is a JSON value to send.
    return client.post(
        path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def check_order_response(response: httpx.Response, sent: object) -> None:
    context = f"sent {json.dumps(sent)[:300]}; got {response.status_code} {response.text[:300]}"
    assert response.status_code in ORDER_STATUSES, context
    body = response.json()
    if response.status_code == 400:
        assert isinstance(body.get("errors"), dict), context
        assert body["errors"], context
    else:
        assert body["notificationOrderId"], context


@pytest.mark.parametrize("endpoint", PATHS)
@FUZZ_SETTINGS
@given(body=json_values)
def test_any_json_body(client: httpx.Client, endpoint: str, body: Any) -> None:

    response = post_json(client, PATHS[endpoint], body)

    check_order_response(response, body)


@pytest.mark.parametrize("endpoint", PATHS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_order_with_one_field_replaced(client: httpx.Client, endpoint: str, data: Any) -> None:
    valid = VALID_ORDERS[endpoint]
    path = data.draw(st.sampled_from(node_paths(valid)), label="path")
    body = replaced(valid, path, data.draw(json_values, label="value"))

    response = post_json(client, PATHS[endpoint], body)

    check_order_response(response, body)


@pytest.mark.parametrize("endpoint", PATHS)
def test_order_with_each_field_of_wrong_type(client: httpx.Client, endpoint: str) -> None:
    valid = VALID_ORDERS[endpoint]
    for path in node_paths(valid):
        variants = [without(valid, path)] + [replaced(valid, path, v) for v in WRONG_VALUES]
        for body in variants:
            response = post_json(client, PATHS[endpoint], body)

            check_order_response(response, body)


@FUZZ_SETTINGS
@given(
    query=st.dictionaries(
        st.sampled_from(["seq", "pageSize", "orderBy", "SEQ", "pagesize", "other"]),
        st.text(max_size=25) | st.integers().map(str),
        max_size=4,
    )
)
def test_feed_query(client: httpx.Client, query: dict[str, str]) -> None:
    response = client.get(f"{API}/shipment/feed", params=query)

    context = f"query {query!r}; got {response.status_code} {response.text[:300]}"
    assert response.status_code in (200, 400), context
    body = response.json()
    if response.status_code == 400:
        assert body["errors"], context
    else:
        assert isinstance(body, list), context
