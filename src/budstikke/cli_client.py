"""Commands for people and scripts that talk to a running budstikke over its HTTP API.

`send`, `status` and `feed` use the same endpoints and API keys as any
client; `completion` prints the shell completion script.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, NoReturn, TypeVar

import click
import httpx

from budstikke.domain.request_fields import INT64_MAX
from budstikke.domain.statuses import NotificationStatus, OrderStatus
from budstikke.errors import CREATE_KEY_HINT

API_PREFIX = "/notifications/api/v1/future"
DEFAULT_API_URL = "http://127.0.0.1:8080"
REQUEST_TIMEOUT_S = 15.0
# Status polls start fast, because most hand-offs finish within a second,
# and slow down to this interval.
FIRST_POLL_S = 0.2
MAX_POLL_S = 1.0
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# Exit status of `send` when the message has no final status within --wait.
EXIT_NOT_FINAL = 3

F = TypeVar("F", bound=Callable[..., Any])


class ApiError(click.ClickException):
    """An error response or a failure that ends the command with one line on standard error."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"budstikke: {self.message}", file=file, err=file is None)


@dataclass(frozen=True, slots=True)
class ApiClient:
    url: str
    key: str

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, turning connection failures into ApiError with the fix."""
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        try:
            with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
                return client.request(method, path, headers=headers, **kwargs)
        except httpx.ConnectError as error:
            raise ApiError(
                f"cannot connect to budstikke at {self.url}: {error}. Start it with "
                "`budstikke serve`, or point --api-url (BUDSTIKKE_API_URL) at it."
            ) from None
        except httpx.TimeoutException:
            raise ApiError(
                f"budstikke at {self.url} did not respond to {method} {path} within "
                f"{REQUEST_TIMEOUT_S:g} s"
            ) from None
        except httpx.HTTPError as error:
            raise ApiError(f"request to {self.url}{path} failed: {error}") from None

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Send a request and return the status code and the JSON body of a 2xx response."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise_for_problem(self.url, response)
        try:
            return response.status_code, response.json()
        except ValueError:
            raise ApiError(
                f"{self.url}{path} responded {response.status_code} with a body that is not "
                f"JSON ({response.headers.get('content-type', 'no content type')}); is "
                "--api-url a budstikke server?"
            ) from None


def raise_for_problem(url: str, response: httpx.Response) -> NoReturn:
    """Raise ApiError that explains an error response (RFC 9457 problem details)."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    status = response.status_code
    if status == 401:
        detail = str(detail).replace(CREATE_KEY_HINT, "").strip()
        raise ApiError(
            f"the API key was rejected (401: {detail}). Create one with `budstikke apikey "
            "create --creator ORG` and pass it with --api-key or BUDSTIKKE_API_KEY."
        )
    if status == 403:
        raise ApiError(f"the API key may not do this (403: {detail})")
    if status == 400 and isinstance(problem.get("errors"), dict):
        lines = [
            f"  {field}: {message}"
            for field, messages in problem["errors"].items()
            for message in (messages if isinstance(messages, list) else [messages])
        ]
        raise ApiError("the request is invalid:\n" + "\n".join(lines))
    if status == 404 and problem.get("code") == "NOT-00003":
        raise ApiError("no such shipment for this API key (404)")
    retry_after = response.headers.get("retry-after")
    hint = ""
    if retry_after and "retry after" not in str(detail).lower():
        hint = f"; retry after {retry_after} s"
    raise ApiError(f"{url} responded {status}: {detail}{hint}")


def api_options(command: F) -> F:
    """Add --api-url and --api-key, each with its environment variable, to a command."""
    command = click.option(
        "--api-key",
        envvar="BUDSTIKKE_API_KEY",
        show_envvar=True,
        help="API key from `budstikke apikey create`.",
    )(command)
    command = click.option(
        "--api-url",
        envvar="BUDSTIKKE_API_URL",
        show_envvar=True,
        default=DEFAULT_API_URL,
        show_default=True,
        help="Base URL of the running budstikke API.",
    )(command)
    return command


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text."
    )(command)


def make_client(api_url: str, api_key: str | None) -> ApiClient:
    if not api_key:
        raise click.UsageError("missing API key: pass --api-key or set BUDSTIKKE_API_KEY")
    if not api_url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{api_url!r} is not an http:// or https:// URL", param_hint="--api-url"
        )
    return ApiClient(api_url.rstrip("/"), api_key)


def read_text(text: str) -> str:
    """Return the message text; "-" reads it from standard input."""
    return sys.stdin.read() if text == "-" else text


def shipment_is_final(shipment: dict[str, Any]) -> bool:
    """Return whether the order or every recipient of a shipment has a final status."""
    try:
        if OrderStatus(shipment.get("status", "")).is_final:
            return True
    except ValueError:
        pass
    recipients = shipment.get("recipients") or []
    try:
        return bool(recipients) and all(
            NotificationStatus(recipient.get("status", "")).is_final for recipient in recipients
        )
    except ValueError:
        return False


def shipment_succeeded(shipment: dict[str, Any]) -> bool:
    """Return whether every recipient was delivered, or handed off where no report follows."""
    succeeded = {
        NotificationStatus.SMS_DELIVERED.value,
        NotificationStatus.EMAIL_DELIVERED.value,
        NotificationStatus.SMS_ACCEPTED.value,
        NotificationStatus.EMAIL_SUCCEEDED.value,
    }
    recipients = shipment.get("recipients") or []
    return bool(recipients) and all(r.get("status") in succeeded for r in recipients)


def recipient_summary(shipment: dict[str, Any]) -> str:
    return ", ".join(
        f"{r.get('status', '?')} {r.get('destination', '')}".strip()
        for r in shipment.get("recipients") or []
    )


class Spinner:
    """A one-line spinner on standard error, drawn only when standard error is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._frames: Iterator[str] = itertools.cycle(SPINNER_FRAMES)

    def show(self, text: str) -> None:
        if self.enabled:
            click.echo(f"\r\033[K{next(self._frames)} {text}", nl=False, err=True)

    def clear(self) -> None:
        if self.enabled:
            click.echo("\r\033[K", nl=False, err=True)


def follow_shipment(
    client: ApiClient, shipment_id: str, *, wait_s: float, spinner: Spinner
) -> tuple[dict[str, Any], bool]:
    """Poll a shipment until it is final or `wait_s` passes; returns it and whether it is final."""
    deadline = time.monotonic() + wait_s
    pause_s = FIRST_POLL_S
    while True:
        _status, shipment = client.json("GET", f"{API_PREFIX}/shipment/{shipment_id}")
        if shipment_is_final(shipment):
            spinner.clear()
            return shipment, True
        if time.monotonic() >= deadline:
            spinner.clear()
            return shipment, False
        spinner.show(f"{recipient_summary(shipment)} ({shipment.get('status', '?')})")
        # Sleep in small steps so the spinner turns while waiting.
        step_end = time.monotonic() + pause_s
        while time.monotonic() < step_end:
            time.sleep(0.08)
            spinner.show(f"{recipient_summary(shipment)} ({shipment.get('status', '?')})")
        pause_s = min(pause_s * 2, MAX_POLL_S)


def place_and_follow(
    client: ApiClient,
    path: str,
    body: dict[str, Any],
    *,
    follow: bool,
    wait_s: float,
    as_json: bool,
) -> None:
    status_code, receipt = client.json("POST", path, json=body)
    shipment_id = str(receipt["notification"]["shipmentId"])
    created = status_code == 201
    if not as_json:
        note = "" if created else " (already placed with this idempotency id; nothing sent again)"
        click.echo(f"shipment {shipment_id}{note}")
    if not follow:
        if as_json:
            click.echo(json.dumps({"created": created, **receipt}))
        return
    started = time.monotonic()
    try:
        shipment, final = follow_shipment(
            client, shipment_id, wait_s=wait_s, spinner=Spinner(not as_json)
        )
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped following; the message is still on its way. Check it with "
            f"`budstikke status {shipment_id}`.",
            err=True,
        )
        sys.exit(130)
    if as_json:
        click.echo(
            json.dumps({"created": created, **receipt, "final": final, "shipment": shipment})
        )
    else:
        elapsed = time.monotonic() - started
        state = "final" if final else f"not final after {wait_s:g} s"
        click.echo(
            f"{recipient_summary(shipment)} ({shipment.get('status', '?')}, {state}, "
            f"{elapsed:.1f} s)"
        )
    if not final:
        sys.exit(EXIT_NOT_FINAL)
    if not shipment_succeeded(shipment):
        sys.exit(1)


def common_send_options(command: F) -> F:
    for option in reversed(
        [
            click.option(
                "--ttl",
                "ttl_s",
                type=click.IntRange(60, 172800),
                help="Seconds the message may still be sent (timeToLiveInSeconds, 60 to 172800).",
            ),
            click.option(
                "--idempotency-id",
                help="Key that makes a repeated command send once; default: a new random id.",
            ),
            click.option("--reference", help="Your own reference (sendersReference), echoed back."),
            click.option(
                "--wait",
                "wait_s",
                type=click.FloatRange(0),
                default=60.0,
                show_default=True,
                help="Seconds to follow the status before giving up with exit status 3.",
            ),
            click.option(
                "--no-follow", is_flag=True, help="Print the shipment id and return at once."
            ),
        ]
    ):
        command = option(command)
    return command


@click.group()
def send() -> None:
    """Send an SMS or an email through the running API and follow it to a final status.

    Exit status: 0 when delivered (or handed off, with --no-follow), 1 when
    it failed or the API rejected it, 3 when it is not final within --wait.
    """


@send.command("sms")
@click.argument("number")
@click.argument("text")
@click.option("--sender", help="Sender id: up to 11 GSM characters, or a number.")
@common_send_options
@api_options
@json_option
def send_sms(
    number: str,
    text: str,
    sender: str | None,
    ttl_s: int | None,
    idempotency_id: str | None,
    reference: str | None,
    wait_s: float,
    no_follow: bool,
    api_url: str,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Send TEXT as an SMS to NUMBER in E.164 form, such as +4799999999.

    TEXT "-" reads standard input.
    """
    client = make_client(api_url, api_key)
    settings: dict[str, Any] = {"body": read_text(text)}
    if sender:
        settings["sender"] = sender
    body: dict[str, Any] = {
        "idempotencyId": idempotency_id or f"cli-{uuid.uuid4()}",
        "recipientSms": {
            "phoneNumber": number,
            "timeToLiveInSeconds": ttl_s or 300,
            "smsSettings": settings,
        },
    }
    if reference:
        body["sendersReference"] = reference
    place_and_follow(
        client,
        f"{API_PREFIX}/orders/instant/sms",
        body,
        follow=not no_follow,
        wait_s=wait_s,
        as_json=as_json,
    )


@send.command("email")
@click.argument("address")
@click.argument("text")
@click.option("--subject", required=True, help="Subject line.")
@click.option("--from", "sender", help="From address; default: the server's configured sender.")
@click.option("--html", is_flag=True, help="Send TEXT as HTML instead of plain text.")
@common_send_options
@api_options
@json_option
def send_email(
    address: str,
    text: str,
    subject: str,
    sender: str | None,
    html: bool,
    ttl_s: int | None,
    idempotency_id: str | None,
    reference: str | None,
    wait_s: float,
    no_follow: bool,
    api_url: str,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Send TEXT as an email to ADDRESS; TEXT "-" reads standard input."""
    client = make_client(api_url, api_key)
    settings: dict[str, Any] = {
        "subject": subject,
        "body": read_text(text),
        "contentType": "Html" if html else "Plain",
    }
    if sender:
        settings["senderEmailAddress"] = sender
    recipient: dict[str, Any] = {"emailAddress": address, "emailSettings": settings}
    if ttl_s:
        recipient["timeToLiveInSeconds"] = ttl_s
    body: dict[str, Any] = {
        "idempotencyId": idempotency_id or f"cli-{uuid.uuid4()}",
        "recipientEmail": recipient,
    }
    if reference:
        body["sendersReference"] = reference
    place_and_follow(
        client,
        f"{API_PREFIX}/orders/instant/email",
        body,
        follow=not no_follow,
        wait_s=wait_s,
        as_json=as_json,
    )


@click.command()
@click.argument("shipment_id")
@api_options
@json_option
def status(shipment_id: str, api_url: str, api_key: str | None, as_json: bool) -> None:
    """Print the status of shipment SHIPMENT_ID and of each of its recipients."""
    try:
        uuid.UUID(shipment_id)
    except ValueError:
        raise click.BadParameter(
            f"{shipment_id!r} is not a shipment id (a UUID that `budstikke send` printed)",
            param_hint="SHIPMENT_ID",
        ) from None
    client = make_client(api_url, api_key)
    _status, shipment = client.json("GET", f"{API_PREFIX}/shipment/{shipment_id}")
    if as_json:
        click.echo(json.dumps(shipment))
        return
    click.echo(f"shipment  {shipment.get('shipmentId')}")
    if shipment.get("sendersReference"):
        click.echo(f"reference {shipment['sendersReference']}")
    click.echo(f"status    {shipment.get('status')} (updated {shipment.get('lastUpdate')})")
    for recipient in shipment.get("recipients") or []:
        click.echo(
            f"  {recipient.get('type', '?'):5} {recipient.get('destination', '')}  "
            f"{recipient.get('status')}  {recipient.get('lastUpdate')}"
        )


@click.command()
@click.option(
    "--seq",
    type=click.IntRange(0, INT64_MAX),
    default=0,
    show_default=True,
    help="Print entries after this sequence number.",
)
@click.option("--follow", is_flag=True, help="Keep printing new entries until interrupted.")
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@api_options
@json_option
def feed(
    seq: int, follow: bool, interval_s: float, api_url: str, api_key: str | None, as_json: bool
) -> None:
    """Print the status feed: one entry per order that reached a final status.

    With --json each entry is one line of JSON. Ctrl-C stops --follow.
    """
    client = make_client(api_url, api_key)
    after = seq
    try:
        while True:
            _status, entries = client.json(
                "GET", f"{API_PREFIX}/shipment/feed", params={"seq": after}
            )
            for entry in entries:
                after = max(after, int(entry.get("sequenceNumber", after)))
                click.echo(json.dumps(entry) if as_json else format_feed_entry(entry))
            if not follow:
                return
            if not entries:
                time.sleep(interval_s)
    except KeyboardInterrupt:
        return


def format_feed_entry(entry: dict[str, Any]) -> str:
    return (
        f"{entry.get('sequenceNumber', '?'):>6}  {entry.get('lastUpdate', '')}  "
        f"{entry.get('shipmentId', '')}  {entry.get('status', '')}  {recipient_summary(entry)}"
    )


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
@click.pass_context
def completion(context: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash: eval "$(budstikke completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(budstikke completion zsh)"    (in ~/.zshrc)
    fish: budstikke completion fish > ~/.config/fish/completions/budstikke.fish
    """
    from click.shell_completion import get_completion_class

    root = context.find_root().command
    completion_class = get_completion_class(shell)
    assert completion_class is not None
    script = completion_class(root, {}, "budstikke", "_BUDSTIKKE_COMPLETE").source()
    click.echo(script)


def client_commands() -> list[click.Command]:
    """Return the commands that `budstikke` adds for talking to a running server."""
    return [send, status, feed, completion]
