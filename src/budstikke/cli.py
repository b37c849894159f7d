"""The `budstikke` command: serve, migrate, manage API keys, run the test SMSC."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from textwrap import wrap
from typing import TYPE_CHECKING, Any, TypeVar

import click

from budstikke.channels.base import Provider
from budstikke.cli_client import client_commands
from budstikke.cli_import import orders_group
from budstikke.cli_limits import limits, purge
from budstikke.cli_otp_key import otp_key
from budstikke.cli_webhooks import webhook
from budstikke.config import ENV_PREFIX, Settings, load_settings
from budstikke.domain.statuses import Channel
from budstikke.errors import BudstikkeError, ConfigurationError, DatabaseUnavailableError
from budstikke.logs import configure_logging

if TYPE_CHECKING:
    from budstikke.store.database import Database

T = TypeVar("T")
DEFAULT_SCOPE = "altinn:serviceowner/notifications.create"


def describe_settings() -> str:
    """List every BUDSTIKKE_* variable with its meaning and default, for --help."""
    # A paragraph that starts with \b keeps its line breaks in click's help.
    lines = ["\b", "Environment variables:"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default in ("", None) else f" [default: {default}]"
        lines.append(f"  {ENV_PREFIX}{name.upper()}{shown}")
        lines.extend(f"      {line}" for line in wrap(field.description or "", 74))
    return "\n".join(lines)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as error:
        click.echo(f"budstikke: configuration error: {error}", err=True)
        sys.exit(2)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning known errors into one line on stderr and exit status 1."""
    try:
        return asyncio.run(coroutine)
    except ConfigurationError as error:
        click.echo(f"budstikke: configuration error: {error}", err=True)
        sys.exit(2)
    except DatabaseUnavailableError as error:
        click.echo(f"budstikke: database unavailable (BUDSTIKKE_DATABASE_URL): {error}", err=True)
        sys.exit(1)
    except BudstikkeError as error:
        click.echo(f"budstikke: {error}", err=True)
        sys.exit(1)


@click.group(epilog=describe_settings(), context_settings={"max_content_width": 100})
@click.version_option(package_name="budstikke")
def main() -> None:
    """budstikke: instant SMS and email notifications for OTP and alerts."""


for client_command in client_commands():
    main.add_command(client_command)
main.add_command(webhook)
main.add_command(orders_group)
main.add_command(limits)
main.add_command(purge)
main.add_command(otp_key)


@main.command(epilog=describe_settings())
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="BUDSTIKKE_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="BUDSTIKKE_PORT",
    show_envvar=True,
    help="TCP port to listen on.",
)
@click.option(
    "--no-workers",
    is_flag=True,
    envvar="BUDSTIKKE_NO_WORKERS",
    show_envvar=True,
    help="Serve the API only: store orders and leave every hand-off to `budstikke worker` "
    "processes (woken over PostgreSQL LISTEN/NOTIFY; polled on SQLite). The workers also "
    "turn regular orders into notifications.",
)
def serve(host: str, port: int, no_workers: bool) -> None:
    """Run the HTTP API and the dispatch workers in one process.

    Applies database migrations at start. SIGINT or SIGTERM stops it: running
    hand-offs get a few seconds to finish, and anything unfinished stays queued.
    """
    import uvicorn

    from budstikke.api.app import create_app
    from budstikke.api.server import GracefulServer
    from budstikke.api.slow_clients import head_deadline_protocol

    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    # Bound before anything starts: uvicorn binds only after the app's
    # start-up, so a taken port would first run migrations and workers.
    listener = listening_socket_or_exit(host, port)
    providers = {} if no_workers else providers_or_exit(settings)
    # The database and the JWT key set are checked here too: an error in the
    # app's lifespan would reach uvicorn, which prints a traceback instead.
    run_async(check_start_up(settings))
    app = create_app(settings, providers=providers, run_workers=not no_workers)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=15,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        http=head_deadline_protocol(settings.request_head_timeout_s),
        limit_concurrency=2048,
    )
    server = GracefulServer(config)
    try:
        server.run(sockets=[listener])
    except (ConfigurationError, DatabaseUnavailableError) as error:
        click.echo(f"budstikke: {error}", err=True)
        sys.exit(1)
    if not server.started:
        sys.exit(1)


@main.command(epilog=describe_settings())
def worker() -> None:
    """Run the dispatch workers only, without the HTTP API.

    Claims due notifications (instant first), hands them off, retries and
    expires them, and turns regular orders into notifications at their send
    time. Run several on PostgreSQL for more throughput; SIGINT or
    SIGTERM stops a worker cleanly.
    """
    from budstikke.dispatch.runner import run_worker

    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    providers = providers_or_exit(settings)
    run_async(run_worker(settings, providers))


@main.command("dev-smsc")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=2775,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port to listen on.",
)
@click.option("--system-id", default=None, help="Accept binds only with this system_id.")
@click.option(
    "--password",
    default=None,
    envvar="BUDSTIKKE_DEV_SMSC_PASSWORD",
    show_envvar=True,
    help="Accept binds only with this password.",
)
@click.option(
    "--receipt-delay",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds from the submit response to the delivery receipt.",
)
@click.option(
    "--delivered-share",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of receipts that say DELIVRD; the rest say UNDELIV.",
)
def dev_smsc(
    host: str,
    port: int,
    system_id: str | None,
    password: str | None,
    receipt_delay: float,
    delivered_share: float,
) -> None:
    """Run the strict test SMSC, an SMPP 3.4 server for trying the SMPP path locally.

    It accepts binds, answers submit_sm with message ids, checks every PDU
    strictly and sends delivery receipts. Point budstikke at it with
    BUDSTIKKE_SMS_URL=smpp://any:any@127.0.0.1:2775. Stop it with Ctrl-C.
    """
    from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions

    outcomes = {"DELIVRD": delivered_share, "UNDELIV": 1 - delivered_share}
    options = DevSmscOptions(
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        receipt_delay_s=receipt_delay,
        outcomes={state: weight for state, weight in outcomes.items() if weight > 0},
        echo=click.echo,
        # Message ids continue from the clock, so a restarted test SMSC does
        # not hand out the ids of messages it accepted before.
        first_message_id=int(time.time() * 10) % 0x7FFF_FFFF,
        keep_history=False,
    )

    async def run_until_signal() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        async with DevSmsc(options):
            await stop.wait()

    asyncio.run(run_until_signal())


def listening_socket_or_exit(host: str, port: int) -> socket.socket:
    """Bind the API's address, or exit with one line that explains how to choose another."""
    from budstikke.api.server import open_listening_socket

    try:
        return open_listening_socket(host, port)
    except OSError as error:
        reason = error.strerror or str(error)
        click.echo(
            f"budstikke: cannot listen on {host}:{port}: {reason}. Stop the process that "
            "uses it, or choose another address with --host/--port or BUDSTIKKE_HOST/"
            "BUDSTIKKE_PORT (for example: BUDSTIKKE_PORT=8081 make run).",
            err=True,
        )
        sys.exit(1)


def providers_or_exit(settings: Settings) -> dict[Channel, Provider]:
    """Build the providers, so that a bad provider URL stops start-up with one line."""
    from budstikke.dispatch.runner import build_providers

    try:
        return build_providers(settings)
    except ConfigurationError as error:
        click.echo(f"budstikke: configuration error: {error}", err=True)
        sys.exit(2)


async def check_start_up(settings: Settings) -> None:
    """Migrate the database, compare the OTP key with the recorded one and read the JWT key set.

    Raises BudstikkeError on failure.
    """
    from budstikke.api.jwks import JwksVerifier
    from budstikke.dispatch.otp import load_checked_otp_key
    from budstikke.store.database import Database
    from budstikke.store.migrate import upgrade_to_head

    database = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(database)
        if settings.jwks_url:
            verifier = JwksVerifier(
                settings.jwks_url, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
            await verifier.load()
        # Last, because it may generate the key file: a start that fails
        # on another setting leaves no new key behind.
        await load_checked_otp_key(settings, database, now=datetime.now(UTC))
    finally:
        await database.dispose()


@main.command()
def migrate() -> None:
    """Apply the database migrations that have not run yet."""
    from budstikke.store.database import Database
    from budstikke.store.migrate import pending_revisions, upgrade_to_head

    settings = settings_or_exit()

    async def apply() -> list[str]:
        database = Database(settings.resolved_database_url)
        try:
            pending = await pending_revisions(database)
            await upgrade_to_head(database)
            return pending
        finally:
            await database.dispose()

    applied = run_async(apply())
    click.echo(f"applied {len(applied)} migration(s)" if applied else "database is up to date")


@main.group()
def apikey() -> None:
    """Create, list and revoke API keys."""


def with_database(action: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    from budstikke.store.database import Database
    from budstikke.store.migrate import upgrade_to_head

    settings = settings_or_exit()

    async def run() -> T:
        database = Database(settings.resolved_database_url)
        try:
            await upgrade_to_head(database)
            return await action(database, *args)
        finally:
            await database.dispose()

    return run_async(run())


@apikey.command("create")
@click.option("--creator", required=True, help="Organisation the key belongs to, e.g. ttd.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=[DEFAULT_SCOPE],
    show_default=True,
    help="Scope the key carries; repeat for several.",
)
def apikey_create(creator: str, scopes: tuple[str, ...]) -> None:
    """Create an API key and print it once; only its hash is stored."""
    from budstikke.store.api_keys import create_api_key

    creator = creator.strip()
    if not creator or len(creator) > 100 or any(c.isspace() for c in creator):
        raise click.BadParameter(
            "must be 1 to 100 characters without spaces", param_hint="--creator"
        )
    record, key = with_database(
        lambda database: create_api_key(
            database, creator=creator, scopes=tuple(scopes), now=datetime.now(UTC)
        )
    )
    click.echo(f"id:       {record.id}", err=True)
    click.echo(f"creator:  {record.creator}", err=True)
    # A key stored in another database is unknown to the running service,
    # as when this runs in another folder than the service's.
    click.echo(f"database: {describe_database(settings_or_exit())}", err=True)
    click.echo("The key is shown only now; store it safely:", err=True)
    click.echo(key)


def describe_database(settings: Settings) -> str:
    """Return where the settings' database is: a SQLite file's full path, else its URL."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return str(Path(url.database).resolve())
    return url.render_as_string(hide_password=True)


@apikey.command("list")
def apikey_list() -> None:
    """List API keys by id, creator and public prefix."""
    from budstikke.store.api_keys import list_api_keys

    records = with_database(list_api_keys)
    click.echo(f"{'ID':36}  {'CREATOR':12}  {'PREFIX':12}  {'CREATED':20}  STATE")
    for record in records:
        state = "revoked" if record.revoked_at else "active"
        created = record.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(
            f"{record.id!s:36}  {record.creator:12}  {record.prefix:12}  {created:20}  {state}"
        )


@apikey.command("revoke")
@click.argument("key")
def apikey_revoke(key: str) -> None:
    """Revoke the API key KEY; running servers refuse it within 1 s.

    KEY is the key's id from `budstikke apikey list`, the key itself
    (bsk_<prefix>_<secret>), or its prefix with or without "bsk_", at least
    4 of its 12 hex characters. A prefix must match exactly one active key.
    """
    from budstikke.store.api_keys import revoke_api_key

    reference = parse_key_reference(key)

    async def resolve_and_revoke(database: Database) -> uuid.UUID:
        key_id = await resolve_key_id(database, reference)
        if not await revoke_api_key(database, key_id, datetime.now(UTC)):
            raise click.ClickException(f"no active API key with id {key_id}")
        return key_id

    revoked = with_database(resolve_and_revoke)
    click.echo(f"revoked {revoked}")


@dataclass(frozen=True, slots=True)
class KeyReference:
    """A key reference given to `apikey revoke`: an id, a whole key, or a prefix start."""

    key_id: uuid.UUID | None = None
    whole_key: str | None = None
    prefix_start: str = ""


def parse_key_reference(text: str) -> KeyReference:
    from budstikke.store.api_keys import KEY_MARKER, PREFIX_BYTES, split_key

    text = text.strip()
    try:
        return KeyReference(key_id=uuid.UUID(text))
    except ValueError:
        pass
    prefix = split_key(text)
    if prefix is not None and not text.endswith("_"):
        return KeyReference(whole_key=text, prefix_start=prefix)
    # A key shown cut short, as in "bsk_3f9a0c12be47..." or "bsk_3f9a0c12be47_".
    shown = text.rstrip(".…_").removeprefix(f"{KEY_MARKER}_").lower()
    if 4 <= len(shown) <= PREFIX_BYTES * 2 and all(c in "0123456789abcdef" for c in shown):
        return KeyReference(prefix_start=shown)
    raise click.BadParameter(
        f"{text[:16]!r} is not a key id, a key or a key prefix; give the UUID or the "
        f"prefix from `budstikke apikey list`, or the key ({KEY_MARKER}_<prefix>_<secret>)",
        param_hint="KEY",
    )


async def resolve_key_id(database: Database, reference: KeyReference) -> uuid.UUID:
    """Return the id of the one active key that `reference` names, or raise ClickException."""
    from budstikke.store.api_keys import find_api_keys_by_prefix, key_matches_hash, read_secret_hash

    if reference.key_id is not None:
        return reference.key_id
    matches = await find_api_keys_by_prefix(database, reference.prefix_start)
    active = [record for record in matches if record.revoked_at is None]
    if not active:
        revoked = ", ".join(f"{record.id} ({record.prefix})" for record in matches)
        already = f"; already revoked: {revoked}" if revoked else ""
        raise click.ClickException(
            f"no active API key has a prefix starting with {reference.prefix_start}{already}"
        )
    if len(active) > 1:
        listed = ", ".join(f"{record.id} ({record.prefix}, {record.creator})" for record in active)
        raise click.ClickException(
            f"{len(active)} active API keys have a prefix starting with {reference.prefix_start}: "
            f"{listed}; give the whole prefix or the id"
        )
    [record] = active
    if reference.whole_key is not None:
        secret_hash = await read_secret_hash(database, record.id)
        if secret_hash is None or not key_matches_hash(reference.whole_key, secret_hash):
            raise click.ClickException(
                f"the key does not match the stored key with prefix {record.prefix}; check that "
                f"it was copied whole, or revoke by its prefix: budstikke apikey revoke "
                f"{record.prefix}"
            )
    return record.id
