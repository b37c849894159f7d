"""The objects the routes work with, built once per application."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from fastapi import Request

from budstikke.api.auth import Authenticator, Principal
from budstikke.api.login_throttle import LoginThrottle
from budstikke.config import Settings
from budstikke.dispatch.dispatcher import Dispatcher
from budstikke.dispatch.instant import InstantOrders
from budstikke.dispatch.otp import OtpVerifications
from budstikke.dispatch.regular import RegularOrderProcessor, RegularOrders
from budstikke.store.database import Database


@dataclass
class Services:
    settings: Settings
    database: Database
    authenticator: Authenticator
    instant_orders: InstantOrders
    dispatcher: Dispatcher | None
    regular_orders: RegularOrders
    # Runs where the dispatcher's worker loop runs; None in an API-only process.
    regular_processor: RegularOrderProcessor | None = None
    # Set by start_services once the instant orders that carry the codes exist.
    otp: OtpVerifications | None = None
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)

    async def authenticate(self, request: Request) -> Principal:
        return await self.authenticator.authenticate(request.headers.get("authorization"))


def services_of(request: Request) -> Services:
    return cast(Services, request.app.state.services)
