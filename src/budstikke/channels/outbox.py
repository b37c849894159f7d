"""The file outbox: each handed-off message becomes one JSON line in a file.

The outbox is a final destination, so a written message is delivered.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from budstikke.channels.base import (
    HandOffReceipt,
    OutgoingEmail,
    OutgoingMessage,
    ReportSink,
)
from budstikke.domain.statuses import DELIVERED_STATUS, Channel
from budstikke.errors import ConfigurationError, HandOffError


def outbox_path_from_url(url: str, setting: str) -> Path:
    """Return the file of a `file:PATH` URL (`file:///abs/path` works too)."""
    if not url.startswith("file:"):
        raise ConfigurationError(setting, f"expected file:PATH, got {url!r}")
    path = url[len("file:") :]
    if path.startswith("//"):
        path = path[2:]
    if not path:
        raise ConfigurationError(setting, "file: URL has no path; use file:/var/lib/outbox.jsonl")
    return Path(path)


class FileOutbox:
    """Appends messages of one channel to a JSON Lines file."""

    def __init__(self, channel: Channel, path: Path) -> None:
        self.channel = channel
        self.path = path
        self._lock = asyncio.Lock()
        self._error: str = ""

    async def start(self, report_sink: ReportSink) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    def is_ready(self) -> tuple[bool, str]:
        return (not self._error, self._error)

    def reference_keys(self, provider_ref: str) -> tuple[str, ...]:
        return (provider_ref,)

    async def hand_off(self, message: OutgoingMessage) -> HandOffReceipt:
        line = json.dumps(outbox_record(message), ensure_ascii=False) + "\n"
        async with self._lock:
            try:
                await asyncio.to_thread(append_line, self.path, line)
            except OSError as error:
                self._error = f"cannot write {self.path}: {error.strerror}"
                raise HandOffError(self._error) from error
        self._error = ""
        return HandOffReceipt(status=DELIVERED_STATUS[self.channel])


def outbox_record(message: OutgoingMessage) -> dict[str, object]:
    record: dict[str, object] = {
        "notificationId": str(message.notification_id),
        "channel": message.channel.value,
        "recipient": message.recipient,
        "sender": message.sender,
    }
    if isinstance(message, OutgoingEmail):
        record["subject"] = message.subject
        record["contentType"] = message.content_type
    record["body"] = message.body
    record["expiresAt"] = message.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    record["writtenAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return record


def append_line(path: Path, line: str) -> None:
    # One write() of a whole line on an O_APPEND descriptor keeps lines from
    # interleaving when several processes share the outbox.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)
