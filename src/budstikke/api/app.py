"""The application factory: routes, error handlers, and the services' lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError as FastApiValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from budstikke import __version__
from budstikke.api import (
    dashboard,
    health,
    metrics_endpoint,
    orders,
    otp,
    regular_orders,
    shipments,
    webhooks,
    whoami,
)
from budstikke.api.auth import AccessDenied, AuthenticationFailed, Authenticator
from budstikke.api.body import BodyTooLarge, ClientGone, UnsupportedContentType
from budstikke.api.crash_guard import CrashGuard
from budstikke.api.jwks import JwksVerifier
from budstikke.api.problems import (
    database_unavailable,
    problem,
    rate_limited,
    validation_problem,
)
from budstikke.api.services import Services
from budstikke.api.slow_clients import install_body_deadline
from budstikke.channels.base import Provider
from budstikke.config import Settings
from budstikke.dispatch.dispatcher import utc_now
from budstikke.dispatch.instant import InstantOrders
from budstikke.dispatch.otp import build_otp_verifications, load_checked_otp_key
from budstikke.dispatch.regular import RegularOrders, build_regular_processor
from budstikke.dispatch.runner import build_dispatcher, build_providers
from budstikke.domain.rate_limits import RateLimitExceededError
from budstikke.domain.request_fields import RequestValidationError
from budstikke.domain.statuses import Channel
from budstikke.errors import DatabaseUnavailableError
from budstikke.metrics import Metrics
from budstikke.store.creator_limits import CreatorLimitsSource
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    run_workers: bool = True,
    providers: Mapping[Channel, Provider] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the app; its lifespan migrates the database and runs the dispatcher."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await start_services(
            settings, run_workers=run_workers, providers=providers, clock=clock, metrics=metrics
        )
        app.state.services = services
        log_started(services, run_workers=run_workers)
        try:
            yield
        finally:
            await stop_services(services)
            logger.info("service stopped", extra={"event": "service_stopped"})

    app = FastAPI(
        title="budstikke",
        version=__version__,
        description="Instant SMS and email notifications with Altinn Notifications' "
        "instant-order API.",
        lifespan=lifespan,
        # A redirect from /path/ to /path is built from the Host header, which
        # the client controls, and makes clients send a POST body again.
        redirect_slashes=False,
    )
    app.include_router(orders.router)
    app.include_router(regular_orders.router)
    app.include_router(shipments.router)
    app.include_router(whoami.router)
    app.include_router(webhooks.router)
    app.include_router(otp.router)
    app.include_router(health.router)
    app.include_router(metrics_endpoint.router)
    app.include_router(dashboard.router)
    app.state.metrics = metrics
    # Innermost, so the rejection counter sees the 500 it answers.
    app.add_middleware(CrashGuard)
    app.add_middleware(metrics_endpoint.RejectionCounter, metrics=metrics)
    install_body_deadline(app, settings.request_body_timeout_s)
    install_error_handlers(app)
    return app


def log_started(services: Services, *, run_workers: bool) -> None:
    providers = services.dispatcher.providers if services.dispatcher is not None else {}
    logger.info(
        "service started",
        extra={
            "event": "service_started",
            "version": __version__,
            "database": "sqlite" if services.database.is_sqlite else "postgresql",
            "providers": ",".join(f"{c.value}={type(p).__name__}" for c, p in providers.items()),
            "workers": run_workers,
            "dashboard": bool(services.settings.operator_key),
        },
    )


async def start_services(
    settings: Settings,
    *,
    run_workers: bool,
    providers: Mapping[Channel, Provider] | None,
    clock: Callable[[], datetime] = utc_now,
    metrics: Metrics | None = None,
) -> Services:
    database = Database(
        settings.resolved_database_url,
        pool_size=settings.database_pool_size,
        checkpoint_in_background=True,
    )
    await upgrade_to_head(database)
    try:
        otp_key = await load_checked_otp_key(settings, database, now=clock())
    except BaseException:
        await database.dispose()
        raise
    jwks = None
    if settings.jwks_url:
        jwks = JwksVerifier(
            settings.jwks_url, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        await jwks.load()
    dispatcher = build_dispatcher(
        settings,
        database,
        providers if providers is not None else build_providers(settings),
        clock=clock,
        metrics=metrics,
    )
    await dispatcher.start_providers()
    regular_processor = None
    if run_workers:
        dispatcher.start_worker()
        regular_processor = build_regular_processor(
            settings,
            database,
            on_stored=dispatcher.wake,
            clock=clock,
            instant_first=dispatcher.instant_first,
        )
        regular_processor.start()
    # One source, so that instant and regular orders see the same limits.
    limits = CreatorLimitsSource(database, settings.default_limits)
    services = Services(
        settings=settings,
        database=database,
        authenticator=Authenticator(database, jwks),
        instant_orders=InstantOrders(
            database,
            dispatcher,
            default_sms_sender=settings.default_sms_sender,
            default_email_sender=settings.default_email_sender,
            clock=clock,
            metrics=metrics,
            limits=limits,
        ),
        dispatcher=dispatcher,
        regular_orders=RegularOrders(
            database,
            default_sms_sender=settings.default_sms_sender,
            default_email_sender=settings.default_email_sender,
            clock=clock,
            on_due=regular_processor.wake if regular_processor is not None else None,
            limits=limits,
            metrics=metrics,
        ),
        regular_processor=regular_processor,
    )
    services.otp = build_otp_verifications(
        settings, database, services.instant_orders, key=otp_key, clock=clock
    )
    return services


async def stop_services(services: Services) -> None:
    if services.regular_processor is not None:
        await services.regular_processor.stop()
    if services.dispatcher is not None:
        await services.dispatcher.stop()
    await services.database.dispose()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(_request: Request, error: RequestValidationError) -> Response:
        return validation_problem(error.errors)

    @app.exception_handler(FastApiValidationError)
    async def on_invalid_parameters(_request: Request, error: FastApiValidationError) -> Response:
        errors: dict[str, list[str]] = {}
        for item in error.errors():
            path = ".".join(str(part) for part in item.get("loc", ())[1:]) or "$"
            errors.setdefault(path, []).append(str(item.get("msg", "invalid value")))
        return validation_problem(errors)

    @app.exception_handler(AuthenticationFailed)
    async def on_unauthenticated(_request: Request, error: AuthenticationFailed) -> Response:
        return problem(401, "Unauthorized", str(error), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(AccessDenied)
    async def on_forbidden(_request: Request, error: AccessDenied) -> Response:
        return problem(403, "Forbidden", str(error))

    @app.exception_handler(RateLimitExceededError)
    async def on_rate_limited(_request: Request, error: RateLimitExceededError) -> Response:
        return rate_limited(error.detail, error.retry_after_s)

    @app.exception_handler(BodyTooLarge)
    async def on_too_large(_request: Request, error: BodyTooLarge) -> Response:
        return problem(413, "Payload too large", str(error))

    @app.exception_handler(ClientGone)
    async def on_client_gone(request: Request, _error: ClientGone) -> Response:
        # Nobody reads this answer; nothing was stored because the body never
        # arrived whole.
        logger.info(
            "client closed the connection before the body was complete",
            extra={"event": "request_abandoned", "path": request.url.path},
        )
        return problem(400, "Request body incomplete", "The client closed the connection.")

    @app.exception_handler(UnsupportedContentType)
    async def on_content_type(_request: Request, error: UnsupportedContentType) -> Response:
        return problem(415, "Unsupported media type", str(error))

    @app.exception_handler(DatabaseUnavailableError)
    async def on_database_down(request: Request, error: DatabaseUnavailableError) -> Response:
        logger.error(
            "database unavailable",
            extra={
                "event": "database_unavailable",
                "path": request.url.path,
                "error": str(error)[:200],
            },
        )
        return database_unavailable()

    @app.exception_handler(HTTPException)
    async def on_http_error(_request: Request, error: HTTPException) -> Response:
        return problem(error.status_code, str(error.detail), headers=error.headers)
