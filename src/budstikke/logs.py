"""Log formatting, configured once by the CLI: text lines for people or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

# Attributes every LogRecord has; anything else was passed in `extra`.
STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn adds a copy of its message with ANSI colour codes for its own formatter.
    "color_message",
}


def record_context(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in STANDARD_ATTRIBUTES and value is not None
    }


def printable(value: object) -> str:
    """Return the value as text with line breaks and other control characters escaped.

    Values can come from outside, such as the text of an SMSC's receipt, and
    a line break in one would start a forged log line.
    """
    text = str(value)
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


class TextFormatter(logging.Formatter):
    """`2026-12-04T10:15:02.118Z INFO budstikke.dispatch hand-off accepted key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        context = " ".join(
            f"{key}={printable(value)}" for key, value in record_context(record).items()
        )
        stamp = moment.replace("+00:00", "Z")
        line = f"{stamp} {record.levelname} {record.name} {printable(record.getMessage())}"
        if context:
            line += f" {context}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, object] = {
            "time": moment.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_context(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# Identical failure lines within this many seconds are counted, not repeated.
REPEAT_WINDOW_S = 60.0
# The `extra` fields that tell one failure from another, in order of preference.
REASON_FIELDS = ("reason", "error", "error_code", "status")


@dataclass(slots=True)
class _RepeatWindow:
    first: logging.LogRecord
    started: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Write the first of identical failure lines, and count the ones that follow.

    A failure is a record at WARNING or above that carries an `event` in its
    extra. A record below WARNING with an `event` is counted the same way when
    its extra sets `count_repeats` to True, for routine lines that a peer can
    trigger at any rate. Two failures are identical when their logger, event
    and reason match; the reason is the first of REASON_FIELDS present, else the message
    template. Ids such as `notification_id` are left out of the comparison,
    so one broken gateway failing a thousand notifications writes one line.
    A summary line with the count (event `log_repeated`) goes to `sink` when
    the window ends, when the same logger and event report another reason,
    and on `close`. Other records pass unchanged.
    """

    def __init__(
        self,
        sink: Callable[[logging.LogRecord], object],
        *,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        use_timer: bool = True,
    ) -> None:
        super().__init__()
        self.sink = sink
        self.window_s = window_s
        self.clock = clock
        self.use_timer = use_timer
        self._windows: dict[tuple[str, str, str], _RepeatWindow] = {}
        self._latest_key: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_summary", False):
            return True
        self.flush_expired()
        event = getattr(record, "event", None)
        counted = record.levelno >= logging.WARNING or getattr(record, "count_repeats", False)
        if not counted or not isinstance(event, str):
            return True
        key = (record.name, event, failure_reason(record))
        summaries: list[logging.LogRecord] = []
        with self._lock:
            now = self.clock()
            previous_key = self._latest_key.get(key[:2])
            if previous_key is not None and previous_key != key:
                summaries.extend(self._close_window(previous_key, now))
            self._latest_key[key[:2]] = key
            window = self._windows.get(key)
            write = window is None or now - window.started >= self.window_s
            if write:
                summaries.extend(self._close_window(key, now))
                self._windows[key] = _RepeatWindow(first=record, started=now)
            else:
                assert window is not None
                window.suppressed += 1
                self._schedule_flush(window.started + self.window_s - now)
        for summary in summaries:
            self.sink(summary)
        return write

    def flush_expired(self) -> None:
        """Write the summaries of windows that have ended."""
        with self._lock:
            now = self.clock()
            ended = [
                key
                for key, window in self._windows.items()
                if now - window.started >= self.window_s
            ]
            summaries = [summary for key in ended for summary in self._close_window(key, now)]
        for summary in summaries:
            self.sink(summary)

    def close(self) -> None:
        """Write the summary of every open window and stop the timer."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            now = self.clock()
            summaries = [
                summary for key in list(self._windows) for summary in self._close_window(key, now)
            ]
        for summary in summaries:
            self.sink(summary)

    def _close_window(self, key: tuple[str, str, str], now: float) -> list[logging.LogRecord]:
        window = self._windows.pop(key, None)
        if window is None or window.suppressed == 0:
            return []
        return [summary_record(window.first, window.suppressed, now - window.started)]

    def _schedule_flush(self, delay_s: float) -> None:
        if not self.use_timer or self._timer is not None:
            return
        self._timer = threading.Timer(max(delay_s, 0.0), self._on_timer)
        self._timer.daemon = True
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush_expired()
        with self._lock:
            pending = [window for window in self._windows.values() if window.suppressed]
            if pending:
                now = self.clock()
                next_end = min(window.started for window in pending) + self.window_s
                self._schedule_flush(next_end - now)


def failure_reason(record: logging.LogRecord) -> str:
    for field in REASON_FIELDS:
        value = getattr(record, field, None)
        if value is not None:
            return str(value)
    return str(record.msg)


def summary_record(first: logging.LogRecord, count: int, elapsed_s: float) -> logging.LogRecord:
    """Build the line that counts how often a failure repeated after `first` was written."""
    kind = "failure" if first.levelno >= logging.WARNING else "line"
    summary = logging.makeLogRecord(
        {
            "name": first.name,
            "levelno": first.levelno,
            "levelname": first.levelname,
            "msg": "previous %s repeated %d more %s in %.0f s: %s",
            "args": (
                kind,
                count,
                "time" if count == 1 else "times",
                elapsed_s,
                first.getMessage(),
            ),
            "event": "log_repeated",
            "repeated_event": getattr(first, "event", None),
            "reason": failure_reason(first),
            "count": count,
            "repeat_summary": True,
        }
    )
    return summary


class RepeatCountingHandler(logging.StreamHandler[TextIO]):
    """A stream handler with a RepeatFilter whose counts are written when it closes."""

    def __init__(self, stream: TextIO, *, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__(stream)
        self.repeat_filter = RepeatFilter(self.handle, window_s=window_s)
        self.addFilter(self.repeat_filter)

    def close(self) -> None:
        self.repeat_filter.close()
        super().close()


def configure_logging(level: str, log_format: str) -> None:
    handler = RepeatCountingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print every request line, query strings included.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Alembic reports every migration context at INFO on each start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: message
    # bodies (one-time codes among them) and phone numbers.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    # httpx logs the full URL of every request at INFO, and condition endpoint
    # URLs can carry access tokens or personal data in their query strings.
    # httpcore writes request details at DEBUG.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
