"""The exception tree: every error budstikke raises on purpose derives from BudstikkeError."""

from __future__ import annotations

from budstikke.domain.statuses import NotificationStatus

# The last sentence of a 401 detail when the caller sent no API key or an
# unknown one. The command-line clients drop it and give their own hint, which
# also names their --api-key option.
CREATE_KEY_HINT = (
    "An operator of this service creates an API key with "
    "`budstikke apikey create --creator ORG`, where ORG is your organisation."
)


class BudstikkeError(Exception):
    """Base of every error budstikke raises on purpose."""


class ConfigurationError(BudstikkeError):
    """A setting has a value the service cannot run with."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class DatabaseUnavailableError(BudstikkeError):
    """The database could not be reached or answered with a connection-level error."""


class HandOffError(BudstikkeError):
    """A provider did not accept a message.

    `failure_status` is the final status for a permanent failure and None for a
    transient one, which the dispatcher retries while the TTL lasts.
    `outcome_unknown` is set when the message may have reached the provider
    (a response timed out or the connection dropped after the request went out),
    so a retry can deliver it twice.
    """

    def __init__(
        self,
        reason: str,
        *,
        failure_status: NotificationStatus | None = None,
        retry_after_s: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure_status = failure_status
        self.retry_after_s = retry_after_s
        self.outcome_unknown = outcome_unknown

    @property
    def is_transient(self) -> bool:
        return self.failure_status is None
