"""The `budstikke otp-key` commands: compare the OTP key with the database's, and rotate it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from budstikke.config import Settings
from budstikke.errors import ConfigurationError
from budstikke.otp_key import describe_key_source, key_fingerprint, load_otp_key


@click.group("otp-key")
def otp_key() -> None:
    """Check or change the OTP key that the database records as the one in use.

    Every API process must use the same key, and one whose key differs from
    the recorded one stops at start.
    """


@otp_key.command("check")
def otp_key_check() -> None:
    """Tell whether this machine's OTP key is the one the database records; exit 1 if not."""
    from budstikke.cli import settings_or_exit, with_database
    from budstikke.store.otp_key import read_otp_key_fingerprint

    settings = settings_or_exit()
    source = describe_key_source(settings)
    fingerprint = key_fingerprint(load_key_or_exit(settings))
    stored = with_database(read_otp_key_fingerprint)

    if stored is None:
        click.echo(f"no OTP key recorded yet; the first API process records the key from {source}")
    elif stored.fingerprint == fingerprint:
        click.echo(f"the OTP key from {source} is the one the database records")
    else:
        click.echo(
            f"budstikke: the OTP key from {source} is not the one recorded on "
            f"{stored.recorded_at:%Y-%m-%d %H:%M} UTC; an API process with it would not start",
            err=True,
        )
        sys.exit(1)


@otp_key.command("rotate")
@click.option("--yes", is_flag=True, help="Record the new key without asking.")
def otp_key_rotate(yes: bool) -> None:
    """Record this machine's OTP key as the one in use, so API processes with it may start.

    Codes sent before the change no longer match, so their users need a new
    code. Give every API process the new key and restart them all: a running
    process keeps its key until it stops.
    """
    from budstikke.cli import settings_or_exit, with_database
    from budstikke.store.otp_key import replace_otp_key_fingerprint

    settings = settings_or_exit()
    source = describe_key_source(settings)
    fingerprint = key_fingerprint(load_key_or_exit(settings))
    if not yes:
        click.confirm(
            f"Record the OTP key from {source} as the one in use? Codes sent with the previous "
            "key stop working",
            abort=True,
        )

    now = datetime.now(UTC)
    previous = with_database(
        lambda database: replace_otp_key_fingerprint(database, fingerprint, now=now)
    )

    if previous is not None and previous.fingerprint == fingerprint:
        click.echo(f"the OTP key from {source} was already the one in use; nothing changed")
    else:
        click.echo(f"recorded the OTP key from {source} as the one in use")


def load_key_or_exit(settings: Settings) -> bytes:
    try:
        return load_otp_key(settings)
    except ConfigurationError as error:
        click.echo(f"budstikke: configuration error: {error}", err=True)
        sys.exit(2)
