"""Log lines: text and JSON formats, and repeated failures counted instead of written."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time

from budstikke.logs import JsonFormatter, RepeatCountingHandler, RepeatFilter, TextFormatter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_record(
    *,
    event: str | None = "hand_off_retry",
    reason: str | None = "connection refused",
    level: int = logging.WARNING,
    message: str = "hand-off failed; will retry",
    **extra: object,
) -> logging.LogRecord:
    fields: dict[str, object] = {
        "name": "budstikke.dispatch.dispatcher",
        "levelno": level,
        "levelname": logging.getLevelName(level),
        "msg": message,
        "args": (),
        **extra,
    }
    if event is not None:
        fields["event"] = event
    if reason is not None:
        fields["reason"] = reason
    return logging.makeLogRecord(fields)


class Collected:
    """A filter with a fake clock, and the records it let through or summarised."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.clock = FakeClock()
        self.summaries: list[logging.LogRecord] = []
        self.filter = RepeatFilter(
            self.summaries.append, window_s=window_s, clock=self.clock, use_timer=False
        )

    def passes(self, record: logging.LogRecord) -> bool:
        return self.filter.filter(record)


def test_first_failure_written_repeats_counted() -> None:
    collected = Collected()

    written = [collected.passes(make_record(notification_id=str(i))) for i in range(5)]

    assert written == [True, False, False, False, False]
    assert collected.summaries == []


def test_summary_written_when_window_ends() -> None:
    collected = Collected(window_s=60)
    for _ in range(4):
        collected.passes(make_record())

    collected.clock.now += 61
    collected.filter.flush_expired()

    assert len(collected.summaries) == 1
    summary = collected.summaries[0]
    assert summary.event == "log_repeated"  # type: ignore[attr-defined]
    assert summary.count == 3  # type: ignore[attr-defined]
    assert summary.repeated_event == "hand_off_retry"  # type: ignore[attr-defined]
    assert summary.reason == "connection refused"  # type: ignore[attr-defined]
    assert summary.levelno == logging.WARNING
    assert "repeated 3 more times in 61 s" in summary.getMessage()


def test_single_repeat_is_singular() -> None:
    collected = Collected(window_s=60)
    for _ in range(2):
        collected.passes(make_record())

    collected.clock.now += 61
    collected.filter.flush_expired()

    assert "repeated 1 more time in 61 s" in collected.summaries[0].getMessage()


def test_failure_after_window_is_written_again() -> None:
    collected = Collected(window_s=60)
    collected.passes(make_record())
    collected.passes(make_record())

    collected.clock.now += 60
    written = collected.passes(make_record())

    assert written is True
    assert [summary.count for summary in collected.summaries] == [1]  # type: ignore[attr-defined]


def test_changed_reason_flushes_previous_count() -> None:
    collected = Collected()
    collected.passes(make_record(reason="connection refused"))
    collected.passes(make_record(reason="connection refused"))

    written = collected.passes(make_record(reason="421 service closing"))

    assert written is True
    assert len(collected.summaries) == 1
    assert collected.summaries[0].reason == "connection refused"  # type: ignore[attr-defined]
    assert collected.summaries[0].count == 1  # type: ignore[attr-defined]


def test_old_reason_after_change_is_written() -> None:
    collected = Collected()
    collected.passes(make_record(reason="A"))
    collected.passes(make_record(reason="B"))

    assert collected.passes(make_record(reason="A")) is True


def test_no_summary_without_repeats() -> None:
    collected = Collected()
    collected.passes(make_record())
    collected.clock.now += 120
    collected.filter.flush_expired()
    collected.filter.close()

    assert collected.summaries == []


def test_info_and_unnamed_records_always_pass() -> None:
    collected = Collected()

    info = [collected.passes(make_record(level=logging.INFO)) for _ in range(3)]
    unnamed = [collected.passes(make_record(event=None)) for _ in range(3)]

    assert info == [True, True, True]
    assert unnamed == [True, True, True]


def test_events_and_loggers_counted_apart() -> None:
    collected = Collected()
    collected.passes(make_record(event="hand_off_retry"))

    other_event = collected.passes(make_record(event="smtp_connection_failed"))
    other_logger = make_record(event="hand_off_retry")
    other_logger.name = "budstikke.channels.smtp"

    assert other_event is True
    assert collected.passes(other_logger) is True


def test_reason_falls_back_to_error_then_message() -> None:
    collected = Collected()
    by_error = make_record(reason=None, error="timeout")
    by_message = make_record(reason=None, message="database unavailable")

    assert collected.passes(by_error) is True
    assert collected.passes(by_error) is False
    assert collected.passes(make_record(reason=None, error="refused")) is True
    assert collected.passes(by_message) is True
    assert collected.passes(by_message) is False


def test_info_counted_when_record_asks() -> None:
    collected = Collected()

    def unmatched() -> logging.LogRecord:
        return make_record(
            event="report_unmatched",
            reason=None,
            level=logging.INFO,
            message="delivery report kept unmatched",
            count_repeats=True,
        )

    written = [collected.passes(unmatched()) for _ in range(4)]
    collected.filter.close()

    assert written == [True, False, False, False]
    [summary] = collected.summaries
    assert summary.count == 3  # type: ignore[attr-defined]
    assert summary.levelno == logging.INFO
    assert summary.getMessage() == (
        "previous line repeated 3 more times in 0 s: delivery report kept unmatched"
    )


def test_close_writes_pending_summary() -> None:
    collected = Collected()
    for _ in range(3):
        collected.passes(make_record())

    collected.filter.close()

    assert [summary.count for summary in collected.summaries] == [2]  # type: ignore[attr-defined]


def test_timer_writes_summary_without_new_lines() -> None:
    stream = io.StringIO()
    handler = RepeatCountingHandler(stream, window_s=0.2)
    handler.setFormatter(TextFormatter())
    try:
        for _ in range(3):
            handler.handle(make_record())
        deadline = time.monotonic() + 5
        while "log_repeated" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        handler.close()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "event=hand_off_retry" in lines[0]
    assert "event=log_repeated" in lines[1]
    assert "count=2" in lines[1]


def test_json_formatter_keeps_context() -> None:
    record = make_record(notification_id="n-1")

    entry = json.loads(JsonFormatter().format(record))

    assert entry["level"] == "WARNING"
    assert entry["event"] == "hand_off_retry"
    assert entry["notification_id"] == "n-1"
    assert entry["message"] == "hand-off failed; will retry"
    assert entry["time"].endswith("Z")


def test_configured_json_logs_count_repeats_at_exit() -> None:
    script = (
        "import logging\n"
        "from budstikke.logs import configure_logging\n"
        "configure_logging('INFO', 'json')\n"
        "log = logging.getLogger('budstikke.test')\n"
        "log.info('service started', extra={'event': 'service_started'})\n"
        "for i in range(4):\n"
        "    log.warning('send failed', extra={'event': 'send_failed', 'reason': 'refused',"
        " 'notification_id': str(i)})\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )

    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert [entry["event"] for entry in entries] == [
        "service_started",
        "send_failed",
        "log_repeated",
    ]
    assert entries[1]["notification_id"] == "0"
    assert entries[2]["count"] == 3
    assert entries[2]["repeated_event"] == "send_failed"


def test_text_logs_are_the_default_format() -> None:
    script = (
        "import logging\n"
        "from budstikke.logs import configure_logging\n"
        "configure_logging('INFO', 'text')\n"
        "logging.getLogger('budstikke.test').info('ready', extra={'event': 'ready', 'port': 1})\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )

    line = result.stderr.strip()
    assert " INFO budstikke.test ready event=ready port=1" in line
    assert not line.startswith("{")


def test_httpx_request_urls_not_logged() -> None:
    # One real request to a loopback server at each log level. Without a
    # WARNING level on its logger, httpx writes the URL and query at INFO.
    script = (
        "import http.server, logging, threading\n"
        "import httpx\n"
        "from budstikke.logs import configure_logging\n"
        "class Handler(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200)\n"
        "        self.send_header('Content-Length', '0')\n"
        "        self.end_headers()\n"
        "    def log_message(self, *args):\n"
        "        pass\n"
        "server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        "url = f'http://127.0.0.1:{server.server_port}/check?token=secret-token-1'\n"
        "for level in ('INFO', 'DEBUG'):\n"
        "    configure_logging(level, 'text')\n"
        "    assert httpx.get(url, timeout=10).status_code == 200\n"
        "    logging.getLogger('budstikke.test').info('checked at %s', level)\n"
        "server.shutdown()\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )

    assert "budstikke.test checked at INFO" in result.stderr
    assert "budstikke.test checked at DEBUG" in result.stderr
    assert "secret-token-1" not in result.stderr
    assert "/check" not in result.stderr


def test_text_line_escapes_line_breaks_in_values() -> None:
    forged = "ABC\nFAKE 2026-12-05T13:06:00.000Z ERROR budstikke.api forged line"
    record = make_record(
        event="receipt_unknown_state", message="state %s unknown", message_id=forged
    )
    record.args = ("A\r\nB",)

    line = TextFormatter().format(record)

    assert "\n" not in line
    assert "\r" not in line
    assert "message_id=ABC\\nFAKE 2026" in line
    assert "state A\\r\\nB unknown" in line
