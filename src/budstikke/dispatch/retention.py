"""The worker's periodic retention pass: erase message bodies and prune rows no one needs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from budstikke.config import Settings
from budstikke.errors import DatabaseUnavailableError
from budstikke.store.database import Database
from budstikke.store.rate_limits import prune_recipient_sends
from budstikke.store.retention import ERASE_BATCH, erase_final_bodies, prune_unmatched_reports

logger = logging.getLogger(__name__)

# Seconds between retention passes; a pass that filled a whole batch is
# followed by another at the next turn of the worker loop.
RETENTION_INTERVAL_S = 10.0
DEFAULT_INSTANT_RETENTION = timedelta(0)
DEFAULT_REGULAR_RETENTION = timedelta(days=30)


def retention_periods(settings: Settings) -> tuple[timedelta, timedelta]:
    """Return how long bodies of instant and of regular orders are kept after the final status."""
    if settings.body_retention_s is not None:
        both = timedelta(seconds=settings.body_retention_s)
        return both, both
    return DEFAULT_INSTANT_RETENTION, DEFAULT_REGULAR_RETENTION


class RetentionPass:
    def __init__(
        self,
        database: Database,
        *,
        instant_retention: timedelta,
        regular_retention: timedelta,
        interval_s: float = RETENTION_INTERVAL_S,
        batch: int = ERASE_BATCH,
    ) -> None:
        self.database = database
        self.instant_retention = instant_retention
        self.regular_retention = regular_retention
        self.interval = timedelta(seconds=interval_s)
        self.batch = batch
        self._next_run_at = datetime.min.replace(tzinfo=UTC)

    async def run_if_due(self, now: datetime) -> None:
        """Erase what is due and prune old rows, at most once per interval.

        Errors are logged and never raised: a failed pass must not stop the
        worker loop from handing off messages, and the next pass retries.
        """
        if now < self._next_run_at:
            return
        self._next_run_at = now + self.interval
        try:
            erased = await erase_final_bodies(
                self.database,
                now=now,
                instant_retention=self.instant_retention,
                regular_retention=self.regular_retention,
                batch=self.batch,
            )
            pruned = await prune_recipient_sends(self.database, now)
            unmatched = await prune_unmatched_reports(self.database, now=now, batch=self.batch)
        except DatabaseUnavailableError as error:
            logger.warning(
                "retention pass skipped: database unavailable",
                extra={"event": "retention_failed", "error": str(error)[:200]},
            )
            return
        except Exception:
            logger.exception("retention pass failed", extra={"event": "retention_crashed"})
            return
        if erased.notifications or erased.regular_orders or pruned or unmatched:
            logger.info(
                "retention pass erased bodies or deleted old rows",
                extra={
                    "event": "bodies_erased",
                    "notifications": erased.notifications,
                    "regular_orders": erased.regular_orders,
                    "recipient_sends_pruned": pruned,
                    "unmatched_report_rows_pruned": unmatched,
                },
            )
        if max(erased.notifications, erased.regular_orders, unmatched) >= self.batch:
            self._next_run_at = now
