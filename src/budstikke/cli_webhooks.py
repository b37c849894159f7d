"""The `budstikke webhook` commands: manage any creator's webhook endpoints in the database."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from typing import NoReturn

import click

from budstikke.domain.webhook_requests import DEFAULT_KEEP_PREVIOUS_S, MAX_KEEP_PREVIOUS_S
from budstikke.domain.webhook_urls import InvalidWebhookUrlError


def parse_endpoint_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an endpoint id (a UUID from `budstikke webhook list`)",
            param_hint="ENDPOINT_ID",
        ) from None


def show_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_not_found(endpoint_id: str) -> NoReturn:
    click.echo(f"budstikke: no webhook endpoint with id {endpoint_id}", err=True)
    sys.exit(1)


@click.group()
def webhook() -> None:
    """Register, list, remove and re-enable webhook endpoints; rotate their secrets."""


@webhook.command("add")
@click.option("--creator", required=True, help="Organisation the endpoint belongs to, e.g. ttd.")
@click.argument("url")
def webhook_add(creator: str, url: str) -> None:
    """Register URL for the creator's status events and print its signing secret once."""
    from budstikke.cli import settings_or_exit, with_database
    from budstikke.domain.webhook_requests import check_endpoint_url
    from budstikke.domain.webhook_urls import AddressPolicy, parse_networks
    from budstikke.store.webhook_endpoints import WebhookEndpointConflictError, create_endpoint

    settings = settings_or_exit()
    creator = creator.strip()
    if not creator or len(creator) > 100 or any(c.isspace() for c in creator):
        raise click.BadParameter(
            "must be 1 to 100 characters without spaces", param_hint="--creator"
        )
    try:
        checked = check_endpoint_url(
            url,
            allow_http=settings.webhook_allow_http,
            policy=AddressPolicy(parse_networks(settings.webhook_allowed_networks)),
        )
    except InvalidWebhookUrlError as error:
        raise click.BadParameter(str(error), param_hint="URL") from None
    try:
        endpoint, secret = with_database(
            lambda database: create_endpoint(
                database, creator=creator, url=checked, now=datetime.now(UTC)
            )
        )
    except WebhookEndpointConflictError as error:
        click.echo(f"budstikke: {error}", err=True)
        sys.exit(1)
    click.echo(f"id:      {endpoint.id}", err=True)
    click.echo(f"creator: {endpoint.creator}", err=True)
    click.echo("The signing secret is shown only now; store it safely:", err=True)
    click.echo(secret)


@webhook.command("list")
@click.option("--creator", default=None, help="Show only this creator's endpoints.")
def webhook_list(creator: str | None) -> None:
    """List endpoints with their state and the number of pending and failed deliveries."""
    from budstikke.cli import with_database
    from budstikke.store.webhook_endpoints import list_endpoints

    endpoints = with_database(
        lambda database: list_endpoints(database, creator=creator, now=datetime.now(UTC))
    )
    click.echo(f"{'ID':36}  {'CREATOR':12}  {'STATE':8}  {'PENDING':>7}  {'FAILED':>6}  URL")
    for endpoint in endpoints:
        state = "enabled" if endpoint.enabled else "disabled"
        click.echo(
            f"{endpoint.id!s:36}  {endpoint.creator:12}  {state:8}  "
            f"{endpoint.pending_deliveries:>7}  {endpoint.failed_deliveries:>6}  {endpoint.url}"
        )
        if endpoint.disabled_reason:
            click.echo(
                f"{'':36}  disabled at {show_time(endpoint.disabled_at)}: "
                f"{endpoint.disabled_reason}"
            )


@webhook.command("remove")
@click.argument("endpoint_id")
def webhook_remove(endpoint_id: str) -> None:
    """Remove an endpoint with its pending and failed deliveries."""
    from budstikke.cli import with_database
    from budstikke.store.webhook_endpoints import remove_endpoint

    parsed = parse_endpoint_id(endpoint_id)
    if not with_database(lambda database: remove_endpoint(database, parsed, creator=None)):
        exit_not_found(endpoint_id)
    click.echo(f"removed {endpoint_id}")


@webhook.command("rotate-secret")
@click.argument("endpoint_id")
@click.option(
    "--keep-previous-for",
    "keep_previous_s",
    type=click.IntRange(0, MAX_KEEP_PREVIOUS_S),
    default=DEFAULT_KEEP_PREVIOUS_S,
    show_default=True,
    help="Seconds that requests also carry a signature with the old secret, so receivers "
    "can switch without rejecting any; 0 stops the old secret at once (a leaked secret).",
)
def webhook_rotate_secret(endpoint_id: str, keep_previous_s: int) -> None:
    """Give an endpoint a new signing secret and print it once."""
    from budstikke.cli import with_database
    from budstikke.store.webhook_endpoints import rotate_secret

    parsed = parse_endpoint_id(endpoint_id)
    rotated = with_database(
        lambda database: rotate_secret(
            database,
            parsed,
            creator=None,
            keep_previous_s=keep_previous_s,
            now=datetime.now(UTC),
        )
    )
    if rotated is None:
        exit_not_found(endpoint_id)
    endpoint, secret = rotated
    until = show_time(endpoint.previous_secret_expires_at)
    click.echo(
        f"The old secret signs until {until}."
        if endpoint.previous_secret_expires_at
        else "The old secret no longer signs.",
        err=True,
    )
    click.echo("The new signing secret is shown only now; store it safely:", err=True)
    click.echo(secret)


@webhook.command("enable")
@click.argument("endpoint_id")
def webhook_enable(endpoint_id: str) -> None:
    """Enable an endpoint that was disabled after failing; new events go to it again."""
    from budstikke.cli import with_database
    from budstikke.store.webhook_endpoints import enable_endpoint

    parsed = parse_endpoint_id(endpoint_id)
    endpoint = with_database(
        lambda database: enable_endpoint(database, parsed, creator=None, now=datetime.now(UTC))
    )
    if endpoint is None:
        exit_not_found(endpoint_id)
    click.echo(f"enabled {endpoint_id}")


@webhook.command("deliveries")
@click.argument("endpoint_id")
@click.option(
    "--state",
    type=click.Choice(["failed", "pending"]),
    default="failed",
    show_default=True,
    help="Which deliveries to list.",
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="Rows at most."
)
def webhook_deliveries(endpoint_id: str, state: str, limit: int) -> None:
    """List an endpoint's failed (or pending) deliveries, newest first."""
    from budstikke.cli import with_database
    from budstikke.store.webhook_deliveries import list_deliveries

    parsed = parse_endpoint_id(endpoint_id)
    deliveries = with_database(
        lambda database: list_deliveries(database, parsed, state=state, limit=limit)
    )
    click.echo(
        f"{'SEQ':>8}  {'SHIPMENT':36}  {'STATUS':28}  {'TRIES':>5}  {'LAST ATTEMPT ERROR':30}"
    )
    for delivery in deliveries:
        click.echo(
            f"{delivery.sequence_number:>8}  {delivery.shipment_id:36}  {delivery.status:28}  "
            f"{delivery.attempts:>5}  {delivery.last_error or '-'}"
        )
