"""`budstikke orders import`: post regular orders from a CSV or JSON Lines file.

Each order carries the idempotency id from its row or line, so running the
same file again is a resume: orders the server already has answer 200 and
are not sent twice, and only the missing ones are created.

JSON Lines: one request body of `POST /notifications/api/v1/future/orders`
per line, reminders included. CSV: a header row and one order per row, with
the columns listed in CSV_COLUMNS; a row names `phoneNumber` for an SMS or
`emailAddress` (with `subject`) for an email. A CSV value that contains a
comma or a line break must be in double quotes, and a row with more or fewer
fields than the header is rejected, as is a row with both `phoneNumber` and
email cells. In both formats a line that repeats an earlier line's
idempotency id is rejected, because the server would return the earlier
order's ids for it and store nothing. Both formats are read as UTF-8, with
or without a byte order mark.

The file is read twice and is never held in memory whole. A first pass
counts the orders and rejects a file that cannot be read, and the second
reads each order when a worker is ready to post it. Only the idempotency ids stay in
memory, for the check of repeated ids.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import email.utils
import io
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import click
import httpx

from budstikke.cli_client import API_PREFIX, ApiError, api_options, make_client
from budstikke.errors import CREATE_KEY_HINT
from budstikke.request_throttle import RequestThrottle

CSV_COLUMNS: Final = (
    "idempotencyId",
    "sendersReference",
    "requestedSendTime",
    "conditionEndpoint",
    "phoneNumber",
    "sender",
    "sendingTimePolicy",
    "emailAddress",
    "senderEmailAddress",
    "subject",
    "contentType",
    "body",
)
# Cells that only an email order uses.
EMAIL_ONLY_COLUMNS: Final = ("emailAddress", "senderEmailAddress", "subject", "contentType")
REQUEST_TIMEOUT_S: Final = 30.0
# Responses worth another try within MAX_ATTEMPTS: database unavailable and
# gateway errors. A 429 is waited out apart, see MAX_RATE_LIMIT_WAIT_S.
RETRY_STATUSES: Final = frozenset({502, 503, 504})
# Failures to reach the server at all: nothing listening, a TLS handshake
# with a plain-HTTP port, or no connection within the timeout.
CONNECTION_FAILURES: Final = (httpx.ConnectError, httpx.ConnectTimeout)
MAX_ATTEMPTS: Final = 5
FIRST_RETRY_S: Final = 0.5
# A line that still gets 429 after this long fails, so that a limit that
# lasts hours, such as a per-day one, fails lines instead of stalling the import.
MAX_RATE_LIMIT_WAIT_S: Final = 600.0
# Keeps a server that sends "Retry-After: 0" from getting a tight loop.
MIN_RATE_LIMIT_WAIT_S: Final = 0.1
# The maximum wait after a 429 that gives no Retry-After.
MAX_RATE_LIMIT_PAUSE_S: Final = 60.0
RETRY_HINT: Final = re.compile(r"retry after (\d{1,9}) s", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One order read from the file; `body` is None when the line could not be read."""

    line: int
    body: dict[str, Any] | None
    error: str = ""


class ImportStoppedError(Exception):
    """A failure that every later order would meet too, such as a wrong --api-url or --api-key.

    The message is the one line shown to the user.
    """


@dataclass(slots=True)
class ImportTally:
    created: int = 0
    existing: int = 0
    failures: list[str] = field(default_factory=list)
    # Why the import stopped before it tried every order; empty when it did not stop.
    stop_reason: str = ""

    @property
    def posted(self) -> int:
        return self.created + self.existing


def read_orders(path: Path, file_format: str) -> Iterator[OrderLine]:
    """Yield the orders of a file, with the line number that error messages name.

    A later line that repeats an earlier line's idempotencyId is yielded as
    an error, because the server would return the earlier order's ids for it.
    """
    first_lines: dict[str, int] = {}
    for order in read_order_lines(path, file_format):
        yield reject_repeated_id(order, first_lines)


def reject_repeated_id(order: OrderLine, first_lines: dict[str, int]) -> OrderLine:
    if order.body is None:
        return order
    idempotency_id = order.body.get("idempotencyId")
    if not isinstance(idempotency_id, str) or not idempotency_id.strip():
        return order
    first = first_lines.setdefault(idempotency_id, order.line)
    if first == order.line:
        return order
    return OrderLine(
        order.line,
        None,
        f"idempotencyId {idempotency_id!r} is also used on line {first}, so the server would "
        "store only that line's order. Give every order its own idempotencyId",
    )


def count_orders(path: Path, file_format: str) -> int:
    """Count the orders in a file without keeping them.

    Raises click.UsageError, before any order is posted, for a file that is
    not UTF-8, has an unknown CSV column, or has a CSV record that cannot be read.
    """
    if file_format == "jsonl":
        return sum(1 for line in read_text_lines(path) if line.strip())
    return sum(1 for _order in read_order_lines(path, file_format))


def read_order_lines(path: Path, file_format: str) -> Iterator[OrderLine]:
    text = read_text_lines(path)
    if file_format == "jsonl":
        for number, line in enumerate(text, start=1):
            if line.strip():
                yield parse_json_line(number, line)
        return
    # strict: an unterminated quote raises csv.Error instead of swallowing every
    # later row into one field.
    reader = csv.reader(text, strict=True)
    header = next_csv_record(path, reader) or []
    unknown = set(header) - set(CSV_COLUMNS)
    if unknown:
        raise click.UsageError(
            f"{path}: unknown CSV column(s) {', '.join(repr(name) for name in sorted(unknown))}. "
            f"The columns are {', '.join(CSV_COLUMNS)}{describe_separator_hint(header)}"
        )
    while (values := next_csv_record(path, reader)) is not None:
        if not values:
            continue
        if len(values) != len(header):
            # An unquoted comma in a body adds a field, and matching the values to
            # the header would then send "Hello, your case" as "Hello".
            yield OrderLine(reader.line_num, None, describe_field_count(len(values), len(header)))
            continue
        row = dict(zip(header, values, strict=True))
        conflict = describe_channel_conflict(row)
        if conflict:
            yield OrderLine(reader.line_num, None, conflict)
            continue
        yield OrderLine(reader.line_num, order_from_row(row))


def next_csv_record(path: Path, reader: Any) -> list[str] | None:
    """Return the next CSV record, or None at the end of the file.

    Raises click.UsageError naming the line the unreadable record starts on.
    """
    start_line = reader.line_num + 1
    try:
        return list(next(reader))
    except StopIteration:
        return None
    except csv.Error as error:
        raise click.UsageError(
            f"{path}: the CSV record that starts on line {start_line} cannot be read ({error}). "
            "Close every double quote that opens a value, write a double quote inside a "
            'quoted value twice (""), and keep each value under '
            f"{csv.field_size_limit() // 1024} KiB"
        ) from None


def read_text_lines(path: Path) -> Iterator[str]:
    r"""Yield the lines of a UTF-8 file, without the byte order mark that Excel writes.

    Lines keep their endings and end at "\n", "\r\n" or a lone "\r", as in a
    file opened with newline="". Raises click.UsageError naming the line and
    offset of the first byte that is not UTF-8, such as a Windows-1252 "å".
    """
    offset = 0
    with path.open("rb") as file:
        # Each chunk ends at b"\n", which is never part of a multi-byte UTF-8
        # character, so every chunk decodes on its own.
        for line_number, chunk in enumerate(file, start=1):
            start = 0
            if line_number == 1 and chunk.startswith(codecs.BOM_UTF8):
                start = len(codecs.BOM_UTF8)
            try:
                text = chunk[start:].decode("utf-8")
            except UnicodeDecodeError as error:
                position = start + error.start
                raise click.UsageError(
                    f"{path}: line {line_number} is not valid UTF-8 (byte "
                    f"0x{chunk[position]:02x} at offset {offset + position}); save the file "
                    'as UTF-8, e.g. as "CSV UTF-8" in Excel'
                ) from None
            offset += len(chunk)
            yield from io.StringIO(text, newline="")


def describe_field_count(found: int, expected: int) -> str:
    if found > expected:
        return (
            f"{found} fields where the header has {expected} columns; put a value that "
            'contains a comma in double quotes, e.g. "Hello, your case was updated"'
        )
    return (
        f"{found} fields where the header has {expected} columns; give every column, with "
        "empty cells as nothing between two commas, and put a value that contains a line "
        "break in double quotes"
    )


def reject_json_constant(name: str) -> Any:
    """Raise for NaN and Infinity, which Python's json reads but JSON does not allow."""
    raise ValueError(f"{name} is not a JSON value")


def describe_separator_hint(header: list[str]) -> str:
    """Return a hint for a header written with semicolons, as spreadsheets in many locales do."""
    if len(header) == 1 and ";" in header[0]:
        return ". The values are separated by semicolons; save the file with commas instead"
    return ""


def parse_json_line(number: int, text: str) -> OrderLine:
    try:
        body = json.loads(text.rstrip("\r\n"), parse_constant=reject_json_constant)
    except json.JSONDecodeError as error:
        return OrderLine(
            number,
            None,
            f"not valid JSON at column {error.colno}: {error.msg}. Each line must be one "
            "complete JSON object",
        )
    except ValueError as error:
        return OrderLine(number, None, f"not valid JSON: {error}")
    except RecursionError:
        return OrderLine(number, None, "not valid JSON: it is nested too deeply")
    if not isinstance(body, dict):
        return OrderLine(number, None, "the line must be a JSON object")
    return OrderLine(number, body)


def describe_channel_conflict(row: dict[str, str]) -> str:
    """Return why a row names both an SMS and an email, or "" when it names one channel.

    A row with a phoneNumber becomes an SMS, so its email cells would be dropped
    without a word.
    """
    if not row.get("phoneNumber", "").strip():
        return ""
    email_cells = [name for name in EMAIL_ONLY_COLUMNS if row.get(name, "").strip()]
    if not email_cells:
        return ""
    return (
        f"the row has phoneNumber and also {', '.join(email_cells)}, but one row is one SMS "
        "or one email. Put the email in a row of its own with its own idempotencyId"
    )


def order_from_row(row: dict[str, str]) -> dict[str, Any]:
    """Build a request body from a CSV row; empty cells mean absent."""
    cell = {name: (value or "").strip() for name, value in row.items() if name}
    body: dict[str, Any] = {"idempotencyId": cell.get("idempotencyId", "")}
    for name in ("sendersReference", "requestedSendTime", "conditionEndpoint"):
        if cell.get(name):
            body[name] = cell[name]
    if cell.get("phoneNumber"):
        settings = {"body": row.get("body") or ""}
        for name in ("sender", "sendingTimePolicy"):
            if cell.get(name):
                settings[name] = cell[name]
        body["recipient"] = {
            "recipientSms": {"phoneNumber": cell["phoneNumber"], "smsSettings": settings}
        }
    else:
        settings = {"subject": cell.get("subject", ""), "body": row.get("body") or ""}
        for name in ("senderEmailAddress", "contentType"):
            if cell.get(name):
                settings[name] = cell[name]
        body["recipient"] = {
            "recipientEmail": {
                "emailAddress": cell.get("emailAddress", ""),
                "emailSettings": settings,
            }
        }
    return body


def describe_rejection(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if isinstance(errors, dict):
        return "; ".join(
            f"{path}: {' '.join(map(str, messages))}" for path, messages in errors.items()
        )
    detail = problem.get("detail") or problem.get("title") if isinstance(problem, dict) else None
    return f"HTTP {response.status_code}: {detail}"


def describe_connection_failure(api_url: str, error: httpx.HTTPError) -> str:
    return (
        f"cannot connect to budstikke at {api_url}: {type(error).__name__}: {error}. Start it "
        "with `budstikke serve`, or point --api-url (BUDSTIKKE_API_URL) at it, with https:// "
        "only if it serves TLS."
    )


def describe_key_rejection(response: httpx.Response) -> str:
    detail = describe_rejection(response).removeprefix("HTTP ")
    if response.status_code == 401:
        detail = detail.replace(CREATE_KEY_HINT, "").strip()
        return (
            f"the API key was rejected ({detail}). Create one with `budstikke apikey create "
            "--creator ORG` and pass it with --api-key or BUDSTIKKE_API_KEY."
        )
    return (
        f"the API key may not place orders ({detail}). Pass a key with the scope "
        "altinn:serviceowner/notifications.create, from `budstikke apikey create --creator "
        "ORG`, with --api-key or BUDSTIKKE_API_KEY."
    )


async def post_order(
    client: httpx.AsyncClient, order: OrderLine, tally: ImportTally, throttle: RequestThrottle
) -> None:
    """Post one order, or add the reason it cannot be posted to the tally's failures."""
    problem = describe_unpostable(order)
    if not problem:
        problem = await post_with_retries(client, order, tally, throttle)
    if problem:
        tally.failures.append(f"line {order.line}: {problem}")


def describe_unpostable(order: OrderLine) -> str:
    if order.body is None:
        return order.error
    if not str(order.body.get("idempotencyId") or "").strip():
        return (
            "idempotencyId is missing; every order needs one so that a repeated import does "
            "not send it twice"
        )
    return ""


async def post_with_retries(
    client: httpx.AsyncClient, order: OrderLine, tally: ImportTally, throttle: RequestThrottle
) -> str:
    """Post the order until it is stored; return why it failed, or "" once it is stored.

    A 429 is waited out for up to MAX_RATE_LIMIT_WAIT_S without using up
    an attempt. Other retryable responses and failures get MAX_ATTEMPTS
    attempts. Raises ImportStoppedError for a 401 or 403, and for a
    connection failure while no order has been posted yet, because every
    later order would fail the same way. A connection failure after an order
    was posted is retried, as the server may be restarting. Also raises
    ImportStoppedError before a retry once another order stopped the import.
    """
    assert order.body is not None
    attempt = 0
    pause_s = FIRST_RETRY_S
    rate_limit = RateLimitWaits()
    while True:
        if tally.stop_reason:
            raise ImportStoppedError(tally.stop_reason)
        async with throttle.slot():
            response = await send_order(client, order.body, tally)
        if isinstance(response, str):
            problem = response
        elif response.status_code in (200, 201):
            record_stored(response, tally)
            await throttle.record_success()
            return ""
        elif response.status_code == 429:
            wait_s = rate_limit.next_wait_s(response)
            if wait_s is None:
                return f"{describe_rejection(response)} ({rate_limit.describe_end()})"
            throttle.record_rate_limited(wait_s)
            continue
        elif response.status_code in RETRY_STATUSES:
            problem = describe_rejection(response)
            pause_s = max(pause_s, read_retry_after_s(response) or 0.0)
        else:
            return describe_rejection(response)
        attempt += 1
        if attempt == MAX_ATTEMPTS:
            return f"{problem} (after {attempt} attempts)"
        await asyncio.sleep(pause_s)
        pause_s *= 2


@dataclass(slots=True)
class RateLimitWaits:
    """The waits that 429 responses requested for one order."""

    # time.monotonic() after which a 429 fails the order; set by the first 429.
    deadline: float | None = None
    # The wait after a 429 that names none; doubles with each such 429.
    next_pause_s: float = FIRST_RETRY_S
    # The wait the latest 429 requested.
    requested_s: float = 0.0

    def next_wait_s(self, response: httpx.Response) -> float | None:
        """Return the seconds to wait before the next try, or None past the deadline."""
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + MAX_RATE_LIMIT_WAIT_S
        wait_s = read_retry_after_s(response)
        if wait_s is None:
            wait_s = self.next_pause_s
            self.next_pause_s = min(self.next_pause_s * 2, MAX_RATE_LIMIT_PAUSE_S)
        wait_s = max(wait_s, MIN_RATE_LIMIT_WAIT_S)
        self.requested_s = wait_s
        return None if now + wait_s > self.deadline else wait_s

    def describe_end(self) -> str:
        """Describe why the waiting ended, for an order that failed on a 429."""
        assert self.deadline is not None
        waited_s = time.monotonic() - (self.deadline - MAX_RATE_LIMIT_WAIT_S)
        return (
            f"rate limited: waited {waited_s:.0f} s, and the server requests {self.requested_s:g} "
            f"s more, past the {MAX_RATE_LIMIT_WAIT_S:g} s this import waits for one order. "
            "Import the file again later: stored orders are not sent twice"
        )


async def send_order(
    client: httpx.AsyncClient, body: dict[str, Any], tally: ImportTally
) -> httpx.Response | str:
    """Send one POST; return the response, or why no response came.

    Raises ImportStoppedError as post_with_retries describes.
    """
    try:
        response = await client.post(f"{API_PREFIX}/orders", json=body)
    except httpx.HTTPError as error:
        if isinstance(error, CONNECTION_FAILURES) and tally.posted == 0:
            api_url = str(client.base_url).rstrip("/")
            raise ImportStoppedError(describe_connection_failure(api_url, error)) from None
        return f"request failed: {type(error).__name__}: {error}"
    if response.status_code in (401, 403):
        raise ImportStoppedError(describe_key_rejection(response))
    return response


def record_stored(response: httpx.Response, tally: ImportTally) -> None:
    if response.status_code == 201:
        tally.created += 1
    else:
        tally.existing += 1


def read_retry_after_s(response: httpx.Response) -> float | None:
    """Return the wait a response requests, in seconds, or None when it gives none.

    The Retry-After header may give seconds or an HTTP date. Without it, a
    "Retry after N s" in the problem detail, as budstikke writes it, is read.
    """
    header = response.headers.get("retry-after", "").strip()
    if header.isascii() and header.isdigit():
        return float(header)
    if header:
        try:
            moment = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    match = RETRY_HINT.search(response.text)
    return float(match.group(1)) if match else None


async def import_orders(
    orders: Iterator[OrderLine],
    *,
    order_count: int,
    api_url: str,
    api_key: str,
    concurrency: int,
    show_progress: bool,
) -> ImportTally:
    """Post the orders with `concurrency` workers, which share the one iterator.

    Each worker takes the next order only when it is ready to post it, so
    no more than `concurrency` orders are held at once.
    """
    tally = ImportTally()
    headers = {"Authorization": f"Bearer {api_key}"}
    with click.progressbar(
        length=order_count,
        label="importing",
        file=sys.stderr,
        show_pos=True,
        hidden=not show_progress,
    ) as bar:
        throttle = RequestThrottle(concurrency)

        async def work(client: httpx.AsyncClient) -> None:
            # After a stop, the other workers finish the request they have in
            # flight and take no further order.
            while not tally.stop_reason and (order := next(orders, None)) is not None:
                try:
                    await post_order(client, order, tally, throttle)
                except ImportStoppedError as stopped:
                    tally.stop_reason = tally.stop_reason or str(stopped)
                    return
                bar.update(1)

        async with httpx.AsyncClient(
            base_url=api_url, headers=headers, timeout=REQUEST_TIMEOUT_S
        ) as client:
            await asyncio.gather(*(work(client) for _ in range(concurrency)))
    return tally


@click.group("orders")
def orders_group() -> None:
    """Place regular orders in bulk through the running API."""


@orders_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "jsonl"]),
    help="File format; default: from the file name (.csv, or .jsonl / .ndjson).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Requests in flight at once.",
)
@click.option("--no-progress", is_flag=True, help="Do not draw the progress bar.")
@api_options
def import_command(
    path: Path,
    file_format: str | None,
    concurrency: int,
    no_progress: bool,
    api_url: str,
    api_key: str | None,
) -> None:
    """Post every order in PATH (CSV or JSON Lines) as a regular order.

    Safe to run again after an interruption: each order's idempotencyId makes
    the server store it once. Exit status 1 when any order was rejected or
    could not be posted; the lines are listed on standard error.
    """
    client = make_client(api_url, api_key)
    file_format = file_format or guess_format(path)
    order_count = count_orders(path, file_format)
    started = time.monotonic()
    tally = asyncio.run(
        import_orders(
            read_orders(path, file_format),
            order_count=order_count,
            api_url=client.url,
            api_key=client.key,
            concurrency=concurrency,
            show_progress=not no_progress and sys.stderr.isatty(),
        )
    )
    for failure in sorted(tally.failures, key=line_number):
        click.echo(failure, err=True)
    elapsed = time.monotonic() - started
    click.echo(summarize(tally, order_count, elapsed))
    if tally.stop_reason:
        raise ApiError(
            f"{tally.stop_reason} The import stopped. Orders already posted stay stored, and "
            "running the same command again posts the rest."
        )
    if tally.failures:
        sys.exit(1)


def summarize(tally: ImportTally, order_count: int, elapsed_s: float) -> str:
    counts = (
        f"{tally.created} created, {tally.existing} already present, {len(tally.failures)} failed"
    )
    if tally.stop_reason:
        not_posted = order_count - tally.posted - len(tally.failures)
        counts += f", {not_posted} not posted"
    return f"{counts}, of {order_count} orders in {elapsed_s:.1f} s"


def guess_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise click.UsageError(
        f"cannot tell the format of {path.name} from its name; pass --format csv or --format jsonl"
    )


def line_number(failure: str) -> int:
    number = failure.removeprefix("line ").split(":", 1)[0]
    return int(number) if number.isdigit() else 0
