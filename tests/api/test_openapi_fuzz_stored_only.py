"""Schemathesis over the routes that test_openapi_fuzz.py leaves out: regular orders,
webhook endpoints, OTP verifications and whoami. No request may get a 500.

These routes store URLs that budstikke calls later (condition endpoints,
webhooks). Generated URLs may name any host, so the server here runs with
`--no-workers`: it stores orders and endpoints, and nothing calls them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from budstikke.api.app import create_app
from budstikke.config import Settings
from tests.api.servers import ServeProcess, cli_environment, create_api_key_with_cli
from tests.api.servers import serve_process as start_serve_process

FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Built from the app at import, as in test_openapi_fuzz.py, whose comment gives the reason.
OPENAPI_DOCUMENT = create_app(Settings(data_dir=Path("unused"))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI_DOCUMENT).include(
    path_regex=r"/orders$|/webhooks|/whoami$|/otp"
)


class Server:
    def __init__(self, process: ServeProcess, api_key: str) -> None:
        self.process = process
        self.headers = {"Authorization": f"Bearer {api_key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz-stored")
    # Limits off: every generated order comes from one creator.
    environment = cli_environment(
        folder / "data",
        no_workers="1",
        rate_limit_per_s="0",
        recipient_limit_10min="0",
        recipient_limit_day="0",
    )
    key = create_api_key_with_cli(environment)
    with start_serve_process(environment, folder) as process:
        yield Server(process, key)


def json_body(_ctx: Any, response: Any, _case: Any) -> bool | None:
    """Check that a body, where there is one, parses as JSON."""
    if response.content:
        json.loads(response.content)
    return None


@schema.parametrize()
@FUZZ_SETTINGS
def test_stored_only_operation(case: Any, server: Server) -> None:
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
