"""The `budstikke limits` commands, which set a creator's limits, and `budstikke purge`."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime

import click

from budstikke.domain.creator_limits import CreatorLimits
from budstikke.domain.durations import InvalidDurationError, parse_duration
from budstikke.domain.sms_countries import (
    InvalidCountryCodesError,
    SmsCountries,
    parse_sms_countries,
)
from budstikke.store.creator_limits import LimitOverrides

# The option name of each limit, as `--reset` takes it.
OPTION_OF_FIELD = {
    "rate_per_s": "rate",
    "burst": "burst",
    "per_recipient_10min": "per-recipient-10min",
    "per_recipient_day": "per-recipient-day",
    "sms_countries": "sms-countries",
    "sensitive_guard": "sensitive-guard",
}
FIELD_OF_OPTION = {option: name for name, option in OPTION_OF_FIELD.items()}
# The explicit word for "no rate limit" and for "no SMS countries". A bare 0
# reads as "no orders" and an empty list as "no restriction", the opposite of
# what each would store, so both are rejected.
NONE_WORD = "none"


class RateType(click.ParamType[float, object]):
    """New orders per second: a positive finite number, or `none` for no limit (stored as 0)."""

    name = "rate"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text == NONE_WORD:
            return 0.0
        try:
            rate = float(text)
        except ValueError:
            rate = math.nan
        if rate == 0:
            self.fail(
                f"{value!r} would read as no orders, but a rate of 0 means no limit; give "
                f"{NONE_WORD} to remove the limit, or a positive number of new orders per second",
                param,
                ctx,
            )
        if not math.isfinite(rate) or rate < 0:
            self.fail(
                f"{value!r} is not a rate; give a positive number of new orders per second, "
                f"such as 50 or 0.5, or {NONE_WORD} for no limit",
                param,
                ctx,
            )
        return rate


def check_creator(creator: str) -> str:
    creator = creator.strip()
    if not creator or len(creator) > 100 or any(c.isspace() for c in creator):
        raise click.BadParameter(
            "must be 1 to 100 characters without spaces", param_hint="--creator"
        )
    return creator


def read_countries(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> SmsCountries | None:
    if value is None:
        return None
    if value.strip().lower() == NONE_WORD:
        return SmsCountries(frozenset())
    try:
        countries = parse_sms_countries(value)
    except InvalidCountryCodesError as error:
        raise click.BadParameter(str(error)) from None
    if not countries.codes and not countries.every_country:
        raise click.BadParameter(
            f"{value!r} lists no country calling code; give codes such as 47,46, "
            f"* for every country, or {NONE_WORD} to reject every SMS of this creator"
        )
    return countries


def describe_limits(creator: str, limits: CreatorLimits, overrides: LimitOverrides) -> list[str]:
    """Return one line per limit with its value and whether the creator has its own."""

    def source(name: str) -> str:
        return "set for this creator" if getattr(overrides, name) is not None else "default"

    def count(value: int, unit: str) -> str:
        return "no limit" if value == 0 else f"{value} {unit}"

    countries = str(limits.sms_countries)
    rate = "no limit" if limits.rate_per_s == 0 else f"{limits.rate_per_s:g} new orders/s"
    values = {
        "rate_per_s": rate,
        "burst": f"{limits.burst} orders",
        "per_recipient_10min": count(limits.per_recipient_10min, "instant messages"),
        "per_recipient_day": count(limits.per_recipient_day, "instant messages"),
        "sms_countries": f"{countries or NONE_WORD} ({limits.sms_countries.describe()})",
        "sensitive_guard": "on" if limits.sensitive_guard else "off",
    }
    labels = {
        "rate_per_s": "rate",
        "burst": "burst",
        "per_recipient_10min": "per recipient, 10 minutes",
        "per_recipient_day": "per recipient, 24 hours",
        "sms_countries": "SMS countries",
        "sensitive_guard": "sensitive content guard",
    }
    lines = [f"{'creator':26} {creator}"]
    lines += [
        f"{labels[field.name]:26} {values[field.name]}  [{source(field.name)}]"
        for field in fields(limits)
    ]
    return lines


@click.group()
def limits() -> None:
    """Show and change a creator's rate limits, SMS countries and sensitive content guard.

    Limits a creator has no value of its own for follow the BUDSTIKKE_*
    defaults. A change reaches running servers within a second.
    """


@limits.command("set")
@click.option("--creator", required=True, help="Organisation whose limits change, e.g. ttd.")
@click.option(
    "--rate",
    type=RateType(),
    help=f"New orders per second on average, shared by all processes; {NONE_WORD}: no limit.",
)
@click.option(
    "--burst", type=click.IntRange(min=1), help="New orders at once before the rate applies."
)
@click.option(
    "--per-recipient-10min",
    type=click.IntRange(min=0),
    help="Instant messages to one phone number or address in any 10 minutes; 0: no limit.",
)
@click.option(
    "--per-recipient-day",
    type=click.IntRange(min=0),
    help="Instant messages to one phone number or address in any 24 hours; 0: no limit.",
)
@click.option(
    "--sms-countries",
    callback=read_countries,
    help=f"Country calling codes SMS may go to, comma-separated (47,46); * for all, "
    f"{NONE_WORD} to reject every SMS.",
)
@click.option(
    "--sensitive-guard",
    type=click.Choice(["on", "off"]),
    help="Reject instant messages with identity or card numbers (on) or let them pass (off).",
)
@click.option(
    "--reset",
    multiple=True,
    type=click.Choice(sorted(FIELD_OF_OPTION)),
    help="Return this limit to the default; repeat for several.",
)
def limits_set(
    creator: str,
    rate: float | None,
    burst: int | None,
    per_recipient_10min: int | None,
    per_recipient_day: int | None,
    sms_countries: SmsCountries | None,
    sensitive_guard: str | None,
    reset: tuple[str, ...],
) -> None:
    """Change the given limits of one creator and print all of its limits."""
    from budstikke.cli import settings_or_exit, with_database
    from budstikke.store.api_keys import creator_has_active_key
    from budstikke.store.creator_limits import write_overrides
    from budstikke.store.database import Database

    creator = check_creator(creator)
    changes = LimitOverrides(
        rate_per_s=rate,
        burst=burst,
        per_recipient_10min=per_recipient_10min,
        per_recipient_day=per_recipient_day,
        sms_countries=sms_countries,
        sensitive_guard=None if sensitive_guard is None else sensitive_guard == "on",
    )
    reset_fields = tuple(FIELD_OF_OPTION[option] for option in reset)
    both = [name for name in reset_fields if getattr(changes, name) is not None]
    if both:
        raise click.UsageError(
            f"--{OPTION_OF_FIELD[both[0]]} is both given and reset; give one of them"
        )
    if changes == LimitOverrides() and not reset_fields:
        raise click.UsageError("give at least one limit to change, or --reset")
    settings = settings_or_exit()

    async def write_and_find_key(database: Database) -> tuple[LimitOverrides, bool]:
        overrides = await write_overrides(
            database, creator, changes, datetime.now(UTC), reset=reset_fields
        )
        return overrides, await creator_has_active_key(database, creator)

    overrides, has_key = with_database(write_and_find_key)
    effective = overrides.apply_to(settings.default_limits)
    click.echo("\n".join(describe_limits(creator, effective, overrides)))
    if not has_key:
        # Limits may be set before the key exists, so a missing key only warns of a misspelling.
        click.echo(
            f"warning: no active API key exists for creator {creator!r} yet. Check the "
            f"spelling. The limits are stored, and they apply once {creator} sends with a key "
            f"from `budstikke apikey create --creator {creator}` or with a JWT that names it.",
            err=True,
        )
    if not effective.sms_countries.codes and not effective.sms_countries.every_country:
        click.echo(
            f"note: every SMS order of {creator} is now rejected with 400; allow countries "
            "again with --sms-countries 47 or --reset sms-countries",
            err=True,
        )


@limits.command("show")
@click.option("--creator", required=True, help="Organisation whose limits to show, e.g. ttd.")
def limits_show(creator: str) -> None:
    """Print a creator's limits, and for each whether it is the default."""
    from budstikke.cli import settings_or_exit, with_database
    from budstikke.store.creator_limits import read_overrides

    creator = check_creator(creator)
    settings = settings_or_exit()
    overrides = with_database(lambda database: read_overrides(database, creator))
    effective = overrides.apply_to(settings.default_limits)
    click.echo("\n".join(describe_limits(creator, effective, overrides)))


@click.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age of the orders to remove, from their creation: a whole number and a unit, "
    "s, min, h, d (days) or w (weeks), such as 90d, 12h or 30min.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed and remove nothing.")
def purge(older_than: str, dry_run: bool) -> None:
    """Remove whole orders older than --older-than, with their notifications and feed entries.

    Only orders with a final status are removed. Requests for their
    shipments then get 404, and their feed entries are gone. Run it from
    cron or a systemd timer.
    """
    from budstikke.cli import with_database
    from budstikke.store.retention import count_purgeable, purge_orders

    try:
        age = parse_duration(older_than)
    except InvalidDurationError as error:
        raise click.BadParameter(str(error), param_hint="--older-than") from None
    cutoff = datetime.now(UTC) - age
    if dry_run:
        result = with_database(lambda database: count_purgeable(database, cutoff))
        verb = "would remove"
    else:
        result = with_database(lambda database: purge_orders(database, cutoff))
        verb = "removed"
    click.echo(
        f"{verb} {result.orders} orders and {result.notifications} notifications created before "
        f"{cutoff.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    if result.not_final:
        keep_verb = "would keep" if verb == "would remove" else "kept"
        click.echo(
            f"{keep_verb} {result.not_final} older orders that are not final yet. A later purge "
            "removes them once they are final",
            err=True,
        )
